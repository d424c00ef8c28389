"""The compile driver: an imported model through the graph passes to a library for the target.

    lift -> sparsify (block, pattern) -> pack dense layers -> lift the new weight transforms -> generate

`prepare` runs the graph passes (weights transformed once, on the host), `generate` the code for the
device; `build` is both. `gearshift.compile_model`, `compile_levels` and the level search all go through here.

CPU targets: dense layers move onto the packed-weight kernel (`relay_passes/dense_layout.py`), whose
packing joins the other weight transforms at compile time, and every kernel gets a schedule from
`schedules/cpu/`. GPU targets: the sparse layers get OpenCL kernels (`schedules/kernels/gpu_*.py`),
chosen by the GPU cost estimate (`relay_passes/gpu_costs.py`); the dense kernels get the GPU rules
of `schedules/gpu/`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import tvm
from gearshift.frontend.importer import Imported
from gearshift.relay_passes import clip_gathers, split_weight_transforms
from gearshift.relay_passes.block_sparse import block_sparsify
from gearshift.relay_passes.dense_layout import pack_dense_layers
from gearshift.relay_passes.pattern_sparse import pattern_sparsify
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.relay_passes.walk import NOTHING_FOUND
from gearshift.relay_passes.weights import TRANSFORM, lifted_names
from gearshift.schedules.cpu.microkernel import microkernel
from gearshift.schedules.gpu.devices import gpu_spec
from gearshift.schedules.knobs import Tuning
from gearshift.schedules.pipeline import pipeline
from gearshift.schedules.targets import TargetInfo, get_target
from gearshift.spec import Log, TensorSpec
from tvm import relax


@dataclass
class Built:
    """A compiled model: the executable and the weights it takes, in the order `main` takes them."""

    executable: object  # tvm.runtime.Executable
    weights: dict[str, np.ndarray]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    target: TargetInfo
    report: dict = field(default_factory=dict)
    accelerator: object = None  # vta-sim: the offloaded layers (runtime.vta.offload.VtaLayers)

    def export_library(self, path: Path) -> None:
        """Write the shared library, cross-linked for the target's CPU."""
        if self.target.cross_compiler:
            from tvm.support import cc

            self.executable.export_library(str(path), fcompile=cc.cross_compiler(self.target.cross_compiler))
        else:
            self.executable.export_library(str(path))


@dataclass
class Prepared:
    """A model after the graph passes, before code generation: what several levels compare."""

    model: tvm.IRModule
    weights: list[np.ndarray]
    names: list[str]
    layers: list  # LayerReport per candidate layer
    dense_layers: int
    seconds: float
    tuned: list = field(default_factory=list)  # (kernel, knobs) of the sparse kernels that took tuned knobs
    accelerator: object = None  # vta-sim: the offloaded layers (runtime.vta.offload.VtaLayers)


@dataclass(frozen=True)
class Lifted:
    """The imported model with its weight transforms split off and run: where every sparsity plan starts."""

    model: tvm.IRModule
    weights: tuple[np.ndarray, ...]
    names: tuple[str, ...]


def lift(imported: Imported) -> Lifted:
    model, transform = split_weight_transforms(clip_gathers(imported.mod))
    weights = transform_weights(transform, list(imported.weights.values()))
    return Lifted(model, tuple(weights), tuple(lifted_names(transform, list(imported.weights))))


def prepare(imported: Imported, info: TargetInfo, sparsity: SparsityPlan | None = None,
            log: Log = lambda _msg: None, lifted: Lifted | None = None, tuning: Tuning | None = None,
            calibration: dict | None = None) -> Prepared:
    """The graph passes of `build`: weight transforms split off and run (or `lifted`, done once for
    several plans), layers rewritten as `sparsity` says, dense layers moved onto the packed kernel.
    `tuning`: tuned knobs for the sparse kernels (a database's, for this target); it also collects
    the kernels the model needs (what `gearshift tune` tunes). `calibration`: sample inputs by name
    for the int8 scales of `vta-sim` (default: random ones, `runtime/calibration.py`)."""
    tvm_target = info.tvm_target()
    t0 = time.perf_counter()
    lifted = lifted or lift(imported)
    model, weights, names = lifted.model, list(lifted.weights), list(lifted.names)
    layers: list = []
    tuned: list = []  # (kernel, knobs) that this model's sparse kernels took from `tuning`
    dense_layers = 0
    used_before = len(tuning.used) if tuning is not None else 0
    accelerator = None
    if info.accelerator == "vta":  # the linear layers go to the simulated accelerator, the rest stays here
        from gearshift.relay_passes.vta_offload import vta_offload
        from gearshift.runtime.calibration import calibration_inputs
        from gearshift.runtime.vta.config import VtaConfig

        samples = dict(calibration) if calibration is not None else calibration_inputs(imported.inputs)
        model, weights, names, layers, accelerator = vta_offload(
            model, weights, names, sparsity, [samples[s.name] for s in imported.inputs], VtaConfig(), log)
        log_layers(layers, log)
        sparsity = None
    if info.is_gpu:
        if sparsity is not None and sparsity.active:
            gpu = gpu_spec(tvm_target)
            model, weights, names, layers = block_sparsify(model, weights, names, sparsity, None, 1, log, gpu=gpu)
            model, weights, names, conv_layers = pattern_sparsify(model, weights, names, sparsity, None, 1, log,
                                                                  gpu=gpu)
            layers += conv_layers
            log_layers(layers, log)
    else:
        micro = microkernel(tvm_target)
        if sparsity is not None and sparsity.active:
            cores = int(tvm_target.attrs.get("num-cores", 1))
            model, weights, names, layers = block_sparsify(model, weights, names, sparsity, micro, cores, log, tuning)
            model, weights, names, conv_layers = pattern_sparsify(model, weights, names, sparsity, micro, cores, log,
                                                                  tuning)
            layers += conv_layers
            log_layers(layers, log)
            tuned = tuning.used[used_before:] if tuning is not None else []
            if tuning is not None and tuning.records:
                log(f"tuned: {len(tuned)} of {len(layers)} layers' kernels take knobs from the database"
                    + "".join(f"\n  {label}: {knobs}" for label, knobs in tuned))
        model, dense_layers = pack_dense_layers(model, micro)
        model = relax.transform.FastMathTransform()(model)  # vectorisable exp/erf/tanh (libm's are scalar)
        model, transform = split_weight_transforms(model)
        weights = transform_weights(transform, weights)
        names = lifted_names(transform, names)
    names = _unique(names)
    if len(names) != len(weights):
        raise RuntimeError(f"weight transform returned {len(weights)} arrays for {len(names)} weight parameters")
    seconds = time.perf_counter() - t0
    log(f"weights: {len(imported.weights)} in, {len(names)} prepared, {dense_layers} dense layers packed "
        f"({seconds:.1f} s)")
    return Prepared(model, weights, names, layers, dense_layers, seconds, [{"kernel": k, "knobs": v} for k, v in tuned],
                    accelerator)


def build(imported: Imported, target: str | TargetInfo = "host", log: Log = lambda _msg: None,
          sparsity: SparsityPlan | None = None, tuning: Tuning | None = None, calibration: dict | None = None) -> Built:
    """Compile `imported` for `target` (a name from `gearshift.schedules.target_names()` or a TargetInfo),
    rewriting weight layers as `sparsity` says (see `gearshift.relay_passes.block_sparse`), with the
    sparse kernels' knobs from `tuning` where it has them."""
    info = get_target(target) if isinstance(target, str) else target
    return generate(prepare(imported, info, sparsity, log, tuning=tuning, calibration=calibration), imported, info, log,
                    tuning)


def generate(prepared: Prepared, imported: Imported, info: TargetInfo, log: Log = lambda _msg: None,
             tuning: Tuning | None = None) -> Built:
    """Code generation for a prepared model: TVM's pipeline with gearshift's schedule rules (or, for
    the dense kernels `tuning` has MetaSchedule schedules for, those)."""
    tvm_target = info.tvm_target()
    t1 = time.perf_counter()
    kernels: dict[str, str] = {}
    tuned = tuning.dense if tuning is not None else None
    with tvm_target:
        executable = tvm.compile(prepared.model, target=tvm_target, relax_pipeline=pipeline(tvm_target, kernels, tuned))
    t2 = time.perf_counter()
    unscheduled = sorted(k for k, rule in kernels.items() if rule in ("unscheduled", "Fallback"))
    searched = sorted(k for k, rule in kernels.items() if rule.startswith("MetaSchedule"))
    generic = sum(rule == "dlight.Fallback" for rule in kernels.values())  # GPU: elementwise, gathers, pooling
    log(f"code: built for {info.name} ({t2 - t1:.1f} s); {len(kernels)} kernels"
        + (f" ({generic} by dlight's generic GPU Fallback rule)" if generic else "")
        + (f", without a dedicated schedule: {', '.join(unscheduled)}" if unscheduled else "")
        + (f"; from MetaSchedule's database: {', '.join(searched)}" if searched else ""))
    report = {"transform_seconds": round(prepared.seconds, 3), "build_seconds": round(t2 - t1, 3),
              "dense_layers_packed": prepared.dense_layers, "kernels": kernels,
              "sparse_layers": [asdict(layer) for layer in prepared.layers], "tuned_kernels": prepared.tuned}
    return Built(executable, dict(zip(prepared.names, prepared.weights)), imported.inputs, imported.outputs, info,
                 report, prepared.accelerator)


def transform_weights(transform: tvm.IRModule, weights: list[np.ndarray]) -> list[np.ndarray]:
    """Run lifted weight transforms on this machine's CPU, whatever the target is."""
    host = tvm.target.Target({"kind": "llvm"})
    with host:
        executable = tvm.compile(transform, target=host, relax_pipeline=relax.get_default_pipeline(host))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm[TRANSFORM]([tvm.runtime.tensor(np.asarray(w, order="C")) for w in weights])
    return [np.asarray(t.numpy()) for t in out]


def log_layers(layers: list, log: Log) -> None:
    plain = [layer for layer in layers if layer.why == NOTHING_FOUND]
    if plain:
        log(f"  {len(plain)} of {len(layers)} weight layers: {NOTHING_FOUND} (dense)")
    for layer in layers:
        if layer.why == NOTHING_FOUND:
            continue
        found = "found in the weight: " if layer.found else ""
        gpu = (f"; GPU estimate (predicted) {layer.gpu['dense']['microseconds']:.0f} us dense, "
               f"{layer.gpu['sparse']['microseconds']:.0f} us {layer.gpu['sparse']['kernel']}") if layer.gpu else ""
        if layer.decision != "dense":
            log(f"  {layer.name}: {found}{layer.decision} {layer.block}, density {layer.density:.2f}, "
                f"{layer.dense_bytes / 1e6:.2f} -> {layer.packed_bytes / 1e6:.2f} MB, "
                + ("not checked" if layer.check_error is None else f"check error {layer.check_error:.1e}") + gpu)
        else:
            log(f"  {layer.name}: {found}dense ({layer.why}){gpu}")
    sparse = [layer for layer in layers if layer.decision != "dense"]
    if layers:
        dense_mb = sum(layer.dense_bytes for layer in layers) / 1e6
        packed_mb = sum(layer.packed_bytes for layer in layers) / 1e6
        log(f"sparse: {len(sparse)} of {len(layers)} layers; weights {dense_mb:.2f} -> {packed_mb:.2f} MB")


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}.{k}")
    return out
