"""RT3 run-time reconfiguration: switch latency, the two level forms, energy over a DVFS trace.

Model: a BERT-base-shaped encoder (2 layers, hidden 768, FFN 3072, seq 128, HF idioms) compiled once
with four levels, every linear layer at 50 / 70 / 85 / 93 % block sparsity (16x1).
  1. Both forms: `runtime` (one executable, structure as padded arrays) and `baked` (a library per
     level): every level's latency (the two forms, gearshift dense and ONNX Runtime dense
     interleaved) and the memory each form holds (weights of all levels + code).
  2. Switch latency: p50 / p99 / max of `Session.switch()` over 2,000 switches, with the session idle
     and with 2 threads running inference on it (bar: p99 <= 1 ms).
  3. Energy: the level table and energy report for the sd855-gold profile (approximate) and the
     bundled synthetic throttling trace, deadline = the gearshift dense model's latency here x 1.05
     (the dense model just meets it at the top frequency); latencies are those timed in part 1. This machine has no cpufreq and no power rail:
     latencies are measured here, frequency and power come from the profile's model.
Writes benchmarks/results/rt3.{json,md} and rt3-energy.png.

    python benchmarks/rt3.py [--repeat 20] [--switches 2000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

from common import aligned, log, ort_session, table, threads_note, write_results, RESULTS  # first: sets thread env
import numpy as np

import gearshift
from gearshift.bench import summarize, time_interleaved
from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert
from gearshift.frontend.load import export_torch
from gearshift.levels_compiler import compile_levels, save_levels
from gearshift.relay_passes.levels import parse_levels
from gearshift.runtime.dvfs import LatencyModel, level_table, levels_of, load_profile
from gearshift.runtime.energy import simulate, write_report
from gearshift.runtime.governor import read_trace

SPARSITIES = {"bsr50": 0.5, "bsr70": 0.7, "bsr85": 0.85, "bsr93": 0.93}
TRACE = Path(gearshift.__file__).parent / "runtime" / "traces" / "throttle-74s.csv"


def percentiles(us: list[float]) -> dict:
    a = np.asarray(us)
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)), "max_us": float(a.max()),
            "count": len(a)}


def switch_latency(session, switches: int, busy_threads: int) -> dict:
    stop = threading.Event()
    feeds = session_feeds[0]
    workers = [threading.Thread(target=lambda: [session.run(feeds) for _ in iter(lambda: stop.is_set(), True)])
               for _ in range(busy_threads)]
    for w in workers:
        w.start()
    time.sleep(0.2 if busy_threads else 0)
    names, us = session.levels, []
    for i in range(switches):
        t = time.perf_counter_ns()
        session.switch(names[i % len(names)])
        us.append((time.perf_counter_ns() - t) / 1e3)
        if busy_threads:
            time.sleep(0.0002)
    stop.set()
    for w in workers:
        w.join()
    return percentiles(us)


session_feeds: list = []


def bert_base_x2():
    """The model both RT3 benchmarks use: (ONNX proto, feeds) of a 2-layer BERT-base-shaped encoder, seq 128."""
    cfg = BertConfig(vocab_size=2000, hidden=768, layers=2, heads=12, ffn=3072, max_positions=128)
    feeds = bert_inputs(cfg, batch=1, seq_len=128)
    return export_torch(tiny_bert(cfg), feeds), feeds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--switches", type=int, default=2000)
    args = ap.parse_args()
    proto, feeds = bert_base_x2()
    work = Path(tempfile.mkdtemp(prefix="gearshift-rt3-"))
    arts, compile_s, compile_ms = {}, {}, {}
    for form in ("runtime", "baked"):
        doc = {"form": form, "levels": [{"name": n, "sparsity": f"bsr:{s}:16x1"} for n, s in SPARSITIES.items()]}
        t = time.perf_counter()
        built = compile_levels(proto, parse_levels(doc), "host", calibration=feeds, repeat=args.repeat, log=log)
        arts[form] = save_levels(built, work / form, name="bert-base-x2")
        compile_s[form] = time.perf_counter() - t
        compile_ms[form] = [round(built.dense_reference["latency_ms"], 2)] + [round(built.info[n]["latency_ms"], 2)
                                                                             for n in SPARSITIES]
        log(f"{form}: compiled 4 levels in {compile_s[form]:.0f} s")
    dense_session = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity="dense"), work / "dense"))
    sessions = {form: gearshift.Session(a) for form, a in arts.items()}
    inputs = {k: aligned(v) for k, v in feeds.items()}
    session_feeds.append(inputs)

    # 1. every level in both forms, ORT dense alongside
    ort = ort_session(proto.SerializeToString())
    rows, level_json = [], {}
    for name in SPARSITIES:
        for s in sessions.values():
            s.switch(name)
        engines = {form: (lambda s=s: s.run(inputs)) for form, s in sessions.items()}
        engines["gearshift dense"] = lambda: dense_session.run(inputs)
        engines["onnxruntime"] = lambda: ort.run(None, inputs)
        outs = {form: s.run(inputs) for form, s in sessions.items()}
        same = float(np.abs(list(outs["runtime"].values())[0] - list(outs["baked"].values())[0]).max())
        stats = {k: summarize(v) for k, v in time_interleaved(engines, repeat=args.repeat).items()}
        m = arts["runtime"].manifest["levels"][name]
        level_json[name] = {"stats": stats, "density": m["density"], "error_proxy": m["error"], "forms_max_diff": same}
        ort_ms = stats["onnxruntime"]["median_ms"]
        rows.append((name, f"{m['density']:.2f}", f"{stats['runtime']['median_ms']:.2f}", f"{stats['baked']['median_ms']:.2f}",
                     f"{stats['baked']['median_ms'] / stats['runtime']['median_ms']:.2f}",
                     f"{stats['gearshift dense']['median_ms']:.2f}", f"{ort_ms:.2f}",
                     f"{ort_ms / stats['runtime']['median_ms']:.2f}x", f"{m['error']:.3f}", f"{same:.1e}"))
        log(f"{name}: runtime {stats['runtime']['median_ms']:.2f} ms, baked {stats['baked']['median_ms']:.2f} ms, "
            f"ORT dense {ort_ms:.2f} ms")
    memory = {}
    for form, a in arts.items():
        files = a.manifest["files"]
        memory[form] = {"weights_mb": sum(v["bytes"] for k, v in files.items() if k.endswith(".safetensors")) / 1e6,
                        "code_mb": sum(v["bytes"] for k, v in files.items() if k.endswith(".so")) / 1e6}

    # 2. switch latency
    switching = {}
    for busy in (0, 2):
        switching[f"{busy} inference threads"] = switch_latency(sessions["runtime"], args.switches, busy)
        log(f"switch, {busy} busy threads: {switching[f'{busy} inference threads']}")

    # 3. energy over the trace, from the latencies timed above in one interleaved run (the compile-time
    # measurements in the manifest come from another moment of this shared machine)
    profile = load_profile("sd855-gold")
    manifest = json.loads(json.dumps(arts["runtime"].manifest))
    for name, facts in level_json.items():
        manifest["levels"][name]["latency_ms"] = facts["stats"]["runtime"]["median_ms"]
    dense = {**manifest["rt3"]["dense_reference"],
             "latency_ms": float(np.median([f["stats"]["gearshift dense"]["median_ms"] for f in level_json.values()]))}
    deadline = round(dense["latency_ms"] * 1.05, 2)
    levels = levels_of(manifest, profile)
    tab = level_table(levels, profile, deadline)
    trace = read_trace(TRACE)
    report = simulate(trace, tab, levels, LatencyModel.from_host(dense["latency_ms"], dense["weight_bytes"], profile))
    rep_dir = work / "report"
    write_report(report, trace, rep_dir)
    RESULTS.mkdir(exist_ok=True)
    shutil.copy(rep_dir / "report.png", RESULTS / "rt3-energy.png")

    md = ["# RT3: levels, switching, energy", "",
          f"BERT-base-shaped encoder x2 (seq 128), every linear layer 16x1 block-sparse; {threads_note()}",
          f"compile: runtime form {compile_s['runtime']:.0f} s, baked form {compile_s['baked']:.0f} s (4 levels each)", "",
          table([("level", "density", "runtime form ms", "baked form ms", "baked / runtime", "gearshift dense ms", "ORT dense ms",
                  "runtime form vs ORT", "error proxy", "forms max diff"), *rows]), "",
          table([("form", "weights of all levels MB", "code MB"),
                 *[(f, f"{v['weights_mb']:.1f}", f"{v['code_mb']:.2f}") for f, v in memory.items()]]), "",
          f"gearshift dense model: weights {dense['weight_bytes'] / 1e6:.1f} MB. Latencies in the manifest, measured "
          f"at compile time: runtime form {compile_ms['runtime']}, baked form {compile_ms['baked']} ms (dense first, then "
          f"the levels; the same machine at two moments).", "",
          "## Switch latency (`Session.switch`, runtime form)", "",
          table([("while", "p50 us", "p99 us", "max us", "switches"),
                 *[(k, f"{v['p50_us']:.2f}", f"{v['p99_us']:.2f}", f"{v['max_us']:.1f}", str(v["count"]))
                   for k, v in switching.items()]]), "",
          "## Energy (model: sd855-gold profile, approximate; synthetic throttling trace)", "",
          (rep_dir / "report.md").read_text().replace("# RT3 energy report", "### Report"),
          "![frequency and active level](rt3-energy.png)"]
    write_results("rt3", {"levels": level_json, "memory": memory, "switch": switching, "compile_s": compile_s,
                          "deadline_ms": deadline, "energy": {k: v for k, v in report.to_json().items() if k != "segments"}},
                  "\n".join(md))
    print("\n".join(md))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
