"""The command line, run as a user runs it (a subprocess), on real files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_close, ort_run


def gearshift(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gearshift.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_compile_run_roundtrip(mlp_onnx, mlp_case, tmp_path):
    art = tmp_path / "art"
    done = gearshift("compile", mlp_onnx, "--target", "host", "-o", art)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr and (art / "manifest.json").is_file()

    feeds = mlp_case[1]
    np.savez(tmp_path / "in.npz", **feeds)
    done = gearshift("run", art, "--inputs", tmp_path / "in.npz", "-o", tmp_path / "out.npz", "--repeat", "5",
                     "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["outputs"] == {"y": {"shape": [3, 40], "dtype": "float32"}}
    assert summary["latency_ms"]["runs"] >= 5 and summary["latency_ms"]["p90"] >= summary["latency_ms"]["median"] > 0
    with np.load(tmp_path / "out.npz", allow_pickle=False) as out:
        assert_close(out["y"], ort_run(open(mlp_onnx, "rb").read(), feeds)[0])

    again = gearshift("compile", mlp_onnx, "-o", art)  # exists: refused, kept
    assert again.returncode == 2 and "--force" in again.stderr


@pytest.mark.parametrize("args,message", [
    (["compile", "missing.onnx", "-o", "x"], "missing.onnx: no such file"),
    (["compile", "{mlp}", "-t", "pdp-11", "-o", "x"], "unknown target 'pdp-11'"),
    (["compile", "{mlp}", "-o", "x", "--input-shape", "x:3"], "bad --input-shape"),
    (["inspect", "{garbage}"], "not an ONNX file"),
    (["run", "{tmp}", "--inputs", "{garbage}"], "no manifest.json"),
])
def test_errors_are_one_line_and_exit_2(args, message, mlp_onnx, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01 definitely not protobuf" * 10)
    args = [a.format(mlp=mlp_onnx, garbage=garbage, tmp=tmp_path) for a in args]
    done = gearshift(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2 and "Traceback" not in done.stderr


def test_inspect_json_and_table(mlp_onnx):
    done = gearshift("inspect", mlp_onnx, "--json")
    assert done.returncode == 0, done.stderr
    layers = json.loads(done.stdout)
    assert [(layer["kind"], layer["weight_shape"]) for layer in layers] == [("gemm", [96, 64]), ("gemm", [40, 96])]
    table = gearshift("inspect", mlp_onnx)
    assert "2 weight-carrying layers" in table.stdout


def test_targets_lists_every_target():
    done = gearshift("targets")
    assert done.returncode == 0
    for name in ["host", "arm-a53", "arm-a76", "mali-g76", "adreno-640"]:
        assert f"| {name}" in done.stdout
