"""Block-circulant math, numpy only (CirCNN / FTRANS): projection, reconstruction, detection.

Wᵀ [N outputs, K inputs] is cut into b x b blocks (b a power of two; N and K padded with zeros up to
multiples of b). Block (i, j) is circulant, defined by one b-vector v = vectors[i, j]:

    block[r, s] = v[(r - s) mod b]        so   block @ x_j = v ⊛ x_j  (circular convolution)

The projection of a dense weight onto this set, nearest in Frobenius norm, is the mean along each
wrapped diagonal (`project`). Shared by the training side (`gearshift.frontend.circulant`) and the
compiler's passes.
"""

from __future__ import annotations

import numpy as np


def check_block(b: int) -> None:
    if b < 1 or b & (b - 1):
        raise ValueError(f"circulant block size must be a power of two, got {b}")


def padded(n: int, b: int) -> int:
    """n rounded up to a multiple of b."""
    return -(-n // b) * b


def project(wt: np.ndarray, b: int) -> np.ndarray:
    """The defining vectors [ceil(N/b), ceil(K/b), b] of the block-circulant matrix nearest to Wᵀ [N, K]
    in Frobenius norm: v[i, j, d] = mean of block_ij[r, (r - d) mod b] over r. Where N or K is not a
    multiple of b, the mean is over the entries inside Wᵀ only (the padding is cut off again, so its
    values are free): the nearest matrix on the entries that exist."""
    check_block(b)
    n, k = wt.shape
    full = np.zeros((padded(n, b), padded(k, b)), np.float64)
    seen = np.zeros_like(full)
    full[:n, :k], seen[:n, :k] = wt, 1.0

    def diagonals(a):  # [I, J, r, d]: block[r, (r - d) mod b]
        blocks = a.reshape(padded(n, b) // b, b, padded(k, b) // b, b).transpose(0, 2, 1, 3)
        r = np.arange(b)[:, None]
        return blocks[:, :, r, (r - np.arange(b)[None, :]) % b]

    return (diagonals(full).sum(axis=2) / np.maximum(diagonals(seen).sum(axis=2), 1.0)).astype(wt.dtype)


def reconstruct(vectors: np.ndarray, n: int, k: int) -> np.ndarray:
    """The dense Wᵀ [N, K] of the defining vectors (the padding cut off)."""
    nb, kb, b = vectors.shape
    r = np.arange(b)[:, None]
    s = np.arange(b)[None, :]
    blocks = vectors[:, :, (r - s) % b]  # [I, J, r, s]
    return np.ascontiguousarray(blocks.transpose(0, 2, 1, 3).reshape(nb * b, kb * b)[:n, :k])


def circulant_error(wt: np.ndarray, b: int) -> float:
    """How far Wᵀ is from block-circulant with blocks of b: |W - proj(W)| / |W| (0 for a zero W)."""
    norm = float(np.linalg.norm(wt))
    if norm == 0.0:
        return 0.0
    return float(np.linalg.norm(wt - reconstruct(project(wt, b), *wt.shape)) / norm)


def detect_block(wt: np.ndarray, tolerance: float = 1e-5, sizes=(64, 32, 16, 8, 4, 2)) -> int | None:
    """The largest block size b for which Wᵀ is block-circulant within `tolerance` (relative), or None."""
    for b in sizes:
        if b <= min(wt.shape) and circulant_error(wt, b) <= tolerance:
            return b
    return None
