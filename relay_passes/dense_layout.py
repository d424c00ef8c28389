"""Dense layers onto the packed-weight kernel: `matmul(x, W)` -> `packed_dense(x, pack(W))`.

Applies to every matmul whose right operand is a weight parameter of `main` (the model's weights,
after the first weight-transform split) with static float32 shapes; activation x activation matmuls
(Q·Kᵀ, attention·V) are left alone. `pack(W)` stays on the weight, so the next split moves it to
compile time: the device receives packed weights and only runs the kernel.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.dense import pack_weight, packed_dense


def pack_dense_layers(mod: tvm.IRModule, micro: Microkernel) -> tuple[tvm.IRModule, int]:
    """Rewrite `mod["main"]`; return the module and how many matmuls were rewritten."""
    main = mod["main"]
    weights = set(main.params[int(main.attrs["num_input"]):])
    rewriter = _PackDense(mod, weights, micro)
    new_main = rewriter.visit_expr(main)
    rewriter.builder_.update_func(rewriter.builder_.get().get_global_var("main"), new_main)
    return rewriter.builder_.get(), rewriter.count


@mutator
class _PackDense(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, weights: set, micro: Microkernel):
        super().__init__(mod)
        self.weights = weights
        self.micro = micro
        self.count = 0

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.matmul"):
            return call
        x, w = call.args
        if w not in self.weights or not _static_f32(x) or not _static_f32(w) or len(w.ty.shape) != 2:
            return call
        if len(x.ty.shape) < 2 or call.attrs.out_dtype not in ("", "float32", None):
            return call
        n_len = int(w.ty.shape[1])
        packed = self.builder_.emit(self.builder_.call_te(pack_weight, w, self.micro.cols,
                                                          primfunc_name_hint="gs_pack_weight"))
        self.count += 1
        return self.builder_.call_te(packed_dense, x, packed, n_len, primfunc_name_hint="gs_dense")


def _static_f32(expr: relax.Expr) -> bool:
    ty = expr.ty
    return (isinstance(ty, relax.TensorType) and ty.dtype == "float32" and ty.shape is not None
            and all(isinstance(d, tvm.tirx.IntImm) for d in ty.shape.values))
