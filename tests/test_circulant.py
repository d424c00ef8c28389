"""Block-circulant layers: the projection, the torch layer and its export, both kernels against
numpy for b in {4, 8, 16, 32, 64}, the pass against ONNX Runtime (detected and projected, shapes
not divisible by b, 3-D input), the spec parser. Tolerance: 1e-4 abs / 1e-3 rel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_close, ort_run
from gearshift.errors import InputError
from gearshift.frontend.circulant import (
    CirculantLinear,
    circulant_error,
    circulantize,
    detect_block,
    project,
    reconstruct,
    to_dense,
)
from gearshift.frontend.load import export_torch
from gearshift.relay_passes.plan import LayerSpec, parse_spec
from gearshift.relay_passes.circulant import _arrays, check
from gearshift.relay_passes.costs import choose_path
from gearshift.schedules.kernels.circulant import mac_form
from test_block_sparse import compile_run, fc_model

RNG = np.random.default_rng(3)


def circulant_weight(n: int, k: int, b: int) -> np.ndarray:
    """A Wᵀ [N, K] whose b x b blocks are exactly circulant."""
    return reconstruct(RNG.standard_normal((-(-n // b), -(-k // b), b)).astype(np.float32), n, k)


def test_projection_is_the_nearest_circulant():
    wt = circulant_weight(32, 48, 8)
    assert np.allclose(reconstruct(project(wt, 8), 32, 48), wt)  # a circulant matrix is returned unchanged
    assert detect_block(wt) == 8 and circulant_error(wt, 8) < 1e-6
    noisy = wt + 0.3 * RNG.standard_normal(wt.shape).astype(np.float32)
    best = np.linalg.norm(noisy - reconstruct(project(noisy, 8), 32, 48))
    for _ in range(20):  # any other circulant matrix is farther away
        other = project(noisy, 8) + 0.05 * RNG.standard_normal((4, 6, 8)).astype(np.float32)
        assert np.linalg.norm(noisy - reconstruct(other, 32, 48)) > best
    assert detect_block(noisy) is None
    assert np.array_equal(reconstruct(project(noisy, 1), 32, 48), noisy)  # b = 1: the dense matrix itself
    with pytest.raises(ValueError, match="power of two"):
        project(wt, 6)


def test_projection_of_shapes_not_divisible_by_b():
    wt = circulant_weight(20, 37, 8)  # the padding is cut off: only the existing entries constrain v
    assert np.allclose(reconstruct(project(wt, 8), 20, 37), wt, atol=1e-6)
    assert detect_block(wt) == 8


def test_circulant_linear_trains_and_exports():
    torch.manual_seed(0)
    linear = torch.nn.Linear(40, 24)
    layer = CirculantLinear.from_linear(linear, 8)
    x = torch.randn(5, 40)
    assert torch.allclose(layer(x), x @ layer.dense_weight().T + layer.bias, atol=1e-5)
    assert np.allclose(layer.dense_weight().detach().numpy(), reconstruct(project(linear.weight.detach().numpy(), 8), 24, 40),
                       atol=1e-6)
    layer(x).square().sum().backward()  # gradients reach the defining vectors through the FFTs
    assert layer.vectors.grad is not None and layer.vectors.grad.abs().sum() > 0
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    circulantize(model, 8, layers=r"^0$")
    assert isinstance(model[0], CirculantLinear) and isinstance(model[2], torch.nn.Linear)
    before = model(x[:, :16])
    to_dense(model)
    assert isinstance(model[0], torch.nn.Linear) and torch.allclose(model(x[:, :16]), before, atol=1e-5)
    assert detect_block(model[0].weight.detach().numpy()) == 8
    with pytest.raises(ValueError, match="no nn.Linear"):
        circulantize(model, 8, layers="nothing")


@pytest.mark.parametrize("b", [4, 8, 16, 32, 64])
@pytest.mark.parametrize("form", ["gemm", "complex", "direct"])
def test_kernels_against_numpy(b, form):
    """Both paths, the FFT path in both forms of its per-pair product (the 2 x 2 real GEMM and the
    complex kernel on compact weights, which needs N/b to hold whole vectors)."""
    m, k, n = 16, 2 * b, (8 if form == "complex" else 3) * b
    vectors = RNG.standard_normal((n // b, 2, b)).astype(np.float32)
    bias = RNG.standard_normal(n).astype(np.float32)
    error = check(form, (m, k, n, b, 2, 8, 12), reconstruct(vectors, n, k).T, bias, _arrays(vectors, form, 24))
    assert error < 1e-6


def test_compact_weights_are_as_small_as_the_vectors():
    vectors = RNG.standard_normal((12, 6, 16)).astype(np.float32)
    assert _arrays(vectors, "complex", 24)[0].size == vectors.size  # 16x fewer numbers than dense
    assert _arrays(vectors, "gemm", 24)[0].size == 2 * vectors.size
    assert mac_form(128, 3072, 16, 8, 12) == "complex" and mac_form(128, 3072, 8, 8, 12) == "gemm"
    assert mac_form(128, 40, 16, 8, 12) == "gemm"  # N/b = 3 holds no whole vector


@pytest.mark.parametrize("spec,b,shape", [("circulant", 8, (64, 96)), ("circulant:16", 16, (64, 96)),
                                          ("circulant:8", 8, (60, 90)), ("circulant:4:direct", 4, (32, 64)),
                                          ("circulant:32:fft", 32, (64, 128))])
def test_model_matches_onnxruntime(spec, b, shape, tmp_path):
    k, n = shape
    w = RNG.standard_normal((k, n)).astype(np.float32)
    if spec == "circulant":  # detection: the weight is circulant already
        w = np.ascontiguousarray(circulant_weight(n, k, b).T)
    bias = RNG.standard_normal(n).astype(np.float32)
    feeds = {"x": RNG.standard_normal((2, 8, k)).astype(np.float32)}
    built, out = compile_run(fc_model(w, bias, 8, lead=(2,)), spec, feeds, tmp_path)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "circulant" and layer["block"].startswith(f"b={b} "), layer
    reference = fc_model(np.ascontiguousarray(reconstruct(project(w.T, b), n, k).T), bias, 8, lead=(2,))
    assert_close(out, ort_run(reference.SerializeToString(), feeds)[0])


def test_pass_fallbacks(tmp_path):
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    feeds = {"x": RNG.standard_normal((8, 64)).astype(np.float32)}
    built, out = compile_run(fc_model(w, None, 8), "circulant", feeds, tmp_path)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "dense" and "no circulant blocks" in layer["why"]
    assert_close(out, ort_run(fc_model(w, None, 8).SerializeToString(), feeds)[0])
    built, _ = compile_run(fc_model(w, None, 8), "circulant:1", feeds, tmp_path / "b")
    assert "blocks of 1" in built.report["sparse_layers"][0]["why"]
    built, _ = compile_run(fc_model(RNG.standard_normal((60, 90)).astype(np.float32), None, 8), "circulant:8:direct",
                           {"x": RNG.standard_normal((8, 60)).astype(np.float32)}, tmp_path / "c")
    assert "needs b=8 to divide" in built.report["sparse_layers"][0]["why"]


def test_trained_model_round_trip(tmp_path):
    """A torch model with a CirculantLinear, exported through to_dense, compiles with the blocks found."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 10)).eval()
    circulantize(model, 16, layers=r"^0$")
    to_dense(model)
    x = RNG.standard_normal((4, 64)).astype(np.float32)
    proto = export_torch(model, {"x": x}, output_names=["y"])
    built, out = compile_run(proto, "circulant", {"x": x}, tmp_path)
    decisions = [(layer["decision"], layer["block"]) for layer in built.report["sparse_layers"]]
    assert decisions[0][0] == "circulant" and decisions[0][1].startswith("b=16 fft") and decisions[1][0] == "dense", decisions
    assert_close(out, model(torch.from_numpy(x)).detach().numpy())


def test_spec_parser_and_path_choice():
    assert parse_spec("circulant") == LayerSpec("circulant")
    assert parse_spec("circulant:16") == LayerSpec("circulant", block=(16, 16))
    assert str(parse_spec("circulant:8:direct")) == "circulant:8:direct"
    for bad, msg in [("circulant:6", "power of two"), ("circulant:x", "power of two"), ("circulant:8:fast", "fft or direct"),
                     ("circulant:8:fft:1", "expected circulant")]:
        with pytest.raises(InputError, match=msg):
            parse_spec(bad)
    assert choose_path(128, 768, 3072, 16, 8) == "fft"
    assert choose_path(128, 60, 90, 8, 8) == "fft"  # direct needs b | N and b | K
