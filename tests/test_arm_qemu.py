"""gearshift's kernels built for ARM (Cortex-A76, NEON) and run under qemu-user, against float64 numpy.

Each kernel is compiled by TVM for the aarch64 target with the ARM microkernel (4 lanes, 8 x 3
accumulators), linked with the cross compiler and run by `schedules/qemu.py` on 4 threads.
Tolerance: 1e-4 abs / 1e-3 rel, as everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close
from gearshift.frontend.patterns import block_project, dense_library, library
from gearshift.frontend.patterns import project as pattern_project
from gearshift.relay_passes.pattern_sparse import reference_conv
from gearshift.schedules.cpu.conv2d import Conv2d
from gearshift.schedules.cpu.matmul import Matmul
from gearshift.schedules.cpu.microkernel import microkernel
from gearshift.schedules.kernels.bsr import bsr_matmul, choose_tile, to_block_patterns, to_bsr
from gearshift.compress.blocks import project
from gearshift.schedules.kernels.conv2d import pack_conv_weight, packed_conv2d
from gearshift.schedules.kernels.dense import pack_weight, packed_dense
from gearshift.schedules.kernels.pattern_conv import out_extent, pack, padded_extent, pattern_conv2d
from gearshift.schedules.qemu import missing_tools, run_kernel
from gearshift.schedules.targets import get_target
from tvm import te

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()} (Debian gcc-aarch64-linux-gnu, qemu-user)")

ARM = get_target("arm-a76").tvm_target()
MICRO = microkernel(ARM)
THREADS = 4


@pytest.mark.parametrize("r,c", [(16, 1), (8, 1), (4, 4), (1, 4), (1, 16)])
def test_bsr_kernel_on_arm(r, c):
    rng = np.random.default_rng(r * 100 + c)
    m, k, n = 24, 64, 128
    wt = project(rng.standard_normal((n, k)).astype(np.float32), r, c, 0.8)
    wt[:r] = 0  # an all-zero block row
    data, indices, indptr = to_bsr(wt, r, c)
    tile = choose_tile(m, k, r, MICRO)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    kernel = bsr_matmul(m, k, n, r, c, len(indices), tile, THREADS)
    out = run_kernel(kernel, [x, data, indices.astype(np.int32), indptr.astype(np.int32), bias,
                              np.zeros((m, n), np.float32)])[-1]
    assert_close(out, x.astype(np.float64) @ wt.T.astype(np.float64) + bias)


@pytest.mark.parametrize("r,c,entries", [(4, 4, 8), (4, 4, 4), (2, 8, 8), (16, 4, 32)])
def test_block_pattern_kernel_on_arm(r, c, entries):
    rng = np.random.default_rng(entries)
    m, k, n = 32, 64, 96
    wt = rng.standard_normal((n, k)).astype(np.float32)
    masks = dense_library(wt, r, c, entries, 4)  # 16x4: column patterns, walked along the outputs
    wt, _, _ = block_project(wt, masks, 0.6)
    values, indices, offsets = to_block_patterns(wt, masks)
    tile = choose_tile(m, k, r, MICRO)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    kernel = bsr_matmul(m, k, n, r, c, len(indices), tile, THREADS, masks)
    out = run_kernel(kernel, [x, values, indices, offsets, bias, np.zeros((m, n), np.float32)])[-1]
    assert_close(out, x.astype(np.float64) @ wt.T.astype(np.float64) + bias)


def test_bsr_kernel_with_epilogue_on_arm():
    """A fused ReLU-and-scale epilogue in the 16x1 kernel built for NEON."""
    from gearshift.schedules.kernels.epilogue import apply_numpy

    rng = np.random.default_rng(7)
    m, k, n, steps = 24, 64, 128, (("relu", ("v", 0), None), ("multiply", ("v", 1), ("c", 0.5)))
    wt = project(rng.standard_normal((n, k)).astype(np.float32), 16, 1, 0.8)
    data, indices, indptr = to_bsr(wt, 16, 1)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    kernel = bsr_matmul(m, k, n, 16, 1, len(indices), choose_tile(m, k, 16, MICRO), THREADS, epilogue=steps)
    out = run_kernel(kernel, [x, data, indices, indptr, bias, np.zeros((m, n), np.float32)])[-1]
    assert_close(out, apply_numpy(steps, x.astype(np.float64) @ wt.T.astype(np.float64) + bias))


def test_bsr_kernel_on_arm_uses_neon():
    """The 16x1 kernel's inner loop is NEON vector FMAs (fmla on .4s), not scalar code."""
    import tvm

    kernel = bsr_matmul(24, 64, 128, 16, 1, 40, choose_tile(24, 64, 16, MICRO), THREADS)
    asm = tvm.tirx.build(tvm.IRModule({"k": kernel.with_attr("global_symbol", "k")}), target=ARM).inspect_source("asm")
    assert asm.count("fmla\tv") >= 8


@pytest.mark.parametrize("stride,pads,group", [(1, (1, 1, 1, 1), 0), (2, (1, 1, 1, 1), 0), (1, (0, 0, 0, 0), 3)])
def test_pattern_conv_on_arm(stride, pads, group):
    rng = np.random.default_rng(stride)
    n, cin, cout, h, w = 1, 8, 12, 10, 9
    weight = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    masks = library(weight, 4)
    pruned, _, _ = pattern_project(weight, masks, 0.5)
    pruned[3] = 0  # a filter whose kernels are all pruned
    values, channels, offsets, order = pack(pruned, masks, THREADS, group)
    kernel = pattern_conv2d(n, cin, cout, h, w, pads, stride, masks, len(channels), MICRO.lanes, THREADS,
                            ngroups=-(-cin // group) if group else 1)
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    out_shape = (n, cout, *padded_extent(h, w, pads, stride, MICRO.lanes))
    out = run_kernel(kernel, [x, values, channels, offsets, order, np.zeros(cout, np.float32),
                              np.zeros(out_shape, np.float32)])[-1]
    oh, ow = out_extent(h, w, pads, stride)
    assert_close(out[:, :, :oh, :ow], reference_conv(x, pruned, pads, stride))


def _scheduled(rule, tensors):
    func = te.create_prim_func(tensors)
    sch = rule.apply(func, ARM, False)
    assert sch is not None, f"{type(rule).__name__} did not match"
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def test_dense_matmul_schedule_on_arm():
    rng = np.random.default_rng(1)
    m, k, n = 20, 48, 100  # rows and columns off the register block (8 rows, 12 columns)
    x = te.placeholder((m, k), name="x")
    w = te.placeholder((k, n), name="w")
    y = packed_dense(x, pack_weight(w, MICRO.cols), n)
    kernel = _scheduled(Matmul(), [x, w, y])
    xs, ws = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    out = run_kernel(kernel, [xs, ws, np.zeros((m, n), np.float32)])[-1]
    assert_close(out, xs.astype(np.float64) @ ws.astype(np.float64))


@pytest.mark.parametrize("size,stride", [(16, 1), (14, 1), (11, 2)])
def test_dense_conv_schedule_on_arm(size, stride):
    rng = np.random.default_rng(size)
    cin, cout = 6, 20
    x = te.placeholder((1, cin, size, size), name="x")
    w = te.placeholder((cout, cin, 3, 3), name="w")
    y = packed_conv2d(x, pack_conv_weight(w, MICRO.conv_cols(cout)), cout, (stride, stride), (1, 1, 1, 1), MICRO.rows)
    kernel = _scheduled(Conv2d(), [x, w, y])
    xs = rng.standard_normal((1, cin, size, size)).astype(np.float32)
    ws = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    out_shape = [int(d) for d in y.shape]
    out = run_kernel(kernel, [xs, ws, np.zeros(out_shape, np.float32)])[-1]
    assert_close(out, reference_conv(xs, ws, (1, 1, 1, 1), stride))


@pytest.mark.parametrize("b", [4, 16])
def test_circulant_kernels_on_arm(b):
    """The direct kernel; the FFT path's DFT (fused with the pair regrouping, and as a TE GEMM), its
    per-pair product (GEMM form scheduled by the ARM Matmul rule, and the complex kernel) and inverse DFT."""
    from gearshift.frontend.circulant import reconstruct
    from gearshift.schedules.kernels import circulant as circ

    rng = np.random.default_rng(b)
    m, k, n = 16, 4 * b, 4 * b
    vectors = rng.standard_normal((n // b, k // b, b)).astype(np.float32)
    x = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    expected = x.astype(np.float64) @ reconstruct(vectors, n, k).T.astype(np.float64) + bias
    kernel = circ.direct(m, k, n, b, MICRO.lanes, MICRO.rows * MICRO.vectors, THREADS)
    assert_close(run_kernel(kernel, [x, vectors, bias, np.zeros((m, n), np.float32)])[-1], expected)

    xs, d = te.placeholder((m, k), name="x"), te.placeholder((b, b), name="d")
    xq = run_kernel(_scheduled(Matmul(), [xs, d, circ.dft(xs, d)]), [x, circ.dft_matrix(b), np.zeros((m, k // b, b), np.float32)])[-1]
    a = xq.reshape(m, k // b, b // 2, 2).transpose(2, 0, 3, 1).reshape(b // 2, m, 2 * k // b)  # what `pairs` does
    fused = run_kernel(circ.dft_pairs(m, k, b, MICRO.lanes, THREADS),
                       [x, circ.dft_matrix(b), np.zeros((b // 2, m, 2 * k // b), np.float32)])[-1]
    assert_close(fused, a)  # the kernel the pass emits where b | K
    wp = circ.pack_frequency_weights(circ.frequency_weights(vectors), MICRO.cols)
    ap, wpp = te.placeholder(a.shape, name="a"), te.placeholder(wp.shape, name="wp")
    yf = run_kernel(_scheduled(Matmul(), [ap, wpp, circ.mac(ap, wpp, 2 * n // b)]),
                    [np.ascontiguousarray(a), wp, np.zeros((b // 2, m, 2 * n // b), np.float32)])[-1]
    compact = run_kernel(circ.complex_mac(m, k // b, n // b, b // 2, MICRO.lanes, circ.complex_budget(24)),
                         [np.ascontiguousarray(a), circ.compact_weights(vectors), np.zeros_like(yf)])[-1]
    assert_close(compact, yf)  # the complex form on compact weights
    yp, e, bp = te.placeholder(yf.shape, name="yf"), te.placeholder((b, b), name="e"), te.placeholder((n,), name="bias")
    y = run_kernel(_scheduled(Matmul(), [yp, e, bp, circ.idft(yp, e, bp)]),
                   [yf, circ.idft_matrix(b), bias, np.zeros((m, n // b, b), np.float32)])[-1]
    assert_close(y.reshape(m, n), expected)
