"""The `gearshift check-gpu` command: a model's GPU build, every OpenCL kernel run on this machine.

    gearshift check-gpu MODEL --target mali-g76|adreno-640 [--sparsity SPEC] [--layer-sparsity R=S ...]
                        [--input-shape NAME=1,128 ...] [--json]

The kernels are those `gearshift compile --target mali-g76|adreno-640` puts in the artifact; they run
on the CPU's OpenCL implementation (pocl, installed by `make setup`) in graph order, each against its
unscheduled form, the outputs against ONNX Runtime (or, for a compressed model, against the same
model built for this CPU). It prints each kernel's rule, launches and error, then the compressed
layers' GPU cost estimate (predictions from published peaks: there is no GPU here).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from gearshift.cli.common import format_table, log, parse_input_shapes, shape_option
from gearshift.errors import InputError
from gearshift.relay_passes.plan import grammar_help


def add_commands(sub) -> None:
    chk = sub.add_parser("check-gpu", help="run a model's GPU (OpenCL) kernels on this machine's OpenCL (pocl), "
                                           "each checked, the outputs against ONNX Runtime")
    chk.add_argument("model", help="an .onnx file")
    chk.add_argument("--target", "-t", default="mali-g76", help="mali-g76 (default) or adreno-640")
    chk.add_argument("--sparsity", metavar="SPEC", help="as for compile (default: the structure the weights have). "
                     + grammar_help())
    chk.add_argument("--layer-sparsity", action="append", default=[], metavar="REGEX=SPEC", help="as for compile")
    chk.add_argument("--json", action="store_true", help="print JSON instead of tables")
    shape_option(chk)
    chk.set_defaults(handler=_check_gpu)


def _check_gpu(args: argparse.Namespace) -> int:
    from gearshift.frontend.load import load
    from gearshift.gpu_check import check_gpu
    from gearshift.relay_passes.plan import SparsityPlan
    from gearshift.runtime.opencl import available, device_name
    from gearshift.schedules.targets import get_target

    if not get_target(args.target).is_gpu:
        raise InputError(f"{args.target} is not a GPU target: use mali-g76 or adreno-640")
    problem = available()
    if problem:
        raise InputError(f"cannot run OpenCL here: {problem}")
    shapes = parse_input_shapes(args.input_shape)
    proto = load(args.model, input_shapes=shapes)
    rng = np.random.default_rng(0)
    inputs = {i.name: _random_input(rng, [d.dim_value for d in i.type.tensor_type.shape.dim], i.type.tensor_type.elem_type)
              for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}}
    plan = SparsityPlan.parse(args.sparsity, args.layer_sparsity)
    log(f"running every kernel of the {args.target} build on {device_name()} (results real, times not a GPU's)")
    result = check_gpu(proto, args.target, inputs, plan, log=log)
    summary = {"target": args.target, "opencl": device_name(), "reference": result.reference_kind,
               "output_error": result.output_error, "output_relative_l2": result.relative_l2, "matches": result.matches(),
               "kernels": [vars(k) for k in result.run.kernels],
               "layers": [{"name": layer.name, "decision": layer.decision, "block": layer.block, "gpu": layer.gpu}
                          for layer in result.layers if layer.gpu]}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        rows = [("kernel", "rule", "launches (groups x items)", "error (vs its unscheduled form)")]
        rows += [(k.name, k.rule, " ".join(f"{_dims(g)}x{_dims(b)}" for _, g, b in k.launches),
                  _error_cell(k)) for k in result.run.kernels]
        print(format_table(rows))
        if summary["layers"]:
            print(f"\nGPU cost estimate per compressed layer ({args.target}; predicted, not measured)")
            rows = [("layer", "became", "dense us", "sparse us", "predicted speedup")]
            rows += [(layer["name"], f"{layer['decision']} {layer['block'] or ''}",
                      f"{layer['gpu']['dense']['microseconds']:.1f}", f"{layer['gpu']['sparse']['microseconds']:.1f}",
                      f"{layer['gpu']['predicted_speedup']:.2f}x") for layer in summary["layers"]]
            print(format_table(rows))
        print(f"\noutputs against {result.reference_kind}: max error {result.output_error:.1e}, relative L2 "
              f"{result.relative_l2:.1e} "
              f"({'within' if result.matches() else 'OUTSIDE'} 1e-4 abs / 1e-3 rel)")
    return 0 if result.matches() else 1


def _error_cell(kernel) -> str:
    if kernel.error is not None:
        return f"{kernel.error:.1e}"
    return "checked vs numpy when made" if kernel.rule == "written scheduled" else "-"


def _dims(d: tuple) -> str:
    return "x".join(str(v) for v in d if v > 1) or "1"


def _random_input(rng, shape: list[int], elem_type: int) -> np.ndarray:
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 2, size=shape).astype(dtype)  # ids and masks: 0/1 is valid for both
    return rng.standard_normal(shape).astype(dtype)
