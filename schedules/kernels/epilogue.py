"""The kernel side of elementwise epilogues (found by `relay_passes/epilogue.py`): `steps` as a TIR
expression of one output element, applied before the store, and the same steps in numpy as the
reference the pass checks the kernel against.

`steps`: a tuple of (op, a, b); operand ("v", i) is the value of step i (0: the kernel's output
element), ("c", f) a float32 constant; b is None for unary ops.
"""

from __future__ import annotations

import numpy as np
from tvm import tirx

OPS = ("add", "subtract", "multiply", "divide", "maximum", "minimum", "relu", "negative")


def apply(steps: tuple | None, value: tirx.PrimExpr) -> tirx.PrimExpr:
    """The epilogue of `value` (one float32 element) as a TIR expression."""
    if not steps:
        return value
    values = [value]
    for op, a, b in steps:
        x, y = _tir_operand(a, values), _tir_operand(b, values)
        values.append({"add": lambda: x + y, "subtract": lambda: x - y, "multiply": lambda: x * y,
                       "divide": lambda: x / y, "maximum": lambda: tirx.max(x, y), "minimum": lambda: tirx.min(x, y),
                       "relu": lambda: tirx.max(x, tirx.const(0.0, "float32")),
                       "negative": lambda: -x}[op]())
    return values[-1]


def _tir_operand(operand, values):
    if operand is None:
        return None
    kind, v = operand
    return values[v] if kind == "v" else tirx.const(v, "float32")


def apply_numpy(steps: tuple | None, value: np.ndarray) -> np.ndarray:
    """The epilogue in float64 numpy: the reference the kernel is checked against."""
    if not steps:
        return value
    values = [np.asarray(value, np.float64)]
    for op, a, b in steps:
        x = values[a[1]] if a[0] == "v" else a[1]
        y = None if b is None else (values[b[1]] if b[0] == "v" else b[1])
        values.append({"add": lambda: x + y, "subtract": lambda: x - y, "multiply": lambda: x * y,
                       "divide": lambda: x / y, "maximum": lambda: np.maximum(x, y), "minimum": lambda: np.minimum(x, y),
                       "relu": lambda: np.maximum(x, 0.0), "negative": lambda: -x}[op]())
    return values[-1]
