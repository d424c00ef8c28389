"""The search over one kernel's knobs, guided by the cost model (AutoTVM's loop on gearshift's knobs).

    measure the rules' own choice (the default) -> until `trials`: score every unmeasured setting
    with the model, measure the best-scored (and a few at random), append to the database, retrain

The spaces are a few hundred settings, so the model scores all of them each round: the exact
argmax that simulated annealing approximates in AutoTVM's much larger spaces. The default is always
measured, and a build takes the fastest record, so tuning cannot pick something slower than the
rules did in its own measurements. Kernels of equal sizes but other structures (the same layer shape
in every encoder block) start from the best settings their first sibling found.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gearshift.schedules import knobs as knob_space
from gearshift.schedules.knobs import Task, canonical
from gearshift.tune.database import Database, search_trials
from gearshift.tune.model import CostModel

BATCH = 8  # candidates measured between two model fits
EXPLORE = 2  # of each batch, picked at random (the model is wrong where it has not seen data)
SIBLING_TRIALS = 8  # trials for a kernel whose sizes an earlier task already tuned
CONFIRM_ROUNDS = 3  # re-measurements of the winner and the default, in turns, before a build may use it
CONFIRM_MARGIN = 0.02  # the winner must be this much faster than the default in them


@dataclass
class TaskResult:
    label: str
    default_ms: float | None
    best_ms: float | None
    best_knobs: dict | None
    trials: int  # measured for this task in all (earlier runs included)
    new_trials: int  # measured in this run
    seconds: float = 0.0
    layer: str = ""  # the weight the kernel computes with (several layers can share sizes)

    @property
    def speedup(self) -> float | None:
        return self.default_ms / self.best_ms if self.default_ms and self.best_ms else None


class Progress:
    """One status line on a terminal (rewritten in place), a line per batch otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.tty = stream, stream.isatty()

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class Tuner:
    """Tunes tasks for one target into one database, with one cost model per kernel kind."""

    def __init__(self, db: Database, target: str, runner, seed: int = 0,
                 progress: Callable[[str], None] | None = None):
        self.db, self.target, self.runner = db, target, runner
        self.rng = random.Random(seed)
        self.models: dict[str, CostModel] = {}
        self.progress = progress or (lambda _text: None)

    def model(self, kind: str) -> CostModel:
        if kind not in self.models:
            self.fit(kind)
        return self.models[kind]

    def fit(self, kind: str) -> None:
        rows, speedups = training_rows(self.db.records, self.target, kind)
        self.models.setdefault(kind, CostModel()).fit(rows, speedups)

    def tune(self, task: Task, trials: int, seeds: Sequence[dict] = (), status: str = "") -> TaskResult:
        """Measure up to `trials` settings of `task` in all (records already in the database count)."""
        default = task.payload["default"]
        candidates = {canonical(k): k for k in knob_space.space(task)}
        candidates.setdefault(canonical(default), default)
        measured = self.db.measured(self.target, task.key)
        new = 0

        def run(batch: list[dict]) -> None:
            nonlocal new
            for result in self.runner.measure(task, batch):
                self.db.add({"target": self.target, "task": task.key, "kind": task.kind, "label": task.label,
                             "knobs": result.knobs, "ms": result.ms, "error": result.error,
                             "default": canonical(result.knobs) == canonical(default),
                             "features": knob_space.features(task, result.knobs), "device": self.runner.where})
                measured[canonical(result.knobs)] = result.ms
                new += 1
            self.fit(task.kind)
            self.progress(f"{status}{task.label}: {len(measured)}/{trials} trials, {_best_text(measured, default)}")

        if canonical(default) not in measured:
            self.runner.measure(task, [default])  # a warm-up, not recorded: a task's first timing reads slow
            run([default])
        first = [k for k in seeds if canonical(k) in candidates and canonical(k) not in measured]
        if first and len(measured) < trials:
            run(first[:trials - len(measured)])
        while len(measured) < trials:
            remaining = [k for c, k in candidates.items() if c not in measured]
            if not remaining:
                break
            run(self.pick(task, remaining, min(BATCH, trials - len(measured), len(remaining))))
        if new or self.db.final(self.target, task.key) is None:
            self.confirm(task, default, measured)
        return result_of(task, measured, default, new, self.db.final(self.target, task.key))

    def confirm(self, task: Task, default: dict, measured: dict[str, float | None]) -> None:
        """The search's fastest setting against the default, measured again in turns (CONFIRM_ROUNDS
        each): it replaces the default only if its median is at least CONFIRM_MARGIN faster. One
        search measurement can win by noise; a build must never get a slower kernel for it."""
        ok = {c: ms for c, ms in measured.items() if ms is not None}
        if not ok:
            return
        best = json.loads(min(ok, key=ok.get))
        pair = [default] if canonical(best) == canonical(default) else [default, best]
        times: dict[str, list[float]] = {canonical(k): [] for k in pair}
        for _ in range(CONFIRM_ROUNDS if len(pair) > 1 else 1):
            for result in self.runner.measure(task, pair):
                if result.ms is not None:
                    times[canonical(result.knobs)].append(result.ms)
        medians = {c: float(np.median(t)) for c, t in times.items() if t}
        if not medians:
            return
        base = medians.get(canonical(default))
        challenger = medians.get(canonical(best))
        winner = best if replaces_default(base, challenger) else default
        self.db.add({"target": self.target, "task": task.key, "kind": task.kind, "label": task.label,
                     "knobs": winner, "ms": medians[canonical(winner)], "error": None,
                     "default": canonical(winner) == canonical(default), "final": True,
                     "default_ms": base, "device": self.runner.where})

    def pick(self, task: Task, remaining: list[dict], count: int) -> list[dict]:
        model = self.model(task.kind)
        if not model.ready:
            return self.rng.sample(remaining, count)
        scores = model.predict([knob_space.features(task, k) for k in remaining])
        order = list(np.argsort(-scores, kind="stable"))
        greedy = max(1, count - EXPLORE) if count > EXPLORE else count
        picks = [remaining[i] for i in order[:greedy]]
        rest = [remaining[i] for i in order[greedy:]]
        return picks + self.rng.sample(rest, min(count - greedy, len(rest)))


def tune_tasks(tuner: Tuner, tasks: Sequence[Task], trials: int) -> list[TaskResult]:
    """Every task in turn; a task whose sizes an earlier one had gets SIBLING_TRIALS, starting from
    that one's fastest settings."""
    results, tuned_sizes = [], {}
    for i, task in enumerate(tasks, 1):
        shape = (task.kind, task.sizes)
        seeds = tuned_sizes.get(shape, [])
        budget = min(trials, SIBLING_TRIALS) if seeds else trials
        t = time.perf_counter()
        result = tuner.tune(task, budget, seeds, status=f"task {i}/{len(tasks)} ")
        result.seconds = round(time.perf_counter() - t, 1)
        results.append(result)
        if shape not in tuned_sizes:
            ranked = sorted((ms, c) for c, ms in tuner.db.measured(tuner.target, task.key).items() if ms is not None)
            tuned_sizes[shape] = [json.loads(c) for _, c in ranked[:SIBLING_TRIALS]]
    return results


def training_rows(records: list[dict], target: str, kind: str) -> tuple[list[list[float]], list[float]]:
    """Feature rows and speedups over their own task's default, of the successful search trials of
    `kind` on `target` among `records` (a database's, or any part of them)."""
    records = search_trials(records, target, kind)
    defaults: dict[str, float] = {}
    for r in records:
        if r["default"]:
            defaults[r["task"]] = min(r["ms"], defaults.get(r["task"], r["ms"]))
    rows = [r["features"] for r in records if r["task"] in defaults]
    speedups = [defaults[r["task"]] / r["ms"] for r in records if r["task"] in defaults]
    return rows, speedups


def replaces_default(default_ms: float | None, challenger_ms: float | None) -> bool:
    """Whether a challenger, measured again beside the default, replaces it: it ran, and it was
    CONFIRM_MARGIN faster (or the default failed)."""
    return challenger_ms is not None and (default_ms is None or challenger_ms < default_ms * (1 - CONFIRM_MARGIN))


def result_of(task: Task, measured: dict[str, float | None], default: dict, new: int,
              final: dict | None) -> TaskResult:
    """The task's outcome: what a build takes (the confirmed record) against the default, both as
    the confirmation measured them."""
    if final is None:
        return TaskResult(task.label, measured.get(canonical(default)), None, None, len(measured), new, layer=task.name)
    return TaskResult(task.label, final.get("default_ms") or final["ms"], final["ms"], final["knobs"],
                      len(measured), new, layer=task.name)


def _best_text(measured: dict[str, float | None], default: dict) -> str:
    ok = [ms for ms in measured.values() if ms is not None]
    base = measured.get(canonical(default))
    if not ok:
        return "no successful trial yet"
    text = f"best {min(ok):.3f} ms"
    return text + (f" (default {base:.3f} ms, {base / min(ok):.2f}x)" if base else "")
