"""The Relax -> library pipeline per target kind.

CPU: TVM's legalisation and operator fusion, then gearshift's schedule rules on every fused kernel,
then TVM's lowering. GPU (OpenCL): the same stages from TVM's generic GPU pipeline, with the GPU rules
of `schedules/gpu/` (gearshift's Mali matmul, then dlight's) in place of its fixed dlight list.
`ApplyRules` records which rule scheduled each kernel, so the build report can name the kernels
that no dedicated rule matched. A rule that raises counts as not matching: TVM's dlight rules raise
on some shapes instead of returning None, and that must never reach the user as a TVM traceback.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax, tirx
from tvm.ir.transform import PassContext, module_pass
from tvm.relax.backend.cpu_generic import pipeline as stages  # (its package does not re-export them)

from tvm.relax.backend.gpu_generic import pipeline as gpu_stages

from gearshift.schedules.opencl_legal import BoolsAsBytes, CNames
from gearshift.schedules.cpu import default_rules
from gearshift.schedules.gpu import default_rules as gpu_rules


@module_pass(opt_level=0, name="GearshiftApplyRules")
class ApplyRules:
    """Schedule every PrimFunc with the first rule that matches; note which rule (or none) did."""

    def __init__(self, rules: list, target, report: dict, tuned: dict | None = None, originals: dict | None = None):
        self.rules, self.target, self.report, self.tuned = rules, target, report, tuned or {}
        self.originals = originals  # if given: kernel name -> the function before scheduling (a reference)

    def transform_module(self, mod: tvm.IRModule, _ctx: PassContext) -> tvm.IRModule:
        updates = {}
        for gv, func in mod.functions_items():
            if not isinstance(func, tirx.PrimFunc):
                continue
            if self.originals is not None:
                self.originals[gv.name_hint] = func
            if func.attrs.get("tirx.is_scheduled", 0) == 1:  # written scheduled (the BSR kernels)
                self.report[gv.name_hint] = "written scheduled"
                continue
            tuned = self.tuned.get(dense_key(func)) if self.tuned else None
            if tuned is not None:  # MetaSchedule's schedule, confirmed faster than the rule's here
                updates[gv] = tuned.with_attr("tirx.is_scheduled", True)
                self.report[gv.name_hint] = "MetaSchedule (tuned)"
                continue
            scheduled = first_rule(func, self.target, self.rules)
            if scheduled is None:
                self.report[gv.name_hint] = "unscheduled"
            else:
                self.report[gv.name_hint], scheduled_func = scheduled
                updates[gv] = scheduled_func.with_attr("tirx.is_scheduled", True)
        for gv, func in updates.items():
            mod[gv] = func
        return mod


def first_rule(func: tirx.PrimFunc, target, rules: list | None = None) -> tuple[str, tirx.PrimFunc] | None:
    """The first of `rules` (`default_rules()`) that schedules `func`: its name and the scheduled
    function, or None when none does."""
    for rule in rules if rules is not None else default_rules():
        try:
            sch = rule.apply(func, target, False)
        except Exception:  # noqa: BLE001  (TVM's own rules raise on shapes they do not handle:
            continue      # e.g. "is an output block"; the next rule, at worst Fallback, takes it)
        if sch is not None:
            return rule_name(rule), sch.mod["main"]
    return None


def rule_name(rule) -> str:
    """gearshift's rules by class name, TVM's as dlight.<name>."""
    return ("dlight." if type(rule).__module__.startswith("tvm.") else "") + type(rule).__name__


def cpu_pipeline(target, report: dict, tuned: dict | None = None) -> tvm.transform.Pass:
    passes = (fused_kernels_passes(target) + [ApplyRules(default_rules(), target, report, tuned)]
              + stages.dataflow_lower_passes(target) + stages.finalize_passes(target))
    return tvm.transform.Sequential(passes, name="gearshift_cpu")


def fused_kernels_passes(target) -> list:
    """The stages before scheduling: after them, the module's PrimFuncs are the kernels the rules see."""
    return stages.library_dispatch_passes(target) + stages.legalize_passes(target)


def gpu_scheduling_passes(target, report: dict, originals: dict | None = None) -> list:
    """The GPU stages up to scheduling: after them `main` calls scheduled kernels (what the OpenCL
    graph runner, `runtime/opencl_graph.py`, executes)."""
    return (gpu_stages.library_dispatch_passes(target)
            + [CNames(), BoolsAsBytes(), relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
               relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR(),
               ApplyRules(gpu_rules(target), target, report, originals=originals)])


def gpu_pipeline(target, report: dict) -> tvm.transform.Pass:
    passes = (gpu_scheduling_passes(target, report) + gpu_stages.dataflow_lower_passes(target)
              + gpu_stages.finalize_passes(target))
    return tvm.transform.Sequential(passes, name="gearshift_gpu")


def pipeline(target, report: dict, tuned: dict | None = None) -> tvm.transform.Pass:
    """`tuned`: scheduled PrimFuncs by `dense_key` of the unscheduled kernel (MetaSchedule's, from a
    tuning database), used instead of the rules for those kernels (CPU targets)."""
    if target.kind.name == "llvm":
        return cpu_pipeline(target, report, tuned)
    return gpu_pipeline(target, report)


def dense_key(func: tirx.PrimFunc) -> str:
    """A kernel's identity for the tuning database: the structural hash of the unscheduled PrimFunc."""
    return f"dense:{tvm_ffi.structural_hash(func.with_attr('global_symbol', 'main')) & (2**64 - 1):016x}"
