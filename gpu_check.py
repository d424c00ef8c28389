"""Check a model's GPU build without a GPU: every OpenCL kernel run on pocl, in graph order.

    load -> import -> prepare (graph passes, GPU kernels) -> GPU scheduling -> run on pocl
         -> each kernel against its unscheduled form, the outputs against ONNX Runtime

`gearshift check-gpu` and the GPU tests use this. The kernels are exactly those of the artifact
`gearshift compile --target mali-g76|adreno-640` writes; they run on this machine's OpenCL (pocl on
the CPU), so the results are real and the times are not a GPU's (none are reported).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np
import tvm
from tvm import relax

from gearshift.bench import ort_session
from gearshift.driver import build, prepare
from gearshift.frontend.importer import to_relax
from gearshift.frontend.load import load
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.runtime.opencl_graph import GraphRun, run_graph
from gearshift.runtime.session import as_arrays
from gearshift.schedules.pipeline import gpu_scheduling_passes
from gearshift.schedules.targets import get_target
from gearshift.spec import Log, relative_l2, scaled_error


@dataclass
class GpuCheck:
    target: str
    run: GraphRun
    reference: list[np.ndarray]
    reference_kind: str  # "ONNX Runtime" (no layer rewritten) or "host build" (the same compressed model on this CPU)
    layers: list  # the compile report's sparse layers

    @property
    def output_error(self) -> float:
        return max(scaled_error(got, ref) for got, ref in zip(self.run.outputs, self.reference))

    @property
    def relative_l2(self) -> float:
        """|outputs - reference| / |reference| over all outputs (L2): independent of the outputs' scale."""
        return relative_l2(self.run.outputs, self.reference)

    def matches(self, atol: float = 1e-4, rtol: float = 1e-3) -> bool:
        return all(np.allclose(got, ref, atol=atol, rtol=rtol) for got, ref in zip(self.run.outputs, self.reference))


def check_gpu(model, target: str, inputs: dict[str, np.ndarray], sparsity: str | SparsityPlan | None = "dense",
              log: Log = lambda _m: None, **load_args) -> GpuCheck:
    """Build `model` for the GPU `target` as `compile` does and run every kernel on this machine's
    OpenCL. The reference is ONNX Runtime where no layer was rewritten; where layers were pruned,
    ONNX Runtime computes the unpruned model, so the reference is the same compressed model built for
    this CPU (whose kernels the CPU tests check against ONNX Runtime and numpy)."""
    info = get_target(target)
    proto = load(model, **load_args)
    imported = to_relax(proto)
    plan = SparsityPlan.parse(sparsity) if isinstance(sparsity, str) or sparsity is None else sparsity
    prepared = prepare(imported, info, plan, log)
    tvm_target = info.tvm_target()
    rules: dict = {}
    originals: dict = {}
    with tvm_target:
        scheduled = tvm.transform.Sequential(gpu_scheduling_passes(tvm_target, rules, originals))(prepared.model)
    feeds = {spec.name: np.asarray(inputs[spec.name], spec.dtype) for spec in imported.inputs}
    run = run_graph(scheduled, [*feeds.values(), *prepared.weights], tvm_target, rules, originals, log)
    if any(layer.decision != "dense" for layer in prepared.layers) or (plan is not None and plan.active):
        host = build(to_relax(proto), "host", sparsity=pinned(plan, prepared.layers))
        vm = relax.VirtualMachine(host.executable, tvm.cpu())
        out = vm["main"](*[tvm.runtime.tensor(feeds[s.name]) for s in host.inputs],
                         *[tvm.runtime.tensor(w) for w in host.weights.values()])
        return GpuCheck(target, run, as_arrays(out), "host build", prepared.layers)
    return GpuCheck(target, run, ort_session(proto.SerializeToString()).run(None, feeds), "ONNX Runtime", prepared.layers)




def pinned(plan: SparsityPlan, layers: list) -> SparsityPlan:
    """`plan` with each BSR layer's block shape fixed to the one the GPU build chose, so that the host
    build prunes every layer as the GPU build did (the CPU cost model may prefer another shape)."""
    pins = []
    for layer in layers:
        spec = plan.for_layer(layer.name)
        if spec.kind == "bsr" and spec.block is None and layer.decision == "bsr" and layer.block:
            r, c = (int(v) for v in layer.block.split()[0].split("x"))
            pins.append((re.compile(f"^{re.escape(layer.name)}$"), replace(spec, block=(r, c))))
    return replace(plan, overrides=pins + list(plan.overrides))
