"""Activations fused into the block-sparse kernel: ReLU and scalar arithmetic after `add(bias, x W)` as
well as `add(x W, bias)`; the exact (erf) GELU as exporters write it stays TVM's own kernel (measured
faster); a chain whose inner value is used elsewhere stays separate ops. Outputs against ONNX Runtime,
1e-4 abs / 1e-3 rel."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import assert_close, ort_run
from onnx import TensorProto, helper, numpy_helper
from test_block_sparse import compile_run, pruned

from gearshift.relay_passes.block_sparse import check_kernel
from gearshift.schedules.kernels.bsr import Tile, to_bsr, uses_panels
from gearshift.compress.blocks import project
from gearshift.schedules.kernels.epilogue import apply_numpy

RNG = np.random.default_rng(11)


def mlp(bias_first: bool, leak: bool = False):
    """x -> MatMul + bias -> erf-GELU -> MatMul + bias -> Relu -> * 0.5 -> MatMul -> y (64 -> 96 -> 64 -> 32).
    leak: the ReLU's output is also a graph output, so the scale after it cannot be fused."""
    w1, w2, w3 = pruned(64, 96, 16, 1, 0.7), pruned(96, 64, 16, 1, 0.7), pruned(64, 32, 16, 1, 0.7)
    b1, b2 = RNG.standard_normal(96).astype(np.float32), RNG.standard_normal(64).astype(np.float32)
    add = (lambda b, v, out: helper.make_node("Add", [b, v] if bias_first else [v, b], [out]))
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"]), add("b1", "m1", "h1"),
             helper.make_node("Div", ["h1", "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["e1"]), helper.make_node("Mul", ["h1", "e1"], ["g0"]),
             helper.make_node("Mul", ["g0", "half"], ["g"]),
             helper.make_node("MatMul", ["g", "w2"], ["m2"]), add("b2", "m2", "h2"), helper.make_node("Relu", ["h2"], ["r"]),
             helper.make_node("Mul", ["r", "half"], ["rs"]), helper.make_node("MatMul", ["rs", "w3"], ["y"])]
    inits = [numpy_helper.from_array(a, name) for name, a in
             [("w1", w1), ("w2", w2), ("w3", w3), ("b1", b1), ("b2", b2), ("sqrt2", np.float32(math.sqrt(2))),
              ("one", np.float32(1.0)), ("half", np.float32(0.5))]]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 32])]
    if leak:
        outputs.append(helper.make_tensor_value_info("r", TensorProto.FLOAT, [16, 64]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 64])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("bias_first", [True, False])
def test_gelu_and_relu_fused(bias_first, tmp_path):
    proto = mlp(bias_first)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    built, out = compile_run(proto, "bsr::16x1", feeds, tmp_path)
    layers = {layer["name"]: layer for layer in built.report["sparse_layers"]}
    assert [layers[w]["epilogue"] for w in ("w1", "w2", "w3")] == ["", "relu multiply", ""], layers
    assert all(layer["decision"] == "bsr" for layer in layers.values())
    assert_close(out, ort_run(proto.SerializeToString(), feeds)[0])


def test_chain_used_elsewhere_is_not_fused(tmp_path):
    proto = mlp(True, leak=True)
    feeds = {"x": RNG.standard_normal((16, 64)).astype(np.float32)}
    built, out = compile_run(proto, "bsr::16x1", feeds, tmp_path)
    layers = {layer["name"]: layer for layer in built.report["sparse_layers"]}
    assert layers["w1"]["epilogue"] == "" and layers["w2"]["epilogue"] == "relu", layers  # relu only: r escapes
    assert_close(out, ort_run(proto.SerializeToString(), feeds)[0])


def test_steps_reference():
    steps = (("relu", ("v", 0), None), ("multiply", ("v", 1), ("c", 0.5)), ("minimum", ("v", 2), ("c", 1.0)),
             ("subtract", ("c", 2.0), ("v", 3)))
    assert apply_numpy(steps, np.array([-1.0, 1.0, 4.0])).tolist() == [2.0, 1.5, 1.0]


RELU_SCALED = (("relu", ("v", 0), None), ("multiply", ("v", 1), ("c", 0.5)), ("minimum", ("v", 2), ("c", 2.0)))


@pytest.mark.parametrize("m,k,r,c,tile", [(50, 3072, 16, 1, Tile("outputs", 6)),  # x through panels
                                          (32, 64, 4, 4, Tile("activations", 16, lanes=8)),
                                          (29, 64, 16, 1, Tile("outputs", 6))])  # a row tail tile
def test_epilogue_in_every_tiling(m, k, r, c, tile):
    n = 32
    wt = project(RNG.standard_normal((n, k)).astype(np.float32), r, c, 0.9)
    bias = RNG.standard_normal(n).astype(np.float32)
    arrays = to_bsr(wt, r, c)
    assert (m == 50) == uses_panels(m, k, n, r, c, len(arrays[1]), tile, 2)
    assert check_kernel((m, k, n, r, c, len(arrays[1]), tile, 2, None, RELU_SCALED), wt.T, bias, arrays) < 1e-5
