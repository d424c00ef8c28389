"""The kernel side of elementwise epilogues (found by `relay_passes/epilogue.py`): `steps` as a TIR
expression of one output element, applied before the store, and the same steps in numpy as the
reference the pass checks the kernel against.

`steps`: a tuple of (op, a, b); operand ("v", i) is the value of step i (0: the kernel's output
element), ("c", f) a float32 constant; b is None for unary ops.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx


def apply(steps: tuple | None, value: tirx.PrimExpr) -> tirx.PrimExpr:
    """The epilogue of `value` (one float32 element) as a TIR expression."""
    return _run(steps, value, lambda c: tirx.const(c, "float32"), tirx.max, tirx.min)


def apply_numpy(steps: tuple | None, value: np.ndarray) -> np.ndarray:
    """The epilogue in float64 numpy: the reference the kernel is checked against."""
    return _run(steps, np.asarray(value, np.float64), float, np.maximum, np.minimum)


def _run(steps, value, const, maximum, minimum):
    """`steps` on `value`, with the backend's constants and max/min (TIR or numpy)."""
    values = [value]
    for op, a, b in steps or ():
        x = values[a[1]] if a[0] == "v" else const(a[1])
        y = None if b is None else values[b[1]] if b[0] == "v" else const(b[1])
        values.append(_combine(op, x, y, const, maximum, minimum))
    return values[-1]


def _combine(op: str, x, y, const, maximum, minimum):
    if op == "add":
        return x + y
    if op == "subtract":
        return x - y
    if op == "multiply":
        return x * y
    if op == "divide":
        return x / y
    if op == "maximum":
        return maximum(x, y)
    if op == "minimum":
        return minimum(x, y)
    if op == "relu":
        return maximum(x, const(0.0))
    if op == "negative":
        return -x
    raise ValueError(f"epilogue: unknown op {op!r}")
