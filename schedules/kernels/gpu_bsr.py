"""Block-sparse and block-pattern matmul for mobile GPUs (OpenCL): y[M, N] = x[M, K] @ W (+ bias).

Same storage as the CPU kernel (`kernels/bsr.py`): BSR's data[nnz, c, r] / indices / indptr, or
block patterns' values[nnz, entries] / indices / offsets[N/r * P + 1]; BSR is the one-pattern case
(every entry kept), so one kernel serves both.

    work-group: TB block rows x one tile of TM activation rows
    work-item:  one block row x TM rows -> TM x r accumulators in registers
        for each pattern p (unrolled):                 one code path per pattern, no branch per block
            for each block q of the row with pattern p:
                weights of q: float4 loads into registers
                for each kept entry (j, i) of p (unrolled, positions constant):
                    acc[:, i] += x[rows, col(q) * c + j] * w[entry]
        bias, epilogue, float4 stores

Work-items of one work-group share the TM activation rows and read random columns of them: where
local memory is on-chip (Adreno) and the TM x K tile fits, the work-group first copies the tile
there together (coalesced), then every work-item reads it from local memory. On Mali local memory
is global memory behind the same caches, so x is read directly (`GpuSpec.local_scratchpad`).
Shapes need not divide anything: the last work-group's extra block rows do nothing and the last
tile's extra rows are read clamped and not stored.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm.script import tirx as T

from gearshift.schedules.gpu.devices import GpuSpec
from gearshift.schedules.kernels.bsr import entry_positions
from gearshift.schedules.kernels.epilogue import apply
from gearshift.schedules.kernels.tables import lookup

VECTOR = 4  # float4: the widest load both GPUs' load units take in one instruction


def gpu_tile(m: int, k: int, r: int, spec: GpuSpec) -> tuple[int, int, bool]:
    """(TM activation rows per work-item, TB block rows per work-group, stage x in local memory)."""
    rows = max(1, min(m, spec.registers // r))
    group = 64 if spec.local_scratchpad else 32
    staged = spec.local_scratchpad and rows * k * 4 <= spec.local_bytes
    return rows, group, staged


def gpu_bsr_matmul(m: int, k: int, n: int, r: int, c: int, nnz: int, spec: GpuSpec,
                   masks: np.ndarray | None = None, epilogue: tuple | None = None,
                   tile: tuple[int, int, bool] | None = None) -> tvm.tirx.PrimFunc:
    """(x[M, K], data, indices[nnz], offsets, bias[N]) -> y[M, N] for fixed sizes (r | N, c | K)."""
    if n % r or k % c:
        raise ValueError(f"gpu_bsr_matmul: r {r} must divide N {n} and c {c} divide K {k}")
    taps = entry_positions(masks, r, c)
    npat, entries, nb, nnz = len(taps), len(taps[0]), n // r, max(nnz, 1)
    rows, group, staged = tile or gpu_tile(m, k, r, spec)
    tiles, groups = math.ceil(m / rows), math.ceil(nb / group)
    data_shape = (nnz, c, r) if masks is None else (nnz, entries)
    wide = entries % VECTOR == 0  # weights as float4 loads
    out_wide = r % VECTOR == 0  # outputs as float4 stores
    copies = math.ceil(rows * k / group)

    def at(p, e, axis: int):  # entry e of pattern p: its input j (axis 0) or output i (axis 1) in the block
        return lookup([[pos[axis] for pos in pattern] for pattern in taps], p, e)

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), data: T.Buffer(data_shape, "float32"),
               indices: T.Buffer((nnz,), "int32"), offsets: T.Buffer((nb * npat + 1,), "int32"),
               b: T.Buffer((n,), "float32"), y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        values = T.decl_buffer((nnz * entries,), "float32", data=data.data)
        for mt in T.thread_binding(tiles, thread="blockIdx.y"):
            for bg in T.thread_binding(groups, thread="blockIdx.x"):
                for tx in T.thread_binding(group, thread="threadIdx.x"):
                    xs = T.alloc_buffer((rows, k) if staged else (1, 1), "float32", scope="shared")
                    if staged:
                        for cp in range(copies):
                            if cp * group + tx < rows * k:
                                xs[(cp * group + tx) // k, (cp * group + tx) % k] = x[
                                    T.min(mt * rows + (cp * group + tx) // k, m - 1), (cp * group + tx) % k]
                    acc = T.alloc_buffer((rows, r), "float32", scope="local")
                    w = T.alloc_buffer((entries,), "float32", scope="local")
                    if bg * group + tx < nb:
                        for a in T.unroll(rows):
                            for i in T.unroll(r):
                                acc[a, i] = T.float32(0)
                        for p in T.unroll(npat):
                            for q in range(offsets[(bg * group + tx) * npat + p],
                                           offsets[(bg * group + tx) * npat + p + 1]):
                                if wide:
                                    for e4 in T.unroll(entries // VECTOR):
                                        for v in T.vectorized(VECTOR):
                                            w[e4 * VECTOR + v] = values[q * entries + e4 * VECTOR + v]
                                else:
                                    for e in T.unroll(entries):
                                        w[e] = values[q * entries + e]
                                for e in T.unroll(entries):
                                    for a in T.unroll(rows):
                                        if staged:
                                            acc[a, at(p, e, 1)] = acc[a, at(p, e, 1)] + w[e] * xs[
                                                a, indices[q] * c + at(p, e, 0)]
                                        else:
                                            acc[a, at(p, e, 1)] = acc[a, at(p, e, 1)] + w[e] * x[
                                                T.min(mt * rows + a, m - 1), indices[q] * c + at(p, e, 0)]
                        for a in T.unroll(rows):
                            if mt * rows + a < m:
                                if out_wide:
                                    for i4 in T.unroll(r // VECTOR):
                                        for v in T.vectorized(VECTOR):
                                            y[mt * rows + a, (bg * group + tx) * r + i4 * VECTOR + v] = apply(
                                                epilogue, acc[a, i4 * VECTOR + v]
                                                + b[(bg * group + tx) * r + i4 * VECTOR + v])
                                else:
                                    for i in T.unroll(r):
                                        y[mt * rows + a, (bg * group + tx) * r + i] = apply(
                                            epilogue, acc[a, i] + b[(bg * group + tx) * r + i])

    return kernel
