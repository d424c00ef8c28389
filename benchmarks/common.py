"""What every benchmark script shares: peers set up alike, outputs checked, results written.

Protocol (../shared/notes/benchmark-protocol.md): one process, same thread count, outputs checked to
agree before timing; the headline figure times engines in alternating blocks (`time_blocks`: 3
warm-up calls per block, >= 20 timed calls per engine, medians and p90, ratios against ONNX
Runtime); call-by-call interleaving is kept beside it as the labelled secondary mode. ONNX Runtime
runs with default graph optimisations; its thread pool's spin-wait is turned off, because on a
2-core machine a spinning pool steals the cores the next engine needs (it measured no slower
without it here). For the same reason torch's
OpenMP pool waits passively and TVM's pool does not spin (gearshift_quiet.py sets them before
either library loads; import this module first).
"""

from __future__ import annotations

from gearshift_quiet import QUIET  # noqa: F401  (first: the pools' environment, before any library loads)

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from gearshift.bench import (  # noqa: E402
    machine,
    ort_session,
    pools_are_quiet,
    summarize,
    thread_count,
    time_blocks,
    time_interleaved,
)

assert pools_are_quiet(), "import benchmarks/common.py before anything that imports tvm or torch"
RESULTS = Path(__file__).resolve().parent / "results"
__all__ = ["aligned", "compare", "in_rounds", "log", "machine_note", "merge_rounds", "ort_session", "pair_and_alone",
           "round_ratios", "table", "time_blocks",
           "threads_note", "write_results"]


def aligned(a: np.ndarray) -> np.ndarray:
    """`a` copied to a 64-byte aligned array: every engine gets this same array; gearshift reads such
    inputs in place (with numpy's 16-byte alignment it copies them first, 0.03-0.08 ms per call)."""
    from gearshift import aligned_empty

    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def compare(name: str, engines: dict, outputs: dict, reference: str = "onnxruntime", repeat: int = 20,
            flops: int | None = None, interleaved: bool = True) -> dict:
    """Check every engine's output against `reference`, then time them in alternating blocks (the
    headline) and, if `interleaved`, call by call (secondary: `interleaved_median_ms`, `interleaved_ratio`)."""
    ref = outputs[reference]
    errors = {k: float(np.abs(np.asarray(v, dtype=np.float32) - ref).max()) for k, v in outputs.items()}
    stats = {k: summarize(v) for k, v in time_blocks(engines, repeat=repeat).items()}
    second = {k: summarize(v)["median_ms"] for k, v in time_interleaved(engines, repeat=repeat).items()} if interleaved else {}
    base = stats[reference]["median_ms"]
    row = {"case": name, "timing": "blocks", "engines": {}}
    for k, s in stats.items():
        row["engines"][k] = {**s, "ratio_vs_" + reference: s["median_ms"] / base, "max_abs_error": errors[k]}
        if second:
            row["engines"][k].update(interleaved_median_ms=second[k], interleaved_ratio=second[k] / second[reference])
        if flops:
            row["engines"][k]["gflops"] = flops / s["median_ms"] / 1e6
    if flops:
        row["flops"] = flops
    return row


def merge_rounds(rows: list[dict], reference: str = "onnxruntime") -> dict:
    """`compare` rows of one case from several rounds -> one row: each engine's median_ms is the median
    of its round medians (kept as `round_medians_ms`), its ratio recomputed from those."""
    row = {**rows[0], "engines": {name: dict(stats) for name, stats in rows[0]["engines"].items()}, "round_count": len(rows)}
    for name, stats in row["engines"].items():
        medians = [r["engines"][name]["median_ms"] for r in rows]
        stats.update(median_ms=float(np.median(medians)), round_medians_ms=medians,
                     p90_ms=float(np.median([r["engines"][name]["p90_ms"] for r in rows])),
                     runs=sum(r["engines"][name]["runs"] for r in rows))
        if "gflops" in stats:
            stats["gflops"] = row["flops"] / stats["median_ms"] / 1e6
    for stats in row["engines"].values():
        stats["ratio_vs_" + reference] = stats["median_ms"] / row["engines"][reference]["median_ms"]
    return row


def in_rounds(cases: list, time_round, rounds: int) -> list[list]:
    """`time_round(case)` for every case, once per round, `rounds` times: a drift of the machine then
    reaches every case alike (ratios here move 10-25 % between runs). Per case, its rounds' results."""
    results: list[list] = [[] for _ in cases]
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}")
        for case, timings in zip(cases, results):
            timings.append(time_round(case))
    return results


def pair_and_alone(engines: dict, pair: tuple[str, str], repeat: int) -> dict:
    """The two timings reported beside the all-engines one, medians in ms: the `pair` (gearshift and
    ONNX Runtime) interleaved on their own ("pairwise", as a deployed model runs: no third engine's
    data evicted between their calls), and each of them called back to back ("alone", a diagnostic:
    its gap to the others is what cold caches and a pool woken from sleep cost)."""
    pairwise = {name: summarize(t)["median_ms"]
                for name, t in time_interleaved({name: engines[name] for name in pair}, repeat=repeat).items()}
    alone = {name: summarize(time_interleaved({name: engines[name]}, repeat=repeat)[name])["median_ms"] for name in pair}
    return {"pairwise": pairwise, "alone": alone}


def round_ratios(row: dict, slower: str, faster: str) -> list[float]:
    """Per round, the time of `slower` over that of `faster` (a merged row's spread)."""
    return [a / b for a, b in zip(row["engines"][slower]["round_medians_ms"], row["engines"][faster]["round_medians_ms"])]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def write_results(stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **payload}
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2) + "\n")
    md_path.write_text(markdown + "\n")
    return json_path, md_path


def table(rows: list[tuple]) -> str:
    from gearshift.cli.common import format_table

    return format_table([tuple(str(c) for c in r) for r in rows])


def machine_note() -> str:
    m = machine()
    return f"{m['cpu']} ({m['isa']}), {m['cores']} cores"


def threads_note() -> str:
    return f"{thread_count()} threads for every engine (TVM_NUM_THREADS={os.environ.get('TVM_NUM_THREADS')})"
