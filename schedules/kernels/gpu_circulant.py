"""Block-circulant matmul for mobile GPUs (OpenCL): the direct path as a written kernel.

y_i[r] = sum_j sum_u v_ij[u] * x_j[(r - u) mod b] (`kernels/circulant.py` has the maths and the FFT
path; on a GPU the FFT path's three kernels are its TE forms, GEMM-shaped, scheduled by the GPU
Matmul rules like any dense layer).

    work-item: one output block i x TM activation rows -> TM x b accumulators
        for each input block j:  the b weights of v_ij (float4 loads), the b inputs of each row,
            then b x b x TM FMAs with the rotation (r - u) mod b a constant (both loops unrolled)

It does the dense layer's FLOPs but reads b times fewer weights: it is for memory-bound layers
(few activation rows), where a GPU is bandwidth-bound too.
"""

from __future__ import annotations

import math

import tvm
from tvm.script import tirx as T

from gearshift.schedules.gpu.devices import GpuSpec

VECTOR = 4


def gpu_circulant_direct(m: int, k: int, n: int, b: int, spec: GpuSpec) -> tvm.tirx.PrimFunc:
    """(x[M, K], vectors[N/b, K/b, b], bias[N]) -> y[M, N], for b | N and b | K."""
    if n % b or k % b:
        raise ValueError(f"gpu_circulant_direct: b {b} must divide N {n} and K {k}")
    nb, kb = n // b, k // b
    rows = max(1, min(m, spec.registers // b))
    tiles = math.ceil(m / rows)
    group = min(64 if spec.local_scratchpad else 32, nb)
    groups = math.ceil(nb / group)
    wide = b % VECTOR == 0

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), v: T.Buffer((nb, kb, b), "float32"), bias: T.Buffer((n,), "float32"),
               y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for mt in T.thread_binding(tiles, thread="blockIdx.y"):
            for g in T.thread_binding(groups, thread="blockIdx.x"):
                for tx in T.thread_binding(group, thread="threadIdx.x"):
                    acc = T.alloc_buffer((rows, b), "float32", scope="local")
                    wv = T.alloc_buffer((b,), "float32", scope="local")
                    xv = T.alloc_buffer((rows, b), "float32", scope="local")
                    if g * group + tx < nb:
                        for a in T.unroll(rows):
                            for r in T.unroll(b):
                                acc[a, r] = bias[(g * group + tx) * b + r]
                        for j in range(kb):
                            if wide:
                                for u4 in T.unroll(b // VECTOR):
                                    for e in T.vectorized(VECTOR):
                                        wv[u4 * VECTOR + e] = v[g * group + tx, j, u4 * VECTOR + e]
                                for a in T.unroll(rows):
                                    for u4 in T.unroll(b // VECTOR):
                                        for e in T.vectorized(VECTOR):
                                            xv[a, u4 * VECTOR + e] = x[T.min(mt * rows + a, m - 1), j * b + u4 * VECTOR + e]
                            else:
                                for u in T.unroll(b):
                                    wv[u] = v[g * group + tx, j, u]
                                for a in T.unroll(rows):
                                    for u in T.unroll(b):
                                        xv[a, u] = x[T.min(mt * rows + a, m - 1), j * b + u]
                            for u in T.unroll(b):
                                for a in T.unroll(rows):
                                    for r in T.unroll(b):
                                        acc[a, r] = acc[a, r] + wv[u] * xv[a, (r - u + b) % b]
                        for a in T.unroll(rows):
                            if mt * rows + a < m:
                                for r in T.unroll(b):
                                    y[mt * rows + a, (g * group + tx) * b + r] = acc[a, r]

    return kernel
