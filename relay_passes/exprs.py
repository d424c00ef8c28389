"""Small questions the passes ask of Relax expressions."""

from __future__ import annotations

import tvm
from tvm import relax


def static_f32(expr: relax.Expr) -> bool:
    """A float32 tensor whose every dimension is a known constant."""
    ty = expr.ty
    return (isinstance(ty, relax.TensorType) and ty.dtype == "float32" and ty.shape is not None
            and all(isinstance(d, tvm.tirx.IntImm) for d in ty.shape.values))


def dims(expr: relax.Expr) -> list[int]:
    """The static shape of a tensor expression (see `static_f32`)."""
    return [int(d) for d in expr.ty.shape.values]


def is_op(expr, name: str) -> bool:
    """`expr` is a call of the Relax operator `name` (e.g. "relax.matmul")."""
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == name


def weight_matmul(call: relax.Expr, weights) -> tuple[relax.Expr, relax.Expr] | None:
    """(x, W) when `call` is `matmul(x, W)` with W one of `weights` (the model's weight parameters),
    W 2-D, x at least 2-D, both static float32 with a float32 result; else None. Activation x
    activation matmuls (Q·Kᵀ, attention·V) never match: their right operand is no weight."""
    if not is_op(call, "relax.matmul"):
        return None
    x, w = call.args
    if (w not in weights or not static_f32(x) or not static_f32(w) or len(w.ty.shape) != 2
            or len(x.ty.shape) < 2 or call.attrs.out_dtype not in ("", "float32", None)):
        return None
    return x, w


def bias_adds(main: relax.Function, values, produces, fits, first_too: bool = False) -> dict:
    """producer var -> bias weight, for `add(v, b)` (with first_too also `add(b, v)`) where v = a call with
    `produces(call)` true, the add is v's only use, b is a weight in `values` and `fits(b, call)`: the
    bias a kernel can add itself."""
    bindings = [b for block in main.body.blocks for b in block.bindings]
    uses: dict = {}
    for b in bindings:
        for v in relax.analysis.free_vars(b.value):
            uses[v] = uses.get(v, 0) + 1
    producers = {b.var: b.value for b in bindings}
    out = {}
    for b in bindings:
        if not is_op(b.value, "relax.add"):
            continue
        for v, bias in (b.value.args, b.value.args[::-1]) if first_too else (b.value.args,):
            producer = producers.get(v)
            if producer is not None and bias in values and uses.get(v) == 1 and produces(producer) and fits(bias, producer):
                out[v] = bias
    return out


def bias_add_of(call: relax.Call, producers) -> relax.Expr | None:
    """For `add(v, b)` or `add(b, v)` with v in `producers`: v (whose kernel added b)."""
    if is_op(call, "relax.add"):
        return next((a for a in call.args if a in producers), None)
    return None
