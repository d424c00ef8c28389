"""Pattern-sparse 3x3 convs against dense peers on the same masked weights (batch 1, fp32).

VGG-16-shaped layers (56x56x128->128, 28x28x256->256, 14x14x512->512; the bars are theirs) and
ResNet-18's three stride-2 3x3 convs (56x56x64->128, 28x28x128->256, 14x14x256->512), 4-of-9
patterns (a library of 4 per layer) plus connectivity pruning keeping 28 % of the kernels (PatDNN's
VGG-16 rate: ~8x fewer weights, ~88 % sparse). gearshift's pattern kernel vs ONNX Runtime dense conv on the same
masked ONNX, gearshift's own dense conv schedule and torch dense; and, for scale, gearshift BSR
(16x1) at the same density on the conv's im2col GEMM ([H*W, 9*CI] @ [9*CI, CO], im2col not timed).
    bars: >= 4x ORT dense (ideal 8x), >= 3x gearshift dense.
Each layer is timed with all five engines in alternating blocks (the headline, as the benchmark
protocol decides), then gearshift pattern and ONNX Runtime alone, interleaved ("pairwise"), and each
back to back ("alone"), as in block_sparse.py; in rounds, every figure the median over rounds.
Writes benchmarks/results/pattern_sparse.{json,md}.

    python benchmarks/pattern_sparse.py [--repeat 20] [--rounds 3]
"""

from __future__ import annotations

import argparse

from common import (aligned, compare, in_rounds, log, machine_note, merge_rounds,  # first: sets thread env
                    ort_session, pair_and_alone, round_ratios, table, threads_note, write_results)
import numpy as np
import onnx
import torch
from block_sparse import matmul_model
from onnx import TensorProto, helper, numpy_helper

import gearshift
from gearshift.bench import thread_count
from gearshift.frontend.patterns import library, project
from gearshift.compress.blocks import project as bsr_project
from gearshift.schedules.kernels.pattern_conv import out_extent

LAYERS = [(128, 128, 56, 1), (256, 256, 28, 1), (512, 512, 14, 1),  # (in, out channels, input size, stride)
          (64, 128, 56, 2), (128, 256, 28, 2), (256, 512, 14, 2)]
PATTERNS, CONNECTIVITY = 4, 0.72
PADS = (1, 1, 1, 1)


def conv_model(w: np.ndarray, b: np.ndarray, size: int, stride: int = 1) -> onnx.ModelProto:
    cout, cin = w.shape[:2]
    out = out_extent(size, size, PADS, stride)[0]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=list(PADS), strides=[stride, stride],
                          kernel_shape=[3, 3], name="conv")],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, out, out])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def layer_case(cin: int, cout: int, size: int, stride: int) -> dict:
    """The layer built for every engine, outputs computed; `time_round` times it, `finish` sums it up."""
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    out = out_extent(size, size, PADS, stride)[0]
    tag = f"{size}" if stride == 1 else f"{size}s{stride}"
    masked, _, _ = project(w, library(w, PATTERNS), CONNECTIVITY)
    b = rng.standard_normal(cout).astype(np.float32)
    x = aligned(rng.standard_normal((1, cin, size, size)).astype(np.float32))
    proto = conv_model(masked, b, size, stride)
    built = gearshift.compile_model(proto, "host", sparsity="pattern")
    sparse = gearshift.Session(gearshift.save(built, f"out/bench-pattern-{tag}", overwrite=True))
    dense = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity="dense"),
                                             f"out/bench-conv-dense-{tag}", overwrite=True))
    ort = ort_session(proto.SerializeToString())
    feeds = {"x": x}
    # gearshift BSR at the same density on the conv's GEMM (im2col: [H*W, CI*9] @ [CI*9, CO]); the
    # im2col itself is not timed, so this is a lower bound for a BSR conv, not a conv.
    gemm_w = bsr_project(np.ascontiguousarray(w.reshape(cout, 9 * cin)), 16, 1, 1.0 - float((masked != 0).mean()))
    gemm = matmul_model(np.ascontiguousarray(gemm_w.T), b, rows=out * out)
    bsr = gearshift.Session(gearshift.save(gearshift.compile_model(gemm, "host", sparsity="bsr::16x1"),
                                           f"out/bench-pattern-bsr-{tag}", overwrite=True))
    cols = {"x": aligned(rng.standard_normal((out * out, 9 * cin)).astype(np.float32))}
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(masked), torch.from_numpy(b)
    outputs = {"gearshift_pattern": sparse.run(feeds)["y"], "onnxruntime": ort.run(None, feeds)[0],
               "gearshift_dense": dense.run(feeds)["y"],
               "torch_dense": torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=1).numpy()}
    engines = {"gearshift_pattern": lambda: sparse.run(feeds), "onnxruntime": lambda: ort.run(None, feeds),
               "gearshift_dense": lambda: dense.run(feeds),
               "torch_dense": lambda: torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=1),
               "gearshift_bsr_gemm": lambda: bsr.run(cols)}
    layer = built.report["sparse_layers"][0]
    name = f"{size}x{size}x{cin}->{cout}" + ("" if stride == 1 else f", stride {stride}")
    return {"name": name, "engines": engines, "density": float((masked != 0).mean()),
            "outputs": {**outputs, "gearshift_bsr_gemm": outputs["onnxruntime"]}, "layer": layer,
            "flops": 2 * int((masked != 0).sum()) * out * out}


PAIR = ("gearshift_pattern", "onnxruntime")


def time_round(case: dict, repeat: int) -> dict:
    with torch.no_grad():
        every = compare(case["name"], case["engines"], case["outputs"], repeat=repeat, flops=case["flops"])
        return {"blocks": every, **pair_and_alone(case["engines"], PAIR, repeat)}


def finish(case: dict, rounds: list[dict]) -> dict:
    row, layer, density = merge_rounds([r["blocks"] for r in rounds]), case["layer"], case["density"]
    for mode in ("pairwise", "alone"):
        ratios = [r[mode]["onnxruntime"] / r[mode]["gearshift_pattern"] for r in rounds]
        row[f"speedup_vs_ort_{mode}"], row[f"speedup_vs_ort_{mode}_rounds"] = float(np.median(ratios)), ratios
    row["engines"]["gearshift_bsr_gemm"]["max_abs_error"] = None  # another computation: time only
    e = row["engines"]
    row.update(density=density, decision=layer["decision"], dense_bytes=layer["dense_bytes"],
               packed_bytes=layer["packed_bytes"],
               speedup_vs_ort=e["onnxruntime"]["median_ms"] / e["gearshift_pattern"]["median_ms"],
               speedup_vs_ort_rounds=round_ratios(row, "onnxruntime", "gearshift_pattern"),
               speedup_vs_dense=e["gearshift_dense"]["median_ms"] / e["gearshift_pattern"]["median_ms"])
    row["fraction_of_ideal"] = row["speedup_vs_ort"] * density
    log(f"{row['case']}: {row['speedup_vs_ort']:.2f}x ORT in blocks (all engines), {row['speedup_vs_ort_pairwise']:.2f}x "
        f"pairwise, {row['speedup_vs_ort_alone']:.2f}x alone; {row['speedup_vs_dense']:.2f}x gearshift dense "
        f"({layer['decision']}, density {density:.3f})")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="timing rounds over all layers (the median is reported)")
    args = p.parse_args()
    torch.set_num_threads(thread_count())
    cases = [layer_case(*layer) for layer in LAYERS]
    layers = [finish(case, timings) for case, timings in
              zip(cases, in_rounds(cases, lambda case: time_round(case, args.repeat), args.rounds))]
    rows = [("layer (batch 1)", "density", "gearshift pattern ms", "ORT dense ms", "speedup vs ORT (range over rounds)",
             "pairwise speedup", "alone speedup", "of ideal 1/density",
             "gearshift dense ms", "vs gearshift dense", "torch dense ms", "gearshift BSR 16x1, GEMM only ms",
             "weights MB dense -> packed", "max err")]
    for r in layers:
        e = r["engines"]
        rows.append((r["case"], f"{r['density']:.3f}", f"{e['gearshift_pattern']['median_ms']:.3f}",
                     f"{e['onnxruntime']['median_ms']:.3f}",
                     f"{r['speedup_vs_ort']:.2f}x ({min(r['speedup_vs_ort_rounds']):.2f}-{max(r['speedup_vs_ort_rounds']):.2f})",
                     *(f"{r[f'speedup_vs_ort_{mode}']:.2f}x ({min(r[f'speedup_vs_ort_{mode}_rounds']):.2f}-"
                       f"{max(r[f'speedup_vs_ort_{mode}_rounds']):.2f})" for mode in ("pairwise", "alone")),
                     f"{r['fraction_of_ideal']:.0%}",
                     f"{e['gearshift_dense']['median_ms']:.3f}", f"{r['speedup_vs_dense']:.2f}x",
                     f"{e['torch_dense']['median_ms']:.3f}", f"{e['gearshift_bsr_gemm']['median_ms']:.3f}",
                     f"{r['dense_bytes'] / 1e6:.2f} -> {r['packed_bytes'] / 1e6:.2f}",
                     f"{e['gearshift_pattern']['max_abs_error']:.1e}"))
    text = (f"# Pattern-sparse 3x3 convs vs dense peers ({PATTERNS} patterns of 4-of-9, {1 - CONNECTIVITY:.0%} of kernels kept)"
            f"\n\n{table(rows)}\n\n{threads_note()}; {machine_note()}; headline: engines in alternating blocks; medians of "
            f"{args.repeat} runs after 3 warm-ups per timing, median of "
            f"{args.rounds} rounds (range in brackets). Pairwise: gearshift pattern and ORT only, interleaved; alone: "
            f"each back to back.")
    write_results("pattern_sparse", {"repeat": args.repeat, "rounds": args.rounds, "layers": layers}, text)
    print(text)


if __name__ == "__main__":
    main()
