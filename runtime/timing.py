"""Timing helpers shared by the runtime (`Session.time`, the RT3 level measurements) and the
benchmarks: wall-clock milliseconds per call, engines interleaved call by call or in alternating
blocks (the benchmark protocol's headline mode), and their summary.
"""

from __future__ import annotations

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


def time_blocks(engines: Mapping[str, Callable[[], object]], *, warmup: int = 3, repeat: int = 20,
                rounds: int = 4) -> dict[str, list[float]]:
    """Milliseconds of at least `repeat` calls of each engine: `rounds` rounds, in each of which every
    engine in turn makes `warmup` untimed calls then a block of ceil(repeat / rounds) timed ones."""
    block = max(1, -(-repeat // max(1, rounds)))
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(max(1, rounds)):
        for name, fn in engines.items():
            for _ in range(warmup):
                fn()
            for _ in range(block):
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) * 1e3)
    return times


MODES = {
    "blocks": "engines timed back to back in blocks, the blocks alternating over rounds (the headline)",
    "interleaved": "one call of each engine in turn (secondary: cold caches and pools after a peer)",
    "alone": "each engine timed on its own, one after the other (diagnostic)",
}


def time_engines(engines: Mapping[str, Callable[[], object]], *, mode: str = "blocks", warmup: int = 3,
                 repeat: int = 20) -> dict[str, list[float]]:
    """Milliseconds per call of every engine, timed as the benchmark protocol decides: `blocks` is the
    headline mode; `interleaved` and `alone` are the labelled others (see MODES). The one helper
    `gearshift bench`, `gearshift run --repeat` and `Session.time` go through."""
    if mode == "blocks":
        return time_blocks(engines, warmup=warmup, repeat=repeat)
    if mode == "interleaved":
        return time_interleaved(engines, warmup=warmup, repeat=repeat)
    if mode == "alone":
        return {name: time_interleaved({name: fn}, warmup=warmup, repeat=repeat)[name] for name, fn in engines.items()}
    raise ValueError(f"unknown timing mode {mode!r}: one of {', '.join(MODES)}")


def summarize(times: list[float]) -> dict[str, float]:
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)), "runs": len(times)}


def vm_main_ms(vm, device, args: list, *, number: int, repeat: int) -> float:
    """Median ms of a Relax VM's `main` on `args` (tensors on `device`), timed by TVM's
    time_evaluator where the VM runs (on a device, no network in the figure)."""
    vm.set_input("main", *args)
    timer = vm.time_evaluator("invoke_stateful", device, number=number, repeat=repeat, min_repeat_ms=0)
    return float(np.median(timer("main").results)) * 1e3
