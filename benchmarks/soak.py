"""Soak: the runtime under sustained concurrent load, in both RT3 forms.

    python benchmarks/soak.py [--seconds S] [--threads 8]   -> results/soak.{json,md}

Per form (runtime: one library, levels as weights; baked: a library per level): 8 threads run
inference on one Session while another thread switches levels as fast as it can (with a 50 us
pause); every output must equal exactly one level's reference output (no torn weights). Then a loop
opens and drops Sessions of the artifact. Reported: inferences, switches, torn outputs, errors,
resident memory (RSS) growth after warm-up, open file descriptors and threads before and after.
Counts of work, not speed, are what this measures (on this 2-core machine 8 threads interleave).
"""

from __future__ import annotations

from common import log, machine_note, table, write_results  # noqa: I001

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_rt3_levels import SPARSITIES, X, levels_doc, mlp_model  # noqa: E402

import gearshift  # noqa: E402
from gearshift.levels_compiler import compile_levels, save_levels  # noqa: E402
from gearshift.relay_passes.levels import parse_levels  # noqa: E402


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def os_threads() -> int:
    """Every thread of the process, TVM's native pool included (threading.active_count sees Python's only)."""
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def soak(artifact: Path, seconds: float, threads: int, loads: int) -> dict:
    session = gearshift.Session(artifact)
    expected = {}
    for name in SPARSITIES:
        session.switch(name)
        expected[name] = session.run({"x": X})["y"].copy()
    stop, errors, counts, torn = threading.Event(), [], [0] * threads, [0]

    def infer(i: int) -> None:
        try:
            while not stop.is_set():
                y = session.run({"x": X})["y"]
                if sum(np.array_equal(y, e) for e in expected.values()) != 1:
                    torn[0] += 1
                counts[i] += 1
        except BaseException as err:  # noqa: BLE001  (reported, not raised: the soak's outcome)
            errors.append(repr(err))

    fds0, threads0, native0 = open_fds(), threading.active_count(), os_threads()
    workers = [threading.Thread(target=infer, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    while min(counts) < 20 and not errors:
        time.sleep(0.01)
    rss0 = rss_mb()
    names, switches, t0 = list(SPARSITIES), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds and not errors:
        session.switch(names[switches % len(names)])
        switches += 1
        time.sleep(0.00005)
    stop.set()
    for t in workers:
        t.join()
    rss1 = rss_mb()
    session = None  # dropped (the workers, which read it, have stopped)
    gc.collect()
    rss_l0 = rss_mb()
    for _ in range(loads):  # open and drop sessions: libraries are cached by content, weights freed
        s = gearshift.Session(artifact)
        s.run({"x": X})
        del s
    gc.collect()
    return {"inferences": sum(counts), "switches": switches, "torn_outputs": torn[0], "errors": errors[:3],
            "seconds": round(time.perf_counter() - t0, 1), "rss_growth_mb": round(rss1 - rss0, 1),
            "session_loads": loads, "rss_growth_over_loads_mb": round(rss_mb() - rss_l0, 1),
            "fds_before": fds0, "fds_after": open_fds(), "threads_before": threads0,
            "threads_after": threading.active_count(), "os_threads_before": native0, "os_threads_after": os_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="switching time per form (default 60)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--loads", type=int, default=200, help="sessions opened and dropped per form")
    args = ap.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for form in ("runtime", "baked"):
            built = compile_levels(mlp_model(), parse_levels(levels_doc(form)), "host", calibration={"x": X}, repeat=3)
            art = save_levels(built, Path(tmp) / form, name="mlp").path
            log(f"{form}: {args.threads} threads inferring, one switching, {args.seconds:.0f} s")
            rows[form] = soak(art, args.seconds, args.threads, args.loads)
            log(f"  {rows[form]}")
    payload = {"threads": args.threads, "seconds_per_form": args.seconds, "forms": rows}
    md = [f"# Soak ({machine_note()})", "",
          table([("form", "inferences", "switches", "torn outputs", "errors", "RSS growth MB", "RSS over loads MB",
                  "fds before/after", "threads before/after (OS threads)")]
                + [(f, r["inferences"], r["switches"], r["torn_outputs"], len(r["errors"]), r["rss_growth_mb"],
                    r["rss_growth_over_loads_mb"], f"{r['fds_before']}/{r['fds_after']}",
                    f"{r['threads_before']}/{r['threads_after']} ({r['os_threads_before']}/{r['os_threads_after']})")
                   for f, r in rows.items()])]
    write_results("soak", payload, "\n".join(md))


if __name__ == "__main__":
    main()
