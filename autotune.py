"""Tune a model's sparse kernels for a target: what `gearshift tune` runs.

    load -> import -> the passes with a collecting `Tuning` (which kernels, with their real
    structure) -> per kernel, the cost-model-guided search (`tune/search.py`) -> the database

A later `compile --db` (or `compile_levels(db=...)`) builds with the fastest records. Measuring
happens here for `host` (and the x86 targets this CPU runs), or on devices through TVM's RPC
tracker for anything else; the kernels are compiled here in both cases.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gearshift.driver import lift, prepare
from gearshift.errors import InputError
from gearshift.frontend.importer import to_relax
from gearshift.frontend.load import ModelLike, load
from gearshift.levels_compiler import final_plans, level_sources
from gearshift.relay_passes.levels import LevelSet, read_levels
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.schedules.knobs import Task, Tuning
from gearshift.schedules.targets import TargetInfo, get_target
from gearshift.spec import Log
from gearshift.tune.database import Database, target_key
from gearshift.tune.metaschedule import dense_kernels, tune_dense
from gearshift.tune.runner import LocalRunner, RemoteRunner
from gearshift.tune.search import Progress, TaskResult, Tuner, tune_tasks


@dataclass
class TuneReport:
    target: str
    database: str
    device: str
    tasks: list[TaskResult] = field(default_factory=list)
    seconds: float = 0.0
    new_trials: int = 0

    def as_dict(self) -> dict:
        return {"target": self.target, "database": self.database, "device": self.device,
                "seconds": self.seconds, "new_trials": self.new_trials,
                "tasks": [{"layer": t.layer, "kernel": t.label, "default_ms": t.default_ms, "tuned_ms": t.best_ms,
                           "speedup": round(t.speedup, 3) if t.speedup else None, "trials": t.trials,
                           "new_trials": t.new_trials, "seconds": t.seconds, "knobs": t.best_knobs}
                          for t in self.tasks]}


def sparse_tasks(model: ModelLike, info: TargetInfo, *, sparsity: SparsityPlan | str | None = None,
                 levels: LevelSet | str | os.PathLike | None = None, input_shapes=None) -> list[Task]:
    """The sparse kernels a build of `model` for `info` runs (every level's, for a levels file),
    each with its real structure arrays; kernels of equal sizes come next to each other."""
    return find_kernels(model, info, sparsity=sparsity, levels=levels, input_shapes=input_shapes)[0]


def find_kernels(model: ModelLike, info: TargetInfo, *, sparsity: SparsityPlan | str | None = None,
                 levels: LevelSet | str | os.PathLike | None = None, input_shapes=None
                 ) -> tuple[list[Task], list]:
    """`sparse_tasks`, and the modules after the graph passes (where the dense kernels are found)."""
    if info.is_gpu:
        raise InputError(f"{info.name} is a GPU target: gearshift's tunable sparse kernels are CPU kernels")
    if info.accelerator:
        raise InputError(f"{info.name}: the accelerator's layers have no tunable knobs (their tiling is fixed by "
                         "its buffers); tune for `host` instead")
    imported = to_relax(load(model, input_shapes=input_shapes))
    lifted, tuning = lift(imported), Tuning()
    if levels is not None:  # each level on its own weights, where the levels file gives them
        levels = levels if isinstance(levels, LevelSet) else read_levels(levels)
        sources = level_sources(levels, imported, lifted, input_shapes)
        plans = final_plans(levels, info, sources)
        inputs = [sources[level.name] for level in levels.levels]
        tuning.per_layer = levels.form == "runtime"
    else:
        plans = [SparsityPlan.parse(sparsity) if isinstance(sparsity, str) or sparsity is None else sparsity]
        inputs = [(imported, lifted)]
    models = [prepare(own, info, replace(plan, check=False), lifted=own_lifted, tuning=tuning).model
              for (own, own_lifted), plan in zip(inputs, plans)]
    if tuning.per_layer:  # one kernel per layer serves every level: tune the one the build keeps
        first: dict = {}
        for task in tuning.tasks:
            first.setdefault((task.name, task.kind, task.sizes), task)
        tasks = list(first.values())
    else:
        tasks = tuning.tasks
    return sorted(tasks, key=lambda t: (t.kind, str(t.sizes))), models


def autotune(model: ModelLike, target: str = "host", *, db: str | os.PathLike, trials: int = 64,
             sparsity: SparsityPlan | str | None = None, levels: LevelSet | str | os.PathLike | None = None,
             rpc: str | None = None, key: str | None = None, input_shapes=None, seed: int = 0,
             metaschedule: bool = False, log: Log = lambda _m: None, progress: Progress | None = None) -> TuneReport:
    """Tune every sparse kernel of `model` for `target` into the database folder `db` (created if
    needed; records already there count, so a rerun resumes). Measures here, or with `rpc`
    ("host:port" of a tracker) and `key` on every free device registered under that key.
    `metaschedule`: also search the dense matmuls and convs with MetaSchedule (here only; minutes a kernel)."""
    if trials < 1:
        raise InputError(f"--trials must be at least 1, got {trials}")
    if metaschedule and rpc:
        raise InputError("--metaschedule measures on this machine only; drop --rpc for it")
    info = get_target(target)
    database = Database(db)
    runner = RemoteRunner(info, rpc, key) if rpc else LocalRunner(info)  # a target that cannot be measured fails here
    t = time.perf_counter()
    tasks, models = find_kernels(model, info, sparsity=sparsity, levels=levels, input_shapes=input_shapes)
    dense = dense_kernels(models, info) if metaschedule else []
    log(f"tune: {len(tasks)} sparse kernels" + (f" and {len(dense)} dense kernels" if metaschedule else "")
        + f" to tune for {info.name} ({time.perf_counter() - t:.1f} s to find them)")
    if not tasks and not dense:
        log("tune: nothing to tune (no layer became a sparse kernel: give --sparsity or --levels)")
    report = TuneReport(info.name, str(database.path), runner.where)
    progress = progress or Progress()
    tuner = Tuner(database, target_key(info), runner, seed, progress.show)
    before, searched = len(database.records), 0
    try:
        report.tasks = tune_tasks(tuner, tasks, trials)
        for i, (name, func, rule, scheduled) in enumerate(dense, 1):
            progress.show(f"dense {i}/{len(dense)} {name} ({rule} rule): MetaSchedule, {trials} trials")
            t0 = time.perf_counter()
            record, fresh = tune_dense(name, func, scheduled, info, database, target_key(info), trials, runner.where)
            searched += trials if fresh else 0
            report.tasks.append(TaskResult(record["label"], record["default_ms"], record["ms"], record["knobs"],
                                           record.get("trials", trials), trials if fresh else 0,
                                           round(time.perf_counter() - t0, 1)))
    finally:
        progress.done()
        runner.close()
        # gearshift's trials are records here; MetaSchedule's are in its own database
        report.new_trials = sum(not r.get("final") for r in database.records[before:]) + searched
        report.seconds = round(time.perf_counter() - t, 1)
    return report


def summary_rows(report: TuneReport) -> list[Sequence[str]]:
    """The summary table: one row per kernel."""
    rows = [("layer", "kernel", "default ms", "tuned ms", "speedup", "trials")]
    for task in report.tasks:
        rows.append((task.layer or "-", task.label, _ms(task.default_ms), _ms(task.best_ms),
                     f"{task.speedup:.2f}x" if task.speedup else "-", str(task.trials)))
    return rows


def _ms(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "failed"
