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
