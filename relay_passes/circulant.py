"""Circulantize: dense layers -> block-circulant kernels (CirCNN / FTRANS).

Runs inside `BlockSparsify`'s walk over weight matmuls (same layer finding, bias fusion and report)
for layers whose spec is `circulant` (find the blocks W already has: a model trained with
`frontend.circulant` and exported as its dense reconstruction) or `circulant:B` (project W onto
B x B circulant blocks). Only the defining vectors are kept: the FFT path stores their spectra as
the per-pair GEMM weights (packed at compile time), the direct path the vectors themselves. The
cost model (`relay_passes/costs.py`) picks the path, or leaves the layer dense when neither
beats the dense kernel. Each rewrite is checked numerically against x @ W_circulant on this machine;
a layer beyond tolerance falls back to dense with a warning.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from gearshift.compress.circulant import detect_block, project, reconstruct
from gearshift.relay_passes import gpu_costs
from gearshift.relay_passes.costs import choose_path, dense_cost, direct_cost, fft_cost
from gearshift.relay_passes.exprs import dims
from gearshift.relay_passes.walk import build_for_host as compiled
from gearshift.relay_passes.walk import new_weight, opencl_error
from gearshift.schedules.kernels import circulant as kernels
from gearshift.schedules.kernels.gpu_circulant import gpu_circulant_direct
from gearshift.spec import scaled_error
from tvm import relax, te

GPU_PANEL = 4  # the frequency weights' column panel on GPUs (the TE MAC reads them through it)


def rewrite(walk, var, new: relax.Expr, x: relax.Expr, w: relax.Var, spec, report) -> relax.Expr:
    """Rewrite one layer for `walk` (the BlockSparsify mutator) or return `new` unchanged."""
    name, weight = walk.names[w], walk.values[w]
    k, n = weight.shape
    m = int(np.prod(dims(x)[:-1]))
    wt = weight.T
    if spec.block is None:
        b = detect_block(wt)
        if b is None:
            report.why = "no circulant blocks in the weight (give circulant:B to project)"
            return new
    else:
        b = spec.block[0]
    if b == 1:
        report.why = "circulant blocks of 1 are the dense layer"
        return new
    vectors = project(wt, b)
    walk.values[w] = np.ascontiguousarray(reconstruct(vectors, n, k).T)  # left dense, it still computes this
    if walk.gpu is not None:
        return _rewrite_gpu(walk, var, new, x, w, spec, report, vectors, m)
    lanes = walk.micro.lanes
    path = spec.path or choose_path(m, k, n, b, lanes)
    if path == "direct" and (n % b or k % b):
        report.why = f"the direct circulant kernel needs b={b} to divide N={n} and K={k}"
        return new
    cost = (fft_cost if path == "fft" else direct_cost)(m, k, n, b, lanes)
    predicted = dense_cost(m, k, n, walk.micro) / cost
    report.block, report.density, report.predicted_speedup = f"b={b} {path}", 1.0 / b, round(predicted, 2)
    if predicted <= 1.0 and spec.path is None:
        report.why = f"cost model: circulant b={b} ({path}) predicted {predicted:.2f}x of dense"
        return new
    bias_param = walk.biases.get(var)
    bias = walk.values[bias_param] if bias_param is not None else np.zeros(n, np.float32)
    budget = walk.micro.rows * walk.micro.vectors
    form = kernels.mac_form(m, n, b, lanes, budget) if path == "fft" else "direct"
    report.block = f"b={b} {path}" + (f" ({form})" if path == "fft" else "")
    arrays = _arrays(vectors, form, walk.micro.cols)
    error = check(form, (m, k, n, b, walk.threads, lanes, budget), reconstruct(vectors, n, k).T, bias, arrays)
    if not walk.kernel_passes(report, name, "circulant", error):
        return new
    direct_kernel = kernels.direct(m, k, n, b, lanes, budget, walk.threads) if path == "direct" else None
    first = kernels.dft_pairs(m, k, b, lanes, walk.threads) if path == "fft" and k % b == 0 else None
    return _emit(walk, var, x, name, spec, report, arrays, form, (m, k, n, b), direct_kernel, first,
                 lambda bb, xq, stored: _mac(bb, form, xq, stored, m, k, n, b, lanes, budget))


def _rewrite_gpu(walk, var, new, x, w, spec, report, vectors: np.ndarray, m: int) -> relax.Expr:
    """The GPU form: the direct kernel (`gpu_circulant_direct`) or the FFT path's TE kernels (scheduled
    by the GPU Matmul rules), whichever the GPU cost estimate predicts faster, if faster than dense."""
    name, (nb, _, b) = walk.names[w], vectors.shape
    k, n = walk.values[w].shape
    dense = gpu_costs.dense_matmul(m, k, n, walk.gpu)
    paths = {"fft": gpu_costs.circulant_fft(m, k, n, b, walk.gpu)}
    if n % b == 0 and k % b == 0:
        paths["direct"] = gpu_costs.circulant_direct(m, k, n, b, walk.gpu)
    if spec.path is not None and spec.path not in paths:
        report.why = f"the direct circulant kernel needs b={b} to divide N={n} and K={k}"
        return new
    path = spec.path or min(paths, key=lambda p: paths[p].microseconds)
    estimate = gpu_costs.compare(dense, paths[path])
    report.gpu, report.block, report.density = estimate, f"b={b} {path}", 1.0 / b
    report.predicted_speedup = estimate["predicted_speedup"]
    if report.predicted_speedup <= 1.0 and spec.path is None:
        report.why = f"GPU cost estimate: circulant b={b} ({path}) predicted {report.predicted_speedup:.2f}x of dense"
        return new
    bias_param = walk.biases.get(var)
    bias = walk.values[bias_param] if bias_param is not None else np.zeros(n, np.float32)
    form = "direct" if path == "direct" else "gemm"
    arrays = _arrays(vectors, form, GPU_PANEL)
    direct_kernel = gpu_circulant_direct(m, k, n, b, walk.gpu) if path == "direct" else None
    error = None
    if walk.plan.check:
        xs = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
        expected = xs.astype(np.float64) @ reconstruct(vectors, n, k).T.astype(np.float64) + bias
        if direct_kernel is not None:
            error = opencl_error(direct_kernel, walk.gpu.name, [xs, arrays[0], bias.astype(np.float32)], expected)
        else:
            error = _fft_error_on_opencl(walk.gpu.name, xs, arrays, bias, expected, nb)
    if not walk.kernel_passes(report, name, "circulant", error):
        return new
    return _emit(walk, var, x, name, spec, report, arrays, form, (m, k, n, b), direct_kernel, None,
                 lambda bb, xq, stored: bb.call_te(kernels.mac, xq, stored, 2 * nb, primfunc_name_hint="gs_circ_mac"))


def _fft_error_on_opencl(target_name: str, xs, arrays, bias, expected, nb: int) -> float | None:
    """The FFT path's three TE kernels, each scheduled by the target's GPU rules, run in turn on
    this machine's OpenCL: max |error| / max(1, max |expected|); None without OpenCL here."""
    from gearshift.runtime import opencl
    from gearshift.schedules.gpu import default_rules
    from gearshift.schedules.pipeline import first_rule
    from gearshift.schedules.targets import get_target

    if opencl.available() is not None:
        return None
    target = get_target(target_name).tvm_target()
    weights, d, e = arrays

    def stage(make, *inputs: np.ndarray) -> np.ndarray:  # one TE kernel, on placeholders of its inputs
        holders = [te.placeholder(a.shape, name=f"in{i}") for i, a in enumerate(inputs)]
        output = make(*holders)
        with target:
            _, scheduled = first_rule(te.create_prim_func([*holders, output]), target, default_rules(target))
        shape = tuple(int(v) for v in output.shape)
        return pocl.run(opencl.opencl_program(scheduled, target), [*inputs, np.zeros(shape, np.float32)])[-1]

    pocl = opencl.Pocl()
    a = stage(lambda x, dd: kernels.pairs(kernels.dft(x, dd)), xs, d)
    yf = stage(lambda aa, w: kernels.mac(aa, w, 2 * nb), a, weights)
    out = stage(kernels.idft, yf, e, bias.astype(np.float32))
    m, n = expected.shape
    got = out.reshape(m, -1)[:, :n]
    return scaled_error(got, expected)


def _emit(walk, var, x, name, spec, report, arrays, form, sizes, direct_kernel, first, mac) -> relax.Expr:
    """The rewritten layer's calls: the direct kernel, or the FFT path (`first`: a TIR kernel doing
    the DFT and the pair layout at once, else the two TE stages; `mac(bb, xq, stored)`: the products)."""
    m, k, n, b = sizes
    bias_param = walk.biases.get(var)
    if bias_param is not None:
        walk.bias_done.add(var)
    report.decision = "circulant"
    report.why = "existing circulant blocks" if spec.block is None else f"projected to b={b}"
    report.packed_bytes = int(arrays[0].nbytes)
    bb = walk.builder_
    x2 = walk.visit_expr(x)
    if len(x.ty.shape) != 2:
        x2 = bb.emit(relax.op.reshape(x2, (m, k)))
    bias_expr = walk.visit_expr(bias_param) if bias_param is not None else relax.const(np.zeros(n, np.float32))
    stored = new_weight(walk.new_weights, f"{name}.circulant_{form}", arrays[0])
    if direct_kernel is None:
        d, e = (relax.const(a) for a in arrays[1:])
        if first is not None:
            dft = bb.add_func(first, "gs_circ_dft_pairs")
            xq = bb.emit(relax.call_tir(dft, [x2, d], relax.TensorType((max(b // 2, 1), m, 2 * k // b), "float32")))
        else:  # x's last piece is padded, or a GPU target: the two TE kernels
            xq = bb.emit(bb.call_te(kernels.dft, x2, d, primfunc_name_hint="gs_circ_dft"))
            xq = bb.emit(bb.call_te(kernels.pairs, xq, primfunc_name_hint="gs_circ_pairs"))
        yf = bb.emit(mac(bb, xq, stored))
        blocks = bb.emit(bb.call_te(kernels.idft, yf, e, bias_expr, primfunc_name_hint="gs_circ_idft"))
        out = relax.op.reshape(blocks, (m, blocks.ty.shape[1] * b))
        if n % b:
            out = relax.op.strided_slice(bb.emit(out), axes=[1], begin=[0], end=[n])
    else:
        out = relax.call_tir(bb.add_func(direct_kernel, "gs_circ_direct"), [x2, stored, bias_expr],
                             relax.TensorType((m, n), "float32"))
    if len(x.ty.shape) != 2:
        out = relax.op.reshape(bb.emit(out), [*dims(x)[:-1], n])
    return out


def _mac(bb, form: str, xq, stored, m: int, k: int, n: int, b: int, lanes: int, budget: int) -> relax.Expr:
    kb, nb = -(-k // b), -(-n // b)
    if form == "complex":
        kernel = bb.add_func(kernels.complex_mac(m, kb, nb, max(b // 2, 1), lanes, kernels.complex_budget(budget)),
                             "gs_circ_complex_mac")
        return relax.call_tir(kernel, [xq, stored], relax.TensorType((max(b // 2, 1), m, 2 * nb), "float32"))
    return bb.call_te(kernels.mac, xq, stored, 2 * nb, primfunc_name_hint="gs_circ_mac")


def _arrays(vectors: np.ndarray, form: str, cols: int) -> list[np.ndarray]:
    """What the kernels take: (vectors,) for direct; (frequency weights, D, E) for the FFT path, the
    weights compact (b reals per block) for the complex form, packed 2 x 2 real blocks for the GEMM form."""
    if form == "direct":
        return [np.ascontiguousarray(vectors, dtype=np.float32)]
    b = vectors.shape[2]
    weights = (kernels.compact_weights(vectors) if form == "complex"
               else kernels.pack_frequency_weights(kernels.frequency_weights(vectors), cols))
    return [weights, kernels.dft_matrix(b), kernels.idft_matrix(b)]


@functools.lru_cache(maxsize=32)
def _host_kernels(form: str, m: int, k: int, n: int, b: int, threads: int, lanes: int, budget: int, shapes: tuple):
    """The direct kernel; or the FFT path's kernels as the pass emits them (the TIR `dft_pairs` where
    b | K, the TIR `complex_mac` for the complex form), with the TE stages unscheduled (their math and
    layouts; the Matmul rule that schedules them is tested on its own)."""
    if form == "direct":
        return [compiled(kernels.direct(m, k, n, b, lanes, budget, threads))]
    kb, nb, pairs = -(-k // b), -(-n // b), max(b // 2, 1)
    weights, d, e = (te.placeholder(s, name=nm) for s, nm in zip(shapes, ("w", "d", "e")))
    x = te.placeholder((m, k), name="x")
    first = (kernels.dft_pairs(m, k, b, lanes, threads) if k % b == 0
             else te.create_prim_func([x, d, kernels.pairs(kernels.dft(x, d))]))
    a = te.placeholder((pairs, m, 2 * kb), name="a")
    mac = (kernels.complex_mac(m, kb, nb, pairs, lanes, kernels.complex_budget(budget)) if form == "complex"
           else te.create_prim_func([a, weights, kernels.mac(a, weights, 2 * nb)]))
    yf = te.placeholder((pairs, m, 2 * nb), name="yf")
    bias = te.placeholder((n,), name="bias")
    blocks = kernels.idft(yf, e, bias)
    y = te.compute((m, n), lambda i, j: blocks[i, j // b, j % b], name="y")
    return [compiled(first), compiled(mac), compiled(te.create_prim_func([yf, e, bias, y]))]


def check(form: str, sizes: tuple, w: np.ndarray, bias: np.ndarray, arrays: list[np.ndarray]) -> float:
    """Run the kernels of `form` ("direct", "complex" or "gemm") for `sizes` (m, k, n, b, threads,
    lanes, budget) on random activations: max |error| / max(1, max |reference|) against x @ w + bias
    in float64."""
    m, k, n, b = sizes[:4]
    x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
    expected = x.astype(np.float64) @ w.astype(np.float64) + bias
    out = tvm.runtime.tensor(np.zeros(expected.shape, np.float32))
    libs = _host_kernels(form, *sizes, tuple(a.shape for a in arrays))
    t = [tvm.runtime.tensor(a) for a in arrays]
    bias_t = tvm.runtime.tensor(bias.astype(np.float32))
    if form == "direct":
        libs[0](tvm.runtime.tensor(x), *t, bias_t, out)
    else:
        pairs, kb, nb = max(b // 2, 1), -(-k // b), -(-n // b)
        a = tvm.runtime.tensor(np.zeros((pairs, m, 2 * kb), np.float32))
        yf = tvm.runtime.tensor(np.zeros((pairs, m, 2 * nb), np.float32))
        libs[0](tvm.runtime.tensor(x), t[1], a)
        libs[1](a, t[0], yf)
        libs[2](yf, t[2], bias_t, out)
    return scaled_error(out.numpy(), expected)
