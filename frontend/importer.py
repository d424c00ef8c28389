"""Clean ONNX -> Relax IRModule whose weights are function parameters.

Weights stay parameters (not constants baked into the code) because the artifact ships them in
safetensors beside `lib.so`, and because the RT3 runtime swaps them between inferences. Only
floating-point initializers are weights: integer initializers are shapes, axes and indices, and TVM's
importer needs those as constants to know output shapes (as parameters they turn static shapes into
unknown ones and the build fails; seen with `torch.onnx.export(dynamo=True)` graphs).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gearshift.errors import GearshiftImportError, UnsupportedOpError, summarize
from gearshift.frontend.cleanup import graph_inputs, opset_of
from gearshift.spec import TensorSpec

# Input slots that must be compile-time constants even when they hold floats.
STATIC_SLOTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


@dataclass
class Imported:
    """A model in Relax: `mod["main"]` takes the inputs, then the weights, in `weights`' order."""

    mod: object  # tvm.IRModule
    weights: dict[str, np.ndarray]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def to_relax(model: onnx.ModelProto) -> Imported:
    """Import clean ONNX (see `gearshift.frontend.load`) into Relax."""
    from tvm import relax

    model = _constants_as_nodes(model)
    inputs = [_spec(vi) for vi in graph_inputs(model.graph)]
    outputs = [_spec(vi) for vi in model.graph.output]
    mod = _import(model, {s.name: list(s.shape) for s in inputs}, {s.name: s.dtype for s in inputs})
    mod, params = relax.frontend.detach_params(mod)
    names = [p.name for p in mod["main"].params[len(inputs):]]
    values = [np.asarray(p.numpy()) for p in params.get("main", [])]
    if len(names) != len(values):
        raise GearshiftImportError(f"importer returned {len(values)} weights for {len(names)} weight parameters")
    return Imported(mod, dict(zip(names, values)), inputs, outputs)


def _constants_as_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn every initializer that is not a weight into a Constant node (see the module docstring)."""
    static = {node.input[slot] for node in model.graph.node for (op, slot) in STATIC_SLOTS
              if node.op_type == op and len(node.input) > slot}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    weights, constants = [], []
    for init in out.graph.initializer:
        is_weight = (helper.tensor_dtype_to_np_dtype(init.data_type).kind == "f"
                     and int(np.prod(init.dims)) > 1 and init.name not in static)
        (weights if is_weight else constants).append(init)
    nodes = [helper.make_node("Constant", [], [c.name], name=f"const:{c.name}",
                              value=numpy_helper.from_array(numpy_helper.to_array(c))) for c in constants]
    nodes += list(out.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.initializer[:]
    out.graph.initializer.extend(weights)
    return out


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec:
    t = vi.type.tensor_type
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(t.elem_type)).name
    return TensorSpec(vi.name, tuple(d.dim_value for d in t.shape.dim), dtype)


def _import(model: onnx.ModelProto, shapes: dict, dtypes: dict):
    """Run TVM's ONNX importer, turning its failures into errors that name the node."""
    from tvm.relax.frontend.onnx import onnx_frontend as tvm_onnx

    class NamedImporter(tvm_onnx.ONNXGraphImporter):
        def _convert_operator(self, op_name, inputs, attrs, opset):
            try:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            except GearshiftImportError:
                raise
            except Exception as err:
                node = attrs.get("tvm_custom", {}).get("name")
                raise UnsupportedOpError(f"TVM's importer failed on it: {summarize(err, last=True)}",
                                         node=node, op_type=op_name) from None

    importer = NamedImporter(shapes, dtypes, keep_params_in_input=True, sanitize=True)
    with contextlib.redirect_stdout(io.StringIO()):  # the importer prints its own failure notes
        try:
            return importer.from_onnx(model.graph, opset_of(model))
        except GearshiftImportError:
            raise
        except Exception as err:
            raise GearshiftImportError(f"TVM's ONNX importer failed: {summarize(err, last=True)}") from None
