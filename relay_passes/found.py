"""Structure a weight already has, found without a flag: what `gearshift compile` uses by default.

A model pruned in training arrives with exact zero blocks, exact 3x3 patterns or exact circulant
blocks. Running it on the matching sparse kernel is lossless, so the compiler looks for them in every
weight layer (the `found` spec, the default) and hands the layer to the pass of the structure it
found, as if the user had named it: the cost model still decides whether the kernel pays. A weight
with none of them stays dense. Order for dense layers: zero blocks (BSR), then zeros that follow block
patterns, then circulant blocks (a weight without zeros); for 3x3 convs: 4-entry patterns.
"""

from __future__ import annotations

import numpy as np

from gearshift.compress.blocks import detect_blocks
from gearshift.compress.circulant import circulant_error, detect_block
from gearshift.relay_passes.plan import LayerSpec

CIRCULANT_SIZES = (64, 32, 16, 8, 4)
CIRCULANT_TOLERANCE = 1e-5  # relative: exact up to the float rounding of an exported model


def found_dense(wt: np.ndarray) -> LayerSpec | None:
    """The spec for a dense layer's Wᵀ [N, K] from what it holds, or None (no structure)."""
    if not np.isfinite(wt).all():
        return None
    if (wt == 0).any():
        shape, _ = detect_blocks(wt)
        if shape is not None and shape != "unstructured":
            return LayerSpec("bsr")  # the zeros it has, in the blocks they form
        return LayerSpec("pattern")  # zeros that may follow block patterns (the pass checks)
    sizes = [b for b in CIRCULANT_SIZES if b <= min(wt.shape) and circulant_error(wt[:b, :b], b) <= CIRCULANT_TOLERANCE]
    if sizes and detect_block(wt, CIRCULANT_TOLERANCE, tuple(sizes)) is not None:
        return LayerSpec("circulant")
    return None


def found_conv(w: np.ndarray) -> LayerSpec | None:
    """The spec for a conv weight [O, I, 3, 3] whose kernels keep at most 4 entries, or None."""
    if w.ndim != 4 or w.shape[2:] != (3, 3) or not (w == 0).any():
        return None
    if ((w != 0).reshape(*w.shape[:2], 9).sum(axis=2) > 4).any():
        return None
    return LayerSpec("pattern")
