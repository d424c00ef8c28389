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
    source: dict = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.TupleGetItem) and value.tuple_value.same_as(tuple_param):
                source[binding.var] = names[value.index]
            elif isinstance(value, relax.Call):
                found = [source[a] for a in value.args if isinstance(a, relax.Var) and a in source]
                if found:
                    source[binding.var] = found[0]
            elif isinstance(value, relax.Tuple):
                source[binding.var] = [source.get(f, f"w{i}") if isinstance(f, relax.Var) else f"w{i}"
                                       for i, f in enumerate(value.fields)]
    body = func.body.body
    outputs = source.get(body) if isinstance(body, relax.Var) else None
    if not isinstance(outputs, list):
        outputs = [f"w{i}" for i in range(len(func.ret_ty.fields))]
    return outputs
