"""BlockSparsify: dense layers -> block-sparse (BSR) kernels.  This is where a dense layer becomes
a sparse one.

For every `matmul(x, W)` of `main` whose W is a weight parameter (Gemm/MatMul/3-D matmul: the
Q/K/V/out/FFN projections; never an activation x activation matmul such as Q·Kᵀ), the plan says
what the layer becomes (`SparsityPlan`, from `--sparsity` and `--layer-sparsity`):
  - dense: untouched;
  - bsr with a sparsity: Wᵀ is projected onto r x c blocks (the blocks of largest L2 norm are kept);
  - bsr without one: the zeros already in W are used (a model pruned in training), if they form blocks.
The block shape is the user's, or the one the cost model predicts fastest among `CANDIDATES`; a layer
stays dense (with its pruned weights, so the model computes the same function) where the cost model
says sparse would not be faster, or where its shape does not divide into blocks. Every rewritten
layer is checked numerically against x @ W_pruned on this machine; a layer off by more than the
tolerance falls back to dense with a warning. A following `add` of a bias vector is fused.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from gearshift.compress.blocks import detect_blocks, project
from gearshift.relay_passes import circulant, gpu_costs
from gearshift.relay_passes.block_patterns import choose_patterns
from gearshift.relay_passes.costs import CANDIDATES, dense_cost, sparse_cost
from gearshift.relay_passes.epilogue import find_epilogues
from gearshift.relay_passes.found import found_dense
from gearshift.relay_passes.exprs import bias_add_of, bias_adds, dims, weight_matmul
from gearshift.relay_passes.plan import LayerSpec, SparsityPlan
from gearshift.relay_passes.walk import (LayerReport, WeightLayerWalk, build_for_host, mark_found, new_weight,
                                        nothing_found, opencl_error, pad_blocks, rewrite_main)
from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.gpu.devices import GpuSpec
from gearshift.schedules.kernels.gpu_bsr import gpu_bsr_matmul
from gearshift.schedules.knobs import Tuning, bsr_task, bsr_tile
from gearshift.schedules.kernels.bsr import Tile, bsr_matmul, choose_tile, kept_columns, to_block_patterns, to_bsr
from gearshift.schedules.kernels.epilogue import apply_numpy
from gearshift.spec import Log, scaled_error




# -- the pass ---------------------------------------------------------------------------------
def block_sparsify(mod: tvm.IRModule, weights: list[np.ndarray], names: list[str], plan: SparsityPlan,
                   micro: Microkernel | None, threads: int = 1, log: Log = lambda _m: None,
                   tuning: Tuning | None = None, gpu: GpuSpec | None = None
                   ) -> tuple[tvm.IRModule, list[np.ndarray], list[str], list[LayerReport]]:
    """Rewrite `mod["main"]` (weights, names: its weight parameters' values and names, in order).
    Returns the module, the new weights and names (in the new parameter order) and a report per
    candidate layer. `tuning`: tuned kernel knobs to use where it has them (`schedules/knobs.py`).
    `gpu`: a GPU target's spec; the layers then get the OpenCL kernels and the GPU cost estimate."""
    main = mod["main"]
    num_input = int(main.attrs["num_input"])
    params = list(main.params[num_input:])
    values = dict(zip(params, weights))
    biases, either = _biases(main, values), _biases(main, values, first_too=True)
    epilogues = _epilogues(main, values, either)
    biases.update({v: either[v] for v in epilogues if v in either})
    rewriter = _BlockSparsify(mod, values, dict(zip(params, names)), biases, plan, micro, threads, log)
    rewriter.epilogues, rewriter.tuning, rewriter.gpu = epilogues, tuning, gpu
    return rewrite_main(rewriter, main, params)


def _epilogues(main: relax.Function, values: dict, biases: dict) -> dict:
    """matmul var -> the Epilogue (e.g. a ReLU) after its output, or after its bias add where the kernel
    adds the bias: the activation the kernel can apply itself."""
    bindings = [b for block in main.body.blocks for b in block.bindings]
    adds = {producer: b.var for b in bindings if (producer := bias_add_of(b.value, biases)) is not None}
    roots = {adds.get(b.var, b.var): b.var for b in bindings if weight_matmul(b.value, values) is not None}
    return {roots[root]: epilogue for root, epilogue in find_epilogues(main, list(roots)).items()}


def _biases(main: relax.Function, values: dict, first_too: bool = False) -> dict:
    """matmul var -> bias weight, for `add(matmul(x, W), b)` where the add is the matmul's only use.
    `add(b, matmul(x, W))` (the legacy torch exporter's order) is fused only where an activation
    follows it that the kernel applies too: alone, TVM folds it into the next fused kernel for free,
    and fusing it measured 1.01-1.12x slower on the BERT-base x4 benchmark model (5 rounds)."""
    return bias_adds(main, values, lambda call: weight_matmul(call, values) is not None, bias_fits, first_too)


@mutator
class _BlockSparsify(WeightLayerWalk):
    def rewrite_layer(self, var, call: relax.Call, new: relax.Expr) -> relax.Expr:
        matmul = weight_matmul(call, self.values)
        return new if matmul is None else self._rewrite(var, new, *matmul)

    def _rewrite(self, var, new, x, w) -> relax.Expr:
        name = self.names[w]
        spec = self.plan.for_layer(name)
        found = spec.kind == "found"
        if found:
            spec = found_dense(self.values[w].T)
            if spec is None:
                self.reports.append(nothing_found(name, self.values[w]))
                return new
        if spec.kind == "dense":
            return new
        weight = self.values[w]
        k, n = weight.shape
        m = int(np.prod(dims(x)[:-1]))
        report = LayerReport(name, (k, n), "dense", "", dense_bytes=weight.nbytes, packed_bytes=weight.nbytes)
        self.reports.append(report)
        if spec.kind == "circulant":
            mark_found(report, found)
            return circulant.rewrite(self, var, new, x, w, spec, report)
        if spec.kind == "bsr":
            choice = self._choose(spec, weight.T, m, report)
        else:
            choice = choose_patterns(spec, weight.T, m, self.micro if self.gpu is None else None, report)
        mark_found(report, found)
        if choice is None:
            return new
        (r, c), pruned_t, masks = choice
        self.values[w] = np.ascontiguousarray(pruned_t.T)  # a layer left dense still computes the pruned function
        if self.gpu is not None:
            return self._rewrite_gpu(var, new, x, w, spec, report, (r, c), pruned_t, masks, m)
        tile = choose_tile(m, k, r, self.micro)
        if masks is not None and tile.along != "activations" and kept_columns(masks) is None:
            masks = None  # along the outputs only whole-column patterns vectorise: the others run as full blocks
            report.block += " (run as full blocks: along the outputs a pattern must keep whole columns)"
        data, indices, indptr = to_bsr(pruned_t, r, c) if masks is None else to_block_patterns(pruned_t, masks)
        stored = self.plan.capacity.get(name, len(indices))  # the runtime form's kernel holds `capacity` blocks
        tile = choose_tile(m, k, r, self.micro, stored / ((n // r) * (k // c)))
        entries = None if masks is None else data.shape[1]
        predicted = dense_cost(m, k, n, self.micro) / sparse_cost(m, k, r, c, len(indices), self.micro, entries)
        report.density = float((pruned_t != 0).mean()) if masks is not None else len(indices) / ((n // r) * (k // c))
        report.nnz_blocks, report.predicted_speedup = len(indices), round(predicted, 2)
        capacity = self.plan.capacity.get(name)
        if predicted <= 1.0 and capacity is None:
            report.why = f"cost model: {report.block} at density {report.density:.2f} predicted {predicted:.2f}x of dense"
            return new
        if capacity is not None:
            data, indices = pad_blocks(data, capacity), pad_blocks(indices, capacity)
        bias, epilogue, steps = self._bias_and_epilogue(var, n)
        if self.tuning is not None:  # tuned knobs for this exact kernel, if the database has them
            tuned = self.tuning.knobs(bsr_task(name, m, k, n, r, c, (data, indices, indptr), masks, steps,
                                               self.micro, self.threads, tile))
            tile = bsr_tile(tuned, self.micro.lanes) if tuned is not None else tile
        sizes = (m, k, n, r, c, len(indices), tile, self.threads, _Masks(masks), steps)
        kernel = bsr_matmul(*sizes[:8], masks=masks, epilogue=steps)
        error = check_kernel(sizes, pruned_t.T, bias, (data, indices, indptr)) if self.plan.check else None
        if not self.kernel_passes(report, name, spec.kind, error):
            return new
        return self._commit(name, var, x, spec, report, kernel, (data, indices, indptr), epilogue, (m, k, n))

    def _bias_and_epilogue(self, var, n: int) -> tuple:
        """(the bias the kernel adds: the layer's or zeros, the Epilogue it applies or None, its steps)."""
        bias_param = self.biases.get(var)
        bias = self.values[bias_param] if bias_param is not None else np.zeros(n, np.float32)
        epilogue = self.epilogues.get(var)
        return bias, epilogue, epilogue.steps if epilogue is not None else None

    def _commit(self, name, var, x, spec, report, kernel, arrays, epilogue, sizes) -> relax.Expr:
        """A rewrite that passed its check: the bias and epilogue marked done, the report, the call."""
        bias_param = self.biases.get(var)
        if bias_param is not None:
            self.bias_done.add(var)
        if epilogue is not None:
            self.epilogue_done.update(dict.fromkeys(epilogue.members, var))
            report.epilogue = epilogue.name
        report.decision, report.why = spec.kind, spec_reason(spec)
        report.packed_bytes = sum(a.nbytes for a in arrays)
        return self._emit(name, x, kernel, arrays, spec.kind, bias_param, *sizes)

    def _rewrite_gpu(self, var, new, x, w, spec, report, block, pruned_t, masks, m) -> relax.Expr:
        """The GPU form of `_rewrite`'s second half: gpu_bsr_matmul, decided by the GPU cost estimate
        and checked on this machine's OpenCL (pocl) where it has one."""
        name, (r, c), (n, k) = self.names[w], block, pruned_t.shape
        data, indices, indptr = to_bsr(pruned_t, r, c) if masks is None else to_block_patterns(pruned_t, masks)
        entries = None if masks is None else data.shape[1]
        estimate = gpu_costs.compare(gpu_costs.dense_matmul(m, k, n, self.gpu),
                                     gpu_costs.sparse_matmul(m, k, n, r, c, len(indices), self.gpu, entries))
        report.gpu = estimate
        report.density = float((pruned_t != 0).mean()) if masks is not None else len(indices) / ((n // r) * (k // c))
        report.nnz_blocks, report.predicted_speedup = len(indices), estimate["predicted_speedup"]
        capacity = self.plan.capacity.get(name)
        if report.predicted_speedup <= 1.0 and capacity is None:
            report.why = (f"GPU cost estimate: {report.block} at density {report.density:.2f} predicted "
                          f"{report.predicted_speedup:.2f}x of dense")
            return new
        if capacity is not None:
            data, indices = pad_blocks(data, capacity), pad_blocks(indices, capacity)
        bias, epilogue, steps = self._bias_and_epilogue(var, n)
        kernel = gpu_bsr_matmul(m, k, n, r, c, len(indices), self.gpu, masks, steps)
        error = None
        if self.plan.check:
            xs = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
            expected = apply_numpy(steps, xs.astype(np.float64) @ pruned_t.T.astype(np.float64) + bias)
            error = opencl_error(kernel, self.gpu.name, [xs, data, indices, indptr, bias.astype(np.float32)], expected)
        if not self.kernel_passes(report, name, spec.kind, error):
            return new
        return self._commit(name, var, x, spec, report, kernel, (data, indices, indptr), epilogue, (m, k, n))

    def _choose(self, spec: LayerSpec, wt: np.ndarray, m: int, report: LayerReport):
        n, k = wt.shape
        if spec.sparsity is None and spec.block:  # the zeros the weight has, in the blocks given
            shapes = [spec.block]
        elif spec.sparsity is None:  # the zeros the weight has, in the blocks they form
            found, _ = detect_blocks(wt)
            if found is None or found == "unstructured":
                report.why = "no block structure in the weight (give a sparsity to project onto blocks)"
                return None
            shapes = [tuple(int(v) for v in found.split("x"))]
        else:
            shapes = [spec.block] if spec.block else list(CANDIDATES)
        fitting = [(r, c) for r, c in shapes if n % r == 0 and k % c == 0]
        if not fitting:
            report.why = f"[N={n}, K={k}] does not divide into {' or '.join(f'{r}x{c}' for r, c in shapes)} blocks"
            return None
        best = None
        for r, c in fitting:
            pruned = wt if spec.sparsity is None else project(wt, r, c, spec.sparsity)
            nnz = int((np.abs(pruned.reshape(n // r, r, k // c, c)).sum(axis=(1, 3)) != 0).sum())
            cost = sparse_cost(m, k, r, c, max(nnz, 1), self.micro) if self.gpu is None else \
                gpu_costs.sparse_matmul(m, k, n, r, c, max(nnz, 1), self.gpu).microseconds
            if best is None or cost < best[0]:
                best = (cost, (r, c), pruned)
        report.block = f"{best[1][0]}x{best[1][1]}"
        return best[1], best[2], None

    def _emit(self, name, x, kernel, arrays, kind, bias_param, m, k, n) -> relax.Expr:
        bb = self.builder_
        x_new = self.visit_expr(x)
        x2 = bb.emit(relax.op.reshape(x_new, (m, k))) if len(x.ty.shape) != 2 else x_new
        data, indices, indptr = arrays
        data_var = new_weight(self.new_weights, f"{name}.{kind}_data", data)
        if self.plan.form == "runtime":
            structure = [new_weight(self.new_weights, f"{name}.{kind}_indices", indices),
                         new_weight(self.new_weights, f"{name}.{kind}_indptr", indptr)]
        else:
            structure = [relax.const(indices), relax.const(indptr)]
        bias = self.visit_expr(bias_param) if bias_param is not None else relax.const(np.zeros(n, np.float32))
        gv = bb.add_func(kernel, f"gs_{kind}_matmul")
        out = relax.call_tir(gv, [x2, data_var, *structure, bias], relax.TensorType((m, n), "float32"))
        if len(x.ty.shape) != 2:
            out = relax.op.reshape(bb.emit(out), [*dims(x)[:-1], n])
        return out



def spec_reason(spec: LayerSpec) -> str:
    if spec.kind == "pattern":
        return "existing block patterns" if spec.patterns is None else f"projected ({spec})"
    if spec.sparsity is None:
        return "existing block zeros"
    return f"projected to sparsity {spec.sparsity:g}" + (" (block shape given)" if spec.block else " (block shape by cost model)")


class _Masks:
    """Block patterns as a hashable key (the host kernel cache's)."""

    def __init__(self, masks: np.ndarray | None):
        self.masks = masks
        self.key = None if masks is None else (masks.shape, masks.tobytes())

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _Masks) and self.key == other.key


@functools.lru_cache(maxsize=64)
def _host_kernel(m: int, k: int, n: int, r: int, c: int, nnz: int, tile: Tile, threads: int = 1,
                 masks: _Masks | None = None, epilogue: tuple | None = None):
    return build_for_host(bsr_matmul(m, k, n, r, c, nnz, tile, threads, masks.masks if masks else None, epilogue))


def check_kernel(sizes: tuple, w: np.ndarray, bias: np.ndarray, arrays) -> float:
    """Build the kernel of `sizes` (bsr_matmul's arguments, then block patterns as `_Masks` and optionally
    the epilogue's steps) for this machine and run it on random activations: max |error| / max(1, max |reference|), the reference
    computed in float64."""
    m, k = sizes[0], sizes[1]
    x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    expected = apply_numpy(sizes[9] if len(sizes) > 9 else None, x.astype(np.float64) @ w.astype(np.float64) + bias)
    out = tvm.runtime.tensor(np.zeros(expected.shape, np.float32))
    _host_kernel(*sizes)(tvm.runtime.tensor(x), *(tvm.runtime.tensor(a) for a in arrays),
                         tvm.runtime.tensor(bias.astype(np.float32)), out)
    return scaled_error(out.numpy(), expected)


def bias_fits(b: relax.Var, matmul: relax.Call) -> bool:
    w = matmul.args[1]
    return (isinstance(b.ty, relax.TensorType) and b.ty.shape is not None and len(b.ty.shape) == 1
            and isinstance(w.ty, relax.TensorType) and len(w.ty.shape) == 2
            and int(b.ty.shape[0]) == int(w.ty.shape[1]))
