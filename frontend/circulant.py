"""Block-circulant weights (CirCNN / FTRANS), training side; the numpy math is `gearshift.compress.circulant`.

Wᵀ [N outputs, K inputs] is cut into b x b blocks (b a power of two; N and K padded with zeros up to
multiples of b). Block (i, j) is circulant, defined by one b-vector v = vectors[i, j]:

    block[r, s] = v[(r - s) mod b]        so   block @ x_j = v ⊛ x_j  (circular convolution)
                                          and  FFT(block @ x_j) = FFT(v) * FFT(x_j)

A layer then stores N*K/b numbers instead of N*K, and y_i = IFFT(sum_j FFT(v_ij) * FFT(x_j)) costs
O(b log b) per block instead of b². The projection of a dense weight onto this set, nearest in
Frobenius norm, is the mean along each wrapped diagonal (`project`).

Training (`CirculantLinear`) keeps the defining vectors as the parameters and computes the layer
through torch.fft in both directions. For export, `to_dense` turns every CirculantLinear back into an
nn.Linear holding the exact dense reconstruction: the ONNX file is an ordinary model that any
runtime runs, and gearshift's `Circulantize` pass finds the circulant blocks again (exactly, since
they are exact) with `--sparsity circulant`.

    model = circulantize(model, block=8, layers=r"hidden")   # nn.Linear -> CirculantLinear (projected)
    ...train as usual...
    to_dense(model); torch.onnx.export(model, ...)           # then: gearshift compile --sparsity circulant
"""

from __future__ import annotations

import re

import numpy as np

import torch
from torch import nn

from gearshift.compress.circulant import (  # noqa: F401  (re-exported: the training API's numpy half)
    check_block,
    circulant_error,
    detect_block,
    padded,
    project,
    reconstruct,
)


class CirculantLinear(nn.Module):
    """y = x Wᵀ + bias with Wᵀ block-circulant: parameters are the defining vectors [N/b, K/b, b]."""

    def __init__(self, in_features: int, out_features: int, block: int, bias: bool = True):
        super().__init__()
        check_block(block)
        self.in_features, self.out_features, self.block = in_features, out_features, block
        shape = (padded(out_features, block) // block, padded(in_features, block) // block, block)
        self.vectors = nn.Parameter(torch.randn(shape) / np.sqrt(in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @classmethod
    def from_linear(cls, linear: nn.Linear, block: int) -> CirculantLinear:
        """The circulant layer nearest to `linear` (projected weight, same bias)."""
        layer = cls(linear.in_features, linear.out_features, block, linear.bias is not None)
        with torch.no_grad():
            layer.vectors.copy_(torch.from_numpy(project(linear.weight.detach().cpu().numpy(), block)))
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer.to(linear.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, (nb, kb, _) = self.block, self.vectors.shape
        lead = x.shape[:-1]
        xp = nn.functional.pad(x, (0, kb * b - self.in_features)).reshape(*lead, kb, b)
        xf = torch.fft.rfft(xp, dim=-1)  # [..., J, b/2+1]
        vf = torch.fft.rfft(self.vectors, dim=-1)  # [I, J, b/2+1]
        yf = torch.einsum("...jf,ijf->...if", xf, vf)
        y = torch.fft.irfft(yf, n=b, dim=-1).reshape(*lead, nb * b)[..., : self.out_features]
        return y if self.bias is None else y + self.bias

    def dense_weight(self) -> torch.Tensor:
        """Wᵀ [out, in], reconstructed (differentiable)."""
        b = self.block
        r = torch.arange(b)[:, None]
        s = torch.arange(b)[None, :]
        blocks = self.vectors[:, :, (r - s) % b]
        nb, kb = self.vectors.shape[:2]
        return blocks.permute(0, 2, 1, 3).reshape(nb * b, kb * b)[: self.out_features, : self.in_features]


def circulantize(model: nn.Module, block: int, layers: str = r".*") -> nn.Module:
    """Replace every nn.Linear whose name matches `layers` by its nearest CirculantLinear (in place)."""
    regex = re.compile(layers)
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and regex.search(name)]
    if not targets:
        raise ValueError(f"no nn.Linear layer matches {layers!r}")
    for name, linear in targets:
        _replace(model, name, CirculantLinear.from_linear(linear, block))
    return model


def to_dense(model: nn.Module) -> nn.Module:
    """Replace every CirculantLinear by an nn.Linear with its exact dense reconstruction (in place),
    ready for ONNX export."""
    for name, m in list(model.named_modules()):
        if isinstance(m, CirculantLinear):
            linear = nn.Linear(m.in_features, m.out_features, m.bias is not None).to(m.vectors.device)
            with torch.no_grad():
                linear.weight.copy_(m.dense_weight())
                if m.bias is not None:
                    linear.bias.copy_(m.bias)
            _replace(model, name, linear)
    return model


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
