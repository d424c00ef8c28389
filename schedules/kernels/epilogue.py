"""The kernel side of elementwise epilogues (found by `relay_passes/epilogue.py`): `steps` as a TIR
expression of one output element, applied before the store, and the same steps in numpy as the
reference the pass checks the kernel against.

`steps`: a tuple of (op, a, b); operand ("v", i) is the value of step i (0: the kernel's output
element), ("c", f) a float32 constant; b is None for unary ops.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import tirx

OPS = ("add", "subtract", "multiply", "divide", "maximum", "minimum", "erf", "relu", "negative")


def apply(steps: tuple | None, value: tirx.PrimExpr) -> tirx.PrimExpr:
    """The epilogue of `value` (one float32 element) as a TIR expression (vectorisable: no calls)."""
    if not steps:
        return value
    values = [value]
    for op, a, b in steps:
        x, y = _tir_operand(a, values), _tir_operand(b, values)
        values.append({"add": lambda: x + y, "subtract": lambda: x - y, "multiply": lambda: x * y,
                       "divide": lambda: x / y, "maximum": lambda: tirx.max(x, y), "minimum": lambda: tirx.min(x, y),
                       "erf": lambda: fast_erf(x), "relu": lambda: tirx.max(x, tirx.const(0.0, "float32")),
                       "negative": lambda: -x}[op]())
    return values[-1]


def _tir_operand(operand, values):
    if operand is None:
        return None
    kind, v = operand
    return values[v] if kind == "v" else tirx.const(v, "float32")


def apply_numpy(steps: tuple | None, value: np.ndarray) -> np.ndarray:
    """The epilogue in float64 numpy (math.erf exactly): the reference the kernel is checked against."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    if not steps:
        return value
    values = [np.asarray(value, np.float64)]
    for op, a, b in steps:
        x = values[a[1]] if a[0] == "v" else a[1]
        y = None if b is None else (values[b[1]] if b[0] == "v" else b[1])
        values.append({"add": lambda: x + y, "subtract": lambda: x - y, "multiply": lambda: x * y,
                       "divide": lambda: x / y, "maximum": lambda: np.maximum(x, y), "minimum": lambda: np.minimum(x, y),
                       "erf": lambda: erf(x), "relu": lambda: np.maximum(x, 0.0), "negative": lambda: -x}[op]())
    return values[-1]


# erf(x) ~ x P(x^2) / Q(x^2) on [-4, 4] (|erf| > 1 - 2e-8 beyond): degree-5 P and Q fitted here by
# least squares with Loeb's reweighting on 8,000 points of [0, 4] (numpy); max |error| in float32
# 3.4e-7 over [-6, 6]. Q >= 1, so no division by a small number.
ERF_P = (1.128379051, 0.1936525821, 0.05313321879, 0.003894913034, 0.0002860225856, 2.000139685e-06)
ERF_Q = (1.0, 0.5049519966, 0.1154111893, 0.0152263428, 0.001190797602, 3.76382248e-05)


def fast_erf(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """erf as arithmetic (TIR's erf is a scalar libm call per element: 8 calls per AVX2 vector)."""
    c = tirx.max(tirx.min(x, tirx.const(4.0, "float32")), tirx.const(-4.0, "float32"))
    xx = c * c

    def poly(coefficients):
        acc = tirx.const(coefficients[-1], "float32")
        for k in reversed(coefficients[:-1]):
            acc = acc * xx + tirx.const(k, "float32")
        return acc

    return tirx.max(tirx.min(c * poly(ERF_P) / poly(ERF_Q), tirx.const(1.0, "float32")), tirx.const(-1.0, "float32"))
