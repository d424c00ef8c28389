"""Block patterns for dense layers (RT3): library and projection, the pattern matmul kernel against
numpy (host and ARM under qemu), the pass against ONNX Runtime in both forms, detection of patterns
already in the weights, and the fall-backs. Tolerance: 1e-4 abs / 1e-3 rel."""

from __future__ import annotations

import numpy as np
import pytest

import gearshift
from conftest import assert_close, ort_run
from gearshift.frontend.patterns import block_fits, block_library, block_project, column_library, dense_library
from gearshift.compress.patterns import block_patterns_of
from gearshift.relay_passes.block_sparse import _Masks, check_kernel
from gearshift.schedules.kernels.bsr import Tile, bsr_matmul, kept_columns, to_block_patterns
from test_block_sparse import compile_run, fc_model

RNG = np.random.default_rng(5)


def test_library_and_projection():
    wt = RNG.standard_normal((64, 48)).astype(np.float32)
    masks = block_library(wt, 4, 4, 8, 4)
    assert masks.shape == (4, 4, 4) and (masks.sum(axis=(1, 2)) == 8).all() and len(np.unique(masks, axis=0)) == 4
    pruned, ids, kept = block_project(wt, masks, 0.5)
    assert (pruned != 0).mean() == pytest.approx(0.25) and kept.mean() == pytest.approx(0.5)
    assert block_fits(pruned, masks).any(axis=2).all()
    blocks = wt.reshape(16, 4, 12, 4).transpose(0, 2, 1, 3)
    energy = np.einsum("abij,pij->abp", blocks.astype(np.float64) ** 2, masks)
    assert (ids == energy.argmax(axis=2)).all()  # each block takes the pattern keeping most energy
    # Lloyd refinement never keeps less energy than the most-frequent start
    start = block_library(wt, 4, 4, 8, 4, iterations=0)
    def kept_energy(m):
        return np.linalg.norm(block_project(wt, m)[0])

    assert kept_energy(masks) >= kept_energy(start) - 1e-6
    # a weight whose blocks already follow the library is returned unchanged, its patterns found again
    assert np.array_equal(block_project(pruned, masks)[0], pruned)
    found = block_patterns_of(pruned, 4, 4)
    assert found is not None and set(map(bytes, found.reshape(-1, 16))) <= set(map(bytes, masks.reshape(-1, 16)))
    assert block_patterns_of(wt, 4, 4) is None  # dense: no pattern structure


def test_packing_roundtrip_and_refusal():
    wt = RNG.standard_normal((32, 16)).astype(np.float32)
    masks = block_library(wt, 4, 4, 6, 3)
    pruned, _, kept = block_project(wt, masks, 0.25)
    values, _, offsets = to_block_patterns(pruned, masks)
    assert values.shape == (int(kept.sum()), 6) and offsets.shape == (8 * 3 + 1,) and offsets[-1] == kept.sum()
    assert np.isclose(np.abs(values).sum(), np.abs(pruned).sum())
    with pytest.raises(ValueError, match="fits none"):
        to_block_patterns(wt, masks)


@pytest.mark.parametrize("r,c,entries,npat", [(4, 4, 8, 4), (4, 4, 4, 8), (8, 1, 4, 3), (2, 8, 5, 2), (4, 4, 1, 1)])
def test_kernel_against_numpy(r, c, entries, npat):
    m, k, n = 32, 64, 96
    wt = RNG.standard_normal((n, k)).astype(np.float32)
    masks = block_library(wt, r, c, entries, npat)
    pruned, _, _ = block_project(wt, masks, 0.6)
    pruned[:r] = 0  # an all-zero block row
    arrays = to_block_patterns(pruned, masks)
    bias = RNG.standard_normal(n).astype(np.float32)
    sizes = (m, k, n, r, c, len(arrays[1]), Tile("activations", 16, lanes=8), 2, _Masks(masks))
    assert check_kernel(sizes, pruned.T, bias, arrays) < 1e-6


def test_column_library():
    """Tall blocks take column patterns: whole block columns kept, as many in each, the energy of each
    block's best column set; other entry counts are refused, and short blocks keep any masks."""
    wt = RNG.standard_normal((64, 48)).astype(np.float32)
    wt[:, 1::4] *= 3  # column 1 of every 16x4 block carries the most energy
    masks = column_library(wt, 16, 4, 32, 3)
    assert masks.shape == (3, 16, 4) and kept_columns(masks) is not None
    assert all(len(cols) == 2 for cols in kept_columns(masks)) and len(np.unique(masks, axis=0)) == 3
    assert any(1 in cols for cols in kept_columns(masks))
    pruned, ids, _ = block_project(wt, masks, 0.5)
    assert (pruned != 0).mean() == pytest.approx(0.25) and block_fits(pruned, masks).any(axis=2).all()
    assert np.array_equal(dense_library(wt, 16, 4, 32, 3), masks)
    assert kept_columns(dense_library(wt, 4, 4, 8, 3)) is None  # short blocks: any 8 of 16
    with pytest.raises(ValueError, match="whole number of its 4 columns"):
        column_library(wt, 16, 4, 24, 3)


def test_kernel_refuses_patterns_along_the_outputs_unless_whole_columns():
    with pytest.raises(ValueError, match="whole columns along the outputs"):
        bsr_matmul(16, 16, 32, 16, 2, 4, Tile("outputs", 4), masks=np.eye(16, 2, dtype=bool)[None])
    assert kept_columns(np.eye(16, 2, dtype=bool)[None]) is None
    assert kept_columns(np.ones((2, 16, 2), bool) & np.array([[True, False], [False, True]])[:, None, :]) == [[0], [1]]


@pytest.mark.parametrize("r,c,columns,npat,m", [(16, 4, 2, 4, 32), (16, 8, 4, 3, 29), (16, 2, 1, 2, 6), (32, 4, 1, 4, 16)])
def test_column_patterns_along_the_outputs(r, c, columns, npat, m):
    """The BSR kernel along the outputs walking column patterns: one unrolled loop per pattern with
    its columns as constants; M off the tile height (a tail tile), an all-zero block row."""
    k, n = 64, 96 if r == 16 else 128
    wt = RNG.standard_normal((n, k)).astype(np.float32)
    masks = column_library(wt, r, c, columns * r, npat)
    pruned, _, _ = block_project(wt, masks, 0.6)
    pruned[:r] = 0
    arrays = to_block_patterns(pruned, masks)
    bias = RNG.standard_normal(n).astype(np.float32)
    sizes = (m, k, n, r, c, len(arrays[1]), Tile("outputs", 6, lanes=8), 2, _Masks(masks))
    assert check_kernel(sizes, pruned.T, bias, arrays) < 1e-6


@pytest.mark.parametrize("form", ["baked", "runtime"])
def test_model_matches_onnxruntime(form, tmp_path):
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    b = RNG.standard_normal(96).astype(np.float32)
    proto = fc_model(w, b, 16)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    built, out = compile_run(proto, "pattern:4:0.75:4x4:8", feeds, tmp_path, form)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "pattern" and layer["block"] == "4x4 x 4 patterns of 8", layer
    assert layer["density"] == pytest.approx(0.125, abs=0.01)
    assert "gs_pattern_matmul" in " ".join(built.report["kernels"])
    masks = block_library(w.T, 4, 4, 8, 4)
    reference = fc_model(np.ascontiguousarray(block_project(w.T, masks, 0.75)[0].T), b, 16)
    assert_close(out, ort_run(reference.SerializeToString(), feeds)[0])


@pytest.mark.parametrize("form", ["baked", "runtime"])
def test_column_patterns_through_the_pass(form, tmp_path):
    """`pattern:4:0.75:16x4:32`: 16x4 blocks keeping 2 whole columns, run along the outputs."""
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    b = RNG.standard_normal(96).astype(np.float32)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    built, out = compile_run(fc_model(w, b, 16), "pattern:4:0.75:16x4:32", feeds, tmp_path, form)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "pattern" and layer["block"] == "16x4 x 4 patterns of 32", layer
    assert layer["density"] == pytest.approx(0.125, abs=0.01)
    reference = fc_model(np.ascontiguousarray(block_project(w.T, column_library(w.T, 16, 4, 32, 4), 0.75)[0].T), b, 16)
    assert_close(out, ort_run(reference.SerializeToString(), feeds)[0])


def test_existing_patterns_detected(tmp_path):
    """`pattern` finds the 8x1 patterns a weight already has; `pattern:::4x4` finds none and stays dense."""
    wt = RNG.standard_normal((96, 64)).astype(np.float32)
    pruned, _, _ = block_project(wt, block_library(wt, 8, 1, 4, 3), 0.7)
    proto = fc_model(np.ascontiguousarray(pruned.T), None, 16)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    expected = ort_run(proto.SerializeToString(), feeds)[0]
    built, out = compile_run(proto, "pattern", feeds, tmp_path)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "pattern" and layer["why"] == "existing block patterns", layer
    assert layer["block"] == "8x1 x 3 patterns of 4"
    assert_close(out, expected)
    built, out = compile_run(proto, "pattern:::4x4", feeds, tmp_path / "b")
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "dense" and "no 4x4 block patterns" in layer["why"], layer
    assert_close(out, expected)


def test_fallbacks(tmp_path):
    """N not divisible by the block: dense with the reason; M off the vector width: full blocks, run on
    the host at a density every x86 ISA's cost model takes."""
    w = RNG.standard_normal((64, 30)).astype(np.float32)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    built, _ = compile_run(fc_model(w, None, 16), "pattern:4:0.5", feeds, tmp_path)
    assert "does not divide" in built.report["sparse_layers"][0]["why"]
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    proto = fc_model(w, None, 5)
    feeds = {"x": RNG.standard_normal((5, 64)).astype(np.float32)}
    built, out = compile_run(proto, "pattern:4:0.95", feeds, tmp_path / "b")
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "pattern" and "run as full blocks" in layer["block"], layer
    reference = fc_model(np.ascontiguousarray(block_project(w.T, block_library(w.T, 4, 4, 8, 4), 0.95)[0].T), None, 5)
    assert_close(out, ort_run(reference.SerializeToString(), feeds)[0])


@pytest.mark.parametrize("target,sparsity,decision", [
    ("x86-avx2", 0.8, "pattern"), ("x86-avx2", 0.95, "pattern"),
    # 4-wide blocks along the outputs fill a quarter of a 16-lane vector: at 20 % density dense wins
    ("x86-avx512", 0.8, "dense"), ("x86-avx512", 0.95, "pattern")])
def test_full_block_decision_per_isa(target, sparsity, decision):
    """The cost model's choice for a 4x4-pattern layer at M = 5 (off the vector width), per named ISA."""
    w = RNG.standard_normal((64, 96)).astype(np.float32)
    built = gearshift.compile_model(fc_model(w, None, 5), target, sparsity=f"pattern:4:{sparsity}")
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == decision, layer
    assert "run as full blocks" in layer["block"]
