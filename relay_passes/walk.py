"""What every sparsity pass shares: the walk over weight layers, the per-layer report, new weight
parameters, the numerical check of a rewritten layer (and the fallback to dense when it fails), and
building a kernel for this machine to run that check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator

from gearshift.relay_passes.exprs import bias_add_of
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.spec import Log, scaled_error

NOTHING_FOUND = "no structure found in the weight"
CHECK_ATOL, CHECK_RTOL = 1e-4, 1e-3  # a rewritten layer's tolerance, relative to its outputs' magnitude


@dataclass
class LayerReport:
    name: str
    shape: tuple[int, int]  # [K, N]
    decision: str  # "bsr" or "dense"
    why: str
    block: str | None = None
    density: float = 1.0  # fraction of blocks kept
    nnz_blocks: int = 0
    dense_bytes: int = 0
    packed_bytes: int = 0
    predicted_speedup: float = 1.0
    check_error: float | None = None
    epilogue: str = ""  # the elementwise ops the kernel applies on the way out (e.g. "relu"), if any
    found: bool = False  # the structure was found in the weight (the default spec), not asked for
    gpu: dict | None = None  # GPU targets: the predicted dense and sparse kernel times (`gpu_costs.compare`)


def new_weight(new_weights: list, name: str, value: np.ndarray) -> relax.Var:
    """A fresh weight parameter for `value`, recorded in `new_weights` (appended to main's params by `rewrite_main`)."""
    var = relax.Var(name, relax.TensorType(value.shape, str(value.dtype)))
    new_weights.append((var, value))
    return var


def rewrite_main(rewriter, main: relax.Function, params: list) -> tuple:
    """Run a weight-rewriting mutator (with .values, .names, .new_weights, .reports) over `main`;
    weights it no longer uses are dropped, the new ones appended. Returns (mod, weights, names, reports)."""
    num_input = len(main.params) - len(params)
    new_main = rewriter.visit_expr(main)
    used = set(relax.analysis.free_vars(new_main.body))
    kept = [p for p in params if p in used]
    new_params = list(main.params[:num_input]) + kept + [v for v, _ in rewriter.new_weights]
    func = relax.Function(new_params, new_main.body, new_main.ret_ty, main.is_pure, main.attrs)
    builder = rewriter.builder_
    builder.update_func(builder.get().get_global_var("main"), func)
    new_weights = [rewriter.values[p] for p in kept] + [w for _, w in rewriter.new_weights]
    new_names = [rewriter.names[p] for p in kept] + [v.name for v, _ in rewriter.new_weights]
    return builder.get(), new_weights, new_names, rewriter.reports


class WeightLayerWalk(PyExprMutator):
    """The walk both sparsity passes share: each binding's var is known while its call is visited
    (`rewrite_layer(var, call, new)` decides per call), and an `add` of a bias the new kernel already
    added is dropped. Subclasses are decorated with `@mutator`; `rewrite_main` runs them."""

    def __init__(self, mod, values: dict, names: dict, biases: dict, plan: SparsityPlan, micro: Microkernel,
                 threads: int, log: Log):
        super().__init__(mod)
        self.values, self.names, self.biases, self.plan, self.micro = values, names, biases, plan, micro
        self.threads, self.log = threads, log
        self.new_weights: list[tuple[relax.Var, np.ndarray]] = []
        self.reports: list[LayerReport] = []
        self.bias_done: set = set()  # producer vars whose kernel added the bias
        self.epilogues: dict = {}  # producer var -> Epilogue its kernel may apply (set by the pass)
        self.epilogue_done: dict = {}  # binding var of a fused epilogue -> the producer var whose kernel applied it
        self.current = None  # the var of the binding being visited
        self.gpu = None  # GpuSpec on GPU targets: the GPU kernels and cost estimate replace the CPU ones

    def visit_var_binding_(self, binding: relax.VarBinding) -> None:
        self.current = binding.var
        super().visit_var_binding_(binding)

    def visit_call_(self, call: relax.Call) -> relax.Expr:
        producer = bias_add_of(call, self.bias_done)
        if producer is not None:
            return self.visit_expr(producer)  # the kernel already added this bias
        if self.current in self.epilogue_done:
            return self.visit_expr(self.epilogue_done[self.current])  # the kernel already applied this op
        var = self.current
        return self.rewrite_layer(var, call, super().visit_call_(call))

    def rewrite_layer(self, var, call: relax.Call, new: relax.Expr) -> relax.Expr:
        return new

    def kernel_passes(self, report: LayerReport, name: str, kind: str, error: float | None) -> bool:
        """Record a rewritten layer's numerical check (None: not checked); False (the layer then stays
        dense, with a warning in the log) when the kernel is off by more than the tolerance."""
        report.check_error = error
        if error is None or error <= CHECK_ATOL + CHECK_RTOL:  # relative to the outputs' magnitude
            return True
        report.why = f"numerical check failed (error {error:.2e}); kept dense"
        self.log(f"warning: {name}: {kind} kernel off by {error:.2e}; layer kept dense")
        return False


def pad_blocks(array: np.ndarray, capacity: int) -> np.ndarray:
    """`array` (blocks along axis 0) with zero blocks appended up to `capacity`. The kernel walks only
    up to indptr's last entry, so the padding is never read: it gives levels of different density
    arrays of one shape, hence one executable."""
    if len(array) > capacity:
        raise ValueError(f"{len(array)} blocks exceed the capacity of {capacity}")
    return np.concatenate([array, np.zeros((capacity - len(array), *array.shape[1:]), array.dtype)])


def nothing_found(name: str, weight: np.ndarray) -> LayerReport:
    """The report of a layer whose weight holds no structure (shape [K, N] as the other reports say it)."""
    shape = (int(np.prod(weight.shape[1:])), int(weight.shape[0])) if weight.ndim == 4 else tuple(weight.shape)
    return LayerReport(name, shape, "dense", NOTHING_FOUND, dense_bytes=weight.nbytes, packed_bytes=weight.nbytes)


def mark_found(report: LayerReport, found: bool) -> None:
    """Say in the report that the structure was found, not asked for (the default `found` spec)."""
    if found:
        report.found = True


def build_for_host(func: tvm.tirx.PrimFunc):
    """One kernel compiled for this machine, callable as `lib(*tensors)`: what the passes' numerical
    checks run."""
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                       target=tvm.target.Target({"kind": "llvm"}))


def opencl_error(kernel: tvm.tirx.PrimFunc, target_name: str, inputs: list[np.ndarray], expected: np.ndarray
                 ) -> float | None:
    """A GPU kernel's check: its OpenCL run on this machine's OpenCL implementation (pocl) against
    `expected` (float64): max |error| / max(1, max |expected|). None where this machine has no OpenCL
    (the report then says "not checked")."""
    from gearshift.runtime import opencl
    from gearshift.schedules.targets import get_target

    if opencl.available() is not None:
        return None
    program = opencl.opencl_program(kernel, get_target(target_name).tvm_target())
    out = opencl.Pocl().run(program, [*inputs, np.zeros(expected.shape, np.float32)])[-1]
    return scaled_error(out, expected)
