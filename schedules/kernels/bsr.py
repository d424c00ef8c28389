"""Block-sparse (BSR) matmul: y[M, N] = x[M, K] @ W[K, N] (+ bias), W stored by blocks of Wᵀ.

Wᵀ ([N outputs, K inputs]) is cut into r x c blocks (r outputs x c inputs); only nonzero blocks are
stored: `data[nnz, c, r]` (each block transposed, so a block's r outputs for one input are one
contiguous vector), `indices[nnz]` (block column) and `indptr[N/r + 1]` (CSR over block rows).

The kernel is written scheduled (TVM cannot schedule or tune loops whose bounds are data). Each
thread owns a contiguous range of block rows; the activation rows are taken in chunks small enough
to stay in L2 (`chunk_rows`: the random columns a block row reads then hit L2, not L3; 1.2-1.4x
measured here at K = 768 and 3072) and reused over all of the thread's block rows; per block row and per register block of `rows`
activation rows, the nonzero blocks are walked, x[m, k] is broadcast and multiplied into `rows x r`
accumulators that stay in registers (vectorised along r, the block's long side); the bias is added
on the way out. No per-element index load: one index per block.

The structure arrays can be constants (the "baked" form) or runtime inputs with the same nnz (the
"runtime" form, which lets one executable run several pattern sets of equal size).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm.script import tirx as T


def bsr_matmul(m: int, k: int, n: int, r: int, c: int, nnz: int, rows: int, threads: int = 1) -> tvm.tirx.PrimFunc:
    """The kernel for fixed sizes (`rows` must divide m; r | n and c | k). It always takes a bias:
    a layer without one passes zeros (one add per output beats a second kernel to maintain).
    `threads`: the target's cores; each gets one contiguous share of the block rows (one parallel
    launch per call, and each thread reuses an activation chunk over all its block rows)."""
    if m % rows or n % r or k % c:
        raise ValueError(f"bsr_matmul: rows {rows} must divide M {m}, r {r} divide N {n}, c {c} divide K {k}")
    block_rows, nnz = n // r, max(nnz, 1)
    chunk = chunk_rows(m, k, rows)
    parts = max(d for d in range(1, max(1, threads) + 1) if block_rows % d == 0)
    share = block_rows // parts

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), data: T.Buffer((nnz, c, r), "float32"),
               indices: T.Buffer((nnz,), "int32"), indptr: T.Buffer((block_rows + 1,), "int32"),
               b: T.Buffer((n,), "float32"), y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for part in T.parallel(parts):
            for mc in range(m // chunk):
                for bri in range(share):
                    for mo in range(chunk // rows):
                        acc = T.alloc_buffer((rows, r), "float32", scope="local")
                        for mi in T.unroll(rows):
                            for i in T.vectorized(r):
                                acc[mi, i] = T.float32(0)
                        for p in range(indptr[part * share + bri], indptr[part * share + bri + 1]):
                            for j in T.unroll(c):
                                for mi in T.unroll(rows):
                                    for i in T.vectorized(r):
                                        acc[mi, i] = acc[mi, i] + (x[mc * chunk + mo * rows + mi, indices[p] * c + j]
                                                                   * data[p, j, i])
                        for mi in T.unroll(rows):
                            for i in T.vectorized(r):
                                y[mc * chunk + mo * rows + mi, (part * share + bri) * r + i] = (
                                    acc[mi, i] + b[(part * share + bri) * r + i])

    return kernel


L2_BUDGET = 200 * 1024  # bytes of activations a chunk may take (half of a phone's or this machine's L2)


def chunk_rows(m: int, k: int, rows: int) -> int:
    """The largest multiple of `rows` dividing m whose rows of x (k floats each) fit L2_BUDGET."""
    best = rows
    for chunk in range(rows, m + 1, rows):
        if m % chunk == 0 and chunk * k * 4 <= L2_BUDGET:
            best = chunk
    return best


def to_bsr(wt: np.ndarray, r: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wᵀ [N, K] -> (data [nnz, c, r], indices [nnz], indptr [N/r + 1]); all-zero blocks dropped.

    A matrix without any nonzero block gets one explicit zero block, so that no array is empty."""
    n, k = wt.shape
    blocks = wt.reshape(n // r, r, k // c, c).transpose(0, 2, 3, 1)  # [block row, block col, c, r]
    nonzero = np.abs(blocks).sum(axis=(2, 3)) != 0
    if not nonzero.any():
        nonzero[0, 0] = True
    rows_idx, cols_idx = np.nonzero(nonzero)
    data = np.ascontiguousarray(blocks[rows_idx, cols_idx], dtype=np.float32)
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int32)
    return data, cols_idx.astype(np.int32), indptr


def project(wt: np.ndarray, r: int, c: int, sparsity: float) -> np.ndarray:
    """Keep the (1 - sparsity) fraction of r x c blocks of Wᵀ with the largest L2 norm; zero the rest."""
    n, k = wt.shape
    blocks = wt.reshape(n // r, r, k // c, c)
    norms = np.sqrt((blocks.astype(np.float64) ** 2).sum(axis=(1, 3)))
    keep = int(round(norms.size * (1.0 - sparsity)))
    mask = np.zeros(norms.size, dtype=bool)
    if keep > 0:
        mask[np.argsort(norms, axis=None, kind="stable")[::-1][:keep]] = True
    mask = mask.reshape(norms.shape)
    return (blocks * mask[:, None, :, None]).reshape(n, k).astype(wt.dtype)
