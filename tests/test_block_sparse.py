"""Block-sparse layers: the spec parser, projection and BSR packing, the kernel against numpy and ONNX
Runtime for every block shape and both forms, edge cases, and the pass's decisions."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, ort_run
from onnx import TensorProto, helper, numpy_helper

import gearshift
from gearshift.errors import InputError
from gearshift.relay_passes.block_sparse import check_kernel
from gearshift.relay_passes.plan import SPEC_FORMS, LayerSpec, SparsityPlan, grammar_help, parse_spec
from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.bsr import Tile, bsr_matmul, choose_tile, chunk_tiles, to_bsr, uses_panels
from gearshift.compress.blocks import project

RNG = np.random.default_rng(11)


def fc_model(w: np.ndarray, b: np.ndarray | None, m: int, lead: tuple = ()):
    k, n = w.shape
    nodes = [helper.make_node("MatMul", ["x", "fc.weight"], ["mm" if b is not None else "y"], name="fc")]
    inits = [numpy_helper.from_array(w, "fc.weight")]
    if b is not None:
        nodes.append(helper.make_node("Add", ["mm", "fc.bias"], ["y"], name="bias"))
        inits.append(numpy_helper.from_array(b, "fc.bias"))
    graph = helper.make_graph(nodes, "fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*lead, m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*lead, m, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def pruned(k: int, n: int, r: int, c: int, sparsity: float) -> np.ndarray:
    """A [K, N] weight whose transpose is pruned to `sparsity` in r x c blocks."""
    return np.ascontiguousarray(project(RNG.standard_normal((n, k)).astype(np.float32), r, c, sparsity).T)


def compile_run(proto, sparsity, feeds, tmp_path, form="baked"):
    plan = SparsityPlan.parse(sparsity, form=form) if isinstance(sparsity, str) else sparsity
    built = gearshift.compile_model(proto, "host", sparsity=plan)
    return built, gearshift.Session(gearshift.save(built, tmp_path / "art")).run(feeds)["y"]


def test_the_grammar_help_is_what_the_parser_takes():
    """Every bare form and every example in SPEC_FORMS (the CLI's help) parses, and prints back as written."""
    import re

    examples = [form for form, _ in SPEC_FORMS if re.fullmatch(r"[a-z]+", form)]
    examples += [e.rstrip(",;") for _, meaning in SPEC_FORMS for e in re.findall(r"(?:e\.g\. |, )([a-z]+:[\w.:]*)", meaning)]
    assert len(examples) >= 10
    for text in examples:
        assert str(parse_spec(text)) == text
    assert all(form in grammar_help() for form, _ in SPEC_FORMS)


def test_parse_spec_and_errors():
    assert parse_spec("dense") == LayerSpec("dense")
    assert parse_spec("bsr") == LayerSpec("bsr")
    assert parse_spec("bsr:0.8") == LayerSpec("bsr", 0.8)
    assert parse_spec("BSR:0.9:16x1") == LayerSpec("bsr", 0.9, (16, 1))
    assert parse_spec("bsr::4x4") == LayerSpec("bsr", None, (4, 4))
    for text in ["dense", "bsr", "bsr:0.8", "bsr:0.8:16x1", "bsr::4x4"]:
        assert str(parse_spec(text)) == text  # specs print as they are written
    for bad, msg in [("csr:0.5", "expected one of found, dense, bsr"), ("bsr:abc", "fraction"), ("bsr:1.0", r"\[0, 1\)"),
                     ("bsr:0.5:16", "RxC"), ("bsr:0.5:0x4", "RxC"), ("bsr:0.5:4x4:1", "expected")]:
        with pytest.raises(InputError, match=msg):
            parse_spec(bad)
    plan = SparsityPlan.parse("bsr:0.8", ["attention=dense", r"intermediate=bsr:0.9:16x1"])
    assert plan.for_layer("layers.0.attention.query.weight") == LayerSpec("dense")
    assert plan.for_layer("layers.0.intermediate.weight") == LayerSpec("bsr", 0.9, (16, 1))
    assert plan.for_layer("layers.0.output.weight") == LayerSpec("bsr", 0.8)
    with pytest.raises(InputError, match="REGEX=SPEC"):
        SparsityPlan.parse("bsr", ["dense"])
    with pytest.raises(InputError, match="regular expression"):
        SparsityPlan.parse("bsr", ["[=dense"])
    with pytest.raises(InputError, match="sparse form"):
        SparsityPlan.parse("bsr", form="csr")


def test_projection_and_packing_roundtrip():
    wt = RNG.standard_normal((32, 24)).astype(np.float32)
    p = project(wt, 8, 1, 0.75)
    blocks_kept = (np.abs(p.reshape(4, 8, 24, 1)).sum(axis=(1, 3)) != 0)
    assert blocks_kept.sum() == 24  # a quarter of the 4 x 24 blocks
    norms = np.linalg.norm(wt.reshape(4, 8, 24), axis=1)
    assert norms[blocks_kept].min() >= norms[~blocks_kept].max()  # the largest blocks are the ones kept
    data, indices, indptr = to_bsr(p, 8, 1)
    back = np.zeros_like(p)
    for row in range(4):
        for q in range(indptr[row], indptr[row + 1]):
            back[row * 8:(row + 1) * 8, indices[q]] = data[q, 0]
    np.testing.assert_array_equal(back, p)
    assert chunk_tiles(128, 768, 6) == 1 and chunk_tiles(128, 3072, 6) == 2 and chunk_tiles(6, 10, 4) == 1
    assert chunk_tiles(128, 1100, 6) == 7  # a tile over L1: as many as fit L2


def test_kernel_chunks_of_several_tiles_and_a_partial_last_chunk():
    m, k, n = 50, 1100, 32  # tiles of 6 rows: 8 whole tiles in chunks of 7 and 1, then a tail of 2 rows
    wt = project(RNG.standard_normal((n, k)).astype(np.float32), 16, 1, 0.8)
    bias = RNG.standard_normal(n).astype(np.float32)
    arrays = to_bsr(wt, 16, 1)
    assert check_kernel((m, k, n, 16, 1, len(arrays[1]), Tile("outputs", 6)), wt.T, bias, arrays) < 1e-5


AVX2_TILE, AVX512_TILE = Tile("outputs", 6), Tile("outputs", 8, 16)


@pytest.mark.parametrize("m,k,c,tile", [(50, 3072, 1, AVX2_TILE), (24, 1104, 2, AVX2_TILE), (128, 1280, 1, AVX2_TILE),
                                        (64, 3072, 1, AVX512_TILE), (48, 1104, 2, AVX512_TILE)])
def test_kernel_through_panels(m, k, c, tile):
    """Tiles over L1 at 10 % block density read x through transposed panels: chunks of several
    tiles with a partial last one (50 x 3072: 9 tiles, 5 and 4 a thread, chunks of 2), a last tile
    with rows past m (50 = 8 x 6 + 2), blocks two inputs wide, tiles split evenly (128 rows); in
    AVX2's tile and AVX-512's (8 rows of one 16-lane vector), built for this host."""
    n = 32
    wt = project(RNG.standard_normal((n, k)).astype(np.float32), 16, c, 0.9)
    bias = RNG.standard_normal(n).astype(np.float32)
    arrays = to_bsr(wt, 16, c)
    assert uses_panels(m, k, n, 16, c, len(arrays[1]), tile, 2)
    assert check_kernel((m, k, n, 16, c, len(arrays[1]), tile, 2), wt.T, bias, arrays) < 1e-5


def test_panels_only_where_they_measured_faster():
    tile, nnz = Tile("outputs", 6), 48 * 3072 // 10  # 3072 -> 768 at 10 % density
    assert uses_panels(128, 3072, 768, 16, 1, nnz, tile, 2)
    assert not uses_panels(128, 768, 3072, 16, 1, 192 * 768 // 10, tile, 2)  # a tile fits L1
    assert not uses_panels(128, 3072, 768, 16, 1, 2 * nnz, tile, 2)  # 20 %: consecutive blocks share lines
    assert not uses_panels(13, 3072, 768, 16, 1, nnz, tile, 2)  # 3 tiles on 2 threads
    assert not uses_panels(128, 3072, 768, 16, 1, nnz, Tile("outputs", 24, 16), 2)  # AVX-512: 24 rows do not fit a panel
    assert uses_panels(128, 3072, 768, 16, 1, nnz, Tile("outputs", 8, 16), 2)  # 8 rows of one 16-lane vector do


TILES = {"outputs": Tile("outputs", 4), "outputs, row tail": Tile("outputs", 6),
         "activations": Tile("activations", 16, lanes=8)}


@pytest.mark.parametrize("along", TILES)
@pytest.mark.parametrize("r,c", [(16, 1), (1, 16), (8, 1), (4, 4), (1, 4), (2, 8)])
def test_kernel_every_block_shape_against_numpy(r, c, along):
    m, k, n = 32, 64, 48
    wt = project(RNG.standard_normal((n, k)).astype(np.float32), r, c, 0.6)
    bias = RNG.standard_normal(n).astype(np.float32)
    arrays = to_bsr(wt, r, c)
    assert check_kernel((m, k, n, r, c, len(arrays[1]), TILES[along]), wt.T, bias, arrays) < 1e-6


def test_tile_choice():
    avx2 = Microkernel(lanes=8, rows=4, vectors=3)
    assert choose_tile(128, 768, 16, avx2) == Tile("outputs", 6, 8)  # 6 x 2 vectors; 2 rows left for a tail
    assert choose_tile(3, 768, 16, avx2) == Tile("outputs", 3, 8)  # never more rows than m
    assert choose_tile(128, 768, 4, avx2) == Tile("activations", 16, 8)  # 4 x 2 vectors of accumulators
    assert choose_tile(128, 768, 1, avx2) == Tile("activations", 64, 8)
    assert choose_tile(12, 768, 4, avx2).along == "outputs"  # m does not divide into vectors
    assert choose_tile(128, 20, 4, avx2).along == "outputs"  # nor does k
    avx512 = Microkernel(lanes=16, rows=8, vectors=3)
    assert choose_tile(128, 3072, 16, avx512) == Tile("outputs", 24, 16)  # one vector a row, 24 rows
    assert choose_tile(128, 768, 16, avx512) == Tile("outputs", 8, 16)  # 8 rows of x (24 KB) stay in L1
    assert choose_tile(128, 6144, 16, avx512) == Tile("outputs", 24, 16)  # 1 row would: too few accumulators
    assert choose_tile(128, 768, 16, avx512, density=0.5) == Tile("outputs", 24, 16)  # weights cost more than x
    assert choose_tile(128, 3072, 16, avx512, density=0.1) == Tile("outputs", 8, 16)  # read through panels
    assert choose_tile(128, 3072, 16, avx512, density=0.2) == Tile("outputs", 24, 16)
    assert choose_tile(128, 768, 8, avx512).along == "activations"
    assert choose_tile(128, 768, 4, avx512).along == "activations"


def test_kernel_one_vector_blocks_along_the_outputs():
    """The AVX-512 tiling of 16x1 blocks (24 rows of one 16-lane vector), run here with whatever vectors
    the host has: the loop structure is what is checked."""
    m, k, n = 128, 96, 64
    wt = project(RNG.standard_normal((n, k)).astype(np.float32), 16, 1, 0.7)
    bias = RNG.standard_normal(n).astype(np.float32)
    arrays = to_bsr(wt, 16, 1)
    assert check_kernel((m, k, n, 16, 1, len(arrays[1]), Tile("outputs", 24, 16)), wt.T, bias, arrays) < 1e-5


@pytest.mark.parametrize("along", TILES)
@pytest.mark.parametrize("case", ["all-zero block rows", "fully dense", "100% sparse"])
def test_kernel_edge_cases(case, along):
    m, k, n, r, c = 16, 32, 32, 16, 1
    wt = RNG.standard_normal((n, k)).astype(np.float32)
    if case == "all-zero block rows":
        wt[:16] = 0
    elif case == "100% sparse":
        wt[:] = 0
    arrays = to_bsr(wt, r, c)
    bias = RNG.standard_normal(n).astype(np.float32)
    assert check_kernel((m, k, n, r, c, len(arrays[1]), TILES[along]), wt.T, bias, arrays) < 1e-6
    if case == "all-zero block rows":
        assert arrays[2][1] == 0  # the first block row holds no block


def test_kernel_refuses_shapes_that_do_not_divide():
    with pytest.raises(ValueError, match="divide"):
        bsr_matmul(8, 30, 32, 16, 4, 4, Tile("outputs", 4))
    with pytest.raises(ValueError, match="lanes"):
        bsr_matmul(16, 12, 32, 4, 4, 4, Tile("activations", 16, lanes=8))


@pytest.mark.parametrize("form", ["baked", "runtime"])
@pytest.mark.parametrize("block", [(16, 1), (4, 4), (8, 1)])
def test_model_matches_onnxruntime(form, block, tmp_path):
    w = pruned(64, 96, *block, 0.85)
    b = RNG.standard_normal(96).astype(np.float32)
    proto = fc_model(w, b, 16)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    built, out = compile_run(proto, f"bsr::{block[0]}x{block[1]}", feeds, tmp_path, form)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "bsr" and layer["block"] == f"{block[0]}x{block[1]}", layer
    assert layer["density"] == pytest.approx(0.15, abs=0.02)
    assert "gs_bsr_matmul" in " ".join(built.report["kernels"])
    structure = [name for name in built.weights if name.startswith("fc.weight.bsr_")]
    assert structure == (["fc.weight.bsr_data"] if form == "baked"
                         else ["fc.weight.bsr_data", "fc.weight.bsr_indices", "fc.weight.bsr_indptr"])
    assert_close(out, ort_run(proto.SerializeToString(), feeds)[0])


def test_projection_by_the_pass_and_3d_input(tmp_path):
    """bsr:0.75 projects a dense weight; the result equals ONNX Runtime on the projected weight."""
    w = RNG.standard_normal((48, 64)).astype(np.float32)
    proto = fc_model(w, None, 5, lead=(2,))
    feeds = {"x": RNG.standard_normal((2, 5, 48)).astype(np.float32)}
    built, out = compile_run(proto, "bsr:0.75:16x1", feeds, tmp_path)
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "bsr" and layer["density"] == pytest.approx(0.25, abs=0.01)
    reference = fc_model(np.ascontiguousarray(project(w.T, 16, 1, 0.75).T), None, 5, lead=(2,))
    assert_close(out, ort_run(reference.SerializeToString(), feeds)[0])


def test_cost_model_and_shape_fallbacks(tmp_path):
    feeds = {"x": RNG.standard_normal((8, 64)).astype(np.float32)}
    # 10 % sparsity: sparse cannot beat dense, the layer stays dense (with the pruned weights).
    built, out = compile_run(fc_model(pruned(64, 96, 16, 1, 0.1), None, 8), "bsr::16x1", feeds, tmp_path / "a")
    layer = built.report["sparse_layers"][0]
    assert layer["decision"] == "dense" and "cost model" in layer["why"]
    # N = 40 does not divide into 16x1 blocks: left dense, said so.
    built, _ = compile_run(fc_model(RNG.standard_normal((64, 40)).astype(np.float32), None, 8), "bsr:0.9:16x1",
                           feeds, tmp_path / "b")
    assert built.report["sparse_layers"][0]["why"].startswith("[N=40, K=64] does not divide")
    # A weight with scattered zeros and no sparsity given: no block structure to use.
    w = RNG.standard_normal((64, 32)).astype(np.float32)
    w[RNG.random(w.shape) < 0.5] = 0
    built, _ = compile_run(fc_model(w, None, 8), "bsr", feeds, tmp_path / "c")
    assert "no block structure" in built.report["sparse_layers"][0]["why"]


def test_cli_sparsity(tmp_path, mlp_case):
    import subprocess
    import sys

    from gearshift.frontend.load import export_torch

    module, feeds = mlp_case
    path = tmp_path / "mlp.onnx"
    path.write_bytes(export_torch(module, feeds, output_names=["y"]).SerializeToString())
    done = subprocess.run([sys.executable, "-m", "gearshift.cli", "compile", str(path), "-o", str(tmp_path / "a"),
                           "--sparsity", "bsr:0.8:16x1", "--layer-sparsity", "layers.1=dense"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "layers.0.weight: bsr 16x1" in done.stderr and "1 of 1 layers" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "gearshift.cli", "compile", str(path), "-o", str(tmp_path / "b"),
                          "--sparsity", "bsr:2"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "must be in [0, 1)" in bad.stderr


def test_arm_build_with_block_sparse_layers():
    w = pruned(64, 96, 16, 1, 0.8)
    built = gearshift.compile_model(fc_model(w, None, 16), "arm-a76", sparsity="bsr::16x1")
    assert built.report["sparse_layers"][0]["decision"] == "bsr"
