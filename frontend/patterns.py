"""Pattern pruning of 3x3 convolutions, training side (PatDNN; same API family as `BlockPruner`).

A pattern keeps 4 of a 3x3 kernel's 9 entries, the centre always among them (56 candidates). A
layer uses a small library of K patterns: every kernel takes the library pattern that keeps most of
its L2 energy. Connectivity pruning then removes whole kernels (the weakest by norm after the
pattern mask). With 4-of-9 patterns and 72 % of the kernels removed, a layer keeps 0.28 x 4/9 = 12 %
of its weights (PatDNN's VGG-16 rate).

The numpy half (`candidates`, `library`, `assign`, `project`) is shared with the compiler's
`PatternSparsify` pass, which projects weights the same way. The torch half, `PatternPruner`,
trains towards the constraint with ADMM as PatDNN does:

    pruner = PatternPruner(model, patterns=4, connectivity=0.72)
    for batch in data:                          # phase 1: ADMM
        loss = task_loss(...) + pruner.penalty()    # rho/2 ||W - Z + U||^2
        loss.backward(); optimizer.step(); pruner.step()   # every N steps: Z = proj(W + U); U += W - Z
    pruner.prune()                              # phase 2: W = proj(W), mask fixed for fine-tuning
    pruner.finalize()                           # bake the zeros in, ready for export
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize


def candidates() -> np.ndarray:
    """The 56 4-of-9 masks that keep the centre, [56, 3, 3] bool, in a fixed order."""
    cells = [c for c in range(9) if c != 4]
    masks = np.zeros((56, 9), bool)
    for i, kept in enumerate(itertools.combinations(cells, 3)):
        masks[i, [4, *kept]] = True
    return masks.reshape(56, 3, 3)


def _energy(w: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Kept L2 energy of every kernel under every mask: [O, I, len(masks)]."""
    return np.einsum("oik,pk->oip", (w.astype(np.float64) ** 2).reshape(*w.shape[:2], 9),
                     masks.reshape(len(masks), 9).astype(np.float64))


def library(w: np.ndarray, k: int) -> np.ndarray:
    """The k candidate patterns that fit most kernels of w [O, I, 3, 3] best (ties: candidate order)."""
    every = candidates()
    energy = _energy(w, every)
    best = energy.argmax(axis=2)[energy.max(axis=2) > 0]  # all-zero kernels vote for no pattern
    counts = np.bincount(best, minlength=len(every))
    order = sorted(range(len(every)), key=lambda p: (-counts[p], p))
    return every[sorted(order[:k])]


def fits(w: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each kernel's nonzeros lie inside each mask: [O, I, len(masks)] bool (a zero kernel fits all)."""
    support = w.reshape(*w.shape[:2], 1, 9) != 0
    return ~(support & ~masks.reshape(1, 1, len(masks), 9)).any(axis=3)


def assign(w: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each kernel's pattern: the index into `masks` keeping most of its energy, [O, I]."""
    return _energy(w, masks).argmax(axis=2)


def project(w: np.ndarray, masks: np.ndarray, connectivity: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest weight (in L2, greedily) with every kernel in a library pattern and the
    `connectivity` fraction of kernels removed. Returns (weight, pattern ids [O, I], kept [O, I])."""
    if not 0.0 <= connectivity < 1.0:
        raise ValueError(f"connectivity (fraction of kernels removed) must be in [0, 1), got {connectivity}")
    ids = assign(w, masks)
    out = w * masks[ids]
    norms = np.sqrt((out.astype(np.float64) ** 2).sum(axis=(2, 3)))
    keep = int(round(norms.size * (1.0 - connectivity)))
    kept = np.zeros(norms.size, bool)
    kept[np.argsort(-norms, axis=None, kind="stable")[:keep]] = True
    kept = kept.reshape(norms.shape)
    return (out * kept[:, :, None, None]).astype(w.dtype), ids, kept


def is_pattern_conv(module: nn.Module) -> bool:
    """A 3x3, ungrouped Conv2d: the kind PatDNN's patterns apply to."""
    return isinstance(module, nn.Conv2d) and tuple(module.kernel_size) == (3, 3) and module.groups == 1


class _Mask(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


class PatternPruner:
    """ADMM towards `patterns`-pattern libraries plus connectivity pruning, then masked fine-tuning.

    patterns: library size K per layer (4, 6, 8, ...); connectivity: fraction of 3x3 kernels removed
    per layer; layers: regex on module names; rho: ADMM penalty weight; update_every: optimiser
    steps between Z/U updates (the library is re-extracted from W + U at each update).
    """

    def __init__(self, model: nn.Module, *, patterns: int = 4, connectivity: float = 0.0, layers: str = r".*",
                 rho: float = 1e-3, update_every: int = 50):
        if not 1 <= patterns <= 56:
            raise ValueError(f"patterns must be in [1, 56], got {patterns}")
        if not 0.0 <= connectivity < 1.0:
            raise ValueError(f"connectivity must be in [0, 1), got {connectivity}")
        self.patterns, self.connectivity, self.rho, self.update_every = patterns, connectivity, rho, update_every
        regex = re.compile(layers)
        self.modules = {name: m for name, m in model.named_modules() if is_pattern_conv(m) and regex.search(name)}
        if not self.modules:
            raise ValueError(f"no 3x3 ungrouped Conv2d layer matches {layers!r}")
        self.z: dict[str, torch.Tensor] = {}
        self.u = {name: torch.zeros_like(m.weight) for name, m in self.modules.items()}
        self.libraries: dict[str, np.ndarray] = {}
        self._steps = 0
        self.update()

    def _project(self, name: str, w: torch.Tensor) -> torch.Tensor:
        value = w.detach().cpu().numpy()
        self.libraries[name] = library(value, self.patterns)
        projected, _, _ = project(value, self.libraries[name], self.connectivity)
        return torch.from_numpy(projected).to(w)

    def update(self) -> None:
        """Z = proj(W + U) (the Z-step), then U = U + W - Z (the dual update)."""
        with torch.no_grad():
            for name, m in self.modules.items():
                self.z[name] = self._project(name, m.weight + self.u[name])
                self.u[name] += m.weight - self.z[name]

    def penalty(self) -> torch.Tensor:
        """rho/2 sum ||W - Z + U||^2: the augmented-Lagrangian term of the W-step."""
        return self.rho / 2 * sum((m.weight - self.z[n] + self.u[n]).pow(2).sum() for n, m in self.modules.items())

    def step(self) -> None:
        self._steps += 1
        if self._steps % self.update_every == 0:
            self.update()

    def prune(self) -> None:
        """Project W itself and fix the mask: from here on training only moves the kept weights."""
        for name, m in self.modules.items():
            with torch.no_grad():
                m.weight.copy_(self._project(name, m.weight))
                mask = (m.weight != 0).to(m.weight.dtype)
            parametrize.register_parametrization(m, "weight", _Mask(mask))

    def finalize(self) -> None:
        for m in self.modules.values():
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)

    def report(self) -> dict[str, float]:
        """Fraction of zero weights per layer."""
        with torch.no_grad():
            return {name: float((m.weight == 0).float().mean()) for name, m in self.modules.items()}
