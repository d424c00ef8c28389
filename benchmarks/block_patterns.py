"""Dense layers with block patterns (RT3) against gearshift BSR at the same density, and ONNX Runtime.

BERT-base FFN shapes (768->3072, 3072->768), M = 128 activation rows, fp32, a bias added. Density
0.125 everywhere, two pattern designs from a 4-pattern library with 75 % of blocks removed:
4x4 blocks each keeping 8 of 16 weights (pattern:4:0.75:4x4:8, run along the activations) and 16x4
blocks each keeping 2 whole columns (pattern:4:0.75:16x4:32, run along the outputs by the BSR
kernel); BSR with 16x1 blocks (the cost model's choice at this density) and 4x4 blocks, 87.5 % of
blocks zero. Peers interleaved in one run: ONNX Runtime dense on the 4x4-pattern weights (the 4x4
pattern outputs are checked against it), the others checked against numpy on their own weights.
                                              bar: pattern within 1.3x of gearshift BSR's time
Writes benchmarks/results/block_patterns.{json,md}.

    python benchmarks/block_patterns.py [--repeat 20] [--rounds 3]
"""

from __future__ import annotations

import argparse

from common import (aligned, compare, in_rounds, log, merge_rounds, ort_session, round_ratios, table,  # first: sets thread env
                    threads_note, write_results)
import numpy as np
from block_sparse import M, matmul_model

import gearshift
from gearshift.frontend.patterns import block_library, block_project, column_library
from gearshift.compress.blocks import project

SHAPES = [(768, 3072), (3072, 768)]
DENSITY = 0.125
PATTERNS = {"4x4": ("pattern:4:0.75:4x4:8", "pattern:::4x4"), "16x4": ("pattern:4:0.75:16x4:32", "pattern:::16x4")}


def session(proto, spec: str, path: str):
    built = gearshift.compile_model(proto, "host", sparsity=spec)
    return gearshift.Session(gearshift.save(built, path, overwrite=True)), built.report["sparse_layers"][0]


def case(k: int, n: int) -> dict:
    """The layer built for every engine, outputs computed; `time_round` times it, `finish` sums it up."""
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b, x = rng.standard_normal(n).astype(np.float32), aligned(rng.standard_normal((M, k)).astype(np.float32))
    feeds, engines, outputs, layers = {"x": x}, {}, {}, {}
    libraries = {"4x4": block_library(wt, 4, 4, 8, 4), "16x4": column_library(wt, 16, 4, 32, 4)}
    weights = {f"gearshift_pattern_{shape}": block_project(wt, masks, 0.75)[0] for shape, masks in libraries.items()}
    weights.update({f"gearshift_bsr_{r}x{c}": project(wt, r, c, 1 - DENSITY) for r, c in ((16, 1), (4, 4))})
    for name, pruned in weights.items():
        shape = name.rsplit("_", 1)[1]
        spec = PATTERNS[shape][1] if "pattern" in name else f"bsr::{shape}"  # the structure is in the weights
        engine, layers[name] = session(matmul_model(np.ascontiguousarray(pruned.T), b), spec, f"out/bench-{name}-{k}-{n}")
        error = float(np.abs(engine.run(feeds)["y"] - (x.astype(np.float64) @ pruned.T.astype(np.float64) + b)).max())
        engines[name], outputs[name] = (lambda s=engine: s.run(feeds)), None
        layers[name]["max_abs_error_vs_numpy"] = error
    ort = ort_session(matmul_model(np.ascontiguousarray(weights["gearshift_pattern_4x4"].T), b).SerializeToString())
    engines["onnxruntime"], outputs["onnxruntime"] = (lambda: ort.run(None, feeds)), ort.run(None, feeds)[0]
    outputs["gearshift_pattern_4x4"] = engines["gearshift_pattern_4x4"]()["y"]
    reference = outputs["onnxruntime"]
    return {"name": f"{k}->{n}", "engines": engines, "layers": layers,
            "outputs": {name: reference if out is None else out for name, out in outputs.items()}}


def time_round(case: dict, repeat: int) -> dict:
    return compare(case["name"], case["engines"], case["outputs"], repeat=repeat)


def finish(case: dict, rounds: list[dict]) -> dict:
    row, layers = merge_rounds(rounds), case["layers"]
    e = row["engines"]
    for name in layers:
        if name != "gearshift_pattern_4x4":
            e[name]["max_abs_error"] = layers[name]["max_abs_error_vs_numpy"]  # against its own weights
    t = {name: s["median_ms"] for name, s in e.items()}
    row["layers"] = {name: {key: layer[key] for key in ("decision", "block", "density", "packed_bytes", "dense_bytes")}
                     for name, layer in layers.items()}
    for shape in PATTERNS:
        pattern = f"gearshift_pattern_{shape}"
        for bsr in ("16x1", "4x4"):
            row[f"{shape}_vs_bsr_{bsr}"] = t[pattern] / t[f"gearshift_bsr_{bsr}"]
            row[f"{shape}_vs_bsr_{bsr}_rounds"] = round_ratios(row, pattern, f"gearshift_bsr_{bsr}")
        row[f"{shape}_speedup_vs_ort"] = t["onnxruntime"] / t[pattern]
        log(f"{row['case']}: {shape} patterns {row[f'{shape}_vs_bsr_16x1']:.2f}x the time of BSR 16x1, "
            f"{row[f'{shape}_vs_bsr_4x4']:.2f}x of BSR 4x4, {row[f'{shape}_speedup_vs_ort']:.2f}x faster than ORT")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="timing rounds over all layers (the median is reported)")
    args = p.parse_args()
    cases = [case(k, n) for k, n in SHAPES]
    rounds = in_rounds(cases, lambda c: time_round(c, args.repeat), args.rounds)
    rows_out = [finish(c, timings) for c, timings in zip(cases, rounds)]

    def spread(r: dict, key: str) -> str:
        values = r[f"{key}_rounds"]
        return f"{r[key]:.2f}x ({min(values):.2f}-{max(values):.2f})"

    rows = [("layer (M=128)", "patterns", "pattern ms", "BSR 16x1 ms", "BSR 4x4 ms", "ORT dense ms", "pattern / BSR 16x1",
             "pattern / BSR 4x4", "pattern vs ORT", "pattern MB (dense)", "max err")]
    for r in rows_out:
        e = r["engines"]
        for shape, (spec, _) in PATTERNS.items():
            name = f"gearshift_pattern_{shape}"
            lay = r["layers"][name]
            rows.append((r["case"], spec, *(f"{e[engine]['median_ms']:.3f}" for engine in
                                            (name, "gearshift_bsr_16x1", "gearshift_bsr_4x4", "onnxruntime")),
                         spread(r, f"{shape}_vs_bsr_16x1"), spread(r, f"{shape}_vs_bsr_4x4"), f"{r[f'{shape}_speedup_vs_ort']:.2f}x",
                         f"{lay['packed_bytes'] / 1e6:.2f} ({lay['dense_bytes'] / 1e6:.2f})", f"{e[name]['max_abs_error']:.1e}"))
    text = (f"# Dense layers with block patterns vs BSR at density {DENSITY}\n\n{table(rows)}\n\n"
            f"{threads_note()}; medians of {args.repeat} interleaved runs after 3 warm-ups, median of {args.rounds} "
            f"rounds (range over rounds in brackets). Ratios: time of the pattern kernel over the BSR kernel's (bar: <= 1.3). "
            f"4x4 patterns keep any 8 of a block's 16 weights and run along the activations; 16x4 patterns keep 2 whole "
            f"columns of 16 and run on the BSR kernel along the outputs. Max err: 4x4 patterns against ONNX Runtime, "
            f"the others against numpy on their own weights.")
    write_results("block_patterns", {"repeat": args.repeat, "rounds": args.rounds, "specs": {s: p[0] for s, p in PATTERNS.items()},
                                     "density": DENSITY, "cases": rows_out}, text)
    print(text)


if __name__ == "__main__":
    main()
