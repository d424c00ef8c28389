"""The layer inventory: every weight-carrying layer of a model, its cost and its existing sparsity.

A weight is looked at as a matrix [outputs, inputs] (Gemm/MatMul: the transpose of ONNX's K x N
MatMul weight; Conv: [C_out, C_in/groups * kh * kw]). A block shape r x c spans r outputs and
c inputs, as the block-sparse kernels will. The detected block structure is the largest block shape
whose all-zero blocks hold every zero of the weight (but a stray 0.1 %): a weight pruned in 16x1 blocks reports 16x1
(or something larger if whole larger blocks happen to be zero); scattered zeros report "unstructured".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gearshift.compress.blocks import detect_blocks
from gearshift.compress.circulant import detect_block
from gearshift.frontend.cleanup import static_shapes



@dataclass(frozen=True)
class Layer:
    name: str
    kind: str  # "gemm", "matmul" or "conv"
    weight: str  # the initializer's name
    weight_shape: tuple[int, ...]
    flops: int  # multiply-adds x 2 at the model's input shapes
    params: int  # weight + bias elements
    sparsity: float  # fraction of exact zeros in the weight
    block: str | None  # "RxC", "unstructured", or None for a dense weight
    block_sparsity: float  # fraction of all-zero blocks of that shape (0 when none)
    circulant: int | None = None  # dense layers: the block size b of circulant blocks found (`--sparsity circulant`)

    def to_json(self) -> dict:
        d = asdict(self)
        d["weight_shape"] = list(self.weight_shape)
        return d


def inventory(model: onnx.ModelProto) -> list[Layer]:
    """List the weight-carrying layers of a clean model (see `gearshift.frontend.load`)."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    shapes = static_shapes(graph)
    layers = []
    for i, node in enumerate(graph.node):
        name = node.name or node.output[0] or f"#{i}"
        found = _weight_matrix(node, weights)
        if found is None:
            continue
        kind, wname, matrix, reduce_len, bias = found
        out_shape = shapes.get(node.output[0])
        flops = 2 * int(np.prod(out_shape)) * reduce_len if out_shape is not None else 0
        w = numpy_helper.to_array(weights[wname])
        params = w.size + (numpy_helper.to_array(weights[bias]).size if bias in weights else 0)
        sparsity = float(np.mean(w == 0)) if w.size else 0.0
        block, block_sparsity = detect_blocks(matrix)
        circulant = detect_block(matrix) if kind != "conv" and sparsity < 1.0 else None
        layers.append(Layer(name, kind, wname, tuple(w.shape), flops, params, round(sparsity, 6), block,
                            round(block_sparsity, 6), circulant))
    return layers


def _weight_matrix(node: onnx.NodeProto, weights: dict):
    """(kind, weight name, [out, in] matrix, reduction length, bias name) or None."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in weights:
        b = numpy_helper.to_array(weights[node.input[1]])
        matrix = b if attrs.get("transB", 0) else b.T
        bias = node.input[2] if len(node.input) > 2 else ""
        return "gemm", node.input[1], matrix, matrix.shape[1], bias
    if node.op_type == "MatMul" and node.input[1] in weights and node.input[0] not in weights:
        b = numpy_helper.to_array(weights[node.input[1]])
        if b.ndim != 2:
            return None
        return "matmul", node.input[1], b.T, b.shape[0], ""
    if node.op_type == "Conv" and node.input[1] in weights:
        w = numpy_helper.to_array(weights[node.input[1]])
        matrix = w.reshape(w.shape[0], -1)
        bias = node.input[2] if len(node.input) > 2 else ""
        return "conv", node.input[1], matrix, matrix.shape[1], bias
    return None
