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
