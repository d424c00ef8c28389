"""`gearshift bench`: every suite, every peer, one run; results.json, report.md and plots.

The pipeline, in the order it runs:
    machine facts (CPU, ISA, cores, the fp32 peak of a register-only FMA loop, versions)
    -> kernels: single layers per structure and density       (suites/kernels.py)
    -> models: whole models, dense and per structure          (suites/models.py)
    -> rt3: three levels in one artifact, switched along a trace (suites/rt3.py)
    -> accuracy: one-shot projection of a real sentence transformer (suites/accuracy.py)
    -> report.md and the PNGs                                 (suites/report.py, suites/plots.py)
Every case checks each engine's output against ONNX Runtime before timing it (suites/engines.py),
and times them as the benchmark protocol's headline mode (`runtime.timing.time_engines`).
results.json is rewritten after every case, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from gearshift.errors import InputError
from gearshift.spec import Log

SUITES = ("kernels", "models", "rt3", "accuracy")
ESTIMATE_S = {True: {"kernels": 30, "models": 120, "rt3": 20, "accuracy": 70},
              False: {"kernels": 400, "models": 1500, "rt3": 60, "accuracy": 120}}


def machine_facts() -> dict:
    from gearshift.bench import machine
    from gearshift.suites.peak import fma_peak_gflops

    facts = machine()
    facts["fp32_peak_gflops"] = fma_peak_gflops()
    facts["node"] = platform.node()
    return facts


def run_bench(suite: str, out_dir: str | os.PathLike, *, quick: bool = False, db: str | os.PathLike | None = None,
              repeat: int | None = None, log: Log = lambda _m: None) -> dict:
    """Run `suite` ("kernels", "models", "rt3", "accuracy" or "all"); write results.json, report.md and
    the plots into `out_dir`; return the results."""
    from gearshift.runtime.timing import MODES

    if suite != "all" and suite not in SUITES:
        raise InputError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}, all")
    chosen = SUITES if suite == "all" else (suite,)
    repeat = repeat or (20 if quick else 40)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    estimate = sum(ESTIMATE_S[quick][s] for s in chosen)
    log(f"suites: {', '.join(chosen)}{' (quick)' if quick else ''}; expect about {estimate / 60:.0f} min here")
    started = time.perf_counter()
    results = {"machine": machine_facts(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "quick": quick, "tuning_db": str(db) if db else None,
               "timing": {"mode": "blocks", "description": MODES["blocks"], "repeat": repeat, "warmup_per_block": 3},
               "suites": {}, "seconds": {}}
    workdir = Path(tempfile.mkdtemp(prefix="gearshift-bench-"))
    try:
        _run_suites(chosen, results, out, workdir, quick, db, repeat, log)
    except KeyboardInterrupt:
        results["interrupted"] = True  # the report still shows what was measured, then the interrupt goes on
        _finish(results, out, started, log)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return _finish(results, out, started, log)


def _run_suites(chosen, results: dict, out: Path, workdir: Path, quick: bool, db, repeat: int, log: Log) -> None:
    from gearshift.suites import accuracy, kernels, models, rt3

    for name in chosen:
        t = time.perf_counter()
        if name in ("kernels", "models"):
            module = kernels if name == "kernels" else models
            total = module.count(quick)
            rows = results["suites"][name] = []
            for i, case in enumerate(module.cases(quick, workdir, db, log), 1):
                log(f"{name} {i}/{total}: {case.name}: checking and timing {len(case.engines)} engines")
                rows.append(case.run(repeat))
                _write_json(out / "results.json", results)
        elif name == "rt3":
            results["suites"]["rt3"] = rt3.run(quick, out, workdir, repeat=repeat, log=log)
        else:
            results["suites"]["accuracy"] = accuracy.run(quick, workdir, log=log)
        results["seconds"][name] = round(time.perf_counter() - t, 1)
        _write_json(out / "results.json", results)


def _finish(results: dict, out: Path, started: float, log: Log) -> dict:
    from gearshift.suites import plots, report

    results["seconds"]["total"] = round(time.perf_counter() - started, 1)
    results["plots"] = plots.write_all(results, out)
    _write_json(out / "results.json", results)
    (out / "report.md").write_text(report.markdown(results))
    log(f"wrote {out / 'results.json'}, {out / 'report.md'} and {len(results['plots'])} plots "
        f"in {results['seconds']['total']:.0f} s" + (" (interrupted: the suites that ran)" if results.get("interrupted") else ""))
    return results


def _write_json(path: Path, doc: dict) -> None:
    """Atomically: a reader (or a run cut short) never sees half a file."""
    staging = path.with_suffix(".json.tmp")
    staging.write_text(json.dumps(doc, indent=2, default=float) + "\n")
    os.replace(staging, path)
