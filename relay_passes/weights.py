"""Move computation that depends only on weights out of `main`, to run once at compile time.

ONNX graphs transpose Gemm weights, slice position tables and cast constants at every call.
`LiftTransformParams` lifts all of that into `main_transform_params`; gearshift runs that function
on the build machine and ships its outputs, so the device computes none of it.
"""

from __future__ import annotations

import tvm
from tvm import relax

TRANSFORM = "main_transform_params"


def split_weight_transforms(mod: tvm.IRModule) -> tuple[tvm.IRModule, tvm.IRModule]:
    """Return (model, transform): model["main"] takes (inputs..., transformed weights...);
    transform["main_transform_params"] maps the original weights (one tuple) to those weights."""
    lifted = relax.transform.LiftTransformParams()(mod)
    transform = tvm.IRModule({gv: f for gv, f in lifted.functions.items() if gv.name_hint != "main"})
    model = tvm.IRModule({gv: f for gv, f in lifted.functions.items() if gv.name_hint != TRANSFORM})
    keep = relax.transform.DeadCodeElimination
    return keep(["main"])(model), keep([TRANSFORM])(transform)


def lifted_names(transform: tvm.IRModule, names: list[str]) -> list[str]:
    """Names for the outputs of `transform` (the new weight parameters), after the weight each one
    is computed from: a transposed or packed `layers.0.fc.weight` keeps that name."""
    func = transform[TRANSFORM]
    tuple_param = func.params[0]
    bound: dict = {}

    def name_of(expr) -> str | list | None:
        if expr.same_as(tuple_param):  # nothing to transform: the weights pass through
            return list(names)
        if isinstance(expr, relax.Var) and expr in bound:
            return name_of(bound[expr])
        if isinstance(expr, relax.TupleGetItem) and expr.tuple_value.same_as(tuple_param):
            return names[expr.index]
        if isinstance(expr, relax.Call):
            return next((n for n in (name_of(a) for a in expr.args) if isinstance(n, str)), None)
        if isinstance(expr, relax.Tuple):
            return [name_of(f) for f in expr.fields]
        return None

    for block in getattr(func.body, "blocks", []):
        for binding in block.bindings:
            bound[binding.var] = binding.value
    outputs = name_of(func.body.body if isinstance(func.body, relax.SeqExpr) else func.body)
    if not isinstance(outputs, list):
        outputs = [None] * len(func.ret_ty.fields)
    return [n if isinstance(n, str) else f"w{i}" for i, n in enumerate(outputs)]
