"""Calibration: gearshift's pattern-sparse 3x3 conv kernel against the same algorithm hand-written in C.

The pattern bar (>= 4x ONNX Runtime dense conv) asks more than gearshift's kernel reaches here
(2.7-3.0x). This script asks whether the generated code or the design is the limit: it writes the
kernel of schedules/kernels/pattern_conv.py as C with AVX2 intrinsics (generated here for the
layer's pattern library, each pattern's taps as constants, as gearshift's TIR has them): the input
zero-padded into a workspace; per thread a share of the reordered filters; per register block of
rows x vectors outputs, the filter's kept kernels walked pattern by pattern, each tap one broadcast
weight and rows x vectors unaligned input loads and FMAs. Same packed arrays, same block and channel
groups as the pass picks, OpenMP threads. Built here with the system C compiler.

VGG-16-shaped layers, 4 patterns of 4-of-9 plus connectivity pruning keeping 28 % of the kernels,
batch 1, fp32. Timing: the two kernels interleaved; then each alone, and ONNX Runtime dense alone
(an OpenMP pool in its round slows it).
Writes benchmarks/results/hand_pattern_conv.{json,md}. x86-64 with AVX2 and a C compiler only.

    python benchmarks/hand_pattern_conv.py [--repeat 20]
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from common import aligned, ort_session, table, threads_note, write_results  # first: sets thread env
import numpy as np
from handwritten import HAND_HEADERS, against_hand, build_c, calibrate, hand_cells
from pattern_sparse import CONNECTIVITY, LAYERS, PATTERNS, conv_model

import tvm
from gearshift.bench import thread_count
from gearshift.frontend.patterns import library, project
from gearshift.schedules.kernels.pattern_conv import (choose_block, default_group, pack, padded_extent,
                                                      pattern_conv2d)
from gearshift.schedules.targets import get_target

LANES = 8


def c_source(taps: list[list[tuple[int, int]]], rows: int, vectors: int) -> str:
    """The kernel for one pattern library and register block (stride 1, padding 1)."""
    acc = [(r, v) for r in range(rows) for v in range(vectors)]
    init = "\n".join(f"__m256 a{r}_{v} = g == 0 ? _mm256_set1_ps(bias[f]) : _mm256_loadu_ps(yo + {r} * owp + {v * LANES});"
                     for r, v in acc)
    store = "\n".join(f"_mm256_storeu_ps(yo + {r} * owp + {v * LANES}, a{r}_{v});" for r, v in acc)
    loops = []
    for p, pattern in enumerate(taps):
        body = [f"__m256 w{t} = _mm256_broadcast_ss(values + q * 4 + {t});" for t in range(4)]
        for t, (dy, dx) in enumerate(pattern):
            body += [f"a{r}_{v} = _mm256_fmadd_ps(_mm256_loadu_ps(xc + {r + dy} * wp + {v * LANES + dx}), w{t}, a{r}_{v});"
                     for r, v in acc]
        loops.append(f"for (int q = off[{p}]; q < off[{p + 1}]; q++) {{\n"
                     f"const float *xc = xp + (long)channels[q] * hp * wp + (long)yt * {rows} * wp + xt * {vectors * LANES};\n"
                     + "\n".join(body) + "\n}")
    return f"""#include <immintrin.h>
#include <omp.h>
#include <string.h>
void pattern_conv(int cin, int cout, int h, int w, int ohp, int owp, int ngroups, const float *x, float *xp,
                  const float *values, const int *channels, const int *offsets, const int *order,
                  const float *bias, float *y, int threads) {{
    int hp = ohp + 2, wp = owp + 2, share = cout / threads;
#pragma omp parallel for num_threads(threads)
    for (int c = 0; c < cin; c++) {{
        float *dst = xp + (long)c * hp * wp;
        memset(dst, 0, sizeof(float) * hp * wp);
        for (int i = 0; i < h; i++) memcpy(dst + (i + 1) * wp + 1, x + ((long)c * h + i) * w, sizeof(float) * w);
    }}
#pragma omp parallel num_threads(threads)
    {{
        int part = omp_get_thread_num();
        for (int yt = 0; yt < ohp / {rows}; yt++)
            for (int g = 0; g < ngroups; g++)
                for (int fi = 0; fi < share; fi++) {{
                    int slot = part * share + fi, f = order[slot];
                    const int *off = offsets + (g * cout + slot) * {len(taps)};
                    for (int xt = 0; xt < owp / {vectors * LANES}; xt++) {{
                        float *yo = y + ((long)f * ohp + yt * {rows}) * owp + xt * {vectors * LANES};
                        {init}
                        {chr(10).join(loops)}
                        {store}
                    }}
                }}
    }}
}}
"""


def build(source: str, tmp: str, name: str):
    src = Path(tmp) / f"{name}.c"
    src.write_text(source)
    return build_c(src, Path(tmp) / f"{name}.so", "pattern_conv",
                   [ctypes.c_int] * 7 + [ctypes.c_void_p] * 8 + [ctypes.c_int])


def case(c: int, size: int, repeat: int, tmp: str) -> dict:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    masks = library(w, PATTERNS)
    masked, _, _ = project(w, masks, CONNECTIVITY)
    b = rng.standard_normal(c).astype(np.float32)
    x = aligned(rng.standard_normal((1, c, size, size)).astype(np.float32))
    threads, pads = thread_count(), (1, 1, 1, 1)
    rows, vectors = choose_block(size, size, LANES)  # what the pass picks (relay_passes/pattern_sparse.py)
    ohp, owp = padded_extent(size, size, pads, 1, LANES)
    kept_per_filter = int((masked.reshape(c, c, 9) != 0).any(axis=2).sum()) / c
    group = default_group(c, size, size, pads, 1, LANES, kept_per_filter)  # the pass's group, as the pass computes it
    ngroups = -(-c // group)
    values, channels, offsets, order = pack(masked, masks, threads, group)
    kernel = pattern_conv2d(1, c, c, size, size, pads, 1, masks, len(channels), LANES, threads, ngroups=ngroups)
    lib = tvm.compile(tvm.IRModule({"main": kernel.with_attr("global_symbol", "main")}), target=get_target("host").tvm_target())
    y_tvm = np.zeros((1, c, ohp, owp), np.float32)
    args = [tvm.runtime.tensor(a) for a in (x, values, channels, offsets, order, b, y_tvm)]
    taps = [[divmod(int(i), 3) for i in np.flatnonzero(m.ravel())] for m in masks]
    fn = build(c_source(taps, rows, vectors), tmp, f"pattern_conv_{size}")
    xp, y_c = aligned(np.zeros((c, ohp + 2, owp + 2), np.float32)), aligned(np.zeros((1, c, ohp, owp), np.float32))

    def hand():
        fn(c, c, size, size, ohp, owp, ngroups, x.ctypes.data, xp.ctypes.data, values.ctypes.data, channels.ctypes.data,
           offsets.ctypes.data, order.ctypes.data, b.ctypes.data, y_c.ctypes.data, threads)

    ort = ort_session(conv_model(masked, b, size).SerializeToString())
    reference = ort.run(None, {"x": x})[0]
    hand()
    lib(*args)
    outputs = {"hand_c": y_c[:, :, :size, :size].copy(), "gearshift_pattern": args[-1].numpy()[:, :, :size, :size]}
    engines = {"gearshift_pattern": lambda: lib(*args), "hand_c": hand, "onnxruntime": lambda: ort.run(None, {"x": x})}
    row = against_hand(f"{size}x{size}x{c}->{c}", "gearshift_pattern", engines, outputs, reference, repeat)
    row.update(block=[rows, vectors], channel_groups=ngroups)
    return row


def main() -> None:
    repeat, rows = calibrate("hand_pattern_conv.py", __doc__,
                             lambda tmp, repeat: [case(cin, size, repeat, tmp) for cin, cout, size, stride in LAYERS
                                                      if stride == 1 and cin == cout])  # the C kernel's case
    lines = [("layer (batch 1)", "block, groups", *HAND_HEADERS)] + [
        (r["case"], f"{r['block'][0]}x{r['block'][1]}, {r['channel_groups']}", *hand_cells(r, "gearshift_pattern"))
        for r in rows]
    text = (f"# gearshift's pattern conv kernel vs the same algorithm hand-written in C (AVX2)\n\n{table(lines)}\n\n"
            f"{threads_note()}; C and gearshift interleaved, then each engine alone; medians of {repeat} runs "
            f"after 3 warm-ups. Block: output rows x vectors of 8; groups: input-channel groups.")
    write_results("hand_pattern_conv", {"repeat": repeat, "layers": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
