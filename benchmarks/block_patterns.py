"""Dense layers with block patterns (RT3) against gearshift BSR at the same density, and ONNX Runtime.

BERT-base FFN shapes (768->3072, 3072->768), M = 128 activation rows, fp32, a bias added. Density
0.125 everywhere: 4x4 blocks each keeping 8 of 16 weights in one of a 4-pattern library, 25 % of
blocks kept (pattern:4:0.75:4x4:8); BSR with 16x1 blocks (the cost model's choice at this density)
and 4x4 blocks, 87.5 % of blocks zero. Peers interleaved in one run: ONNX Runtime dense on the
pattern-masked weights (outputs checked against it), gearshift BSR on its own block-pruned weights
(checked against numpy).                      bar: pattern within 1.3x of gearshift BSR's time
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
from gearshift.frontend.patterns import block_library, block_project
from gearshift.schedules.kernels.bsr import project

SHAPES = [(768, 3072), (3072, 768)]
SPEC, DENSITY = "pattern:4:0.75:4x4:8", 0.125


def session(proto, spec: str, path: str):
    built = gearshift.compile_model(proto, "host", sparsity=spec)
    return gearshift.Session(gearshift.save(built, path, overwrite=True)), built.report["sparse_layers"][0]


def case(k: int, n: int) -> dict:
    """The layer built for every engine, outputs computed; `time_round` times it, `finish` sums it up."""
    rng = np.random.default_rng(0)
    wt = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
    b, x = rng.standard_normal(n).astype(np.float32), aligned(rng.standard_normal((M, k)).astype(np.float32))
    masked, _, _ = block_project(wt, block_library(wt, 4, 4, 8, 4), 0.75)
    proto = matmul_model(np.ascontiguousarray(masked.T), b)
    pattern, layer = session(proto, "pattern", f"out/bench-pattern-dense-{k}-{n}")  # the patterns are in the weights
    feeds, engines, outputs, layers = {"x": x}, {}, {}, {"gearshift_pattern": layer}
    for block in ((16, 1), (4, 4)):
        pruned = project(wt, *block, 1 - DENSITY)
        name = f"gearshift_bsr_{block[0]}x{block[1]}"
        bsr, layers[name] = session(matmul_model(np.ascontiguousarray(pruned.T), b), f"bsr::{block[0]}x{block[1]}",
                                    f"out/bench-bsr-{block[0]}x{block[1]}-{k}-{n}")
        error = float(np.abs(bsr.run(feeds)["y"] - (x.astype(np.float64) @ pruned.T.astype(np.float64) + b)).max())
        engines[name], outputs[name] = (lambda s=bsr: s.run(feeds)), None
        layers[name]["max_abs_error_vs_numpy"] = error
    ort = ort_session(proto.SerializeToString())
    engines.update(gearshift_pattern=lambda: pattern.run(feeds), onnxruntime=lambda: ort.run(None, feeds))
    outputs.update(gearshift_pattern=pattern.run(feeds)["y"], onnxruntime=ort.run(None, feeds)[0])
    reference = outputs["onnxruntime"]
    return {"name": f"{k}->{n}", "engines": engines, "layers": layers,
            "outputs": {name: reference if out is None else out for name, out in outputs.items()}}


def time_round(case: dict, repeat: int) -> dict:
    return compare(case["name"], case["engines"], case["outputs"], repeat=repeat)


def finish(case: dict, rounds: list[dict]) -> dict:
    row, layers = merge_rounds(rounds), case["layers"]
    e = row["engines"]
    for name in ("gearshift_bsr_16x1", "gearshift_bsr_4x4"):
        e[name]["max_abs_error"] = layers[name]["max_abs_error_vs_numpy"]  # against its own weights
    t = {name: s["median_ms"] for name, s in e.items()}
    row.update(layers={name: {key: layer[key] for key in ("decision", "block", "density", "packed_bytes", "dense_bytes")}
                       for name, layer in layers.items()},
               pattern_vs_bsr_16x1=t["gearshift_pattern"] / t["gearshift_bsr_16x1"],
               pattern_vs_bsr_4x4=t["gearshift_pattern"] / t["gearshift_bsr_4x4"],
               pattern_speedup_vs_ort=t["onnxruntime"] / t["gearshift_pattern"],
               pattern_vs_bsr_16x1_rounds=round_ratios(row, "gearshift_pattern", "gearshift_bsr_16x1"),
               pattern_vs_bsr_4x4_rounds=round_ratios(row, "gearshift_pattern", "gearshift_bsr_4x4"))
    log(f"{row['case']}: pattern {row['pattern_vs_bsr_16x1']:.2f}x the time of BSR 16x1, "
        f"{row['pattern_vs_bsr_4x4']:.2f}x of BSR 4x4, {row['pattern_speedup_vs_ort']:.2f}x faster than ORT")
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

    rows = [("layer (M=128)", "pattern ms", "BSR 16x1 ms", "BSR 4x4 ms", "ORT dense ms", "pattern / BSR 16x1",
             "pattern / BSR 4x4", "pattern vs ORT", "pattern MB (dense)", "max err")]
    for r in rows_out:
        e, lay = r["engines"], r["layers"]["gearshift_pattern"]
        rows.append((r["case"], *(f"{e[name]['median_ms']:.3f}" for name in
                                  ("gearshift_pattern", "gearshift_bsr_16x1", "gearshift_bsr_4x4", "onnxruntime")),
                     spread(r, "pattern_vs_bsr_16x1"), spread(r, "pattern_vs_bsr_4x4"), f"{r['pattern_speedup_vs_ort']:.2f}x",
                     f"{lay['packed_bytes'] / 1e6:.2f} ({lay['dense_bytes'] / 1e6:.2f})",
                     f"{e['gearshift_pattern']['max_abs_error']:.1e}"))
    text = (f"# Dense layers with block patterns vs BSR at density {DENSITY} ({SPEC})\n\n{table(rows)}\n\n"
            f"{threads_note()}; medians of {args.repeat} interleaved runs after 3 warm-ups, median of {args.rounds} "
            f"rounds (range over rounds in brackets). Ratios: time of the pattern kernel over the BSR kernel's (bar: <= 1.3).")
    write_results("block_patterns", {"repeat": args.repeat, "rounds": args.rounds, "spec": SPEC, "density": DENSITY, "cases": rows_out}, text)
    print(text)


if __name__ == "__main__":
    main()
