"""MetaSchedule (XGBoost cost model) against gearshift's dense rules on the two dense convs the
tuning issue names: the conv with 7x7 outputs (ResNet-18's 256x14x14 -> 512, stride 2) and
ResNet-18's 7x7 stem (3x224x224 -> 64, stride 2). Per case: `gearshift tune --metaschedule` into a
fresh database (64 trials a kernel), then the model built by the rules, the model built with the
database (MetaSchedule's schedule only where it stayed faster) and ONNX Runtime, timed in
alternating blocks, in rounds. Writes benchmarks/results/tuning_dense.{json,md}.

    python benchmarks/tuning_dense.py [--trials 64] [--rounds 3] [--repeat 20]
"""

from __future__ import annotations

import argparse
import shutil
import time

from common import (aligned, compare, in_rounds, log, machine_note, merge_rounds, table,  # first: thread env
                    threads_note, write_results)
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from tuning import with_and_without_db

from gearshift.autotune import autotune
from gearshift.tune.database import Database

CASES = [("conv 256x14x14->512 s2 (7x7 outputs)", 256, 512, 14, 3, 2, 1),
         ("ResNet-18 stem 3x224x224->64 7x7 s2", 3, 64, 224, 7, 2, 3)]  # name, in, out, size, kernel, stride, pad


def conv_model(cin: int, cout: int, size: int, kernel: int, stride: int, pad: int):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, kernel, kernel)) / np.sqrt(cin * kernel * kernel)).astype(np.float32)
    out = (size + 2 * pad - kernel) // stride + 1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[pad] * 4, strides=[stride] * 2,
                          kernel_shape=[kernel] * 2), helper.make_node("Relu", ["c"], ["y"])],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, out, out])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def prepare_case(case, trials: int) -> dict:
    name, cin, cout, size, kernel, stride, pad = case
    proto = conv_model(cin, cout, size, kernel, stride, pad)
    db = f"out/tuning-dense-db-{cin}-{cout}-{size}"
    shutil.rmtree(db, ignore_errors=True)
    t = time.perf_counter()
    report = autotune(proto, db=db, trials=trials, sparsity="dense", metaschedule=True, log=log)
    seconds = time.perf_counter() - t
    feeds = {"x": aligned(np.random.default_rng(1).standard_normal((1, cin, size, size)).astype(np.float32))}
    engines, outputs = with_and_without_db(proto, "dense", db, feeds, f"dense-{cin}", "gearshift_rule")
    finals = [r for r in Database(db).records if r.get("final") and r["kind"] == "dense"]
    log(f"{name}: {len(report.tasks)} kernels tuned in {seconds:.0f} s")
    return {"name": name, "engines": engines, "outputs": outputs, "tasks": finals, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    cases = [prepare_case(c, args.trials) for c in CASES]
    timed = in_rounds(cases, lambda c: compare(c["name"], c["engines"], c["outputs"], repeat=args.repeat,
                                               interleaved=False), args.rounds)
    rows = []
    for case, rounds in zip(cases, timed):
        e = merge_rounds(rounds)["engines"]
        kernels = case["tasks"]
        rows.append({"case": case["name"], "tuning_seconds": case["seconds"], "kernels": kernels,
                     "rule_ms": e["gearshift_rule"]["median_ms"], "tuned_ms": e["gearshift_tuned"]["median_ms"],
                     "ort_ms": e["onnxruntime"]["median_ms"],
                     "tuned_over_rule": e["gearshift_rule"]["median_ms"] / e["gearshift_tuned"]["median_ms"],
                     "max_abs_error": max(s["max_abs_error"] for s in e.values())})
    md = ["# MetaSchedule against gearshift's dense rules", "", machine_note(), "",
          f"{args.trials} MetaSchedule trials a kernel (XGBoost cost model); {threads_note()}; models timed in "
          f"alternating blocks, {args.rounds} rounds.", "",
          table([("case", "tuning s", "kernel: rule ms / MetaSchedule ms (search's confirmation)", "build takes",
                  "model: rule ms", "model: tuned ms", "tuned / rule", "ONNX Runtime ms"),
                 *((r["case"], r["tuning_seconds"],
                    "; ".join(f"{k['default_ms']:.3f} / {k['metaschedule_ms']:.3f}" for k in r["kernels"]),
                    ", ".join(k["knobs"]["schedule"] for k in r["kernels"]), f"{r['rule_ms']:.3f}",
                    f"{r['tuned_ms']:.3f}", f"{r['tuned_over_rule']:.2f}x", f"{r['ort_ms']:.3f}") for r in rows)]), ""]
    write_results("tuning_dense", {"trials": args.trials, "rounds": args.rounds, "cases": rows}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
