"""The cost models that decide whether a layer becomes sparse: predicted time of the dense packed
GEMM and of the BSR kernel (along the outputs or the activations), in units of one vector FMA at
full rate. A layer is rewritten only where its structure's predicted time beats dense.
"""

from __future__ import annotations

import math

from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.bsr import choose_tile


# Time in units of one vector FMA at full rate. Dense: the packed GEMM reaches ~80 % of peak here.
# BSR along the outputs: every stored block column costs ceil(r / lanes) vector FMAs per activation
# row, at ~50 % of peak (one index and `rows` broadcasts per block), plus a per-block overhead per
# register block. Along the activations: r FMAs per block column per vector of activation rows, at
# ~45 % of peak for r >= 4 and ~18 % for r = 1 or 2 (one broadcast feeds only r FMAs; measured here),
# plus the transposition of x.
DENSE_EFFICIENCY, SPARSE_EFFICIENCY, BLOCK_OVERHEAD = 0.8, 0.5, 2.0
NARROW_EFFICIENCY, THIN_EFFICIENCY, TRANSPOSE_COST = 0.45, 0.18, 2.0
PATTERN_EFFICIENCY = 0.75  # pattern blocks vs full blocks, per weight (4x4 blocks keeping 8: 0.94 vs 0.68 ms)


def dense_cost(m: int, k: int, n: int, micro: Microkernel) -> float:
    return m * k * math.ceil(n / micro.lanes) / DENSE_EFFICIENCY


def sparse_cost(m: int, k: int, r: int, c: int, nnz: int, micro: Microkernel, entries: int | None = None) -> float:
    """`entries`: weights per stored block when blocks hold patterns (a pattern block of 8 of 16
    weights costs what a half-full block does, at the efficiency of an 8x1 block: measured here)."""
    tile = choose_tile(m, k, r, micro)
    if tile.along == "outputs":  # a column pattern's block holds entries / r columns
        columns = c if entries is None else entries // r
        return m * nnz * columns * math.ceil(r / micro.lanes) / SPARSE_EFFICIENCY + (m / tile.rows) * nnz * BLOCK_OVERHEAD
    efficiency = NARROW_EFFICIENCY if r >= 4 else THIN_EFFICIENCY
    fmas = nnz * (entries or c * r)
    if entries is not None:
        efficiency *= PATTERN_EFFICIENCY
    return ((m / micro.lanes) * fmas / efficiency + (m / tile.rows) * nnz * BLOCK_OVERHEAD
            + m * k / micro.lanes * TRANSPOSE_COST)
