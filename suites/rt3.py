"""The RT3 suite: one artifact holding three compression levels, switched along a DVFS trace.

The phone is simulated, and says so: this machine has no cpufreq, so the bundled trace (a 74 s
thermal-throttling run of a big core) is replayed, the device's power and frequency steps come from a
shipped profile, and each level's latency on the device is this machine's measurement scaled by the
profile (`LatencyModel.from_host`). What is real: the three levels compiled into one artifact, their
latency and error measured here, the switches made by the governor thread while inferences run.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from gearshift.spec import Log

LEVELS = {"accurate": "bsr:0.5:16x1", "balanced": "bsr:0.8:16x1", "fast": "bsr:0.9:16x1"}
PROFILE = "sd855-gold"
TRACE = Path(__file__).resolve().parent.parent / "runtime" / "traces" / "throttle-74s.csv"


def run(quick: bool, out_dir: Path, workdir: Path, repeat: int = 20, log: Log = lambda _m: None) -> dict:
    """Compile the levels, time them beside ONNX Runtime, replay the trace through the governor with
    inferences running, and write the energy report (rt3/report.{json,md,png}); returns the facts."""
    import torch

    from gearshift.bench import ort_session
    from gearshift.frontend.load import export_torch
    from gearshift.levels_compiler import compile_levels, save_levels
    from gearshift.relay_passes.levels import parse_levels
    from gearshift.runtime import Session
    from gearshift.runtime.dvfs import LatencyModel, level_table, levels_of, load_profile
    from gearshift.runtime.energy import simulate, write_report
    from gearshift.runtime.governor import Governor, TraceSource, read_trace
    from gearshift.runtime.timing import summarize, time_engines
    from gearshift.suites.models import demo_model

    module, feeds = demo_model()
    with torch.no_grad():
        proto = export_torch(module, feeds, output_names=["y"])
    doc = {"form": "runtime", "levels": [{"name": n, "sparsity": s} for n, s in LEVELS.items()]}
    t = time.perf_counter()
    built = compile_levels(proto, parse_levels(doc), "host", calibration=feeds, repeat=repeat, log=log)
    compile_s = time.perf_counter() - t
    artifact = save_levels(built, workdir / "rt3-levels", name="bert-levels", overwrite=True)
    session = Session(artifact)
    ort = ort_session(proto.SerializeToString())

    def level(name):
        def call():
            session.switch(name)
            return session.run(feeds)
        return call

    times = time_engines({"onnxruntime (dense)": lambda: ort.run(None, feeds), **{n: level(n) for n in LEVELS}},
                         repeat=repeat)
    stats = {name: summarize(t) for name, t in times.items()}
    switches = []
    for i in range(200 if quick else 2000):
        t = time.perf_counter()
        session.switch(list(LEVELS)[i % len(LEVELS)])
        switches.append((time.perf_counter() - t) * 1e6)

    profile = load_profile(PROFILE)
    facts = levels_of(artifact.manifest, profile)
    deadline = round(1.05 * facts[0].latency.at(profile.max_mhz), 2)  # the accurate level just fits at the top frequency
    table = level_table(facts, profile, deadline)
    trace = read_trace(TRACE)
    dense = built.dense_reference
    report = simulate(trace, table, facts, LatencyModel.from_host(dense["latency_ms"], dense.get("weight_bytes", 0), profile))
    files = write_report(report, trace, out_dir / "rt3")

    speed = 37.0 if quick else 7.4  # the 74 s trace in 2 s (quick) or 10 s, inferences running throughout
    source = TraceSource(trace, speed=speed, loop=False)
    ran: dict[str, int] = {}
    with Governor(session, table, source, log=log) as governor:
        end = time.monotonic() + trace.duration / speed
        while time.monotonic() < end:
            session.run(feeds)
            ran[session.level] = ran.get(session.level, 0) + 1
    ort_ms = stats["onnxruntime (dense)"]["median_ms"]
    return {
        "simulated": f"DVFS replayed from {TRACE.name} at {speed:g}x real time (no cpufreq here); device power from "
                     f"the {PROFILE} profile" + (" (approximate)" if profile.approximate else ""),
        "compile_s": compile_s, "deadline_ms": deadline,
        "levels": {n: {"spec": LEVELS[n], "median_ms": stats[n]["median_ms"], "p90_ms": stats[n]["p90_ms"],
                       "ratio_vs_onnxruntime": ort_ms / stats[n]["median_ms"],
                       "error_vs_dense": built.info[n]["error"], "weight_bytes": built.info[n]["weight_bytes"]}
                   for n in LEVELS},
        "onnxruntime_ms": ort_ms,
        "switch_us": {"median": float(np.median(switches)), "p90": float(np.percentile(switches, 90))},
        "table": [{"mhz": r.mhz, "level": r.level, "predicted_ms": r.predicted_ms, "meets": r.meets} for r in table.rows],
        "governor": {"switches": len(governor.events), "inferences": ran,
                     "events": [(round(t - governor.events[0][0], 3), mhz, lv) for t, mhz, lv in governor.events]
                     if governor.events else []},
        "energy": {"battery_gain": report.battery_gain, "energy_mj": report.energy_mj,
                   "baseline_energy_mj": report.baseline_energy_mj, "missed_fraction": report.missed_fraction,
                   "level_share": report.level_share},
        "files": [str(f) for f in files],
    }
