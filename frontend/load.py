"""Read a model from wherever the user has it (a file, a ModelProto, a torch module) as clean ONNX.

`load` is the frontend's front door: whatever comes in, what comes out is an `onnx.ModelProto`
that passed the checker, has every input shape fixed, shapes inferred and constant subgraphs
folded (see `cleanup.py`), so the Relax importer sees one well-formed kind of graph.
"""

from __future__ import annotations

import inspect
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from gearshift.frontend.torch_compat import make_torchvision_importable
from gearshift.errors import GearshiftImportError, summarize
from gearshift.frontend.cleanup import clean, rename_values

ModelLike = str | os.PathLike | onnx.ModelProto | Any  # Any: a torch.nn.Module
Shapes = Mapping[str, Sequence[int]]


def load(
    model: ModelLike,
    example_inputs: Sequence[Any] | Mapping[str, Any] | None = None,
    *,
    input_shapes: Shapes | None = None,
    exporter: str = "legacy",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
) -> onnx.ModelProto:
    """Read `model` and return clean ONNX with static input shapes.

    model: an `.onnx` path, an `onnx.ModelProto`, or a `torch.nn.Module` (then `example_inputs`
        is required: a tuple of tensors/arrays, or a dict name -> tensor).
    input_shapes: values for inputs whose shape is dynamic in the file (name -> shape). For a torch
        module the example inputs fix every shape.
    exporter: "legacy" (TorchScript-based `torch.onnx.export`) or "dynamo" (`dynamo=True`).
    """
    if isinstance(model, onnx.ModelProto):
        proto = model
    elif isinstance(model, (str, os.PathLike)):
        proto = read_onnx(Path(model))
    elif _is_torch_module(model):
        if example_inputs is None:
            raise GearshiftImportError("a torch module needs example_inputs to be exported to ONNX")
        proto = export_torch(model, example_inputs, exporter=exporter, input_names=input_names,
                             output_names=output_names)
    else:
        raise GearshiftImportError(
            f"cannot load a {type(model).__name__}: expected an .onnx path, an onnx.ModelProto or a torch.nn.Module")
    return clean(proto, input_shapes or {})


def read_onnx(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file, refusing anything that is not one (protobuf parses many random bytes)."""
    if not path.is_file():
        raise GearshiftImportError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as err:  # the protobuf decoder's errors carry no useful type
        raise GearshiftImportError(f"{path}: not an ONNX file ({summarize(err, width=300)})") from None
    if not proto.HasField("graph") or proto.ir_version <= 0 or not proto.graph.node:
        raise GearshiftImportError(f"{path}: not an ONNX model (no graph, IR version or nodes in the file)")
    if any(init.HasField("data_location") and init.data_location == onnx.TensorProto.EXTERNAL
           for init in proto.graph.initializer):
        try:
            onnx.load_external_data_for_model(proto, str(path.parent))
        except Exception as err:
            raise GearshiftImportError(f"{path}: external weight data could not be read ({summarize(err, width=300)})") from None
    return proto


def export_torch(
    module: Any,
    example_inputs: Sequence[Any] | Mapping[str, Any],
    *,
    exporter: str = "legacy",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """Export a torch module to ONNX with fixed shapes, the way users do it by hand."""
    import torch

    def as_tensor(a: Any) -> "torch.Tensor":
        return a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))

    if isinstance(example_inputs, Mapping):
        input_names = list(example_inputs) if input_names is None else list(input_names)
        if _takes_keywords(module, list(example_inputs)):  # HF models take many optional arguments
            args, kwargs = (), {k: as_tensor(v) for k, v in example_inputs.items()}
        else:  # the keys only name the inputs
            args, kwargs = tuple(as_tensor(v) for v in example_inputs.values()), {}
    else:
        args, kwargs = tuple(as_tensor(a) for a in example_inputs), {}
        input_names = list(input_names) if input_names else [f"input_{i}" for i in range(len(args))]
    output_names = list(output_names) if output_names else None
    make_torchvision_importable()
    module = module.eval()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if exporter == "legacy":
                # nn.MultiheadAttention's inference fast path is one fused op TorchScript cannot export
                torch.backends.mha.set_fastpath_enabled(False)
                if kwargs:  # TorchScript tracing passes keywords badly to HF models: call them by name ourselves
                    module, args, kwargs = _keyword_call(module, list(kwargs)), tuple(kwargs.values()), {}
                buf = io.BytesIO()
                torch.onnx.export(module, args, buf, input_names=input_names, output_names=output_names,
                                  opset_version=opset, dynamo=False)
                proto = _strip_prefix(onnx.load_from_string(buf.getvalue()), "inner.")
                return _restore_weight_names(proto, module)
            if exporter == "dynamo":
                program = torch.onnx.export(module, args, kwargs=kwargs, input_names=input_names, output_names=output_names,
                                            dynamo=True, verbose=False)
                return _restore_weight_names(program.model_proto, module)
        except Exception as err:
            raise GearshiftImportError(f"torch.onnx.export ({exporter}) failed: {summarize(err, width=300)}") from err
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
    raise GearshiftImportError(f"unknown exporter {exporter!r}: use 'legacy' or 'dynamo'")


def _takes_keywords(module: Any, names: list[str]) -> bool:
    params = inspect.signature(module.forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(n in params for n in names)


def _keyword_call(module: Any, names: list[str]) -> Any:
    """Wrap `module` so positional inputs reach it as keywords, and outputs come back as a flat tuple."""
    import torch

    class KeywordCall(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *args: torch.Tensor) -> Any:
            out = self.inner(**dict(zip(names, args)))
            return out.to_tuple() if hasattr(out, "to_tuple") else out

    return KeywordCall().eval()


def _restore_weight_names(model: onnx.ModelProto, module: Any) -> onnx.ModelProto:
    """Give exporter-made weight names (`onnx::MatMul_260`, `val_23`: a Linear weight transposed at
    export) the torch parameter's name, found by value, so layers can be named as users know them."""
    from onnx import numpy_helper

    owner = {}
    for name, p in module.named_parameters():
        value = p.detach().cpu().numpy()
        name = name.removeprefix("inner.")
        owner.setdefault((value.shape, value.tobytes()), name)
        if value.ndim == 2:
            owner.setdefault((value.T.shape, np.ascontiguousarray(value.T).tobytes()), name)
    names = {init.name for init in model.graph.initializer}
    renames = {}
    for init in model.graph.initializer:
        if init.name in owner.values():
            continue
        value = numpy_helper.to_array(init)
        new = owner.get((value.shape, value.tobytes()))
        if new is not None and new not in names and new not in renames.values():
            renames[init.name] = new
    rename_values(model.graph, lambda name: renames.get(name, name))
    return model


def _strip_prefix(model: onnx.ModelProto, prefix: str) -> onnx.ModelProto:
    """Drop the wrapper's attribute name from weight names, so they read as the user's module names them."""
    rename_values(model.graph, lambda name: name.removeprefix(prefix))
    for node in model.graph.node:
        node.name = node.name.replace(f"/{prefix[:-1]}/", "/", 1)
    return model


def _is_torch_module(obj: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)
