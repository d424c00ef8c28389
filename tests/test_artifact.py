"""The artifact is written atomically, verified on load, and refuses what was modified or misplaced."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import assert_close, ort_run

import gearshift
from gearshift.errors import ArtifactError, TargetError
from gearshift.runtime.artifact import write_artifact


@pytest.fixture(scope="module")
def built(mlp_onnx):
    return gearshift.compile_model(mlp_onnx, "host")


@pytest.fixture()
def artifact_dir(built, tmp_path):
    return gearshift.save(built, tmp_path / "art", name="mlp").path


def test_layout_and_manifest(artifact_dir, mlp_case, mlp_onnx):
    assert sorted(p.relative_to(artifact_dir).as_posix() for p in artifact_dir.rglob("*") if p.is_file()) == [
        "levels/default.safetensors", "lib.so", "manifest.json"]
    manifest = json.loads((artifact_dir / "manifest.json").read_text())
    assert manifest["format_version"] == 1 and manifest["name"] == "mlp"
    assert manifest["target"]["name"] == "host" and manifest["target"]["arch"] == os.uname().machine
    assert manifest["inputs"] == [{"name": "x", "shape": [3, 64], "dtype": "float32"}]
    assert manifest["outputs"] == [{"name": "y", "shape": [3, 40], "dtype": "float32"}]
    assert set(manifest["files"]) == {"lib.so", "levels/default.safetensors"}
    feeds = mlp_case[1]
    assert_close(gearshift.Session(artifact_dir).run(feeds)["y"], ort_run(open(mlp_onnx, "rb").read(), feeds)[0])


def flip_byte(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_modified_library_is_refused(artifact_dir):
    flip_byte(artifact_dir / "lib.so", 1000)
    with pytest.raises(ArtifactError, match="lib.so does not match its sha256"):
        gearshift.Session(artifact_dir)


def test_modified_weights_are_refused(artifact_dir):
    weights = artifact_dir / "levels/default.safetensors"
    flip_byte(weights, weights.stat().st_size - 3)
    with pytest.raises(ArtifactError, match="sha256"):
        gearshift.open_artifact(artifact_dir)


def test_truncated_weights_are_refused(artifact_dir):
    weights = artifact_dir / "levels/default.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ArtifactError, match="truncated or modified"):
        gearshift.open_artifact(artifact_dir)


def test_missing_file_and_bad_manifest(artifact_dir, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(artifact_dir, other)
    (artifact_dir / "lib.so").unlink()
    with pytest.raises(ArtifactError, match="lib.so is missing"):
        gearshift.open_artifact(artifact_dir)
    manifest = other / "manifest.json"
    manifest.write_text(manifest.read_text()[:50])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        gearshift.open_artifact(other)
    with pytest.raises(ArtifactError, match="no manifest.json"):
        gearshift.open_artifact(tmp_path)


def test_rehashed_manifest_edits_are_still_checked(artifact_dir):
    """Editing the manifest's own facts (not its hashes) is caught where it matters."""
    path = artifact_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = 99
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="format version 99"):
        gearshift.open_artifact(artifact_dir)
    manifest["format_version"] = 1
    manifest["weights"][0]["shape"] = [1, 2, 3]
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="the manifest says"):
        gearshift.Session(artifact_dir)
    manifest["files"]["../outside"] = {"sha256": "0", "bytes": 0}
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside the artifact"):
        gearshift.open_artifact(artifact_dir)


def test_wrong_target_is_refused(artifact_dir):
    path = artifact_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["target"].update(name="arm-a76", arch="aarch64")
    path.write_text(json.dumps(manifest))
    with pytest.raises(TargetError, match="built for arm-a76 .aarch64.; this machine is"):
        gearshift.Session(artifact_dir)


def test_existing_directory_is_kept_without_overwrite(built, artifact_dir):
    before = (artifact_dir / "manifest.json").read_text()
    with pytest.raises(ArtifactError, match="exists"):
        gearshift.save(built, artifact_dir)
    assert (artifact_dir / "manifest.json").read_text() == before
    gearshift.save(built, artifact_dir, name="again", overwrite=True)
    assert json.loads((artifact_dir / "manifest.json").read_text())["name"] == "again"
    assert [p.name for p in artifact_dir.parent.iterdir()] == ["art"]  # no temporary or backup left


def test_failed_write_leaves_nothing(tmp_path):
    def broken_library(path):
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_artifact(tmp_path / "art", write_library=broken_library, levels={"default": {"w": np.ones(3)}},
                       manifest={"target": {}, "inputs": [], "outputs": []})
    assert list(tmp_path.iterdir()) == []


def test_run_inputs_are_checked(artifact_dir):
    session = gearshift.Session(artifact_dir)
    with pytest.raises(gearshift.InputError, match="expected shape"):
        session.run({"x": np.zeros((2, 64), np.float32)})
    with pytest.raises(gearshift.InputError, match="missing"):
        session.run({})
    with pytest.raises(gearshift.InputError, match="expected dtype float32"):
        session.run({"x": np.zeros((3, 64), np.complex64)})


def test_outputs_survive_later_runs(artifact_dir, mlp_case):
    """Outputs are handed out without a copy; a later run must not overwrite them."""
    session = gearshift.Session(artifact_dir)
    x = mlp_case[1]["x"]
    first = session.run({"x": x})["y"]
    kept = first.copy()
    for _ in range(3):
        session.run({"x": -x})
    np.testing.assert_array_equal(first, kept)


def test_aligned_inputs_are_read_in_place(artifact_dir, mlp_case):
    """A 64-byte aligned input runs without the staging copy and gives the same outputs; the caller
    may rewrite the buffer in place for the next call (the session's view of it, kept for reuse,
    reads the new values), or pass another array."""
    session = gearshift.Session(artifact_dir)
    x = mlp_case[1]["x"]
    aligned = gearshift.aligned_empty(x.shape, x.dtype)
    assert aligned.ctypes.data % 64 == 0 and aligned.flags.c_contiguous
    aligned[...] = x
    assert np.from_dlpack(session._prepare({"x": aligned})[0]).ctypes.data == aligned.ctypes.data  # no copy
    first = session.run({"x": aligned})["y"]
    np.testing.assert_array_equal(first, session.run({"x": x})["y"])
    aligned[...] = -x
    np.testing.assert_array_equal(session.run({"x": aligned})["y"], session.run({"x": -x})["y"])
    other = gearshift.aligned_empty(x.shape, x.dtype)
    other[...] = 2 * x
    np.testing.assert_array_equal(session.run({"x": other})["y"], session.run({"x": 2 * x})["y"])
    np.testing.assert_array_equal(session.run({"x": aligned})["y"], session.run({"x": -x})["y"])
    aligned.flags.writeable = False  # DLPack cannot export it: copied instead
    np.testing.assert_array_equal(session.run({"x": aligned})["y"], session.run({"x": -x})["y"])
    shifted = np.empty(x.size + 4, np.float32)[1:1 + x.size].reshape(x.shape)  # never 64-byte aligned
    shifted[...] = x
    np.testing.assert_array_equal(session.run({"x": shifted})["y"], first)


def test_rewritten_artifact_is_reloaded(built, tmp_path, mlp_case):
    """Two different libraries at one path in one process: the second is the one that runs."""
    import gearshift.frontend.examples as ex

    path = tmp_path / "same"
    first = gearshift.Session(gearshift.save(built, path)).run(mlp_case[1])["y"]
    other = gearshift.compile_model(ex.mlp((64, 32, 40), seed=5), "host", example_inputs=mlp_case[1])
    second = gearshift.Session(gearshift.save(other, path, overwrite=True)).run(mlp_case[1])
    assert not np.allclose(first, next(iter(second.values())))
