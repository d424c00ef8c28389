"""Compiled models agree with ONNX Runtime: MLP, CNN, TinyBert (both exporters), HuggingFace BERT."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import assert_close, ort_run

import gearshift
from gearshift.frontend.load import export_torch


def compile_and_run(model, feeds, tmp_path, **kwargs) -> dict[str, np.ndarray]:
    artifact = gearshift.compile(model, "host", tmp_path / "art", **kwargs)
    return gearshift.Session(artifact).run(feeds)


def test_mlp_matches_onnxruntime(mlp_case, tmp_path):
    module, feeds = mlp_case
    proto = export_torch(module, feeds, output_names=["y"])
    out = compile_and_run(proto, feeds, tmp_path)
    assert list(out) == ["y"]
    assert_close(out["y"], ort_run(proto.SerializeToString(), feeds)[0])


def test_cnn_matches_onnxruntime(cnn_case, tmp_path):
    module, feeds = cnn_case
    proto = export_torch(module, feeds, output_names=["logits"])
    assert {n.op_type for n in proto.graph.node} >= {"Conv", "MaxPool", "Gemm"}
    out = compile_and_run(proto, feeds, tmp_path)
    assert out["logits"].shape == (1, 10)
    assert_close(out["logits"], ort_run(proto.SerializeToString(), feeds)[0])


def test_tiny_bert_matches_onnxruntime(bert_onnx, bert_feeds, tmp_path):
    out = compile_and_run(onnx.load_from_string(bert_onnx), bert_feeds, tmp_path)
    expected = ort_run(bert_onnx, bert_feeds)[0]
    assert_close(out["last_hidden_state"], expected)
    # The padding mask must matter: padded and unpadded sequences give different hidden states.
    assert not np.allclose(expected[1, :4], compile_and_run(
        onnx.load_from_string(bert_onnx), {**bert_feeds, "attention_mask": np.ones_like(bert_feeds["attention_mask"])},
        tmp_path / "nomask")["last_hidden_state"][1, :4], atol=1e-3)


def test_torch_module_compiles_directly(mlp_case, tmp_path):
    module, feeds = mlp_case
    import torch

    out = compile_and_run(module, feeds, tmp_path, example_inputs=feeds)
    with torch.no_grad():
        expected = module(torch.from_numpy(feeds["x"])).numpy()
    assert_close(next(iter(out.values())), expected)


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_huggingface_bert_matches_onnxruntime(exporter, bert_feeds, tmp_path):
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=256, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.BertModel(config).eval()
    proto = export_torch(model, bert_feeds, exporter=exporter, output_names=["last_hidden_state", "pooler_output"])
    out = compile_and_run(proto, bert_feeds, tmp_path)
    expected = ort_run(proto.SerializeToString(), bert_feeds)
    assert_close(out["last_hidden_state"], expected[0])
    assert_close(out["pooler_output"], expected[1])


def test_opset9_model_with_weights_as_inputs(tmp_path):
    """Old exporters listed every weight as a graph input too, at opset 9 and IR version 3."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((16, 8)).astype(np.float32)
    b1 = rng.standard_normal(16).astype(np.float32)
    scale, bias = np.ones(16, np.float32) * 1.5, np.full(16, 0.1, np.float32)
    mean, var = np.zeros(16, np.float32), np.full(16, 2.0, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (scale, "s"), (bias, "b"), (mean, "m"), (var, "v")]]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Unsqueeze", ["h"], ["h4"], name="unsq", axes=[2, 3]),
        helper.make_node("BatchNormalization", ["h4", "s", "b", "m", "v"], ["bn"], name="bn"),
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["y"], name="flat"),
    ]
    weight_inputs = [helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, "old", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
                                             *weight_inputs],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    onnx.checker.check_model(model)
    feeds = {"x": rng.standard_normal((2, 8)).astype(np.float32)}
    out = compile_and_run(model, feeds, tmp_path)
    assert_close(out["y"], ort_run(model.SerializeToString(), feeds)[0])


def test_dynamic_input_with_given_shape(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(4).standard_normal((8, 4)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "dyn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    feeds = {"x": np.ones((5, 8), np.float32)}
    out = compile_and_run(model, feeds, tmp_path, input_shapes={"x": [5, 8]})
    assert_close(out["y"], feeds["x"] @ w)


def test_out_of_vocabulary_token_ids_do_not_crash(bert_feeds, tmp_path):
    """TVM's importer emits unchecked gathers; gearshift clamps them (relay_passes/safety.py)."""
    from gearshift.frontend.examples import tiny_bert

    artifact = gearshift.compile(tiny_bert(), "host", tmp_path / "art", example_inputs=bert_feeds)
    session = gearshift.Session(artifact)
    ids = bert_feeds["input_ids"].copy()
    ids[0, 0] = 10**9  # far past the vocabulary (1000 rows)
    out = next(iter(session.run({**bert_feeds, "input_ids": ids}).values()))
    assert np.isfinite(out).all()
    ids[0, 0] = 999  # the last row: what a clamped index reads
    clamped = next(iter(session.run({**bert_feeds, "input_ids": ids}).values()))
    np.testing.assert_array_equal(out, clamped)
