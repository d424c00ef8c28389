"""Pattern-sparse 3x3 convolution for mobile GPUs (OpenCL), NCHW: PatDNN's GPU design.

Same storage as the CPU kernel (`kernels/pattern_conv.py`, `pack` with one channel group):
values[kept, 4] in the pattern's tap order, channels[kept], offsets[CO * P + 1] by filter slot then
pattern, and order[CO] (filter kernel reordering: filters sorted by kept-kernel count and pattern
histogram, so neighbouring work-groups get similar work).

    work-group: one filter slot x WG pixel tiles          (every work-item runs the same kernels:
    work-item:  TW neighbouring output pixels of one row   no divergence within a work-group)
        for each pattern p (unrolled):                     one code path per pattern, no branch per kernel
            for each kept kernel q of the filter with pattern p:
                for each of p's 4 taps (dy, dx constant): TW FMAs

The input is read in place, the padding by a bounds check on clamped indices (no padded copy, no
workspace); the bias starts the accumulators. The output has the conv's exact extent.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm.script import tirx as T

from gearshift.schedules.gpu.devices import GpuSpec
from gearshift.schedules.kernels.pattern_conv import out_extent
from gearshift.schedules.kernels.tables import lookup

TW = 4  # output pixels per work-item, along a row: neighbouring taps hit the same cache lines


def gpu_pattern_conv2d(n: int, cin: int, cout: int, h: int, w: int, pads: tuple[int, int, int, int], stride: int,
                       masks: np.ndarray, kept: int, spec: GpuSpec) -> tvm.tirx.PrimFunc:
    """(x[N, CI, H, W], values[kept, 4], channels[kept], offsets[CO * P + 1], order[CO], bias[CO])
    -> y[N, CO, OH, OW]."""
    oh, ow = out_extent(h, w, pads, stride)
    taps = [[divmod(int(cell), 3) for cell in np.flatnonzero(mask.ravel())] for mask in masks]
    if any(len(t) != 4 for t in taps):
        raise ValueError("gpu_pattern_conv2d: every pattern must keep exactly 4 entries")
    npat, kept = len(masks), max(kept, 1)
    row_tiles = math.ceil(ow / TW)
    tiles = n * oh * row_tiles
    group = min(64 if spec.local_scratchpad else 32, tiles)
    groups = math.ceil(tiles / group)
    top, left = pads[0], pads[1]

    def tap(p, t, axis: int):  # dy (0) or dx (1) of pattern p's tap t: constant once unrolled
        return lookup([[pos[axis] for pos in pattern] for pattern in taps], p, t)

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((n, cin, h, w), "float32"), values: T.Buffer((kept, 4), "float32"),
               channels: T.Buffer((kept,), "int32"), offsets: T.Buffer((cout * npat + 1,), "int32"),
               order: T.Buffer((cout,), "int32"), b: T.Buffer((cout,), "float32"),
               y: T.Buffer((n, cout, oh, ow), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for f in T.thread_binding(cout, thread="blockIdx.y"):
            for g in T.thread_binding(groups, thread="blockIdx.x"):
                for tx in T.thread_binding(group, thread="threadIdx.x"):
                    acc = T.alloc_buffer((TW,), "float32", scope="local")
                    if g * group + tx < tiles:
                        for v in T.unroll(TW):
                            acc[v] = b[order[f]]
                        for p in T.unroll(npat):
                            for q in range(offsets[f * npat + p], offsets[f * npat + p + 1]):
                                for t in T.unroll(4):
                                    for v in T.unroll(TW):
                                        acc[v] = acc[v] + values[q, t] * T.if_then_else(
                                            0 <= ((g * group + tx) % (oh * row_tiles)) // row_tiles * stride
                                            + tap(p, t, 0) - top
                                            and ((g * group + tx) % (oh * row_tiles)) // row_tiles * stride
                                            + tap(p, t, 0) - top < h
                                            and 0 <= (((g * group + tx) % row_tiles) * TW + v) * stride + tap(p, t, 1) - left
                                            and (((g * group + tx) % row_tiles) * TW + v) * stride + tap(p, t, 1) - left < w,
                                            x[(g * group + tx) // (oh * row_tiles), channels[q],
                                              T.max(T.min(((g * group + tx) % (oh * row_tiles)) // row_tiles * stride
                                                          + tap(p, t, 0) - top, h - 1), 0),
                                              T.max(T.min((((g * group + tx) % row_tiles) * TW + v) * stride
                                                          + tap(p, t, 1) - left, w - 1), 0)],
                                            T.float32(0))
                        for v in T.unroll(TW):
                            if ((g * group + tx) % row_tiles) * TW + v < ow:
                                y[(g * group + tx) // (oh * row_tiles), order[f],
                                  ((g * group + tx) % (oh * row_tiles)) // row_tiles,
                                  ((g * group + tx) % row_tiles) * TW + v] = acc[v]

    return kernel
