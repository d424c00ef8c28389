"""Level search (RT3 §3) against uniform sparsity at equal latency, and the latency model checked.

Model: the BERT-base-shaped encoder x2 of benchmarks/rt3.py (seq 128, random weights), its 12 linear
layers searched over 16x1 block sparsities {50, 70, 85, 93 %}.
  1. Per-layer latencies measured here (`measure_layers`: each layer built alone by the driver), the
     rest of the model fitted from the four uniform levels compiled and timed end to end: the
     additive latency model and its fit.
  2. For budgets = the uniform 70 % and 85 % levels' predicted latency: the evolutionary search's
     assignment vs the most accurate uniform level within the budget (accuracy proxy: relative L2
     error of the outputs against the dense model, ONNX Runtime, calibration inputs).
  3. The searched assignments compiled as levels and timed against the uniform ones (one session,
     interleaved): predicted vs measured latency, and the proxy through the compiled artifact.
Writes benchmarks/results/level_search.{json,md}.

    python benchmarks/level_search.py [--generations 40] [--repeat 20]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import aligned, log, machine_note, table, threads_note, write_results  # first: sets thread env

import gearshift
from gearshift.bench import summarize, time_interleaved
from gearshift.level_search import AdditiveLatency, ErrorProxy, evolve, measure_layers, search_space
from gearshift.levels_compiler import compile_levels, save_levels
from gearshift.relay_passes.levels import parse_levels
from rt3 import bert_base_x2

MENU = (0.5, 0.7, 0.85, 0.93)


def level(name: str, default: float, overrides: list[str] | None = None) -> dict:
    return {"name": name, "sparsity": f"bsr:{default:g}:16x1", **({"layer_sparsity": overrides} if overrides else {})}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generations", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    proto, feeds = bert_base_x2()
    space = search_space(proto, MENU)
    log(f"{len(space.layers)} layers, menu {MENU}")
    t = time.perf_counter()
    latency = AdditiveLatency(measure_layers(space, rows=128, repeat=args.repeat, log=log))
    log(f"kernels measured in {time.perf_counter() - t:.0f} s")
    uniform_doc = {"form": "runtime", "levels": [level(f"u{int(s * 100)}", s) for s in MENU]}
    uniform = compile_levels(proto, parse_levels(uniform_doc), "host", calibration=feeds, repeat=args.repeat, log=log)
    measured = {s: uniform.info[f"u{int(s * 100)}"]["latency_ms"] for s in MENU}
    fit_error = latency.fit_rest(space, measured)
    log(f"latency model: rest {latency.rest_ms:.2f} ms, largest error on the uniform levels {fit_error:.1%}")

    proxy = ErrorProxy(proto, space, feeds)
    results = []
    for s in (0.7, 0.85):
        t = time.perf_counter()
        budget = latency(space, space.uniform(s))  # the uniform level's own predicted latency: equal footing
        r = evolve(space, budget, proxy, latency, generations=args.generations, seed=0)
        log(f"budget {budget:.2f} ms: searched error {r.error:.4f} vs uniform {r.uniform} {r.uniform_error:.4f} "
            f"({r.evaluations} evaluations, {time.perf_counter() - t:.0f} s)")
        results.append(r)

    # compile the searched levels next to the uniform ones they compete with, time them in one session
    doc = {"form": "runtime", "levels": [level(f"u{int(s * 100)}", s) for s in (0.7, 0.85)]
           + [level(f"search{int(r.budget_ms * 100)}", 0.5, r.layer_sparsity(space)) for r in results]}
    built = compile_levels(proto, parse_levels(doc), "host", calibration=feeds, repeat=args.repeat, log=log)
    session = gearshift.Session(save_levels(built, Path(tempfile.mkdtemp()) / "art"))
    inputs = {k: aligned(v) for k, v in feeds.items()}

    def runner(name):
        def run():
            session.switch(name)
            session.run(inputs)
        return run

    times = {k: summarize(v)["median_ms"] for k, v in
             time_interleaved({n: runner(n) for n in session.levels}, repeat=args.repeat).items()}
    rows, out = [], []
    for r, u in zip(results, ("u70", "u85")):
        name = f"search{int(r.budget_ms * 100)}"
        got = built.info[name]
        rows.append((f"{r.budget_ms:.2f}", f"{r.uniform:g} uniform: {r.uniform_error:.4f}", f"{r.error:.4f}",
                     f"{(1 - r.error / r.uniform_error):.1%}", f"{latency(space, space.uniform(r.uniform)):.2f} / {times[u]:.2f}",
                     f"{r.predicted_ms:.2f} / {times[name]:.2f}", f"{got['error']:.4f}", str(r.evaluations),
                     " ".join(f"{s:g}" for s in r.assignment)))
        out.append({"budget_ms": r.budget_ms, "assignment": dict(zip([x.name for x in space.layers], r.assignment)),
                    "error": r.error, "uniform": r.uniform, "uniform_error": r.uniform_error,
                    "predicted_ms": r.predicted_ms, "measured_ms": times[name], "uniform_measured_ms": times[u],
                    "compiled_error": got["error"], "evaluations": r.evaluations})
    layer_rows = [(f"{k}->{n}", *(f"{latency.layer_ms[(k, n, s)]:.3f}" for s in MENU))
                  for k, n in sorted({x.shape for x in space.layers})]
    md = ["# Level search vs uniform sparsity", "",
          f"BERT-base-shaped encoder x2 (seq 128, random weights), 12 linear layers, menu {list(MENU)} (16x1); "
          f"{threads_note()}", "",
          machine_note(), "",
          "Per-layer latency, ms (M = 128; each layer compiled alone by the driver and timed):", "",
          table([("layer", *(f"{s:g}" for s in MENU)), *layer_rows]), "",
          f"Additive model: rest of the model {latency.rest_ms:.2f} ms, fitted to the uniform levels "
          f"({', '.join(f'{s:g}: {ms:.2f} ms' for s, ms in measured.items())}); largest error {fit_error:.1%}.", "",
          table([("budget ms", "uniform baseline: error proxy", "searched error", "error reduced", "uniform predicted / measured ms",
                  "searched predicted / measured ms", "searched error, compiled", "evaluations", "searched sparsities (layer order)"),
                 *rows]), "",
          "Layer order: " + ", ".join(x.name for x in space.layers)]
    write_results("level_search", {"menu": MENU, "rest_ms": latency.rest_ms, "fit_error": fit_error,
                                   "layer_ms": {f"{k}x{n}@{s}": v for (k, n, s), v in latency.layer_ms.items()},
                                   "uniform_measured_ms": measured, "results": out}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
