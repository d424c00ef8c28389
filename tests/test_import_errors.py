"""Bad input gets a named error (node, op, reason), never a raw TVM traceback."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import gearshift
from gearshift.errors import GearshiftImportError, InputShapeError, UnsupportedOpError


def make_model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


X = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
Y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])


def test_unsupported_op_names_node_and_op():
    square = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3])
    model = make_model([helper.make_node("Relu", ["x"], ["r"], name="act"),
                        helper.make_node("Det", ["r"], ["y"], name="determinant")],
                       [square], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])])
    with pytest.raises(UnsupportedOpError) as info:
        gearshift.load(model)
    assert info.value.node == "determinant" and info.value.op_type == "Det"
    assert "determinant" in str(info.value) and "Det" in str(info.value)


def test_custom_domain_op_is_refused_by_name():
    node = helper.make_node("FusedGelu", ["x"], ["y"], name="gelu0", domain="com.microsoft")
    graph = helper.make_graph([node], "g", [X], [Y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=9)
    with pytest.raises(GearshiftImportError) as info:
        gearshift.load(model)
    assert "gelu0" in str(info.value) and "com.microsoft" in str(info.value)


def test_dynamic_input_without_shape_names_the_input():
    dyn = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch", 3])
    model = make_model([helper.make_node("Relu", ["tokens"], ["y"], name="r")], [dyn],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])])
    with pytest.raises(InputShapeError, match=r"'tokens'.*dynamic dimension 0 \(batch\)"):
        gearshift.load(model)
    # Naming an input that does not exist, or a shape of the wrong rank or size, is refused too.
    with pytest.raises(InputShapeError, match="no model input named 'token'"):
        gearshift.load(model, input_shapes={"token": [1, 3]})
    with pytest.raises(InputShapeError, match="rank"):
        gearshift.load(model, input_shapes={"tokens": [1, 3, 1]})
    with pytest.raises(InputShapeError, match="dimension 1 is 3"):
        gearshift.load(model, input_shapes={"tokens": [1, 4]})
    assert gearshift.load(model, input_shapes={"tokens": [4, 3]}).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4


def test_not_onnx_files(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    random_bytes = tmp_path / "random.onnx"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path in (text, random_bytes, empty):
        with pytest.raises(GearshiftImportError, match="not an ONNX"):
            gearshift.load(path)
    with pytest.raises(GearshiftImportError, match="no such file"):
        gearshift.load(tmp_path / "missing.onnx")
    with pytest.raises(GearshiftImportError, match="cannot load a dict"):
        gearshift.load({"not": "a model"})


def test_truncated_file_is_refused(tmp_path, mlp_onnx):
    data = open(mlp_onnx, "rb").read()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(GearshiftImportError):
        gearshift.load(cut)


def test_malformed_graph_names_the_problem():
    # A node reads a value nothing produces.
    model = make_model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add0")], [X], [Y])
    with pytest.raises(GearshiftImportError, match="invalid ONNX model.*ghost"):
        gearshift.load(model)


def test_type_error_caught_by_shape_inference():
    w = numpy_helper.from_array(np.ones((4, 5), np.float32), "w")  # 3 != 4: inner dimensions disagree
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [X],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5])], [w])
    with pytest.raises(GearshiftImportError, match="shape inference failed"):
        gearshift.load(model)


def test_torch_module_needs_example_inputs(mlp_case):
    with pytest.raises(GearshiftImportError, match="example_inputs"):
        gearshift.load(mlp_case[0])
