"""Every cost model that decides what a weight layer becomes, in one place. Times are in units of
one vector FMA at full rate; a layer is rewritten only where its structure beats dense:

    structure            decided by                                        pass
    bsr, block patterns  sparse_cost (cheapest block of CANDIDATES) < dense  block_sparse.py
    circulant            fft_cost or direct_cost (choose_path) < dense       circulant.py
    3x3 patterns         kept fraction of the weights <= PATTERN_MAX_DENSITY  pattern_sparse.py
"""

from __future__ import annotations

import math

from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.bsr import choose_tile

CANDIDATES = ((16, 1), (8, 1), (4, 4), (1, 16), (1, 4))  # the block shapes a bsr spec without one tries


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


# -- circulant -----------------------------------------------------------------------------------
# Time in vector-FMA units at full rate (as the BSR cost model). The GEMMs of the FFT path run at
# ~75 % of peak; the DFTs (b columns) at ~40 %; the direct kernel at ~50 % (one broadcast and one
# unaligned load per row and weight). Weights are read once per call: a byte costs 1/16 of a unit
# (this machine: ~25 GB/s of DRAM per core against 100 GFLOP/s), which decides memory-bound layers.
GEMM_EFFICIENCY, DFT_EFFICIENCY, DIRECT_EFFICIENCY, BYTE_COST = 0.75, 0.4, 0.5, 1.0 / 16


def fft_cost(m: int, k: int, n: int, b: int, lanes: int) -> float:
    kp, np_ = -(-k // b) * b, -(-n // b) * b
    gemm = 2 * m * kp * np_ / b / lanes / GEMM_EFFICIENCY
    dfts = m * (kp + np_) * b / lanes / DFT_EFFICIENCY
    return gemm + dfts + BYTE_COST * 4 * 2 * kp * np_ / b


def direct_cost(m: int, k: int, n: int, b: int, lanes: int) -> float:
    return m * k * n / min(b, lanes) * math.ceil(min(b, lanes) / lanes) / DIRECT_EFFICIENCY + BYTE_COST * 4 * k * n / b


def choose_path(m: int, k: int, n: int, b: int, lanes: int) -> str:
    """"fft" or "direct": the cheaper by the cost model; direct needs b | N and b | K."""
    if n % b or k % b:
        return "fft"
    return "direct" if direct_cost(m, k, n, b, lanes) < fft_cost(m, k, n, b, lanes) else "fft"


# -- 3x3 patterns ----------------------------------------------------------------------------------
# The pattern conv runs at about half the dense conv's FLOP rate: above 30 % of the weights kept, dense wins.
PATTERN_MAX_DENSITY = 0.3
