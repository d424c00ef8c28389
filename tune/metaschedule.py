"""MetaSchedule, with its XGBoost cost model, for the dense kernels gearshift's rules schedule.

The dense matmuls (plain and batched) and convs are ordinary loop nests, which MetaSchedule can
search. Its records go to its own JSON database in `DIR/metaschedule/` (workloads and tuning records:
JSON, nothing pickled). Then the rule's schedule and MetaSchedule's best are measured again here, in
turns. gearshift's database gets a final record saying which one a build takes: MetaSchedule's only
if it stayed CONFIRM_MARGIN faster. So tuning never makes a dense kernel slower than the rule made it.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tvm

from gearshift.schedules.pipeline import dense_key, first_rule, fused_kernels_passes
from gearshift.schedules.targets import TargetInfo
from gearshift.tune.database import Database
from gearshift.tune.runner import time_ms
from gearshift.tune.search import CONFIRM_ROUNDS, replaces_default

MS_DIR = "metaschedule"
SEARCHED_RULES = ("Conv2d", "Matmul")  # the rules whose kernels MetaSchedule searches


def dense_kernels(models: list[tvm.IRModule], info: TargetInfo) -> list[tuple[str, tvm.tirx.PrimFunc, str, tvm.tirx.PrimFunc]]:
    """(name, unscheduled PrimFunc, rule, the rule's scheduled PrimFunc) of every kernel one of
    SEARCHED_RULES schedules, as the build's pipeline meets it in any of `models` (a model's levels);
    one entry per distinct kernel."""
    target = info.tvm_target()
    out, seen = [], set()
    for model in models:
        with target:
            fused = tvm.transform.Sequential(fused_kernels_passes(target))(model)
        for gv, func in fused.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", 0) == 1:
                continue
            key = dense_key(func)
            scheduled = first_rule(func, target) if key not in seen else None
            if scheduled is not None and scheduled[0] in SEARCHED_RULES:
                seen.add(key)
                out.append((gv.name_hint, func, *scheduled))
    return out


def _ms_database(db: Database):
    from tvm.s_tir import meta_schedule as ms

    work = db.path / MS_DIR
    work.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(work_dir=str(work))


def tune_dense(name: str, func: tvm.tirx.PrimFunc, rule: tvm.tirx.PrimFunc, info: TargetInfo, db: Database,
               target_key: str, trials: int, device: str) -> tuple[dict, bool]:
    """MetaSchedule on one kernel (unless the database already has a final record for it), then the
    confirmation against `rule`, the kernel as the rule schedules it. Returns the final record, and
    whether this call searched."""
    from tvm.s_tir import meta_schedule as ms

    key = dense_key(func)
    done = db.final(target_key, key)
    if done is not None:
        return done, False
    target = info.tvm_target()
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    msdb = _ms_database(db)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    ms.tune_tir(mod, target, str(db.path / MS_DIR), max_trials_global=trials, num_trials_per_iter=min(16, trials),
                cost_model=ms.cost_model.XGBModel(), database=msdb, num_tuning_cores=os.cpu_count() or 1)
    searched = msdb.query_ir_module(mod, target, "main")
    candidates = {"rule": rule, **({"metaschedule": searched["main"]} if searched is not None else {})}
    times = _time_in_turns(candidates, func, target)
    base = times.get("rule")
    best = "metaschedule" if replaces_default(base, times.get("metaschedule")) else "rule"
    record = {"target": target_key, "task": key, "kind": "dense", "label": f"{name} (dense)",
              "knobs": {"schedule": best}, "ms": times[best], "default": best == "rule", "final": True,
              "default_ms": base, "metaschedule_ms": times.get("metaschedule"), "trials": trials, "device": device}
    db.add(record)
    return record, True


def _time_in_turns(candidates: dict, func, target) -> dict[str, float]:
    """Median ms of each scheduled variant, CONFIRM_ROUNDS rounds in turns, on random arguments."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(d) for d in info.shape]).astype(str(info.dtype))
            for info in ArgInfo.from_prim_func(func)]
    libs = {name: tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target=target)
            for name, f in candidates.items()}
    device = tvm.cpu()
    tensors = [tvm.runtime.tensor(a, device) for a in args]
    samples: dict[str, list[float]] = {name: [] for name in libs}
    for _ in range(CONFIRM_ROUNDS):
        for name, lib in libs.items():
            samples[name].append(time_ms(lib.mod, device, tensors))
    return {name: float(np.median(t)) for name, t in samples.items()}


def searched_schedules(db: Database, target_key: str, info: TargetInfo) -> dict[str, tvm.tirx.PrimFunc]:
    """`dense_key` -> MetaSchedule's scheduled PrimFunc, for every kernel whose final record chose it."""
    chosen = {r["task"] for r in db.records if r["target"] == target_key and r.get("final") and r["kind"] == "dense"
              and r["knobs"].get("schedule") == "metaschedule"}
    if not chosen or not (db.path / MS_DIR / "database_workload.json").exists():
        return {}
    msdb = _ms_database(db)
    target = info.tvm_target()
    out = {}
    for record in msdb.get_all_tuning_records():
        mod = record.workload.mod
        key = dense_key(mod["main"])
        if key in chosen and key not in out:
            found = msdb.query_ir_module(mod, target, "main")
            if found is not None:
                out[key] = found["main"]
    return out

