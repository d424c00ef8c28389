"""Block-structured pruning of torch models, training side (in the spirit of `torch.ao.pruning`).

Hardware-friendly block pruning (Li et al., "Efficient Transformer-based Large Scale Language
Representations using Hardware-friendly Block Structured Pruning"): train with a reweighted group
lasso over the weight's blocks, so whole blocks shrink together; then zero the weakest blocks to the
target sparsity and fine-tune with that mask fixed. The exported ONNX carries exact zeros in whole
blocks, which `gearshift compile --sparsity bsr` turns into block-sparse kernels.

    pruner = BlockPruner(model, block=(16, 1), sparsity=0.8, layers=r"layers\\.\\d+\\.")
    for batch in data:                          # phase 1: sparsity-inducing training
        loss = task_loss(...) + pruner.penalty()
        loss.backward(); optimizer.step(); pruner.step()
    pruner.prune()                              # phase 2: hard prune, masks fixed
    ... fine-tune as usual (masked weights stay exactly zero) ...
    pruner.finalize()                           # bake the masks in, ready for export

Blocks are taken on the weight as torch stores it, [out_features, in_features] (for Conv2d,
[C_out, C_in * kh * kw]): an r x c block spans r outputs and c inputs, as gearshift's kernels do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from gearshift.frontend.structures import Blocks


@dataclass
class _Target:
    name: str
    module: nn.Module
    gamma: torch.Tensor | None = None  # reweighting factors, one per block


class BlockPruner:
    """Reweighted group lasso, then hard block pruning with fixed masks, on the matching layers.

    block: (r, c) block shape; sparsity: fraction of blocks to zero per layer; layers: a regex on
    module names (default: every matching module); types: module types to prune; lam: penalty
    weight λ; eps: ε in γ_b = 1 / (‖W_b‖_F + ε); refresh_every: steps between γ updates.
    """

    def __init__(self, model: nn.Module, *, block: tuple[int, int] = (16, 1), sparsity: float = 0.8,
                 layers: str = r".*", types: tuple[type, ...] = (nn.Linear, nn.Conv2d), lam: float = 1e-4,
                 eps: float = 1e-3, refresh_every: int = 50):
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
        self.block, self.sparsity, self.lam, self.eps, self.refresh_every = block, sparsity, lam, eps, refresh_every
        pattern = re.compile(layers)
        self.targets: list[_Target] = []
        for name, module in model.named_modules():
            if isinstance(module, types) and pattern.search(name):
                rows, cols = _matrix(module.weight).shape
                if rows % block[0] or cols % block[1]:
                    raise ValueError(f"layer {name!r}: weight [{rows}, {cols}] does not divide into {block[0]}x{block[1]} blocks")
                self.targets.append(_Target(name, module))
        if not self.targets:
            raise ValueError(f"no {', '.join(t.__name__ for t in types)} layer matches {layers!r}")
        self._steps = 0
        self.refresh()

    def block_norms(self, target: _Target) -> torch.Tensor:
        """‖W_b‖_F of every block of the target's weight, shape [rows / r, cols / c]."""
        w = _matrix(target.module.weight)
        r, c = self.block
        return w.reshape(w.shape[0] // r, r, w.shape[1] // c, c).pow(2).sum(dim=(1, 3)).sqrt()

    def refresh(self) -> None:
        """γ_b = 1 / (‖W_b‖ + ε): blocks already small are pushed harder, large ones are left alone."""
        with torch.no_grad():
            for t in self.targets:
                t.gamma = 1.0 / (self.block_norms(t) + self.eps)

    def penalty(self) -> torch.Tensor:
        """λ Σ_layers Σ_b γ_b ‖W_b‖_F, to add to the training loss."""
        return self.lam * sum((t.gamma * self.block_norms(t)).sum() for t in self.targets)

    def step(self, loss=None) -> None:
        """Call after each optimiser step: refreshes γ every `refresh_every` steps. `loss` is ignored
        (accepted so that one training loop drives this pruner and `compression.Pruner` alike)."""
        self._steps += 1
        if self._steps % self.refresh_every == 0:
            self.refresh()

    def prune(self) -> None:
        """Zero the weakest blocks of each layer down to `sparsity` and keep them zero from now on."""
        for t in self.targets:
            with torch.no_grad():  # the same blocks the compiler's projection keeps (gearshift.compress.blocks)
                mask = Blocks(*self.block, self.sparsity).constraint(t.module.weight)
            parametrize.register_parametrization(t.module, "weight", mask)

    def finalize(self) -> None:
        """Bake the masks into the weights (exact zeros) and drop the parametrizations, for export."""
        for t in self.targets:
            if parametrize.is_parametrized(t.module, "weight"):
                parametrize.remove_parametrizations(t.module, "weight", leave_parametrized=True)

    def report(self) -> dict[str, float]:
        """Fraction of all-zero blocks per layer."""
        with torch.no_grad():
            return {t.name: float((self.block_norms(t) == 0).float().mean()) for t in self.targets}


def _matrix(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1)
