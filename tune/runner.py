"""Build a kernel for the target here, time it where it will run: this machine, or devices behind
TVM's RPC tracker.

The builder compiles each candidate for the task's target (cross-linking for a phone); a runner
times it on real arguments (`knobs.build`: the task's own structure arrays) with TVM's
time_evaluator, on the device itself, so no network is in the figure. `RemoteRunner` holds every
free device the tracker has under one key and measures a batch across them in parallel (a tuning
farm: several phones of one model under one key).
"""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tvm

from gearshift.errors import InputError
from gearshift.runtime.cpu import cpu_model, missing_features
from gearshift.schedules import knobs as knob_space
from gearshift.schedules.knobs import Task
from gearshift.schedules.targets import TargetInfo

MIN_REPEAT_MS = 40  # each repeat runs the kernel for at least this long (several calls for small kernels)
REPEAT = 5


@dataclass
class Measured:
    knobs: dict
    ms: float | None  # median of REPEAT repeats; None when the candidate failed
    error: str | None = None


def compile_kernel(task: Task, knobs: dict, info: TargetInfo):
    """The candidate compiled for the target, and its arguments (numpy)."""
    func, args = knob_space.build(task, knobs)
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(mod, target=info.tvm_target()), args


def time_ms(module, device, tensors: list) -> float:
    """Median ms of `main` over REPEAT repeats, each running it for at least MIN_REPEAT_MS."""
    timer = module.time_evaluator("main", device, number=1, repeat=REPEAT, min_repeat_ms=MIN_REPEAT_MS)
    return float(np.median(timer(*tensors).results)) * 1e3


def _failure(err: Exception) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:300]


class LocalRunner:
    """Times candidates on this machine (the target must be one this CPU runs: `host` or its ISA)."""

    def __init__(self, info: TargetInfo):
        missing = [] if info.is_gpu or info.cross_compiler else missing_features(info.config)
        if info.is_gpu or info.cross_compiler is not None or missing:
            why = f" (this CPU lacks {', '.join(missing)})" if missing else ""
            raise InputError(f"target {info.name} does not run on this machine{why}: tune it on a device with "
                             "--rpc HOST:PORT --key KEY")
        self.info = info
        self.where = f"this machine ({cpu_model()})"

    def measure(self, task: Task, batch: list[dict]) -> list[Measured]:
        return [self._one(task, k) for k in batch]

    def _one(self, task: Task, knobs: dict) -> Measured:
        try:
            lib, args = compile_kernel(task, knobs, self.info)
            device = tvm.cpu()
            return Measured(knobs, time_ms(lib.mod, device, [tvm.runtime.tensor(a, device) for a in args]))
        except Exception as err:  # a candidate that does not build or run is a failed trial, not a crash
            return Measured(knobs, None, _failure(err))

    def close(self) -> None:
        pass


class RemoteRunner:
    """Times candidates on every free device the tracker at `rpc` has under `key`, in parallel."""

    def __init__(self, info: TargetInfo, rpc: str, key: str, devices: int | None = None):
        from gearshift.runtime.measure import connect, device_note, free_devices

        self.info = info
        count = free_devices(rpc, key) if devices is None else devices
        self.sessions = [connect(rpc, key) for _ in range(max(1, count))]
        self.where = f"{len(self.sessions)} device(s) with key {key} via tracker {rpc}{device_note(self.sessions[0])}"
        self._scratch = tempfile.TemporaryDirectory(prefix="gearshift-tune-")
        self._lock = threading.Lock()
        self._count = 0

    def measure(self, task: Task, batch: list[dict]) -> list[Measured]:
        """The batch dealt round-robin to the devices; each device times its share one kernel at a
        time (two kernels at once on one phone would time each other)."""
        built = [self._build(task, k) for k in batch]
        shares = [list(range(i, len(built), len(self.sessions))) for i in range(len(self.sessions))]
        results: list[Measured | None] = [None] * len(built)

        def run_share(session, indices: list[int]) -> None:
            for i in indices:
                results[i] = self._run(session, built[i])

        with ThreadPoolExecutor(len(self.sessions)) as pool:
            for future in [pool.submit(run_share, s, share) for s, share in zip(self.sessions, shares)]:
                future.result()
        return results

    def _build(self, task: Task, knobs: dict):
        try:
            lib, args = compile_kernel(task, knobs, self.info)
            with self._lock:
                self._count += 1
                path = Path(self._scratch.name) / f"k{self._count}.so"
            if self.info.cross_compiler:
                from tvm.support import cc

                lib.export_library(str(path), fcompile=cc.cross_compiler(self.info.cross_compiler))
            else:
                lib.export_library(str(path))
            return knobs, path, args, None
        except Exception as err:
            return knobs, None, None, _failure(err)

    def _run(self, remote, built) -> Measured:
        knobs, path, args, error = built
        if error:
            return Measured(knobs, None, error)
        try:
            remote.upload(str(path), path.name)
            lib = remote.load_module(path.name)
            device = remote.cpu()
            return Measured(knobs, time_ms(lib, device, [tvm.runtime.tensor(a, device) for a in args]))
        except Exception as err:
            return Measured(knobs, None, _failure(err))

    def close(self) -> None:
        self.sessions.clear()
        self._scratch.cleanup()
