"""Compile once, many levels (RT3): one artifact holding every compression level of a model.

`runtime` form: a planning pass finds how many blocks each sparse layer keeps in each level, the
final pass pads every level's arrays to the most any level keeps, and the levels' graphs must then
be identical (checked): one executable, one weight file per level. `baked` form: each level is
compiled on its own with its structure as constants. On the host, each level's latency and its
accuracy proxy (relative L2 error of the outputs against ONNX Runtime running the original dense
model on calibration inputs) are measured and written into the manifest, with the dense model's
latency as the reference the energy report compares with.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from gearshift.driver import Built, Lifted, Prepared, generate, lift, prepare
from gearshift.errors import InputError
from gearshift.frontend.importer import Imported, to_relax
from gearshift.frontend.load import ModelLike, load
from gearshift.relay_passes.levels import LevelSet, capacities, read_levels
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.runtime.artifact import Artifact, write_artifact
from gearshift.runtime.calibration import calibration_inputs
from gearshift.runtime.signing import signer
from gearshift.schedules.targets import TargetInfo, get_target
from gearshift.spec import Log, relative_l2
from gearshift.tune.lookup import tuning_from


@dataclass
class LevelsBuilt:
    """Every level compiled: `builts[name]` (one shared Built in the runtime form) and facts per level."""

    levels: LevelSet
    builts: dict[str, Built]
    info: dict[str, dict] = field(default_factory=dict)
    dense_reference: dict = field(default_factory=dict)

    @property
    def first(self) -> Built:
        return self.builts[self.levels.names[0]]


def compile_levels(model: ModelLike, levels: LevelSet | str | os.PathLike, target: str = "host", *,
                   input_shapes: Mapping[str, Sequence[int]] | None = None, exporter: str = "legacy",
                   calibration: Mapping[str, np.ndarray] | None = None, repeat: int = 10,
                   db: str | os.PathLike | None = None, log: Log = lambda _msg: None) -> LevelsBuilt:
    """Compile `model` at every level of `levels` (a LevelSet or a levels file) for `target`; the
    sparse kernels take their knobs from the tuning database `db` where it has them."""
    levels = levels if isinstance(levels, LevelSet) else read_levels(levels)
    info = get_target(target)
    if info.accelerator:
        raise InputError(f"RT3 levels are not built for {info.name} yet (each level would need its own streams): "
                         "compile one artifact per level, or use a CPU or GPU target")
    tuning = tuning_from(db, info)
    proto = load(model, input_shapes=input_shapes, exporter=exporter)
    imported = to_relax(proto)
    lifted = lift(imported)  # the same for every level (and the dense reference)
    sources = level_sources(levels, imported, lifted, input_shapes, exporter)
    runtime = levels.form == "runtime"
    if runtime and tuning is not None:
        tuning.per_layer = True  # one kernel per layer serves every level
    prepared = {}
    for level, plan in zip(levels.levels, final_plans(levels, info, sources, log)):
        log(f"level {level.name}: {level.spec}" + ("" if runtime else " (own code)"))
        own, own_lifted = sources[level.name]
        prepared[level.name] = prepare(own, info, plan, log, own_lifted, tuning)
    if runtime:
        _check_same_code(prepared)
        shared = generate(next(iter(prepared.values())), imported, info, log, tuning)
        builts = {name: _with_weights(shared, p) for name, p in prepared.items()}
    else:
        builts = {name: generate(p, imported, info, log, tuning) for name, p in prepared.items()}
    result = LevelsBuilt(levels, builts)
    for level in levels.levels:
        result.info[level.name] = _facts(level.spec, prepared[level.name])
        if level.model:
            result.info[level.name]["weights_from"] = Path(level.model).name
        if level.report:
            result.info[level.name]["training"] = level.report
    if info.name == "host":
        _measure(result, proto, imported, info, calibration, repeat, log, lifted)
    else:
        _accuracy_here(result, prepared, proto, imported, calibration, info, log)
    result.dense_reference["calibration"] = "given" if calibration is not None else "random (seed 0)"
    return result


def level_sources(levels: LevelSet, imported: Imported, lifted: Lifted, input_shapes=None, exporter: str = "legacy"
                  ) -> dict[str, tuple[Imported, Lifted]]:
    """What each level is built from: the model, or the level's own weights (`"model"` in the levels
    file: the same graph, e.g. trained for that level), checked to take and give the same tensors."""
    out = {}
    for level in levels.levels:
        if not level.model:
            out[level.name] = (imported, lifted)
            continue
        own = to_relax(load(level.model, input_shapes=input_shapes, exporter=exporter))
        for what, mine, theirs in (("inputs", own.inputs, imported.inputs), ("outputs", own.outputs, imported.outputs)):
            if [(s.name, s.shape) for s in mine] != [(s.name, s.shape) for s in theirs]:
                raise InputError(f"level {level.name!r}: {level.model} has other {what} than the model "
                                 f"({[s.name for s in mine]} against {[s.name for s in theirs]}): a level's model must "
                                 f"be the same graph with other weights")
        out[level.name] = (own, lift(own))
    return out


def final_plans(levels: LevelSet, info: TargetInfo, sources: Mapping[str, tuple[Imported, Lifted]],
                log: Log = lambda _msg: None) -> list[SparsityPlan]:
    """Each level's plan as the build runs it: in the runtime form, every sparse layer's arrays padded
    to the most blocks any level keeps (found by a planning pass without numerical checks, each level
    on its own weights: `level_sources`)."""
    if levels.form != "runtime":
        return [level.plan for level in levels.levels]
    t = time.perf_counter()
    planned = [prepare(sources[level.name][0], info, replace(level.plan, check=False), lambda _m: None,
                       sources[level.name][1]) for level in levels.levels]
    capacity = capacities([p.layers for p in planned])
    log(f"levels: planned {len(levels.levels)} levels ({time.perf_counter() - t:.1f} s); "
        f"{len(capacity)} layers sparse, arrays padded to each layer's largest level")
    return [replace(level.plan, capacity=capacity) for level in levels.levels]


def save_levels(result: LevelsBuilt, out_dir: str | os.PathLike, *, name: str = "model",
                overwrite: bool = False, sign_with: str | os.PathLike | None = None) -> Artifact:
    """Write the artifact: lib.so (the first level's code), per level its weights (and its own
    library in the baked form), and the RT3 facts in the manifest; signed with the private key file
    `sign_with` if given (`runtime/signing.py`)."""
    from gearshift.compiler import manifest_of

    first = result.first
    manifest = manifest_of(first, name)
    manifest["rt3"] = {"form": result.levels.form, "order": result.levels.names,
                       "dense_reference": result.dense_reference}
    libraries = None
    if result.levels.form == "baked":  # the first level runs lib.so; the others their own library
        libraries = {n: b.export_library for n, b in result.builts.items() if n != result.levels.names[0]}
    return write_artifact(out_dir, write_library=first.export_library,
                          levels={n: b.weights for n, b in result.builts.items()}, manifest=manifest,
                          overwrite=overwrite, level_info=result.info, level_libraries=libraries,
                          sign=signer(sign_with) if sign_with else None)


def _with_weights(shared: Built, prepared: Prepared) -> Built:
    return Built(shared.executable, dict(zip(prepared.names, prepared.weights)), shared.inputs, shared.outputs,
                 shared.target, shared.report)


def _check_same_code(prepared: Mapping[str, Prepared]) -> None:
    """The runtime form runs every level on one executable: their graphs and weight shapes must match."""
    import tvm_ffi

    (first_name, first), *rest = prepared.items()
    for name, p in rest:
        for (n0, w0), (n1, w1) in zip(zip(first.names, first.weights), zip(p.names, p.weights)):
            if n0 != n1 or w0.shape != w1.shape:
                raise InputError(f"levels {first_name!r} and {name!r} need different code: weight {n0!r} "
                                 f"{list(w0.shape)} vs {n1!r} {list(w1.shape)} (a block shape or a layer's kind "
                                 f"differs); give every level the same block shape per layer, or use form 'baked'")
        if len(first.names) != len(p.names) or not tvm_ffi.structural_equal(first.model, p.model):
            raise InputError(f"levels {first_name!r} and {name!r} need different code (e.g. other pattern "
                             f"libraries or block shapes); use form 'baked' for such levels")


def _facts(spec: str, prepared: Prepared) -> dict:
    layers = prepared.layers
    total = sum(layer.dense_bytes for layer in layers)
    kept = sum(layer.density * layer.dense_bytes for layer in layers)
    stored = int(sum(w.nbytes for w in prepared.weights))
    padding = sum(layer.packed_bytes - layer.density * layer.dense_bytes for layer in layers if layer.decision != "dense")
    return {"spec": spec, "density": round(kept / total, 4) if total else 1.0,
            "sparse_layers": sum(layer.decision != "dense" for layer in layers),
            "weight_bytes": stored,  # held in memory (runtime form: padded to the largest level)
            "read_bytes": int(stored - max(0.0, padding))}  # what one inference reads (the latency model's memory part)


def _measure(result: LevelsBuilt, proto, imported: Imported, info: TargetInfo,
             calibration: Mapping[str, np.ndarray] | None, repeat: int, log: Log, lifted: Lifted) -> None:
    """Host latency (median of `repeat`) and accuracy proxy of every level, and the dense model's latency."""
    from gearshift.runtime.timing import time_engines

    args_np, ref = _reference(proto, imported, calibration)
    dense = generate(prepare(imported, info, None, lifted=lifted), imported, info)
    engines, errors = {}, {}
    for name, built in [("(dense)", dense), *result.builts.items()]:
        engines[name], errors[name] = _runnable(built, args_np, ref)
    times = time_engines(engines, mode="interleaved", warmup=2, repeat=repeat)
    for name in engines:
        error = errors[name]
        facts = {"latency_ms": round(float(np.median(times[name])), 4), "error": round(error, 6),
                 "measured_on": f"{platform.node()} ({info.description})"}
        if name == "(dense)":
            result.dense_reference = {**facts, "weight_bytes": int(sum(w.nbytes for w in dense.weights.values()))}
        else:
            result.info[name].update(facts)
        log(f"level {name}: {facts['latency_ms']:.3f} ms on this machine, error {error:.2e} vs ONNX Runtime dense")


def _reference(proto, imported: Imported, calibration: Mapping[str, np.ndarray] | None) -> tuple[list, np.ndarray]:
    """The calibration inputs, and ONNX Runtime's outputs of the dense model on them (flattened)."""
    from gearshift.bench import ort_session

    inputs = dict(calibration) if calibration is not None else calibration_inputs(imported.inputs)
    args_np = [s.check(inputs[s.name]) for s in imported.inputs]
    reference = ort_session(proto.SerializeToString()).run(None, {s.name: a for s, a in zip(imported.inputs, args_np)})
    return args_np, np.concatenate([np.ravel(r).astype(np.float64) for r in reference])


def _runnable(built: Built, args_np: list, ref: np.ndarray):
    """A host build as a callable on the calibration inputs, and its outputs' relative L2 error against `ref`."""
    import tvm
    from gearshift.runtime.session import as_arrays
    from tvm import relax

    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    args = [tvm.runtime.tensor(a) for a in args_np] + [tvm.runtime.tensor(w) for w in built.weights.values()]
    return (lambda f=vm["main"]: f(*args)), relative_l2(as_arrays(vm["main"](*args)), ref)


def _accuracy_here(result: LevelsBuilt, prepared: Mapping[str, Prepared], proto, imported: Imported,
                   calibration: Mapping[str, np.ndarray] | None, info: TargetInfo, log: Log) -> None:
    """The accuracy proxy of a device target's levels, computed on this machine: each level's prepared
    graph (the device's structure decisions, kernels and weights) built for the host instead, run on
    the calibration inputs and compared with ONNX Runtime running the dense model. The proxy does not
    depend on where the code runs; latency does, and is left for the device (`gearshift measure`)."""
    args_np, ref = _reference(proto, imported, calibration)
    if info.is_gpu:
        _gpu_accuracy(result, prepared, args_np, ref, info, log)
        return
    host = get_target("host")
    shared = generate(next(iter(prepared.values())), imported, host) if result.levels.form == "runtime" else None
    for name, p in prepared.items():
        twin = _with_weights(shared, p) if shared is not None else generate(p, imported, host)
        _, error = _runnable(twin, args_np, ref)
        result.info[name].update(error=round(error, 6), error_measured_on=f"this machine: the {info.name} level's "
                                 f"graph and weights built for the host (the accuracy proxy does not depend on the target)")
        log(f"level {name}: error {error:.2e} vs ONNX Runtime dense (computed here); latency: measure it on the device")


def compile_levels_to(model: ModelLike, levels, target: str, out_dir: str | os.PathLike, *, name: str | None = None,
                      overwrite: bool = False, sign_with: str | os.PathLike | None = None, **kwargs: Any) -> Artifact:
    """`compile_levels` then `save_levels`."""
    if name is None:
        name = Path(model).stem if isinstance(model, (str, os.PathLike)) else type(model).__name__
    return save_levels(compile_levels(model, levels, target, **kwargs), out_dir, name=name, overwrite=overwrite,
                       sign_with=sign_with)


def _gpu_accuracy(result: LevelsBuilt, prepared: Mapping[str, Prepared], args_np: list, ref: np.ndarray,
                  info: TargetInfo, log: Log) -> None:
    """A GPU target's accuracy proxy: each level's OpenCL kernels (which no CPU build can run) run in
    graph order on this machine's OpenCL (pocl) on the calibration inputs, against ONNX Runtime dense."""
    import tvm
    from gearshift.runtime import opencl
    from gearshift.runtime.opencl_graph import run_graph
    from gearshift.schedules.pipeline import gpu_scheduling_passes

    problem = opencl.available()
    if problem:
        log(f"levels: accuracy proxy not computed ({problem})")
        return
    target = info.tvm_target()
    for name, p in prepared.items():
        with target:
            scheduled = tvm.transform.Sequential(gpu_scheduling_passes(target, {}))(p.model)
        outputs = run_graph(scheduled, [*args_np, *p.weights], target, {}).outputs
        error = relative_l2(outputs, ref)
        result.info[name].update(error=round(error, 6), error_measured_on=f"this machine: the {info.name} level's "
                                 "OpenCL kernels run on pocl (a CPU OpenCL implementation)")
        log(f"level {name}: error {error:.2e} vs ONNX Runtime dense (its OpenCL kernels run here on pocl); "
            "latency: measure it on the device")
