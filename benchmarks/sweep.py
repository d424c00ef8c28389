"""The architecture sweep: import, compile (host) and check against ONNX Runtime a broad set of real
architectures with random weights (benchmarks/zoo.py), through both torch exporters and several
opsets, plus hand-built graphs of old-opset ops.

Per model: the op types, whether it imported and built, the largest error against ORT (bar: 1e-4 abs
/ 1e-3 rel), and gearshift's time over ORT's (engines in alternating blocks). A failure is either a
named gearshift error (what the user sees: op, node, reason) or a raw one (a bug to fix).
Writes benchmarks/results/sweep.{json,md}.

    python benchmarks/sweep.py [--fast] [--only NAME,...] [--repeat 10]
"""

from __future__ import annotations

import argparse
import time
import traceback

from common import aligned, log, machine_note, ort_session, table, threads_note, write_results  # first: sets thread env
import numpy as np
import zoo

import gearshift
from gearshift.bench import summarize, time_blocks
from gearshift.errors import GearshiftError, summarize as summarize_error

ATOL, RTOL = 1e-4, 1e-3
SLOW = 2.0  # gearshift / ORT above this needs a reason beside it


def run_entry(entry: zoo.Entry, repeat: int = 10, out_dir: str = "out/sweep") -> dict:
    """One model through the whole path; never raises (the failure is in the row)."""
    row = {"model": entry.name, "family": entry.family, "exporter": entry.exporter, "opset": entry.opset,
           "op_types": [], "imported": False, "built": False, "matches": False}
    stage = "export"
    try:
        proto, feeds = entry.make()
        feeds = {k: aligned(v) for k, v in feeds.items()}
        row["op_types"] = sorted({node.op_type for node in proto.graph.node})
        row["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), entry.opset)
        stage = "onnxruntime"
        ort = ort_session(proto.SerializeToString())
        reference = ort.run(None, feeds)
        stage = "compile"
        t0 = time.perf_counter()
        built = gearshift.compile_model(proto, "host", sparsity="dense")
        row.update(imported=True, built=True, compile_seconds=round(time.perf_counter() - t0, 2))
        row["fallback_kernels"] = sorted(k for k, rule in built.report["kernels"].items()
                                         if rule in ("unscheduled", "Fallback"))
        row["generic_convs"] = sorted(k for k in built.report["kernels"] if "conv2d" in k and "gs_conv2d" not in k)
        stage = "run"
        session = gearshift.Session(gearshift.save(built, f"{out_dir}/{entry.name}-{entry.exporter}-{entry.opset}",
                                                   overwrite=True))
        outputs = session.run(feeds)
        ours = [np.asarray(outputs[spec.name], np.float64) for spec in session.outputs]
        row["max_abs_error"] = max(float(np.abs(a - ref).max()) for a, ref in zip(ours, reference))
        # the error over the output's scale: random weights leave some models' outputs near 1e-15 or 1e6
        row["relative_error"] = max(float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))
                                    for a, ref in zip(ours, reference))
        row["matches"] = all(np.allclose(a, ref, atol=ATOL, rtol=RTOL) for a, ref in zip(ours, reference))
        if all(not np.abs(ref).any() for ref in reference):
            row["degenerate"] = "the output is all zeros: the comparison says nothing"
        if repeat:
            times = time_blocks({"gearshift": lambda: session.run(feeds), "onnxruntime": lambda: ort.run(None, feeds)},
                                repeat=repeat, rounds=2)
            stats = {k: summarize(v)["median_ms"] for k, v in times.items()}
            row.update(gearshift_ms=stats["gearshift"], onnxruntime_ms=stats["onnxruntime"],
                       ratio=stats["gearshift"] / stats["onnxruntime"])
            if row["ratio"] > SLOW:
                row["why"] = slow_reason(row)
    except GearshiftError as err:
        row.update(stage=stage, error=f"{type(err).__name__}: {err}", named=True,
                   imported=stage not in ("export", "onnxruntime") and not isinstance(err, gearshift.GearshiftImportError))
    except Exception as err:  # noqa: BLE001  (a raw error is a finding: it goes in the table)
        row.update(stage=stage, error=f"{type(err).__name__}: {summarize_error(err, width=300)}", named=False,
                   traceback=traceback.format_exc(limit=3))
    return row


def slow_reason(row: dict) -> str:
    """Why a model runs more than SLOW x ORT's time, from what the build reported."""
    if row["onnxruntime_ms"] < 0.05:
        return f"a {row['onnxruntime_ms'] * 1e3:.0f} us model: the per-call overhead dominates"
    if row.get("generic_convs"):
        return (f"{len(row['generic_convs'])} grouped or depthwise convs run TVM's own conv2d under a generic "
                f"rule (gearshift's conv kernel takes ungrouped convs only)")
    if row.get("fallback_kernels"):
        kinds = sorted({k.split("_")[1] if k.startswith("fused_") else k for k in row["fallback_kernels"]})
        return f"kernels without a dedicated CPU schedule ({len(row['fallback_kernels'])}: {', '.join(kinds[:4])})"
    return "not analysed"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fast", action="store_true", help="only the subset `make test` runs")
    p.add_argument("--only", help="comma-separated model names")
    p.add_argument("--repeat", type=int, default=10, help="timed calls per engine (0: no timing)")
    args = p.parse_args()
    entries = zoo.fast() if args.fast else zoo.full()
    if args.only:
        entries = [e for e in entries if e.name in args.only.split(",")]
    rows = []
    for i, entry in enumerate(entries):
        log(f"[{i + 1}/{len(entries)}] {entry.name} ({entry.exporter}, opset {entry.opset})")
        row = run_entry(entry, args.repeat)
        log(f"    {'ok' if row['matches'] else row.get('error', 'mismatch')}"
            + (f", {row['ratio']:.2f}x ORT" if "ratio" in row else ""))
        rows.append(row)
    md = [("model", "exporter", "opset", "ops", "imported", "built", "max abs err", "err / max |out|", "gearshift / ORT",
           "note")]
    for r in rows:
        note = r.get("error", "") if not r["matches"] else (f"slower than {SLOW:g}x ORT: {r['why']}"
                                                            if r.get("ratio", 0) > SLOW else r.get("degenerate", ""))
        md.append((r["model"], r["exporter"], r["opset"], len(r["op_types"]), "yes" if r["imported"] else "no",
                   "yes" if r["built"] else "no", f"{r['max_abs_error']:.1e}" if "max_abs_error" in r else "-",
                   f"{r['relative_error']:.1e}" if "relative_error" in r else "-",
                   f"{r['ratio']:.2f}x" if "ratio" in r else "-", note[:160]))
    ok = sum(r["matches"] for r in rows)
    named = sum(1 for r in rows if not r["matches"] and r.get("named"))
    raw = len(rows) - ok - named
    text = (f"# Architecture sweep\n\n{table(md)}\n\n{ok} of {len(rows)} match ONNX Runtime ({ATOL:g} abs / {RTOL:g} rel); "
            f"{named} stop with a named error, {raw} with a raw one or a mismatch. {threads_note()}; {machine_note()}; "
            f"times: medians in alternating blocks, {args.repeat} calls per engine.")
    write_results("sweep-fast" if args.fast else "sweep", {"rows": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
