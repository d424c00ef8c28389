"""The whole pipeline in one call: model -> clean ONNX -> Relax -> library -> artifact directory."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gearshift.driver import Built, build
from gearshift.frontend.importer import to_relax
from gearshift.frontend.load import ModelLike, load
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.runtime.artifact import Artifact, write_artifact
from gearshift.schedules.targets import get_target
from gearshift.spec import Log
from gearshift.tune.lookup import tuning_from


def compile_model(
    model: ModelLike,
    target: str = "host",
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    example_inputs: Sequence[Any] | Mapping[str, Any] | None = None,
    exporter: str = "legacy",
    output_names: Sequence[str] | None = None,
    sparsity: SparsityPlan | str | None = None,
    db: str | os.PathLike | None = None,
    calibration: Mapping[str, Any] | None = None,
    log: Log = lambda _msg: None,
) -> Built:
    """Compile `model` (see `gearshift.frontend.load` for what it may be) for `target`.

    sparsity: a `SparsityPlan`, or a spec for every weight layer such as "bsr:0.8" or "bsr:0.9:16x1"
    (see `gearshift.relay_passes.plan`); None: the structure each weight already has ("found"),
    "dense" to turn that off. db: a tuning database folder (`gearshift tune`): the sparse kernels it
    has records for take their fastest measured knobs, the others the rules'. calibration: sample
    inputs by name for `vta-sim`'s int8 scales (default: random ones)."""
    info = get_target(target)  # fail on a bad name before any slow work
    tuning = tuning_from(db, info)
    t = time.perf_counter()
    proto = load(model, example_inputs, input_shapes=input_shapes, exporter=exporter,
                 output_names=output_names)
    imported = to_relax(proto)
    log(f"import: {len(proto.graph.node)} ONNX nodes after clean-up, {len(imported.weights)} weights "
        f"({time.perf_counter() - t:.1f} s)")
    plan = SparsityPlan.parse(sparsity) if isinstance(sparsity, str) or sparsity is None else sparsity
    built = build(imported, info, log=log, sparsity=plan, tuning=tuning,
                  calibration={k: np.asarray(v) for k, v in calibration.items()} if calibration is not None else None)
    built.report["import_seconds"] = round(
        time.perf_counter() - t - built.report["transform_seconds"] - built.report["build_seconds"], 3)
    return built


def manifest_of(built: Built, name: str) -> dict:
    """The model's facts for the artifact's manifest."""
    import tvm
    from gearshift.version import __version__

    return {
        "name": name,
        "gearshift_version": __version__,
        "tvm_version": tvm.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "target": {"name": built.target.name, "description": built.target.description,
                   "arch": built.target.arch, "config": built.target.config,
                   **({"accelerator": built.target.accelerator} if built.target.accelerator else {})},
        "inputs": [s.to_json() for s in built.inputs],
        "outputs": [s.to_json() for s in built.outputs],
        "report": built.report,
    }


def save(built: Built, out_dir: str | os.PathLike, *, name: str = "model", overwrite: bool = False,
         sign_with: str | os.PathLike | None = None) -> Artifact:
    """Write `built` as an artifact directory (atomically; see `gearshift.runtime.artifact`), signed
    with the Ed25519 private key file `sign_with` if given (`gearshift.runtime.signing`)."""
    from gearshift.runtime.signing import signer

    return write_artifact(out_dir, write_library=built.export_library, levels={"default": built.weights},
                          manifest=manifest_of(built, name), overwrite=overwrite,
                          extra_files=built.accelerator.save if built.accelerator is not None else None,
                          sign=signer(sign_with) if sign_with else None)


def compile(model: ModelLike, target: str = "host", out_dir: str | os.PathLike | None = None, *,
            name: str | None = None, overwrite: bool = False, **kwargs: Any) -> Built | Artifact:
    """`compile_model`, then `save` when `out_dir` is given (returning the artifact)."""
    built = compile_model(model, target, **kwargs)
    if out_dir is None:
        return built
    if name is None:
        name = Path(model).stem if isinstance(model, (str, os.PathLike)) else type(model).__name__
    return save(built, out_dir, name=name, overwrite=overwrite)
