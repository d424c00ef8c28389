"""Pre-import clean-up of ONNX graphs, so that real exported models import into Relax.

Exporters leave graphs that TVM's importer handles badly: shape arithmetic on tensors whose shapes
are in fact static (Shape -> Gather -> Concat -> Expand chains building attention masks), old opsets,
weights listed as graph inputs (opset-9 era), position-id buffers sliced at run time. `clean` makes
every input shape static, infers shapes, and folds every subgraph that does not depend on a graph
input into an initializer, so the importer sees plain static tensors. It names the node at fault
when the graph is broken or uses an op that cannot be imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from gearshift.errors import GearshiftImportError, InputShapeError, UnsupportedOpError, summarize

MIN_OPSET = 13  # TVM's converters are written against opset 13+; older graphs are upgraded first.
NONDETERMINISTIC = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
                    "Bernoulli", "Dropout"}
FOLD_ROUNDS = 64  # fold, infer shapes, fold again, until nothing folds: each of Swin's window Pads takes a round
FOLD_LIMIT = 1 << 22  # elements: a folded tensor larger than this (and than its inputs) stays computed


def clean(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """Return a copy of `model` with static input shapes, inferred shapes and constants folded."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    _drop_initializer_inputs(out)
    _check(out)
    out = _upgrade_opset(out)
    _set_input_shapes(out.graph, input_shapes)
    out = _infer_shapes(out)
    for _ in range(FOLD_ROUNDS):  # a fold can make more shapes static, which unties the next chain
        if not fold_constants(out):
            break
        out = _infer_shapes(out)
    check_supported(out)
    _name_anonymous_weights(out.graph)
    return out


def _name_anonymous_weights(graph: onnx.GraphProto) -> None:
    """Exporters name some weights `onnx::MatMul_468`; name them after the node that uses them
    (`/layers.0/intermediate/MatMul` -> `layers.0.intermediate.MatMul.weight`), so layers can be
    told apart and matched by name (`--layer-sparsity`)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for i in node.input:
            users.setdefault(i, []).append(node)
    taken = {init.name for init in graph.initializer}
    renames = {}
    for init in graph.initializer:
        nodes = users.get(init.name, [])
        if not init.name.startswith("onnx::") or len(nodes) != 1 or not nodes[0].name:
            continue
        slot = list(nodes[0].input).index(init.name)
        new = nodes[0].name.strip("/").replace("/", ".") + (".weight" if slot == 1 else ".bias" if slot == 2 else f".in{slot}")
        if new not in taken:
            renames[init.name] = new
            taken.add(new)
    rename_values(graph, lambda name: renames.get(name, name))


def rename_values(graph: onnx.GraphProto, rename: Callable[[str], str]) -> None:
    """Rename values everywhere they appear: initializers, node inputs and outputs, graph inputs,
    outputs and value infos."""
    for init in graph.initializer:
        init.name = rename(init.name)
    for node in graph.node:
        node.input[:] = [rename(i) for i in node.input]
        node.output[:] = [rename(o) for o in node.output]
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        vi.name = rename(vi.name)


def graph_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The real inputs: graph inputs that are not initializers (old exporters list weights as inputs)."""
    weights = {init.name for init in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)


def _drop_initializer_inputs(model: onnx.ModelProto) -> None:
    real = graph_inputs(model.graph)
    if len(real) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(real)
        model.ir_version = max(model.ir_version, 4)  # IR < 4 requires initializers to be inputs


def _check(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as err:
        raise GearshiftImportError(f"invalid ONNX model: {summarize(err, lines=2)}") from None
    for init in model.graph.initializer:  # the checker does not compare an initializer's data with its dims
        try:
            numpy_helper.to_array(init)
        except Exception as err:  # noqa: BLE001  (found by fuzzing: a ValueError deep in constant folding)
            raise GearshiftImportError(f"initializer {init.name!r} (dims {list(init.dims)}, data type "
                                       f"{init.data_type}): its data does not match ({summarize(err, lines=1)})") from None


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    if opset_of(model) >= MIN_OPSET:
        return model
    try:
        return onnx.version_converter.convert_version(model, MIN_OPSET)
    except Exception as err:
        raise GearshiftImportError(
            f"the model is at opset {opset_of(model)} and could not be upgraded to opset {MIN_OPSET}: "
            f"{summarize(err, lines=2)}") from None


def _set_input_shapes(graph: onnx.GraphProto, shapes: Mapping[str, Sequence[int]]) -> None:
    inputs = {i.name: i for i in graph_inputs(graph)}
    unknown = sorted(set(shapes) - set(inputs))
    if unknown:
        raise InputShapeError(f"no model input named {', '.join(map(repr, unknown))}; the inputs are "
                              f"{', '.join(map(repr, inputs))}")
    for name, vi in inputs.items():
        ttype = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or ttype.elem_type == 0:
            raise InputShapeError(f"input {name!r} is not a typed tensor")
        if not ttype.HasField("shape"):
            if name not in shapes:
                raise InputShapeError(f"input {name!r} has no shape in the file; give it (e.g. {name}=1,128)")
            ttype.shape.SetInParent()
            for _ in shapes[name]:
                ttype.shape.dim.add()
        dims = ttype.shape.dim
        if name in shapes:
            given = [int(n) for n in shapes[name]]
            if len(given) != len(dims):
                raise InputShapeError(f"input {name!r} has rank {len(dims)} but the given shape {given} has rank {len(given)}")
            for axis, (d, n) in enumerate(zip(dims, given)):
                if n <= 0:
                    raise InputShapeError(f"input {name!r}: dimension {axis} must be positive, got {n}")
                if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != n:
                    raise InputShapeError(f"input {name!r}: dimension {axis} is {d.dim_value} in the model, "
                                          f"but {n} was given")
                d.Clear()
                d.dim_value = n
        for axis, d in enumerate(dims):
            if not (d.HasField("dim_value") and d.dim_value > 0):
                label = d.dim_param or "?"
                example = ",".join(str(x.dim_value) if x.dim_value else "1" for x in dims)
                raise InputShapeError(f"input {name!r} has a dynamic dimension {axis} ({label}); give a static shape "
                                      f"for it (e.g. {name}={example})")


def _infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as err:
        raise GearshiftImportError(f"shape inference failed: {summarize(err, lines=2)}") from None


def static_shapes(graph: onnx.GraphProto) -> dict[str, tuple[int, ...]]:
    """Every value whose shape is fully known after inference."""
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and t.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            if all(d >= 0 for d in dims):
                shapes[vi.name] = tuple(dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def fold_constants(model: onnx.ModelProto) -> int:
    """Evaluate every node whose inputs are all known, in place; return how many nodes were folded.

    Shape/Size of a statically shaped value count as known, which is what unties attention-mask
    chains. Nodes are evaluated one at a time with ONNX's reference evaluator.
    """
    graph = model.graph
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    shapes = static_shapes(graph)
    opsets = list(model.opset_import)
    kept: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        result = _try_fold(node, values, shapes, opsets)
        if result is None:
            kept.append(node)
            continue
        folded += 1
        for name, value in zip(node.output, result):
            values[name] = value
    if not folded:
        return 0
    needed = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    needed |= {i for n in kept for a in n.attribute if a.type == onnx.AttributeProto.GRAPH for i in _subgraph_inputs(a.g)}
    initializers = [numpy_helper.from_array(np.asarray(v), name) for name, v in values.items() if name in needed]
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return folded


def _try_fold(node: onnx.NodeProto, values: dict, shapes: dict, opsets: list) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in NONDETERMINISTIC:
        return None
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
        return None
    if node.op_type == "Shape" and node.input[0] in shapes:
        dims = np.array(shapes[node.input[0]], dtype=np.int64)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        return [dims[attrs.get("start", 0):attrs.get("end", len(dims))]]
    if node.op_type == "Size" and node.input[0] in shapes:
        return [np.array(int(np.prod(shapes[node.input[0]])), dtype=np.int64)]
    inputs = [i for i in node.input if i]
    if not all(i in values for i in inputs):
        return None
    from onnx.reference import ReferenceEvaluator

    try:
        result = ReferenceEvaluator(node, opsets=opsets).run(None, {i: values[i] for i in inputs})
    except Exception:  # leave it to the importer, which reports it with the node's name
        return None
    biggest_input = max((values[i].size for i in inputs), default=0)
    if any(np.asarray(r).size > max(FOLD_LIMIT, biggest_input) for r in result):
        return None
    return [np.asarray(r) for r in result]


def _subgraph_inputs(graph: onnx.GraphProto) -> set[str]:
    names = {i for n in graph.node for i in n.input}
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                names |= _subgraph_inputs(a.g)
    return names


def check_supported(model: onnx.ModelProto) -> None:
    """Refuse, naming the first offending node, any op the Relax importer cannot convert."""
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    convert_map = _get_convert_map()
    opset = opset_of(model)
    for i, node in enumerate(model.graph.node):
        name = node.name or f"#{i}"
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedOpError(f"ops of the custom domain {node.domain!r} cannot be imported",
                                     node=name, op_type=node.op_type)
        if node.op_type in ("Constant", "If"):
            continue
        converter = convert_map.get(node.op_type)
        if converter is None:
            raise UnsupportedOpError("TVM's ONNX importer has no converter for this op", node=name, op_type=node.op_type)
        try:
            converter.get_converter(opset)
        except Exception:
            raise UnsupportedOpError(f"TVM's ONNX importer has no converter for this op at opset {opset}",
                                     node=name, op_type=node.op_type) from None
