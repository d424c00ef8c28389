"""Elementwise epilogues: the activation after a layer, computed by the layer's kernel on the way out.

A dense layer's output is often followed by a chain of elementwise ops on it alone (ReLU, a scale, a
clip). `find_epilogues` finds, for each layer output, the longest such chain (ops on the output and
scalar constants only) whose intermediate values are used nowhere else; the kernel then applies it
to each output before the store (`schedules/kernels/epilogue.py`), and the chain's bindings become
aliases of the kernel's output: one pass over the output less. Measured here on 768 -> 3072 at M =
128 (whole sessions, interleaved): ReLU fused 4-7 % faster than ReLU as its own kernel.

The exact GELU (x * 0.5 * (1 + erf(x / sqrt 2))) is not fused: with a rational erf in the kernel
(3.4e-7 from math.erf) the 16x1 kernel spilled registers (63 spill moves against 6) and the layer
ran 9-10 % slower than with TVM's own fused GELU kernel after it, so erf ends a chain.

An epilogue is `steps`, a tuple of (op, a, b) in SSA form: operand ("v", i) is the value of step i
(0: the layer's output), ("c", f) a constant. Hashable, so kernels are cached by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import relax

from gearshift.relay_passes.exprs import dims, static_f32

BINARY = {"relax.add": "add", "relax.subtract": "subtract", "relax.multiply": "multiply", "relax.divide": "divide",
          "relax.maximum": "maximum", "relax.minimum": "minimum"}
UNARY = {"relax.nn.relu": "relu", "relax.negative": "negative"}


@dataclass(frozen=True)
class Epilogue:
    members: tuple  # the chain's binding vars, the last one its result: all aliases of the kernel's output afterwards
    steps: tuple

    @property
    def name(self) -> str:
        return " ".join(s[0] for s in self.steps)


def find_epilogues(main: relax.Function, roots: list[relax.Var]) -> dict:
    """root var -> Epilogue: the longest run of elementwise bindings on `root` and scalar constants,
    taken in binding order, such that only its last value is used outside it."""
    bindings = [b for block in main.body.blocks for b in block.bindings]
    users: dict = {}
    for b in bindings:
        for v in relax.analysis.free_vars(b.value):
            users.setdefault(v, []).append(b.var)
    outputs = set(relax.analysis.free_vars(main.body.body))
    order = {b.var: i for i, b in enumerate(bindings)}
    found = {}
    for root in roots:
        if root not in order or root in outputs or not static_f32(root):
            continue
        chain, steps, index, shape = [root], [], {root: 0}, dims(root)
        for b in bindings[order[root] + 1:]:
            step = _step(b, index, shape)
            if step is not None:
                index[b.var] = len(chain)
                chain.append(b.var)
                steps.append(step)
        best = None
        for k in range(1, len(chain)):
            inside = set(chain[:k + 1])
            escaping = [v for v in chain[:k + 1] if v in outputs or any(u not in inside for u in users.get(v, []))]
            if escaping == [chain[k]]:
                best = k
        if best is not None:
            found[root] = Epilogue(tuple(chain[1:best + 1]), tuple(steps[:best]))
    return found


def _step(binding: relax.VarBinding, index: dict, shape: list[int]) -> tuple | None:
    call = binding.value
    if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.Op):
        return None
    if not (static_f32(binding.var) and dims(binding.var) == shape):
        return None  # the layer output's shape and dtype: no broadcast to a larger one
    name = call.op.name
    if name in UNARY and len(call.args) == 1 and call.args[0] in index:
        return (UNARY[name], ("v", index[call.args[0]]), None)
    if name in BINARY and len(call.args) == 2:
        operands = [_operand(a, index) for a in call.args]
        if None not in operands and any(o[0] == "v" for o in operands):
            return (BINARY[name], *operands)
    return None


def _operand(expr: relax.Expr, index: dict) -> tuple | None:
    if isinstance(expr, relax.Var):
        return ("v", index[expr]) if expr in index else None
    if isinstance(expr, tvm.ir.expr.Constant):
        value = expr.value.numpy()
        if value.size == 1 and value.dtype == "float32":
            return ("c", float(value.reshape(())))
    return None
