"""Every CPU schedule rule against ONNX Runtime on awkward shapes (tails of the vector width and of
the register block, batch 1, large K), built for the host (and run) and for ARM (built only:
no aarch64 machine here)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_close, ort_run
from onnx import TensorProto, helper, numpy_helper

import gearshift

RNG = np.random.default_rng(7)


def model(nodes, inputs: dict, output: str, out_shape, inits: dict = {}, opset: int = 17):
    graph = helper.make_graph(
        nodes, "case", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def dense(m: int, k: int, n: int, lead=()):
    w = RNG.standard_normal((k, n)) / np.sqrt(k)
    b = RNG.standard_normal(n)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["pre"]),
             helper.make_node("Relu", ["pre"], ["y"])]
    return model(nodes, {"x": [*lead, m, k]}, "y", [*lead, m, n], {"w": w, "b": b})


def conv(n, ci, co, h, w, k=3, stride=1, pads=(1, 1, 1, 1), group=1):
    weight = RNG.standard_normal((co, ci // group, k, k)) / np.sqrt(ci * k * k)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=list(pads), strides=[stride, stride], group=group),
             helper.make_node("Relu", ["c"], ["y"])]
    oh = (h + pads[0] + pads[2] - k) // stride + 1
    ow = (w + pads[1] + pads[3] - k) // stride + 1
    return model(nodes, {"x": [n, ci, h, w]}, "y", [n, co, oh, ow], {"w": weight, "b": RNG.standard_normal(co)})


def batch_matmul(b, m, k, n):
    nodes = [helper.make_node("MatMul", ["a", "c"], ["mm"]), helper.make_node("Sigmoid", ["mm"], ["y"])]
    return model(nodes, {"a": [b, m, k], "c": [b, k, n]}, "y", [b, m, n])


def softmax_layernorm(rows, cols):
    nodes = [helper.make_node("Softmax", ["x"], ["s"], axis=-1),
             helper.make_node("LayerNormalization", ["s", "g", "bt"], ["y"], axis=-1, epsilon=1e-5)]
    return model(nodes, {"x": [2, rows, cols]}, "y", [2, rows, cols],
                 {"g": RNG.standard_normal(cols), "bt": RNG.standard_normal(cols)})


def elementwise(shape):
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]), helper.make_node("Tanh", ["sq"], ["t"]),
             helper.make_node("Add", ["t", "x"], ["y"])]
    return model(nodes, {"x": list(shape)}, "y", list(shape))


CASES = {
    # name: (model, rule that must schedule the main kernel)
    "dense 7x33x50 (row and column tails)": (dense(7, 33, 50), "Matmul"),
    "dense batch 1, N 17": (dense(1, 40, 17), "Matmul"),
    "dense large K 2000": (dense(4, 2000, 24), "Matmul"),
    "dense 3-D input": (dense(9, 33, 19, lead=(2,)), "Matmul"),
    "dense N 5 (narrower than a vector)": (dense(6, 8, 5), "Matmul"),
    "batch matmul 3x5x7x11": (batch_matmul(3, 5, 7, 11), "Matmul"),
    "batch matmul 2x16x64x32": (batch_matmul(2, 16, 64, 32), "Matmul"),
    "conv 3x3 row form (OW 20)": (conv(1, 3, 16, 18, 20), "Conv2d"),
    "conv 3x3 flattened form (OW 19), CO 10 padded": (conv(1, 5, 10, 17, 19), "Conv2d"),
    "conv stride 2": (conv(1, 8, 24, 15, 15, stride=2), "Conv2d"),
    "conv stride 2 to 7x7 (flat pixels rounded up to whole blocks)": (conv(1, 8, 24, 14, 14, stride=2), "Conv2d"),
    "conv 1x1, batch 2": (conv(2, 16, 32, 7, 7, k=1, pads=(0, 0, 0, 0)), "Conv2d"),
    "conv asymmetric padding": (conv(1, 4, 8, 9, 12, pads=(0, 1, 2, 0)), "Conv2d"),
    "depthwise conv (TVM's kernel)": (conv(1, 8, 8, 10, 10, group=8), None),
    "grouped conv (TVM's kernel)": (conv(1, 8, 8, 10, 10, group=2), None),
    "softmax + layernorm 13x37": (softmax_layernorm(13, 37), "dlight.Reduction"),
    "elementwise 3x5x7": (elementwise((3, 5, 7)), "Elementwise"),
    "elementwise 64x1000": (elementwise((64, 1000)), "Elementwise"),
}


def feeds_for(proto) -> dict:
    return {i.name: RNG.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in proto.graph.input}


@pytest.mark.parametrize("name", list(CASES))
def test_host_matches_onnxruntime(name, tmp_path):
    proto, rule = CASES[name]
    built = gearshift.compile_model(proto, "host")
    kernels = built.report["kernels"]
    if rule is not None:
        assert rule in kernels.values(), kernels
    assert "unscheduled" not in kernels.values(), kernels
    feeds = feeds_for(proto)
    out = gearshift.Session(gearshift.save(built, tmp_path / "art")).run(feeds)["y"]
    assert_close(out, ort_run(proto.SerializeToString(), feeds)[0])


@pytest.mark.parametrize("name", [n for n in CASES if "3-D" not in n and "grouped" not in n])
def test_arm_builds(name):
    """Cross-compiled for a Cortex-A76 (NEON, 4-lane vectors: other tails than the host's)."""
    proto, rule = CASES[name]
    built = gearshift.compile_model(proto, "arm-a76")
    assert "unscheduled" not in built.report["kernels"].values(), built.report["kernels"]
    if rule is not None:
        assert rule in built.report["kernels"].values()


def test_a_rule_that_raises_falls_through():
    """A rule raising a TVM error (as dlight's do on some shapes) counts as not matching."""
    from gearshift.frontend.importer import to_relax
    from gearshift.driver import build
    from gearshift.schedules.cpu import default_rules
    import gearshift.schedules.pipeline as pipeline

    class Raises:
        def apply(self, func, target, tunable):
            raise RuntimeError("The block s_tir.SBlock#0 is an output block")

    original = pipeline.default_rules
    pipeline.default_rules = lambda: [Raises(), *default_rules()]
    try:
        built = build(to_relax(elementwise((4, 64))), "host")
    finally:
        pipeline.default_rules = original
    assert "Elementwise" in built.report["kernels"].values()
