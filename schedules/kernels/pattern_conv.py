"""Pattern-sparse 3x3 convolution (PatDNN's compiler half), NCHW, written scheduled.

Storage (`pack`): for every kept kernel (filter f, input channel ci) its 4 values in the pattern's
tap order (`values[q, 4]`) and ci (`channels[q]`); kernels are grouped by filter, then by pattern,
with `offsets[f * K + p]` the start of filter f's kernels of pattern p. No per-element index: one
channel index per kernel, and the taps are code.

Code specialisation: the loop over a filter's kernels is split into one loop per library pattern,
and in each the pattern's 4 (dy, dx) taps are compile-time constants (the tap offset is a `Select`
over (pattern, tap) that TVM folds away once both loops are unrolled), so the inner loop has no mask
multiply and no branch. Each tap is `rows x vectors` FMAs along the output width: a register block of
`rows` output rows x `vectors * lanes` output columns; loads of the same input row by neighbouring
output rows are one load (register-load redundancy elimination, done by LLVM's CSE once the taps are
constants). Filter kernel reordering: filters are sorted by their kept-kernel count and pattern
histogram and dealt to the threads in turn, so the threads get equal work and neighbouring filters
share pattern sequences; `order[f]` is the output channel filter f writes.

The input is zero-padded into a workspace inside the kernel by every thread for itself, in the same
parallel loop as the conv: one wake-up of the thread pool per call instead of two, and each thread
reads only what it wrote (padded by both threads, half of every thread's reads came from the other
core's cache: 56x56x128 ran 1.07-1.15x faster this way on 2 cores). The price grows with the thread
count: every thread pads the whole input, so on a 4- or 8-core phone the padding costs up to 4-8x
what a shared pass would (memory and time); not measured there. The workspace is rows outermost ([N, H, C, W]): the input
rows of one register block, for every channel, then lie in one span of (rows + 2) x C x W floats
instead of one piece per channel plane. Measured kernel against kernel: 1.19x at 28x28x256 (there a
channel plane is 4080 bytes, so the planes' rows fell into the same few L1 sets), 1.03-1.08x at
56x56x128 and 14x14x512. The output is [N, CO, OHp, OWp] with the output extent rounded up to whole
register blocks (the pass crops it). With stride 2 each padded input row is stored as its even
columns, then its odd columns ([N, H, C, stride, W / stride]): the taps of neighbouring output
columns then read neighbouring floats, so every tap is still whole vector loads (reading every other
column of one row made LLVM gather them: 0.57-0.70x ORT dense at 88 % sparsity). With stride 1 the
phase axis has length 1 and the layout is the [N, H, C, W] above.

Tunable: `rows` and `vectors` (the register block); `choose_block` is the default.
"""

from __future__ import annotations

import math

import numpy as np
import tvm
from tvm.script import tirx as T

from gearshift.compress.patterns import fits
from gearshift.schedules.cpu.microkernel import thread_parts
from gearshift.schedules.kernels.tables import lookup


def choose_block(oh: int, ow: int, lanes: int) -> tuple[int, int]:
    """(rows, vectors): up to 4 vectors across the output width, or 7 where they pad the width less
    (56 and 112 wide on AVX2: 7 and 14 vectors, against 8 and 16; 1 row x 7 vectors measured 1.09x
    faster than 2 x 4 at both, kernel against kernel), and rows so that about 8 accumulators are live,
    preferring a row count that divides the output height."""
    total = math.ceil(ow / lanes)
    vectors = max(1, min(4, total))
    if total > 4 and -(-total // 7) * 7 < -(-total // 4) * 4:
        vectors = 7
    most = max(1, 8 // vectors)
    rows = next((r for r in range(most, 0, -1) if oh % r == 0), 1)
    return (rows if rows > 1 or most == 1 else most), vectors


def out_extent(h: int, w: int, pads: tuple[int, int, int, int], stride: int) -> tuple[int, int]:
    """The conv's real output size for padding (top, left, bottom, right)."""
    return (h + pads[0] + pads[2] - 3) // stride + 1, (w + pads[1] + pads[3] - 3) // stride + 1


def padded_extent(h: int, w: int, pads: tuple[int, int, int, int], stride: int, lanes: int,
                  block: tuple[int, int] | None = None) -> tuple[int, int]:
    """The kernel's output extent: the real one rounded up to whole register blocks."""
    oh, ow = out_extent(h, w, pads, stride)
    rows, vectors = block or choose_block(oh, ow, lanes)
    return math.ceil(oh / rows) * rows, math.ceil(ow / (vectors * lanes)) * vectors * lanes


def pattern_conv2d(n: int, cin: int, cout: int, h: int, w: int, pads: tuple[int, int, int, int], stride: int,
                   masks: np.ndarray, kept: int, lanes: int, threads: int = 1,
                   block: tuple[int, int] | None = None, ngroups: int = 1) -> tvm.tirx.PrimFunc:
    """The kernel for fixed sizes: (x[N, CI, H, W], values[kept, 4], channels[kept],
    offsets[ngroups * CO * K + 1], order[CO], bias[CO]) -> y[N, CO, OHp, OWp]. With `ngroups` > 1 the
    input channels are taken in groups (`channel_group`, `pack(group=...)`), all filters per group, so
    that a group's input rows stay in L1 across the filters; partial sums go through y."""
    oh, ow = out_extent(h, w, pads, stride)
    rows, vectors = block or choose_block(oh, ow, lanes)
    width = vectors * lanes
    ohp, owp = padded_extent(h, w, pads, stride, lanes, block)
    hp, wq = (ohp - 1) * stride + 3, owp + (2 // stride)  # wq: padded columns per phase (see `xp`)
    npat, kept = len(masks), max(kept, 1)
    taps = [[divmod(int(c), 3) for c in np.flatnonzero(m.ravel())] for m in masks]
    if any(len(t) != 4 for t in taps):
        raise ValueError("pattern_conv2d: every pattern must keep exactly 4 entries")
    parts = thread_parts(cout, threads)
    share, top, left = cout // parts, pads[0], pads[1]

    def tap(p, t, part: int):  # the (p, t) tap's dy, column phase or column shift: constant once unrolled
        return lookup([[(dy, dx % stride, dx // stride)[part] for dy, dx in pattern] for pattern in taps], p, t)

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((n, cin, h, w), "float32"), values: T.Buffer((kept, 4), "float32"),
               channels: T.Buffer((kept,), "int32"), offsets: T.Buffer((ngroups * cout * npat + 1,), "int32"),
               order: T.Buffer((cout,), "int32"), b: T.Buffer((cout,), "float32"),
               y: T.Buffer((n, cout, ohp, owp), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for part in T.parallel(parts):
            xp = T.alloc_buffer((n, hp, cin, stride, wq), "float32")  # see the module docstring
            for img, i, c in T.grid(n, hp, cin):  # zeros, then the row's in-bounds columns per phase
                for ph, j in T.grid(stride, wq):
                    xp[img, i, c, ph, j] = T.float32(0)
                if top <= i and i < top + h:
                    for ph in range(stride):
                        for j in range((left - ph + stride - 1) // stride, (left + w - 1 - ph) // stride + 1):
                            xp[img, i, c, ph, j] = x[img, c, i - top, j * stride + ph - left]
            for img, yt, g in T.grid(n, ohp // rows, ngroups):
                for fi in range(share):
                    for xt in range(owp // width):
                        acc = T.alloc_buffer((rows, vectors, lanes), "float32", scope="local")
                        for r, v in T.grid(rows, vectors):
                            for e in T.vectorized(lanes):
                                acc[r, v, e] = T.if_then_else(  # later channel groups add to the partial sums
                                    g == 0, b[order[part * share + fi]],
                                    y[img, order[part * share + fi], yt * rows + r, xt * width + v * lanes + e])
                        for p in T.unroll(npat):
                            for q in range(offsets[(g * cout + part * share + fi) * npat + p],
                                           offsets[(g * cout + part * share + fi) * npat + p + 1]):
                                for t in T.unroll(4):
                                    for r in T.unroll(rows):
                                        for v in T.unroll(vectors):
                                            for e in T.vectorized(lanes):
                                                acc[r, v, e] = acc[r, v, e] + xp[
                                                    img, (yt * rows + r) * stride + tap(p, t, 0), channels[q],
                                                    tap(p, t, 1), xt * width + v * lanes + e + tap(p, t, 2)] * values[q, t]
                        for r in T.unroll(rows):
                            for v in T.unroll(vectors):
                                for e in T.vectorized(lanes):
                                    y[img, order[part * share + fi], yt * rows + r, xt * width + v * lanes + e] = acc[r, v, e]

    return kernel


def default_group(cin: int, h: int, w: int, pads: tuple[int, int, int, int], stride: int, lanes: int,
                  kept_per_filter: float) -> int:
    """The rules' input channels per group for this conv: `channel_group` for the rows of the default
    register block (`choose_block`) and the padded input width it reads."""
    rows = choose_block(*out_extent(h, w, pads, stride), lanes)[0]
    wp = (padded_extent(h, w, pads, stride, lanes)[1] - 1) * stride + 3
    return channel_group(cin, kept_per_filter, rows, wp, stride)


def channel_group(cin: int, kept_per_filter: float, rows: int, wp: int, stride: int) -> int:
    """Input channels per group: as many as keep the group's input rows (one register block's) in
    16 KiB of L1, but few enough groups that each filter still has ~16 kept kernels per group (below
    that, reloading the partial sums costs more than L1 saves). Measured here: 14x14x512 19 % faster,
    28x28x256 3 %, 56x56x128 unchanged."""
    fits_l1 = max(1, 16384 // (((rows - 1) * stride + 3) * wp * 4))
    ngroups = -(-cin // fits_l1)
    while ngroups > 1 and kept_per_filter / ngroups < 16:
        ngroups -= 1
    return -(-cin // ngroups)


def pack(w: np.ndarray, masks: np.ndarray, threads: int = 1, group: int = 0) -> tuple[np.ndarray, ...]:
    """w [CO, CI, 3, 3] whose every kernel is zero or inside one of `masks` -> (values, channels,
    offsets, order) as `pattern_conv2d` reads them, by channel group of `group` channels (0: one
    group), then filter, then pattern. Raises ValueError for a kernel outside the library."""
    cout, cin = w.shape[:2]
    flat = w.reshape(cout, cin, 9)
    fitting = fits(w, masks)
    nonzero = (flat != 0).any(axis=2)
    if (nonzero & ~fitting.any(axis=2)).any():
        raise ValueError("a kernel's nonzeros fit no pattern of the library")
    ids = np.where(nonzero, fitting.argmax(axis=2), -1)
    order = reorder(ids, len(masks), threads)
    values, channels, offsets = [], [], [0]
    tap_cells = [np.flatnonzero(m.ravel()) for m in masks]
    group = group or cin
    ngroups = -(-cin // group)
    for g in range(ngroups):
        for f in order:
            for p in range(len(masks)):
                for ci in np.flatnonzero(ids[f] == p):
                    if g * group <= ci < (g + 1) * group:
                        values.append(flat[f, ci, tap_cells[p]])
                        channels.append(ci)
                offsets.append(len(channels))
    if not channels:  # keep the arrays non-empty: one zero kernel that no offset range covers
        values, channels = [np.zeros(4, np.float32)], [0]
    return (np.asarray(values, np.float32).reshape(-1, 4), np.asarray(channels, np.int32),
            np.asarray(offsets, np.int32), np.asarray(order, np.int32))


def reorder(ids: np.ndarray, npat: int, threads: int) -> list[int]:
    """Filter kernel reordering: filters sorted by kept-kernel count, then pattern histogram, and
    dealt round-robin into `threads` contiguous shares (equal work per thread, similar filters adjacent)."""
    cout = ids.shape[0]
    parts = thread_parts(cout, threads)
    hist = np.stack([(ids == p).sum(axis=1) for p in range(npat)], axis=1)
    ranked = sorted(range(cout), key=lambda f: (-int((ids[f] >= 0).sum()), *(-hist[f]), f))
    return [f for part in range(parts) for f in ranked[part::parts]]
