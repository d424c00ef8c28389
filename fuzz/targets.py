"""What the fuzzers feed: one function per file gearshift reads, taking the file's bytes.

A target returns normally (the input was valid) or raises a `GearshiftError` (it was not, and the
user gets one line); anything else escaping a target is a crash. `fuzz/run.py` drives the targets
with atheris (coverage-guided), `tests/test_fuzz.py` replays the stored corpus and a few hundred
random mutations of it in CI, and `fuzz/seeds.py` writes the first corpus from real files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

WORK = Path(tempfile.gettempdir()) / "gearshift-fuzz"


def _file(data: bytes, name: str) -> Path:
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / name
    path.write_bytes(data)
    return path


def onnx_model(data: bytes) -> None:
    """The ONNX loader, its clean-up and the import into Relax."""
    from gearshift.frontend.importer import to_relax
    from gearshift.frontend.load import load

    to_relax(load(_file(data, "model.onnx")))


OPS = ["MatMul", "Gemm", "Add", "Relu", "Conv", "Softmax", "Reshape", "Transpose", "Flatten", "Concat", "NoSuchOp"]


def onnx_graph(data: bytes) -> None:
    """Structure-aware: the bytes choose edits of the stored real models (fuzz/corpus/onnx_model) -- a
    shape dimension, an initializer's dims or type, a node's op, inputs, outputs or attributes -- and
    the edited model goes through the loader, the clean-up and the import."""
    import onnx
    from onnx import helper

    from gearshift.frontend.importer import to_relax
    from gearshift.frontend.load import load

    choices = iter(data)

    def pick(n: int) -> int:
        return next(choices, 0) % max(n, 1)

    seeds = sorted((Path(__file__).resolve().parent / "corpus" / "onnx_model").glob("seed-*.onnx"))
    model = onnx.load_from_string(seeds[pick(len(seeds))].read_bytes())
    g = model.graph
    for _ in range(1 + pick(4)):
        what = pick(8)
        if what == 0 and g.input:
            dims = g.input[pick(len(g.input))].type.tensor_type.shape.dim
            if dims:
                dims[pick(len(dims))].dim_value = [0, 1, 3, 7, 1 << 20][pick(5)]
        elif what == 1 and g.initializer:
            init = g.initializer[pick(len(g.initializer))]
            if init.dims:
                init.dims[pick(len(init.dims))] = pick(9)
        elif what == 2 and g.initializer:
            g.initializer[pick(len(g.initializer))].data_type = pick(17)
        elif what == 3 and g.node:
            g.node[pick(len(g.node))].op_type = OPS[pick(len(OPS))]
        elif what == 4 and g.node:
            node = g.node[pick(len(g.node))]
            if node.input and pick(2):
                del node.input[pick(len(node.input))]
            else:
                node.input.append(["x", "w", "missing", ""][pick(4)])
        elif what == 5 and g.node:
            g.node[pick(len(g.node))].output[0] = ["y", "dangling", "x"][pick(3)]
        elif what == 6 and g.node:
            node = g.node[pick(len(g.node))]
            name = ["axis", "perm", "transA", "alpha", "kernel_shape", "pads", "strides", "group"][pick(8)]
            value = [pick(256) - 128, [pick(5), pick(5)], 1.5, [1], [0, 0, 0, 0]][pick(5)]
            node.attribute.append(helper.make_attribute(name, value))
        elif what == 7 and g.node:
            g.node.append(g.node[pick(len(g.node))])
    to_relax(load(model))


def _artifact_copy() -> Path:
    seed = Path(__file__).resolve().parent / "corpus" / "artifact"
    root = WORK / "artifact"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(seed, root)
    return root


def artifact_manifest(data: bytes) -> None:
    """open_artifact on a manifest of these bytes (the files as compiled), then every level's weights."""
    from gearshift.runtime.artifact import open_artifact

    root = _artifact_copy()
    (root / "manifest.json").write_bytes(data)
    art = open_artifact(root)
    for level in art.level_names:
        art.load_weights(level)


def artifact_weights(data: bytes) -> None:
    """A weights file of these bytes whose manifest hash was rewritten to match (an attacker's, or a
    writer's bug): the safetensors reader and the weight checks must name what is wrong."""
    from gearshift.runtime.artifact import _fingerprint, open_artifact

    root = _artifact_copy()
    (root / "levels/default.safetensors").write_bytes(data)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["levels/default.safetensors"] = _fingerprint(root / "levels/default.safetensors")
    (root / "manifest.json").write_text(json.dumps(manifest))
    open_artifact(root).load_weights("default")


def levels_file(data: bytes) -> None:
    from gearshift.relay_passes.levels import read_levels

    read_levels(_file(data, "levels.json"))


def profile(data: bytes) -> None:
    from gearshift.runtime.dvfs import load_profile

    load_profile(_file(data, "profile.json"))


def trace(data: bytes) -> None:
    from gearshift.runtime.governor import read_trace

    read_trace(_file(data, "trace.csv"))


def measurements(data: bytes) -> None:
    from gearshift.cli.rt3 import _measurements

    _measurements(str(_file(data, "measurements.json")))


def tuning_database(data: bytes) -> None:
    from gearshift.tune.database import Database

    root = WORK / "db"
    root.mkdir(parents=True, exist_ok=True)
    (root / "records.jsonl").write_bytes(data)
    Database(root)


def npz_inputs(data: bytes) -> None:
    from gearshift.runtime.device import read_npz

    read_npz(_file(data, "inputs.npz"))


def vta_config(data: bytes) -> None:
    from gearshift.runtime.vta.config import config_from_json

    config_from_json(_file(data, "vta.json"))


def vta_stream(data: bytes) -> None:
    """An instruction stream's bytes: decoded, re-encoded to the same bytes."""
    from gearshift.runtime.vta import isa
    from gearshift.runtime.vta.config import DEFAULT

    insns = isa.from_bytes(data, DEFAULT)
    if isa.from_bytes(isa.to_bytes(insns, DEFAULT), DEFAULT) != insns:  # (unused bits are dropped: the decoded
        raise AssertionError("decode . encode is not the identity on decoded streams")  # form is canonical)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "onnx_model": onnx_model, "onnx_graph": onnx_graph, "artifact_manifest": artifact_manifest,
    "artifact_weights": artifact_weights,
    "levels_file": levels_file, "profile": profile, "trace": trace, "measurements": measurements,
    "tuning_database": tuning_database, "npz_inputs": npz_inputs, "vta_config": vta_config, "vta_stream": vta_stream,
}


def run_one(name: str, data: bytes) -> None:
    """One execution: a GearshiftError is an answer, anything else propagates as a crash."""
    from gearshift.errors import GearshiftError

    try:
        TARGETS[name](data)
    except GearshiftError:
        pass
