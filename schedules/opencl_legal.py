"""Two rewrites that keep the OpenCL TVM writes valid OpenCL C, run first in the GPU pipeline.

- `CNames`: `main`'s parameters whose names are not C identifiers (ONNX names such as
  "/embeddings/Gather_output_0") are renamed. FuseTIR names kernel parameters after them; LLVM code
  does not care, but the OpenCL source does not compile.
- `BoolsAsBytes`: a boolean tensor passed from one kernel to another (an attention mask's
  `mask == 0`, shared by every layer) is stored as int8 instead. OpenCL C has no bool buffers (the
  spec forbids bool kernel arguments) nor bool vectors: TVM wrote `vload8` on a `bool*`, which pocl
  rejects and a phone's compiler would too. The producer casts to int8 and each consumer back to bool;
  fusion puts both casts inside the kernels, so no bool reaches memory.
"""

from __future__ import annotations

import re

import tvm
from tvm import relax
from tvm.ir.transform import PassContext, module_pass
from tvm.relax.expr_functor import PyExprMutator, mutator


@module_pass(opt_level=0, name="GearshiftCNames")
class CNames:
    def transform_module(self, mod: tvm.IRModule, _ctx: PassContext) -> tvm.IRModule:
        main = mod["main"]
        renamed = {p: relax.Var(c_name(p.name), p.ty) for p in main.params if c_name(p.name) != p.name}
        if not renamed:
            return mod
        bound = main.bind_params(renamed)
        mod["main"] = relax.Function([renamed.get(p, p) for p in main.params], bound.body, main.ret_ty,
                                     main.is_pure, main.attrs)
        return mod


def c_name(name: str) -> str:
    """`name` as a C identifier: other characters become '_', a leading digit gets a '_' before it."""
    out = re.sub(r"\W", "_", name)
    return f"_{out}" if not out or out[0].isdigit() else out


@module_pass(opt_level=0, name="GearshiftBoolsAsBytes")
class BoolsAsBytes:
    def transform_module(self, mod: tvm.IRModule, _ctx: PassContext) -> tvm.IRModule:
        main = mod["main"]
        if not any(_is_bool_tensor(b.var) for block in main.body.blocks for b in block.bindings):
            return mod
        rewriter = _BoolsAsBytes(mod)
        new_main = rewriter.visit_expr(main)
        builder = rewriter.builder_
        builder.update_func(builder.get().get_global_var("main"), new_main)
        return builder.get()


def _is_bool_tensor(var) -> bool:
    return isinstance(var, relax.DataflowVar) and isinstance(var.ty, relax.TensorType) and str(var.ty.dtype) == "bool"


@mutator
class _BoolsAsBytes(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.stored: dict = {}  # bool var -> its int8 copy

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        if not _is_bool_tensor(binding.var):
            super().visit_var_binding_(binding)
            return
        value = self.visit_expr(binding.value)
        self.stored[binding.var] = self.builder_.emit(relax.op.astype(value, "int8"))

    def visit_dataflow_var_(self, var: relax.DataflowVar) -> relax.Expr:
        if var in self.stored:
            return self.builder_.emit(relax.op.astype(self.stored[var], "bool"))
        return super().visit_dataflow_var_(var)
