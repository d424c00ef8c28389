"""PatternSparsify: 3x3 convs -> pattern-sparse kernels (PatDNN).  This is where a dense conv
becomes a pattern-sparse one.

For every `conv2d(x, W)` of `main` with W a weight parameter, 3x3, NCHW/OIHW, ungrouped, undilated,
stride 1 or 2, whose layer the plan gives a `pattern` spec:
  - `pattern:K[:C]`: W is projected onto a library of the K most fitting 4-of-9 patterns, and the
    fraction C of its kernels is removed (connectivity pruning), as `frontend.patterns.project`;
  - `pattern`: the patterns W already has (a model trained with `PatternPruner`) are used, if every
    kernel's nonzeros fit a 4-entry pattern keeping the centre.
The layer stays dense (with the projected weights, so the model computes the same function) where
the weight keeps more than `PATTERN_MAX_DENSITY` of its entries: the pattern kernel runs at about half the
dense kernel's FLOP rate here, so it pays only well below half density. Every rewrite is checked on
random input against a float64 convolution with the same weights; beyond tolerance it stays dense.
Other convs (grouped, dilated, other kernel sizes) keep the dense path, with the reason reported.
A following per-channel bias add is done by the kernel (its accumulators start from the bias).
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from gearshift.compress.patterns import fits, library, project
from gearshift.relay_passes import gpu_costs
from gearshift.relay_passes.costs import PATTERN_MAX_DENSITY
from gearshift.relay_passes.exprs import bias_adds, dims, is_op, static_f32
from gearshift.relay_passes.found import found_conv
from gearshift.relay_passes.plan import LayerSpec, SparsityPlan
from gearshift.relay_passes.walk import (LayerReport, WeightLayerWalk, build_for_host, mark_found, new_weight,
                                        nothing_found, opencl_error, rewrite_main)
from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.gpu.devices import GpuSpec
from gearshift.schedules.kernels.gpu_pattern_conv import gpu_pattern_conv2d
from gearshift.spec import Log, scaled_error
from gearshift.schedules.knobs import Tuning, pattern_conv_task
from gearshift.schedules.kernels.pattern_conv import (default_group, out_extent, pack, padded_extent,
                                                      pattern_conv2d)



def pattern_sparsify(mod: tvm.IRModule, weights: list[np.ndarray], names: list[str], plan: SparsityPlan,
                     micro: Microkernel | None, threads: int = 1, log: Log = lambda _m: None,
                     tuning: Tuning | None = None, gpu: GpuSpec | None = None
                     ) -> tuple[tvm.IRModule, list[np.ndarray], list[str], list[LayerReport]]:
    """Rewrite `mod["main"]`'s pattern-spec convs (see the module docstring); as `block_sparsify`."""
    main = mod["main"]
    params = list(main.params[int(main.attrs["num_input"]):])
    values = dict(zip(params, weights))
    biases = bias_adds(main, values, lambda call: is_op(call, "relax.nn.conv2d"), _channel_bias)
    rewriter = _PatternSparsify(mod, values, dict(zip(params, names)), biases, plan, micro, threads, log)
    rewriter.tuning, rewriter.gpu = tuning, gpu
    return rewrite_main(rewriter, main, params)


def _channel_bias(b: relax.Var, conv: relax.Call) -> bool:
    """b is [1, C, 1, 1] (or [C, 1, 1]) with C the conv's output channels: a per-channel bias."""
    shape = [int(d) for d in b.ty.shape.values] if isinstance(b.ty, relax.TensorType) and b.ty.shape is not None else []
    cout = int(conv.args[1].ty.shape[0]) if isinstance(conv.args[1].ty, relax.TensorType) else -1
    return shape in ([1, cout, 1, 1], [cout, 1, 1])


def conv_problem(call: relax.Call) -> str | None:
    """Why this weight conv2d cannot take the pattern kernel, or None when it can."""
    a, w = call.attrs, call.args[1]
    if [int(d) for d in w.ty.shape.values][2:] != [3, 3]:
        return "pattern kernels are 3x3 only"
    if int(a.groups) != 1:
        return "grouped/depthwise conv"
    if any(int(d) != 1 for d in a.dilation):
        return "dilated conv"
    if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "OIHW", "NCHW"):
        return "layout other than NCHW/OIHW"
    s = [int(v) for v in a.strides]
    if s[0] != s[1] or s[0] not in (1, 2):
        return f"stride {s} (1 or 2 supported)"
    return None


def _library_of(w: np.ndarray) -> np.ndarray | None:
    """The patterns W already has: the fewest most-fitting candidates covering every nonzero kernel."""
    support = (w.reshape(*w.shape[:2], 9) != 0)
    nonzero = support.any(axis=2)
    if (support.sum(axis=2) > 4).any():
        return None
    for k in (4, 6, 8, 12, 16, 24, 56):
        masks = library(w, k)
        if fits(w, masks).any(axis=2)[nonzero].all():
            return masks
    return None


@mutator
class _PatternSparsify(WeightLayerWalk):
    def rewrite_layer(self, var, call: relax.Call, new: relax.Expr) -> relax.Expr:
        if not is_op(call, "relax.nn.conv2d") or call.args[1] not in self.values:
            return new
        x, w = call.args
        spec = self.plan.for_layer(self.names[w])
        found = spec.kind == "found"
        if found:
            spec = found_conv(self.values[w]) or LayerSpec("dense")
            if spec.kind == "dense" and self.values[w].shape[2:] == (3, 3):
                self.reports.append(nothing_found(self.names[w], self.values[w]))
        if spec.kind != "pattern" or not static_f32(x) or not static_f32(w):
            return new
        out = self._rewrite(var, call, new, spec)
        mark_found(self.reports[-1], found)
        return out

    def _rewrite(self, var, call: relax.Call, new: relax.Expr, spec) -> relax.Expr:
        x, w = call.args
        name, weight = self.names[w], self.values[w]
        cout, cin = weight.shape[:2]
        report = LayerReport(name, (cin * int(np.prod(weight.shape[2:])), cout), "dense", "",
                             dense_bytes=weight.nbytes, packed_bytes=weight.nbytes)
        self.reports.append(report)
        problem = conv_problem(call)
        if problem:
            report.why = problem
            self.log(f"  {name}: pattern sparsity not applied ({problem}); dense kernel kept")
            return new
        if spec.patterns is None:
            masks = _library_of(weight)
            if masks is None:
                report.why = "no 4-entry pattern structure in the weight (give pattern:K to project)"
                return new
            pruned = weight
        else:
            masks = library(weight, spec.patterns)
            pruned, _, _ = project(weight, masks, spec.sparsity or 0.0)
            self.values[w] = pruned  # a layer left dense still computes the projected function
        density = float((pruned != 0).mean())
        report.block, report.density = f"{len(masks)} patterns", density
        report.nnz_blocks = int((pruned.reshape(cout, cin, 9) != 0).any(axis=2).sum())
        n, _, h, wd = dims(x)
        a = call.attrs
        pads, stride = tuple(int(p) for p in a.padding), int(a.strides[0])
        if self.gpu is not None:
            return self._rewrite_gpu(var, new, x, spec, report, pruned, masks, (n, cin, cout, h, wd, pads, stride))
        if density > PATTERN_MAX_DENSITY:
            report.why = f"density {density:.2f} above {PATTERN_MAX_DENSITY}: the dense kernel is faster"
            return new
        group = default_group(cin, h, wd, pads, stride, self.micro.lanes, report.nnz_blocks / cout)
        block = None  # the rules' register block (`choose_block`)
        if self.tuning is not None:  # tuned knobs for this exact kernel, if the database has them
            tuned = self.tuning.knobs(pattern_conv_task(name, (n, cin, cout, h, wd, pads, stride), pruned, masks,
                                                        self.micro, self.threads))
            if tuned is not None:
                block, group = (int(tuned["rows"]), int(tuned["vectors"])), int(tuned["group"])
        arrays = pack(pruned, masks, self.threads, group)
        sizes = (n, cin, cout, h, wd, pads, stride, masks.tobytes(), len(masks), len(arrays[1]), self.micro.lanes,
                 self.threads, -(-cin // group), block)
        if not self.kernel_passes(report, name, "pattern", check_kernel(sizes, pruned, arrays)):
            return new
        report.decision, report.why = "pattern", "existing patterns" if spec.patterns is None else f"projected ({spec})"
        report.packed_bytes = sum(arr.nbytes for arr in arrays)
        bias = self._bias(var, name, cout)
        return self._emit(name, x, masks, arrays, sizes, cout, out_extent(h, wd, pads, stride), bias)

    def _rewrite_gpu(self, var, new, x, spec, report, pruned, masks, sizes) -> relax.Expr:
        """The GPU form: gpu_pattern_conv2d where the GPU cost estimate predicts it beats dlight's
        implicit-GEMM conv, checked on this machine's OpenCL (pocl) where it has one."""
        n, cin, cout, h, wd, pads, stride = sizes
        name, (oh, ow) = report.name, out_extent(h, wd, pads, stride)
        arrays = pack(pruned, masks)
        estimate = gpu_costs.compare(gpu_costs.dense_conv(n, cin, cout, oh, ow, self.gpu),
                                     gpu_costs.pattern_conv(n, cin, cout, h, wd, oh, ow, report.nnz_blocks, self.gpu))
        report.gpu, report.predicted_speedup = estimate, estimate["predicted_speedup"]
        if report.predicted_speedup <= 1.0:
            report.why = f"GPU cost estimate: pattern conv at density {report.density:.2f} predicted " \
                         f"{report.predicted_speedup:.2f}x of dense"
            return new
        kernel = gpu_pattern_conv2d(n, cin, cout, h, wd, pads, stride, masks, len(arrays[1]), self.gpu)
        error = None
        if self.plan.check:
            xs = np.random.default_rng(0).standard_normal((n, cin, h, wd)).astype(np.float32)
            error = opencl_error(kernel, self.gpu.name, [xs, *arrays, np.zeros(cout, np.float32)],
                                 reference_conv(xs, pruned, pads, stride))
        if not self.kernel_passes(report, name, "pattern", error):
            return new
        report.decision, report.why = "pattern", "existing patterns" if spec.patterns is None else f"projected ({spec})"
        report.packed_bytes = sum(arr.nbytes for arr in arrays)
        bias = self._bias(var, name, cout)
        return self._emit_call(name, x, kernel, arrays, bias, [n, cout, oh, ow])

    def _bias(self, var, name: str, cout: int) -> relax.Expr:
        bias_param = self.biases.get(var)
        if bias_param is None:
            return relax.const(np.zeros(cout, np.float32))
        self.bias_done.add(var)
        return new_weight(self.new_weights, f"{name}.pattern_bias", self.values[bias_param].reshape(cout))

    def _emit_call(self, name, x, kernel, arrays, bias, out_shape) -> relax.Expr:
        """The call of a pattern conv kernel: values as a weight; the structure arrays constants, or
        weights in the runtime form (one executable for several pattern sets of equal size)."""
        values, *structure = arrays
        if self.plan.form == "runtime":
            structure = [new_weight(self.new_weights, f"{name}.pattern_{part}", arr)
                         for part, arr in zip(("channels", "offsets", "order"), structure)]
        else:
            structure = [relax.const(arr) for arr in structure]
        gv = self.builder_.add_func(kernel, "gs_pattern_conv2d")
        return self.builder_.emit(relax.call_tir(
            gv, [self.visit_expr(x), new_weight(self.new_weights, f"{name}.pattern_values", values), *structure, bias],
            relax.TensorType(out_shape, "float32")))

    def _emit(self, name, x, masks, arrays, sizes, cout, extent, bias) -> relax.Expr:
        kernel = pattern_conv2d(*sizes[:7], masks, sizes[9], sizes[10], sizes[11], block=sizes[13], ngroups=sizes[12])
        n, _, _, h, w, pads, stride = sizes[:7]
        out_shape = [n, cout, *padded_extent(h, w, pads, stride, sizes[10], sizes[13])]
        out = self._emit_call(name, x, kernel, arrays, bias, out_shape)
        if tuple(out_shape[2:]) != extent:
            out = relax.op.strided_slice(out, axes=[2, 3], begin=[0, 0], end=list(extent))
        return out


@functools.lru_cache(maxsize=32)
def _host_kernel(n, cin, cout, h, w, pads, stride, mask_bytes, npat, kept, lanes, threads, ngroups, block=None):
    masks = np.frombuffer(mask_bytes, bool).reshape(npat, 3, 3)
    kernel = pattern_conv2d(n, cin, cout, h, w, pads, stride, masks, kept, lanes, threads, block, ngroups)
    return build_for_host(kernel), [n, cout, *padded_extent(h, w, pads, stride, lanes, block)]


def check_kernel(sizes: tuple, w: np.ndarray, arrays) -> float:
    """Run the kernel of `sizes` on this machine on random input: max |error| / max(1, max |ref|)
    against a float64 convolution with the same weights."""
    n, cin, cout, h, wd, pads, stride = sizes[:7]
    lib, out_shape = _host_kernel(*sizes)
    x = np.random.default_rng(0).standard_normal((n, cin, h, wd)).astype(np.float32)
    expected = reference_conv(x, w, pads, stride)
    out = tvm.runtime.tensor(np.zeros(out_shape, np.float32))
    lib(tvm.runtime.tensor(x), *(tvm.runtime.tensor(a) for a in arrays),
        tvm.runtime.tensor(np.zeros(cout, np.float32)), out)
    oh, ow = expected.shape[2:]
    got = out.numpy()[:, :, :oh, :ow]
    return scaled_error(got, expected)


def reference_conv(x: np.ndarray, w: np.ndarray, pads: tuple, stride: int) -> np.ndarray:
    """3x3 convolution in float64, one matmul per tap."""
    oh, ow = out_extent(x.shape[2], x.shape[3], pads, stride)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out = np.zeros((x.shape[0], w.shape[0], oh, ow))
    for dy in range(3):
        for dx in range(3):
            window = xp[:, :, dy:dy + (oh - 1) * stride + 1:stride, dx:dx + (ow - 1) * stride + 1:stride]
            out += np.einsum("oi,nihw->nohw", w[:, :, dy, dx].astype(np.float64), window)
    return out
