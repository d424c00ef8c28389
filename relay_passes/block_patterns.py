"""Block patterns in dense layers (RT3): which patterns a layer's blocks take, found in the weight or
projected. The layer is then rewritten by the block-sparse pass (`block_sparse.py`), whose kernel runs
pattern blocks with each pattern's positions as constants; see docs/design/patterns.md.
"""

from __future__ import annotations

import numpy as np

from gearshift.compress.patterns import block_patterns_of, block_project, dense_library
from gearshift.relay_passes.plan import LayerSpec
from gearshift.relay_passes.walk import LayerReport
from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.bsr import choose_tile, kept_columns

PATTERN_BLOCK = (4, 4)  # the block of dense-layer patterns when the spec names none
PATTERN_BLOCKS = ((16, 4), (4, 4), (8, 1), (2, 8), (4, 8), (8, 4))  # where existing patterns are looked for, in turn


def choose_patterns(spec: LayerSpec, wt: np.ndarray, m: int, micro: Microkernel | None, report: LayerReport):
    """Block patterns (RT3): the library W's blocks already follow, or a projection onto K patterns
    with the `sparsity` fraction of blocks removed. Returns ((r, c), pruned Wᵀ, masks) or None."""
    n, k = wt.shape
    shapes = [spec.block] if spec.block else [PATTERN_BLOCK] if spec.patterns else list(PATTERN_BLOCKS)
    shapes = [(r, c) for r, c in shapes if n % r == 0 and k % c == 0]
    if not shapes:
        report.why = f"[N={n}, K={k}] does not divide into {spec.block or PATTERN_BLOCK} pattern blocks"
        return None
    if spec.patterns is None:
        found = [(shape, block_patterns_of(wt, *shape)) for shape in shapes]
        found = [(shape, masks) for shape, masks in found if masks is not None and vectorises(masks, m, k, micro)]
        if not found:
            blocks = " or ".join(f"{r}x{c}" for r, c in shapes)
            report.why = f"no {blocks} block patterns in the weight (give pattern:K:CONNECTIVITY to project)"
            return None
        ((r, c), masks), pruned = found[0], wt
    else:
        r, c = shapes[0]
        masks = dense_library(wt, r, c, spec.entries or r * c // 2, spec.patterns)
        pruned, _, _ = block_project(wt, masks, spec.sparsity or 0.0)
    report.block = f"{r}x{c} x {len(masks)} patterns of {int(masks[0].sum())}"
    return (r, c), pruned, masks


def vectorises(masks: np.ndarray, m: int, k: int, micro: Microkernel | None) -> bool:
    """Whether the kernel runs these block patterns as patterns: along the activations any masks, along
    the outputs (tall blocks) only whole-column ones. The GPU kernel (micro None) runs any masks."""
    return micro is None or choose_tile(m, k, masks.shape[1], micro).along == "activations" or kept_columns(masks) is not None
