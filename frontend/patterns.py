"""Pattern pruning, training side: 3x3 convolutions (PatDNN) and blocks of dense layers (RT3).

A pattern keeps 4 of a 3x3 kernel's 9 entries, the centre always among them (56 candidates). A
layer uses a small library of K patterns: every kernel takes the library pattern that keeps most of
its L2 energy. Connectivity pruning then removes whole kernels (the weakest by norm after the
pattern mask). With 4-of-9 patterns and 72 % of the kernels removed, a layer keeps 0.28 x 4/9 = 12 %
of its weights (PatDNN's VGG-16 rate).

The numpy half (`candidates`, `library`, `assign`, `project`, ...) lives in `gearshift.compress.patterns`,
shared with the compiler's passes, and is re-exported here. `PatternPruner` trains towards the
constraint with ADMM as PatDNN does:

    pruner = PatternPruner(model, patterns=4, connectivity=0.72)
    for batch in data:                          # phase 1: ADMM
        loss = task_loss(...) + pruner.penalty()    # rho/2 ||W - Z + U||^2
        loss.backward(); optimizer.step(); pruner.step()   # every N steps: Z = proj(W + U); U += W - Z
    pruner.prune()                              # phase 2: W = proj(W), mask fixed for fine-tuning
    pruner.finalize()                           # bake the zeros in, ready for export
"""

from __future__ import annotations

import re

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from gearshift.frontend.structures import Mask
from gearshift.compress.patterns import (  # noqa: F401  (re-exported: the pruning API's numpy half)
    COLUMN_ROWS,
    assign,
    block_fits,
    block_library,
    block_project,
    candidates,
    column_library,
    dense_library,
    fits,
    library,
    project,
)


def is_pattern_conv(module: nn.Module) -> bool:
    """A 3x3, ungrouped Conv2d: the kind PatDNN's patterns apply to."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (3, 3) and module.groups == 1


def is_pattern_linear(module: nn.Module, block: tuple[int, int]) -> bool:
    """A Linear layer whose weight [out, in] (= Wᵀ) divides into r x c blocks."""
    return (isinstance(module, nn.Linear) and module.out_features % block[0] == 0
            and module.in_features % block[1] == 0)


class PatternPruner:
    """ADMM towards `patterns`-pattern libraries plus connectivity pruning, then masked fine-tuning.

    patterns: library size K per layer (4, 6, 8, ...); connectivity: fraction of 3x3 kernels (or of
    blocks, for dense layers) removed per layer; layers: regex on module names; rho: ADMM penalty
    weight; update_every: optimiser steps between Z/U updates (the library is re-extracted from W + U
    at each update). dense: also prune Linear layers with block patterns (RT3): `block` r x c
    (outputs x inputs), each pattern keeping `entries` of its weights (`dense_library`: whole
    columns for tall blocks such as 16x4 keeping 32, the fast kind on CPUs).
    """

    def __init__(self, model: nn.Module, *, patterns: int = 4, connectivity: float = 0.0, layers: str = r".*",
                 rho: float = 1e-3, update_every: int = 50, dense: bool = False, block: tuple[int, int] = (4, 4),
                 entries: int = 8):
        if not 1 <= patterns <= 56:
            raise ValueError(f"patterns must be in [1, 56], got {patterns}")
        if not 0.0 <= connectivity < 1.0:
            raise ValueError(f"connectivity must be in [0, 1), got {connectivity}")
        if not 1 <= entries <= block[0] * block[1]:
            raise ValueError(f"entries must be in [1, {block[0] * block[1]}] for {block[0]}x{block[1]} blocks, got {entries}")
        self.patterns, self.connectivity, self.rho, self.update_every = patterns, connectivity, rho, update_every
        self.block, self.entries = block, entries
        regex = re.compile(layers)
        self.modules = {name: m for name, m in model.named_modules() if regex.search(name) and (
            is_pattern_conv(m) or (dense and is_pattern_linear(m, block)))}
        if not self.modules:
            kinds = "3x3 ungrouped Conv2d" + (f" or Linear (dividing into {block[0]}x{block[1]} blocks)" if dense else "")
            raise ValueError(f"no {kinds} layer matches {layers!r}")
        self.z: dict[str, torch.Tensor] = {}
        self.u = {name: torch.zeros_like(m.weight) for name, m in self.modules.items()}
        self.libraries: dict[str, np.ndarray] = {}
        self._steps = 0
        self.update()

    def _project(self, name: str, w: torch.Tensor) -> torch.Tensor:
        value = w.detach().cpu().numpy()
        if isinstance(self.modules[name], nn.Linear):
            self.libraries[name] = dense_library(value, *self.block, self.entries, self.patterns)
            projected, _, _ = block_project(value, self.libraries[name], self.connectivity)
        else:
            self.libraries[name] = library(value, self.patterns)
            projected, _, _ = project(value, self.libraries[name], self.connectivity)
        return torch.from_numpy(np.ascontiguousarray(projected)).to(w)

    def update(self) -> None:
        """Z = proj(W + U) (the Z-step), then U = U + W - Z (the dual update)."""
        with torch.no_grad():
            for name, m in self.modules.items():
                self.z[name] = self._project(name, m.weight + self.u[name])
                self.u[name] += m.weight - self.z[name]

    def penalty(self) -> torch.Tensor:
        """rho/2 sum ||W - Z + U||^2: the augmented-Lagrangian term of the W-step."""
        return self.rho / 2 * sum((m.weight - self.z[n] + self.u[n]).pow(2).sum() for n, m in self.modules.items())

    def step(self, loss=None) -> None:
        """Call after each optimiser step (`loss` ignored, as in `compression.Pruner.step`)."""
        self._steps += 1
        if self._steps % self.update_every == 0:
            self.update()

    def prune(self) -> None:
        """Project W itself and fix the mask: from here on training only moves the kept weights."""
        for name, m in self.modules.items():
            with torch.no_grad():
                m.weight.copy_(self._project(name, m.weight))
                mask = (m.weight != 0).to(m.weight.dtype)
            parametrize.register_parametrization(m, "weight", Mask(mask))

    def finalize(self) -> None:
        for m in self.modules.values():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)

    def report(self) -> dict[str, float]:
        """Fraction of zero weights per layer."""
        with torch.no_grad():
            return {name: float((m.weight == 0).float().mean()) for name, m in self.modules.items()}
