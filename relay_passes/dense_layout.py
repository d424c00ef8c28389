"""Dense layers onto the packed-weight kernels:
    matmul(x, W)  -> packed_dense(x, pack(W))          (schedules/kernels/dense.py)
    conv2d(x, W)  -> packed_conv2d(x, pack_conv(W))    (schedules/kernels/conv2d.py)

Applies where the weight is a weight parameter of `main` (the model's weights, after the first
weight-transform split) and shapes are static float32; activation x activation matmuls (Q·Kᵀ,
attention·V) are left alone, and so are convs other than NCHW/OIHW, ungrouped, undilated ones
(depthwise and grouped convs keep TVM's kernel). `pack(W)` stays on the weight, so the next split
moves it to compile time: the device receives packed weights and only runs the kernel.
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from gearshift.relay_passes.exprs import is_op, static_f32, weight_matmul
from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.conv2d import pack_conv_weight, packed_conv2d
from gearshift.schedules.kernels.dense import pack_weight, packed_dense


def pack_dense_layers(mod: tvm.IRModule, micro: Microkernel) -> tuple[tvm.IRModule, int]:
    """Rewrite `mod["main"]`; return the module and how many layers were rewritten."""
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
        matmul = weight_matmul(call, self.weights)
        if matmul is not None:
            return self._dense(*matmul)
        if is_op(call, "relax.nn.conv2d"):
            x, w = call.args
            if w in self.weights and static_f32(x) and static_f32(w):
                return self._conv2d(call, x, w)
        return call

    def _dense(self, x: relax.Expr, w: relax.Expr) -> relax.Expr:
        packed = self.builder_.emit(self.builder_.call_te(pack_weight, w, self.micro.cols,
                                                          primfunc_name_hint="gs_pack_weight"))
        self.count += 1
        return self.builder_.call_te(packed_dense, x, packed, int(w.ty.shape[1]), primfunc_name_hint="gs_dense")

    def _conv2d(self, call: relax.Call, x: relax.Expr, w: relax.Expr) -> relax.Expr:
        a = call.attrs
        if (a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or a.out_layout not in ("", "NCHW")
                or int(a.groups) != 1 or any(int(d) != 1 for d in a.dilation)
                or a.out_dtype not in ("", "float32", None) or len(x.ty.shape) != 4):
            return call
        co_len = int(w.ty.shape[0])
        packed = self.builder_.emit(self.builder_.call_te(pack_conv_weight, w, self.micro.conv_cols(co_len),
                                                          primfunc_name_hint="gs_pack_conv_weight"))
        self.count += 1
        return self.builder_.call_te(packed_conv2d, x, packed, co_len, tuple(int(s) for s in a.strides),
                                     tuple(int(p) for p in a.padding), self.micro.for_conv().rows,
                                     primfunc_name_hint="gs_conv2d")
