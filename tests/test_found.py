"""Structure found in the weights is used by default: a model pruned in training (exact zero blocks,
block patterns, 3x3 patterns, circulant blocks) compiled with no --sparsity runs the same sparse
kernel as with the explicit flag, with identical outputs; `dense` turns it off; dense weights stay
dense. Tolerance against ONNX Runtime: 1e-4 abs / 1e-3 rel."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, ort_run
from test_block_sparse import fc_model, pruned
from test_pattern_sparse import conv_model

import gearshift
from gearshift.frontend.circulant import reconstruct
from gearshift.frontend.patterns import block_library, block_project, library, project
from gearshift.relay_passes.found import found_conv, found_dense
from gearshift.relay_passes.plan import LayerSpec

RNG = np.random.default_rng(11)


def _fc_bsr():
    return fc_model(pruned(256, 384, 16, 1, 0.9), RNG.standard_normal(384).astype(np.float32), 32), "bsr", "bsr"


def _fc_patterns():
    wt = RNG.standard_normal((384, 256)).astype(np.float32)
    masks = block_library(wt, 4, 4, 4, 4)
    w = np.ascontiguousarray(block_project(wt, masks, 0.5)[0].T)
    return fc_model(w, None, 32), "pattern", "pattern"


def _fc_circulant():
    vectors = RNG.standard_normal((384 // 16, 256 // 16, 16)).astype(np.float32)
    w = np.ascontiguousarray(reconstruct(vectors, 384, 256).T)
    return fc_model(w, None, 128), "circulant", "circulant"


def _conv_patterns():
    w = RNG.standard_normal((64, 32, 3, 3)).astype(np.float32)
    w = project(w, library(w, 4), 0.7)[0].astype(np.float32)
    return conv_model(w, 28, 28), "pattern", "pattern"


CASES = {"bsr-16x1": _fc_bsr, "block-patterns": _fc_patterns, "circulant-16": _fc_circulant, "conv-patterns": _conv_patterns}


@pytest.mark.parametrize("case", list(CASES))
def test_pruned_model_needs_no_flag(case, tmp_path):
    proto, flag, decision = CASES[case]()
    shape = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    feeds = {"x": RNG.standard_normal(shape).astype(np.float32)}
    logs: list[str] = []
    found = gearshift.compile_model(proto, "host", log=logs.append)
    explicit = gearshift.compile_model(proto, "host", sparsity=flag)
    layer, asked = found.report["sparse_layers"][0], explicit.report["sparse_layers"][0]
    assert layer["decision"] == decision and layer["found"], layer
    assert (layer["decision"], layer["block"]) == (asked["decision"], asked["block"]) and not asked["found"]
    assert any("found in the weight" in line for line in logs), logs
    out = gearshift.Session(gearshift.save(found, tmp_path / "found")).run(feeds)["y"]
    same = gearshift.Session(gearshift.save(explicit, tmp_path / "flag")).run(feeds)["y"]
    assert np.array_equal(out, same)  # the same kernel on the same weights
    assert_close(out, ort_run(proto.SerializeToString(), feeds)[0])
    off = gearshift.compile_model(proto, "host", sparsity="dense")
    assert off.report["sparse_layers"] == []


def test_dense_weights_stay_dense():
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    built = gearshift.compile_model(fc_model(w, None, 8), "host")
    assert [(layer["decision"], layer["why"]) for layer in built.report["sparse_layers"]] == [
        ("dense", "no structure found in the weight")]


def test_detection():
    assert found_dense(RNG.standard_normal((32, 48)).astype(np.float32)) is None
    wt = pruned(48, 32, 16, 1, 0.5).T
    assert found_dense(wt) == LayerSpec("bsr")
    vectors = RNG.standard_normal((4, 6, 8)).astype(np.float32)
    circ = reconstruct(vectors, 32, 48)
    assert found_dense(circ) == LayerSpec("circulant")
    noisy = circ + 1e-3 * RNG.standard_normal(circ.shape).astype(np.float32)
    assert found_dense(noisy) is None  # nearly circulant is not lossless: not taken
    w = RNG.standard_normal((8, 4, 3, 3)).astype(np.float32)
    assert found_conv(w) is None
    assert found_conv(project(w, library(w, 4))[0]) == LayerSpec("pattern")
    assert found_conv(np.zeros((8, 4, 1, 1), np.float32)) is None


@pytest.mark.parametrize("target", ["x86-avx2", "x86-avx512", "arm-a76"])
def test_found_on_every_isa(target):
    """The cases above take their sparse kernel whichever ISA's cost model decides (built, not run)."""
    for make in CASES.values():
        proto, _, decision = make()
        layer = gearshift.compile_model(proto, target).report["sparse_layers"][0]
        assert (layer["decision"], layer["found"]) == (decision, True), layer
