"""GPU targets (Mali-G76, Adreno 640): every kernel's generated OpenCL runs on this machine's OpenCL
(pocl, installed by `make setup`) and matches numpy within 1e-4 abs / 1e-3 rel.

Kernels one by one at odd shapes (not multiples of the work-group or the vector width), for both
targets' variants; then whole small models, every kernel run in graph order and checked against its
unscheduled form, the outputs against ONNX Runtime (dense) or the host build pruned the same way
(compressed). Without OpenCL these tests skip, except where GEARSHIFT_REQUIRE_OPENCL is set
(`make test` sets it), where they fail. No time is measured: pocl runs on the CPU.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import assert_close
from test_rt3_levels import levels_doc, mlp_model

import gearshift
from gearshift.compress.blocks import project as block_project
from gearshift.compress.circulant import project as circulant_project
from gearshift.compress.circulant import reconstruct
from gearshift.compress.patterns import block_project as pattern_block_project
from gearshift.compress.patterns import dense_library, library, project
from gearshift.errors import TargetError
from gearshift.frontend.examples import bert_inputs, mlp, small_cnn, tiny_bert
from gearshift.gpu_check import check_gpu
from gearshift.levels_compiler import compile_levels
from gearshift.relay_passes.levels import parse_levels
from gearshift.schedules.opencl_legal import c_name
from gearshift.relay_passes.pattern_sparse import reference_conv
from gearshift.runtime import opencl
from gearshift.runtime.session import opencl_runtime_problem
from gearshift.schedules.gpu.devices import ADRENO_640, MALI_G76
from gearshift.schedules.kernels.bsr import to_block_patterns, to_bsr
from gearshift.schedules.kernels.gpu_bsr import gpu_bsr_matmul
from gearshift.schedules.kernels.gpu_circulant import gpu_circulant_direct
from gearshift.schedules.kernels.gpu_pattern_conv import gpu_pattern_conv2d
from gearshift.schedules.kernels.pattern_conv import pack
from gearshift.schedules.targets import get_target

GPUS = {"mali-g76": MALI_G76, "adreno-640": ADRENO_640}
RELU = (("relu", ("v", 0), None),)


@pytest.fixture(scope="module", autouse=True)
def _opencl():
    problem = opencl.available()
    if problem:
        if os.environ.get("GEARSHIFT_REQUIRE_OPENCL"):
            pytest.fail(f"GEARSHIFT_REQUIRE_OPENCL is set but {problem}")
        pytest.skip(problem)


def run(kernel, target: str, args: list[np.ndarray], out_shape) -> np.ndarray:
    program = opencl.opencl_program(kernel, get_target(target).tvm_target())
    return opencl.Pocl().run(program, [*args, np.zeros(out_shape, np.float32)])[-1]


# -- kernels at odd shapes ------------------------------------------------------------------------
@pytest.mark.parametrize("target", GPUS)
@pytest.mark.parametrize("m,k,n,r,c", [(37, 52, 48, 16, 1), (5, 36, 20, 4, 4), (7, 33, 10, 1, 3), (130, 768, 96, 16, 1)])
def test_bsr_kernel(target, m, k, n, r, c):
    rng = np.random.default_rng(m + k)
    wt = block_project(rng.standard_normal((n, k)).astype(np.float32), r, c, 0.7)
    data, indices, indptr = to_bsr(wt, r, c)
    x, bias = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    kernel = gpu_bsr_matmul(m, k, n, r, c, len(indices), GPUS[target], epilogue=RELU)
    got = run(kernel, target, [x, data, indices, indptr, bias], (m, n))
    assert_close(got, np.maximum(x.astype(np.float64) @ wt.T + bias, 0))


@pytest.mark.parametrize("target", GPUS)
@pytest.mark.parametrize("m,k,n,r,c,entries", [(37, 52, 48, 4, 4, 8), (9, 40, 24, 8, 4, 16), (5, 30, 12, 4, 2, 3)])
def test_block_pattern_kernel(target, m, k, n, r, c, entries):
    rng = np.random.default_rng(entries)
    wt = rng.standard_normal((n, k)).astype(np.float32)
    masks = dense_library(wt, r, c, entries, 4)
    pruned, _, _ = pattern_block_project(wt, masks, 0.5)
    values, indices, offsets = to_block_patterns(pruned, masks)
    x, bias = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    kernel = gpu_bsr_matmul(m, k, n, r, c, len(indices), GPUS[target], masks=masks)
    assert_close(run(kernel, target, [x, values, indices, offsets, bias], (m, n)), x.astype(np.float64) @ pruned.T + bias)


@pytest.mark.parametrize("target", GPUS)
@pytest.mark.parametrize("n,cin,cout,h,w,pads,stride", [(1, 5, 7, 13, 11, (1, 1, 1, 1), 1), (2, 3, 9, 10, 9, (1, 1, 1, 1), 2),
                                                        (1, 4, 6, 8, 7, (0, 0, 0, 0), 1)])
def test_pattern_conv_kernel(target, n, cin, cout, h, w, pads, stride):
    rng = np.random.default_rng(cout)
    weight = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    masks = library(weight, 4)
    pruned, _, _ = project(weight, masks, 0.3)
    arrays = pack(pruned, masks)
    x, bias = rng.standard_normal((n, cin, h, w)).astype(np.float32), rng.standard_normal(cout).astype(np.float32)
    expected = reference_conv(x, pruned, pads, stride) + bias[None, :, None, None]
    kernel = gpu_pattern_conv2d(n, cin, cout, h, w, pads, stride, masks, len(arrays[1]), GPUS[target])
    assert_close(run(kernel, target, [x, *arrays, bias], expected.shape), expected)


@pytest.mark.parametrize("target", GPUS)
@pytest.mark.parametrize("m,k,n,b", [(5, 32, 48, 16), (37, 24, 12, 4), (2, 8, 6, 2)])
def test_circulant_direct_kernel(target, m, k, n, b):
    rng = np.random.default_rng(b)
    vectors = circulant_project(rng.standard_normal((n, k)).astype(np.float32), b).astype(np.float32)
    x, bias = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    expected = x.astype(np.float64) @ reconstruct(vectors, n, k).T.astype(np.float64) + bias
    assert_close(run(gpu_circulant_direct(m, k, n, b, GPUS[target]), target, [x, vectors, bias], (m, n)), expected)


def test_target_variants_differ_where_the_gpus_do():
    """Adreno stages the activation tile in local memory (on-chip there), Mali reads it straight
    (its local memory is global memory); both load weights and store outputs as float4."""
    kernel = {t: gpu_bsr_matmul(130, 768, 96, 16, 1, 100, spec) for t, spec in GPUS.items()}
    source = {t: opencl.opencl_program(kernel[t], get_target(t).tvm_target()).source for t in GPUS}
    assert "__local" in source["adreno-640"] and "barrier" in source["adreno-640"]
    assert "__local" not in source["mali-g76"] and "barrier" not in source["mali-g76"]
    assert all("vload4" in s and "vstore4" in s for s in source.values())


# -- whole models, kernel by kernel in graph order ------------------------------------------------
def _check(module, x, target, sparsity):
    feeds = x if isinstance(x, dict) else {"x": x.numpy()}
    kwargs = {"example_inputs": feeds} if isinstance(x, dict) else {"example_inputs": (x,), "input_names": ["x"]}
    return check_gpu(module, target, feeds, sparsity=sparsity, **kwargs)


@pytest.mark.parametrize("target", GPUS)
@pytest.mark.parametrize("case,sparsity,decision", [
    ("mlp", "dense", None), ("mlp", "bsr:0.8:4x1", "bsr"), ("mlp", "pattern:4:0.5", "pattern"),
    ("mlp", "circulant:8", "circulant"), ("mlp", "circulant:16:fft", "circulant"),
    ("cnn", "dense", None), ("cnn", "pattern:4:0.7", "pattern"), ("bert", "bsr:0.8", "bsr")])
def test_model_kernels_on_opencl(target, case, sparsity, decision):
    module, x = {"mlp": (mlp((64, 96, 40)), torch.randn(6, 64, generator=torch.Generator().manual_seed(0))),
                 "cnn": (small_cnn(), torch.randn(1, 3, 20, 20, generator=torch.Generator().manual_seed(0))),
                 "bert": (tiny_bert(), bert_inputs(batch=1, seq_len=16))}[case]
    result = _check(module, x, target, sparsity)
    assert result.matches(), f"outputs off by {result.output_error:.2e} against {result.reference_kind}"
    assert result.run.kernels and result.run.worst <= 1e-4
    checked = [k for k in result.run.kernels if k.error is not None]
    written = [k for k in result.run.kernels if k.rule == "written scheduled"]
    assert len(checked) + len(written) == len(result.run.kernels)  # every kernel checked, here or at compile time
    if decision is None:
        assert result.reference_kind == "ONNX Runtime" and not written
        return
    rewritten = [layer for layer in result.layers if layer.decision == decision]
    assert rewritten, [(layer.name, layer.decision, layer.why) for layer in result.layers]
    forced = sparsity.endswith("fft")  # the FFT path's TE kernels get the GPU rules (checked above), asked for
    assert forced or written
    for layer in rewritten:  # each sparse layer's kernels were run on pocl against numpy when they were made
        assert layer.check_error is not None and layer.check_error <= 1e-4
        assert layer.gpu["label"].startswith("predicted") and (forced or layer.gpu["predicted_speedup"] > 1.0)


# -- compile for a GPU target ---------------------------------------------------------------------
@pytest.mark.parametrize("sparsity", ["bsr:0.8", "pattern:4:0.5", "circulant:8"])
def test_gpu_targets_accept_every_structure(mlp_onnx, sparsity):
    for target in GPUS:
        built = gearshift.compile_model(mlp_onnx, target, sparsity=sparsity)
        layers = built.report["sparse_layers"]
        assert any(layer["decision"] != "dense" for layer in layers), layers
        assert all(layer["gpu"] for layer in layers if layer["decision"] != "dense")
        rules = set(built.report["kernels"].values())
        assert "written scheduled" in rules and any(r.startswith("dlight.") or r == "MaliMatmul" for r in rules)


def test_rt3_levels_on_a_gpu_share_one_program():
    """RT3 on a GPU target, runtime form: one program for all four levels, the structure in buffers."""
    built = compile_levels(mlp_model(), parse_levels(levels_doc("runtime")), "mali-g76")
    assert len({id(b.executable) for b in built.builts.values()}) == 1 and len(built.builts) == 4
    for b in built.builts.values():
        assert [layer["decision"] for layer in b.report["sparse_layers"]] == ["bsr", "bsr"]
        assert any(name.endswith("bsr_indices") for name in b.weights)  # structure as buffers
    errors = [built.info[name]["error"] for name in ("l50", "l70", "l85", "l93")]  # run on pocl
    assert errors == sorted(errors) and errors[0] < errors[-1] < 1.0  # sparser levels lose more


def test_session_needs_an_opencl_runtime():
    assert "without OpenCL" in opencl_runtime_problem()  # PyPI's TVM wheels


def test_c_names():
    assert c_name("/inner/embeddings/Gather_output_0") == "_inner_embeddings_Gather_output_0"
    assert c_name("0.weight") == "_0_weight" and c_name("fc1") == "fc1"


def test_cpu_target_is_not_a_gpu():
    with pytest.raises(TargetError):
        get_target("mali-g77")


def test_check_gpu_command(mlp_onnx, capsys):
    from gearshift.cli import main

    assert main(["check-gpu", mlp_onnx, "--target", "adreno-640", "--sparsity", "bsr:0.8:4x1"]) == 0
    out = capsys.readouterr().out
    assert "written scheduled" in out and "predicted, not measured" in out and "within 1e-4 abs" in out
    assert main(["check-gpu", mlp_onnx, "--target", "arm-a76"]) == 2
    assert "not a GPU target" in capsys.readouterr().err


@pytest.mark.parametrize("target", GPUS)
def test_bert_base_shaped_encoder_at_80_percent(target):
    """The issue's bar at its real shape: hidden 768, 12 heads, FFN 3072, 2 layers, sequence 128."""
    from gearshift.frontend.examples import BertConfig

    config = BertConfig(hidden=768, layers=2, heads=12, ffn=3072, max_positions=128)
    feeds = bert_inputs(config, batch=1, seq_len=128)
    result = _check(tiny_bert(config), feeds, target, "bsr:0.8")
    assert result.matches() and result.run.worst <= 1e-4
    bsr = [layer for layer in result.layers if layer.decision == "bsr"]
    assert len(bsr) == 12 and all(layer.check_error <= 1e-4 for layer in bsr)
