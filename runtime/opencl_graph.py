"""Run a whole model's OpenCL kernels on pocl, in graph order, each checked against a reference.

The model is taken where gearshift's GPU pipeline has scheduled every kernel (`gpu_scheduling_passes`)
and before TVM turns `main` into VM code: `main` is then a list of `call_tir`s on scheduled kernels,
constants and tuples. This walks it: every kernel runs as OpenCL (`runtime/opencl.py`) on this
machine's OpenCL implementation, and every kernel that a rule scheduled is also run as the function
it was before scheduling (TVM's plain loops, on the CPU) on the same inputs, so a schedule that
changes the result is caught at the kernel that has it, not only at the model's output. Kernels
written scheduled (gearshift's sparse GPU kernels) have no unscheduled form; the compile pass checks
them against numpy in float64 instead (`relay_passes/gpu_kernels.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from gearshift.runtime.opencl import Pocl, UnsupportedHostCode, opencl_program
from gearshift.spec import scaled_error


@dataclass
class KernelRun:
    name: str
    rule: str
    launches: list  # (kernel, grid, block)
    error: float | None = None  # max |gpu - reference| / max(1, max |reference|); None: no reference here


@dataclass
class GraphRun:
    outputs: list[np.ndarray]
    kernels: list[KernelRun] = field(default_factory=list)

    @property
    def worst(self) -> float:
        return max((k.error for k in self.kernels if k.error is not None), default=0.0)


def run_graph(mod: tvm.IRModule, args: list[np.ndarray], target, rules: dict, originals: dict | None = None,
              log=lambda _m: None) -> GraphRun:
    """Run `mod["main"]` (scheduled, before VM lowering) on `args` (its parameters: inputs then
    weights). `rules`: kernel name -> the rule that scheduled it; `originals`: kernel name -> the
    function before scheduling, the per-kernel reference."""
    main = mod["main"]
    env: dict = {}
    for param, value in zip(main.params, args):
        env[param] = np.asarray(value)
    pocl, run = Pocl(), GraphRun([])
    programs: dict = {}  # kernel name -> its OpenCL Program; (name, "cpu") -> its reference library
    for block in main.body.blocks:
        for binding in block.bindings:
            env[binding.var] = _value(binding.value, env, mod, target, pocl, programs, rules, originals, run, log)
    out = _value(main.body.body, env, mod, target, pocl, programs, rules, originals, run, log)
    run.outputs = list(out) if isinstance(out, tuple) else [out]
    return run


def _value(expr, env, mod, target, pocl, programs, rules, originals, run, log):
    def of(e):
        return _value(e, env, mod, target, pocl, programs, rules, originals, run, log)

    if isinstance(expr, relax.Var):
        return env[expr]
    if isinstance(expr, tvm.ir.expr.Constant):
        return expr.value.numpy()
    if isinstance(expr, relax.Tuple):
        return tuple(of(f) for f in expr.fields)
    if isinstance(expr, relax.TupleGetItem):
        return of(expr.tuple_value)[expr.index]
    if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == "relax.call_tir":
        gv, inputs = expr.args[0], [of(a) for a in expr.args[1].fields]
        outs = expr.ty_args[0]
        out_types = list(outs.fields) if isinstance(outs, relax.TupleType) else [outs]
        outputs = [np.zeros([int(d) for d in t.shape], str(t.dtype)) for t in out_types]
        name = gv.name_hint
        if name not in programs:
            programs[name] = opencl_program(mod[gv], target, name)
        result = pocl.run(programs[name], [*inputs, *outputs])[len(inputs):]
        kernel = KernelRun(name, rules.get(name, "?"), programs[name].launch_sizes)
        original = (originals or {}).get(name)
        if original is not None and not original.attrs.get("tirx.is_scheduled", 0):
            if (name, "cpu") not in programs:  # a kernel called again (every layer's) is compiled once
                programs[(name, "cpu")] = _host_library(original)
            expected = _on_cpu(programs[(name, "cpu")], inputs, outputs)
            kernel.error = max(_error(r, e) for r, e in zip(result, expected))
        run.kernels.append(kernel)
        log(f"  {name}: {kernel.rule}, {len(kernel.launches)} launch(es)"
            + (f", error {kernel.error:.1e}" if kernel.error is not None else ""))
        return tuple(result) if isinstance(outs, relax.TupleType) else result[0]
    what = getattr(getattr(expr, "op", None), "name", type(expr).__name__)
    raise UnsupportedHostCode(f"the OpenCL graph runner does not run {what} (only call_tir, constants and tuples)")


def _host_library(func):
    """The unscheduled kernel built for this machine's CPU: TVM's plain loops, the reference."""
    host = tvm.target.Target({"kind": "llvm"})
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=host)


def _on_cpu(lib, inputs, outputs) -> list[np.ndarray]:
    tensors = [tvm.runtime.tensor(np.require(a, requirements="C")) for a in [*inputs, *outputs]]  # (keeps 0-d)
    lib["main"](*tensors)
    return [t.numpy() for t in tensors[len(inputs):]]


def _error(got: np.ndarray, expected: np.ndarray) -> float:
    if got.size == 0:
        return 0.0
    if not np.issubdtype(expected.dtype, np.floating):
        return float(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max())
    return scaled_error(got, expected)
