"""The structures training drives weights towards, torch side: one small class per structure.

Each structure answers four questions about one layer's weight W (torch's layout, [out, in], a
Conv2d's as [out, in * kh * kw]), so that every training method (`frontend/compression.py`: group
lasso, ADMM, SLR) works with every structure:

- `project(W)`: the nearest weight with the structure (the same projection the compiler applies, from
  `gearshift.compress`), used by ADMM/SLR's Z-step and by the hard prune;
- `groups(W)`: the norms group lasso penalises (differentiable): blocks for BSR, kernels and their
  off-pattern parts for patterns, each block's distance from circulant for circulant;
- `constraint(W)`: a parametrization that keeps W in the structure while fine-tuning (a mask, or the
  circulant projection itself);
- `sparsity`: settable, so progressive training can raise it between stages.

A structure comes from a spec in the `--sparsity` grammar (`structure_for`), so what training
produces is what `gearshift compile` finds in the weights with no flag.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gearshift.compress import blocks as block_math
from gearshift.compress import circulant as circulant_math
from gearshift.compress import patterns as pattern_math
from gearshift.relay_passes.plan import parse_spec


class Mask(nn.Module):
    """Parametrization: weight * mask (pruned entries stay exactly zero while fine-tuning)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def _matrix(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def _numpy(w: torch.Tensor) -> np.ndarray:
    return _matrix(w).detach().cpu().numpy()


def _tensor(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).to(like).reshape(like.shape)


class Blocks:
    """Block sparsity (BSR): the `sparsity` fraction of r x c blocks (r outputs x c inputs) zero."""

    def __init__(self, r: int, c: int, sparsity: float):
        self.r, self.c, self.sparsity = r, c, sparsity

    def __str__(self) -> str:
        return f"bsr:{self.sparsity:g}:{self.r}x{self.c}"

    def check(self, w: torch.Tensor) -> str | None:
        rows, cols = _matrix(w).shape
        return None if rows % self.r == 0 and cols % self.c == 0 else \
            f"weight [{rows}, {cols}] does not divide into {self.r}x{self.c} blocks"

    def project(self, w: torch.Tensor) -> torch.Tensor:
        return _tensor(block_math.project(_numpy(w), self.r, self.c, self.sparsity), w)

    def groups(self, w: torch.Tensor) -> torch.Tensor:
        m = _matrix(w)
        return m.reshape(m.shape[0] // self.r, self.r, m.shape[1] // self.c, self.c).pow(2).sum(dim=(1, 3)).add(1e-12).sqrt()

    def constraint(self, w: torch.Tensor) -> nn.Module:
        kept = block_math.block_mask(_numpy(w), self.r, self.c, self.sparsity)
        mask = np.repeat(np.repeat(kept, self.r, axis=0), self.c, axis=1).astype(np.float32)
        return Mask(_tensor(mask, w))


class _Patterned:
    """What 3x3 kernel patterns and dense-layer block patterns share: a library found on the weight
    (then frozen, so later stages keep the patterns of earlier ones) and a removed fraction of units."""

    library: np.ndarray | None = None

    def project(self, w: torch.Tensor) -> torch.Tensor:
        return _tensor(self._project(w, freeze=False)[0], w)

    def groups(self, w: torch.Tensor) -> torch.Tensor:
        """Each unit's norm (connectivity pruning removes whole units) and the norm of its part outside
        its best pattern (the projection held fixed: its gradient is exact for that distance)."""
        projected = self.project(w).detach()
        units, outside = self._units(w), self._units(w - projected)
        return torch.cat([units.pow(2).sum(-1).add(1e-12).sqrt().flatten(),
                          outside.pow(2).sum(-1).add(1e-12).sqrt().flatten()])

    def constraint(self, w: torch.Tensor) -> nn.Module:
        """The mask of the projection, the library frozen from here on (later stages keep the patterns)."""
        projected, _ = self._project(w, freeze=True)
        return Mask(_tensor((projected != 0).astype(np.float32), w))


class Patterns(_Patterned):
    """PatDNN: every 3x3 kernel in one of `k` 4-of-9 patterns, `sparsity` of the kernels removed."""

    def __init__(self, k: int, sparsity: float):
        self.k, self.sparsity = k, sparsity

    def __str__(self) -> str:
        return f"pattern:{self.k}:{self.sparsity:g}"

    def check(self, w: torch.Tensor) -> str | None:
        return None if w.dim() == 4 and tuple(w.shape[2:]) == (3, 3) else "patterns apply to 3x3 convolutions"

    def _units(self, w: torch.Tensor) -> torch.Tensor:
        return w.reshape(w.shape[0], w.shape[1], 9)

    def _project(self, w: torch.Tensor, freeze: bool) -> tuple[np.ndarray, None]:
        value = w.detach().cpu().numpy()
        library = self.library if self.library is not None else pattern_math.library(value, self.k)
        if freeze:
            self.library = library
        return pattern_math.project(value, library, self.sparsity)[0], None


class BlockPatterns(_Patterned):
    """Dense layers (RT3): every r x c block in one of `k` patterns keeping `entries` weights,
    `sparsity` of the blocks removed."""

    def __init__(self, k: int, sparsity: float, r: int, c: int, entries: int):
        self.k, self.sparsity, self.r, self.c, self.entries = k, sparsity, r, c, entries

    def __str__(self) -> str:
        return f"pattern:{self.k}:{self.sparsity:g}:{self.r}x{self.c}:{self.entries}"

    def check(self, w: torch.Tensor) -> str | None:
        return Blocks(self.r, self.c, 0).check(w) if w.dim() == 2 else "block patterns apply to dense layers"

    def _units(self, w: torch.Tensor) -> torch.Tensor:
        n, k = w.shape
        return w.reshape(n // self.r, self.r, k // self.c, self.c).permute(0, 2, 1, 3).reshape(n // self.r, k // self.c, -1)

    def _project(self, w: torch.Tensor, freeze: bool) -> tuple[np.ndarray, None]:
        value = _numpy(w)
        library = self.library if self.library is not None else \
            pattern_math.dense_library(value, self.r, self.c, self.entries, self.k)
        if freeze:
            self.library = library
        return pattern_math.block_project(value, library, self.sparsity)[0], None


class _CirculantProjection(nn.Module):
    """Parametrization: W -> its nearest block-circulant matrix (mean along each block's wrapped
    diagonals), differentiable, so fine-tuning moves only the defining vectors."""

    def __init__(self, b: int):
        super().__init__()
        self.b = b

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return circulant_projection(w, self.b)


def circulant_projection(w: torch.Tensor, b: int) -> torch.Tensor:
    """The block-circulant matrix nearest to W [N, K] (N, K multiples of b), in torch."""
    n, k = w.shape
    blocks = w.reshape(n // b, b, k // b, b).permute(0, 2, 1, 3)  # [I, J, r, s]
    r = torch.arange(b)[:, None]
    d = (r - torch.arange(b)[None, :]) % b  # block[r, s] lies on diagonal (r - s) mod b
    vectors = torch.zeros(n // b, k // b, b, dtype=w.dtype, device=w.device)
    vectors = vectors.index_add(2, d.flatten().to(w.device), blocks.reshape(n // b, k // b, b * b)) / b
    return vectors[:, :, d].permute(0, 2, 1, 3).reshape(n, k)


class Circulant:
    """Block-circulant (CirCNN / FTRANS): every b x b block of a dense layer circulant."""

    sparsity = 0.0  # a tying constraint, not zeros: progressive stages do not change it

    def __init__(self, b: int):
        circulant_math.check_block(b)
        self.b = b

    def __str__(self) -> str:
        return f"circulant:{self.b}"

    def check(self, w: torch.Tensor) -> str | None:
        if w.dim() != 2:
            return "circulant blocks apply to dense layers"
        return None if w.shape[0] % self.b == 0 and w.shape[1] % self.b == 0 else \
            f"weight [{w.shape[0]}, {w.shape[1]}] does not divide into {self.b}x{self.b} blocks"

    def project(self, w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return circulant_projection(w, self.b)

    def groups(self, w: torch.Tensor) -> torch.Tensor:
        """Each block's distance from circulant (the projection held fixed: exact gradient, as it is linear)."""
        residual = w - self.project(w)
        n, k = w.shape
        return residual.reshape(n // self.b, self.b, k // self.b, self.b).pow(2).sum(dim=(1, 3)).add(1e-12).sqrt()

    def constraint(self, w: torch.Tensor) -> nn.Module:
        return _CirculantProjection(self.b)


Structure = Blocks | Patterns | BlockPatterns | Circulant


def structure_for(spec: str, weight: torch.Tensor) -> Structure | None:
    """The structure a `--sparsity` spec asks of a layer with this weight (None for `dense`). Training
    needs explicit targets: a sparsity for bsr and patterns, a block size for circulant."""
    parsed = parse_spec(spec)
    if parsed.kind == "dense":
        return None
    if parsed.kind == "bsr" and parsed.sparsity is not None:
        return Blocks(*(parsed.block or (16, 1)), parsed.sparsity)
    if parsed.kind == "pattern" and parsed.patterns:
        if weight.dim() == 4:
            return Patterns(parsed.patterns, parsed.sparsity or 0.0)
        r, c = parsed.block or (4, 4)
        return BlockPatterns(parsed.patterns, parsed.sparsity or 0.0, r, c, parsed.entries or r * c // 2)
    if parsed.kind == "circulant" and parsed.block:
        return Circulant(parsed.block[0])
    raise ValueError(f"{spec!r}: training needs an explicit target, e.g. bsr:0.8:16x1, pattern:4:0.5 or circulant:8")
