"""Make gathers safe on a device: no out-of-bounds read, whatever token ids arrive.

TVM's ONNX importer lowers Gather to `take(mode="fast")`, which reads out of bounds (and can crash
the process) on an index outside the table, e.g. a token id past the vocabulary. ONNX calls such an
index an error; a phone app should not die of it. `clip_gathers` switches every fast `take` to
`mode="clip"`: valid indices give identical results, invalid ones read the nearest row. The cost is
one min/max per index.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator


@mutator
class _ClipGathers(PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.take" and call.attrs.mode == "fast":
            return relax.op.take(call.args[0], call.args[1], axis=call.attrs.axis, mode="clip")
        return call


def clip_gathers(mod: tvm.IRModule) -> tvm.IRModule:
    """Return `mod` with every `take(mode="fast")` in its Relax functions made `mode="clip"`."""
    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gv, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gv] = _ClipGathers().visit_expr(func)
    return out
