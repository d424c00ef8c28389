"""Block sparsity math, numpy only: projection onto r x c blocks (block pruning) and detection of the
empty blocks a weight already has. Shared by the training side, the compiler's passes and the level search.
"""

from __future__ import annotations

import numpy as np

BLOCK_SIDES = (1, 2, 4, 8, 16, 32)
UNEXPLAINED_ZEROS = 1e-3  # fraction of zeros that may lie outside empty blocks


def block_mask(wt: np.ndarray, r: int, c: int, sparsity: float) -> np.ndarray:
    """Which r x c blocks of Wᵀ [N, K] block pruning keeps, [N / r, K / c] bool: the (1 - sparsity)
    fraction with the largest L2 norm (ties: the later block first, as a stable descending sort)."""
    n, k = wt.shape
    norms = np.sqrt((wt.reshape(n // r, r, k // c, c).astype(np.float64) ** 2).sum(axis=(1, 3)))
    keep = int(round(norms.size * (1.0 - sparsity)))
    mask = np.zeros(norms.size, dtype=bool)
    if keep > 0:
        mask[np.argsort(norms, axis=None, kind="stable")[::-1][:keep]] = True
    return mask.reshape(norms.shape)


def project(wt: np.ndarray, r: int, c: int, sparsity: float) -> np.ndarray:
    """Keep the (1 - sparsity) fraction of r x c blocks of Wᵀ with the largest L2 norm; zero the rest."""
    n, k = wt.shape
    kept = block_mask(wt, r, c, sparsity)
    return (wt.reshape(n // r, r, k // c, c) * kept[:, None, :, None]).reshape(n, k).astype(wt.dtype)


def detect_blocks(matrix: np.ndarray) -> tuple[str | None, float]:
    """The largest r x c whose all-zero blocks contain the zeros of `matrix` (all but UNEXPLAINED_ZEROS
    of them), and the fraction of blocks that are empty.

    Shapes that do not divide the matrix are tried with zero padding (padding is never counted).
    """
    zeros = int(np.count_nonzero(matrix == 0))
    if zeros == 0:
        return None, 0.0
    rows, cols = matrix.shape
    nonzero = matrix != 0
    best: tuple[int, int, float] | None = None
    for r in BLOCK_SIDES:
        for c in BLOCK_SIDES:
            if (r, c) == (1, 1) or r > rows or c > cols:
                continue
            if best is not None and r * c <= best[0] * best[1]:
                continue
            padded = np.zeros((-(-rows // r) * r, -(-cols // c) * c), dtype=bool)
            padded[:rows, :cols] = nonzero
            occupied = padded.reshape(padded.shape[0] // r, r, -1, c).any(axis=(1, 3))
            # The zeros explained: all but a stray 0.1 % (a trained weight has the odd exact zero).
            empty = ~occupied
            mask = np.repeat(np.repeat(empty, r, axis=0), c, axis=1)[:rows, :cols]
            if empty.any() and int(mask.sum()) >= zeros * (1 - UNEXPLAINED_ZEROS):
                best = (r, c, float(empty.mean()))
    if best is None:
        return "unstructured", 0.0
    return f"{best[0]}x{best[1]}", best[2]
