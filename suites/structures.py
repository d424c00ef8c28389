"""The structures a benchmark compares, as one table: how a weight is projected onto each, which
gearshift spec compiles the projected weight (its structure is then found in the weights, so every
peer runs exactly the same numbers), and the ideal speedup the structure allows.

Weights are Wᵀ [outputs, inputs] for dense layers and [O, I, 3, 3] for convs, as `gearshift.compress`
takes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gearshift.compress import blocks, circulant, patterns


@dataclass(frozen=True)
class Structure:
    """One structure at one setting: `label` for tables, `family` for plots."""

    family: str  # "bsr 16x1", "bsr 4x4", "block patterns", "circulant", "pattern conv"
    setting: float  # density for the sparse ones, block size for circulant
    spec: str  # what gearshift compiles the projected weight with (the structure found in it)
    connectivity: float = 0.0  # pattern conv: the fraction of kernels removed

    @property
    def label(self) -> str:
        if self.family == "circulant":
            return f"circulant b={self.setting:g}"
        return f"{self.family} {self.setting:.0%} dense"

    @property
    def ideal(self) -> float:
        """The speedup over dense the structure's arithmetic allows: 1/density; for circulant the
        FLOP ratio of the spectral product (a b x b block's b^2 multiply-adds become b/2 complex ones,
        2b real: b/2), the FFTs, which amortise over the blocks of a row, left out."""
        if self.family == "circulant":
            return self.setting / 2
        return 1.0 / self.setting


def bsr(density: float, block: tuple[int, int] = (16, 1)) -> Structure:
    return Structure(f"bsr {block[0]}x{block[1]}", density, f"bsr::{block[0]}x{block[1]}")


def block_patterns(density: float) -> Structure:
    """4x4 blocks keeping 8 of 16 weights in one of 4 patterns; the rest of the density by block pruning."""
    return Structure("block patterns", density, "pattern:::4x4")


def circulant_blocks(b: int) -> Structure:
    return Structure("circulant", float(b), f"circulant:{b}")


def pattern_conv(connectivity: float) -> Structure:
    """PatDNN: 4 patterns of 4 taps per 3x3 kernel, `connectivity` of the kernels removed."""
    return Structure("pattern conv", 4 / 9 * (1 - connectivity), "pattern", connectivity)


def project(structure: Structure, w: np.ndarray) -> np.ndarray:
    """`w` (Wᵀ [N, K], or [O, I, 3, 3] for the pattern conv) projected onto `structure`, float32."""
    w = np.ascontiguousarray(w, dtype=np.float32)
    family = structure.family
    if family.startswith("bsr"):
        r, c = (int(v) for v in family.split()[1].split("x"))
        return blocks.project(w, r, c, 1.0 - structure.setting).astype(np.float32)
    if family == "block patterns":
        masks = patterns.block_library(w, 4, 4, 8, 4)
        removed = max(0.0, 1.0 - structure.setting / 0.5)  # 8 of 16 kept in a block: density 0.5 at most
        return patterns.block_project(w, masks, removed)[0].astype(np.float32)
    if family == "circulant":
        b = int(structure.setting)
        return circulant.reconstruct(circulant.project(w, b), *w.shape).astype(np.float32)
    if family == "pattern conv":
        return patterns.project(w, patterns.library(w, 4), structure.connectivity)[0].astype(np.float32)
    raise ValueError(f"unknown structure family {family!r}")


def fits(structure: Structure, shape: tuple[int, ...]) -> bool:
    """Whether a weight of `shape` (Wᵀ [N, K] or [O, I, kh, kw]) can take the structure."""
    if structure.family == "pattern conv":
        return len(shape) == 4 and shape[2:] == (3, 3)
    if len(shape) != 2:
        return False
    n, k = shape
    if structure.family.startswith("bsr"):
        r, c = (int(v) for v in structure.family.split()[1].split("x"))
        return n % r == 0 and k % c == 0
    if structure.family == "block patterns":
        return n % 4 == 0 and k % 4 == 0
    return n >= structure.setting and k >= structure.setting
