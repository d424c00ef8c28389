"""Timing the way the benchmark protocol asks: peers interleaved in one run, warm-up, then medians.

Shared by `gearshift demo` and the scripts in `benchmarks/`. Interleaving (one call of each engine
per round) spreads the drift of a shared machine over every engine alike, so ratios stay honest.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping

import numpy as np


def time_interleaved(engines: Mapping[str, Callable[[], object]], *, warmup: int = 3,
                     repeat: int = 20) -> dict[str, list[float]]:
    """Milliseconds of `repeat` calls of each engine, after `warmup` calls of each, round-robin."""
    for _ in range(warmup):
        for fn in engines.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeat):
        for name, fn in engines.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) * 1e3)
    return times


def summarize(times: list[float]) -> dict[str, float]:
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "runs": len(times)}


def thread_count() -> int:
    """The one thread count every engine is given (TVM reads TVM_NUM_THREADS, default: all cores)."""
    return int(os.environ.get("TVM_NUM_THREADS", os.cpu_count() or 1))


def machine() -> dict:
    import onnxruntime
    import torch
    import tvm

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "threads": thread_count(), "python": platform.python_version(),
            "tvm": tvm.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
