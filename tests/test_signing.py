"""Signed artifacts: with trusted keys, an artifact that is unsigned, signed by another key, or whose
manifest changed after signing is refused before any of its code is loaded."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import numpy as np
import pytest

import gearshift
from gearshift.cli import main
from gearshift.errors import ArtifactError
from gearshift.runtime.device import save_npz
from gearshift.runtime.signing import generate_key

MARKER_C = """
#include <stdio.h>
__attribute__((constructor)) static void ran(void) { FILE *f = fopen(MARKER, "w"); if (f) fclose(f); }
"""


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    return generate_key(root / "alice"), generate_key(root / "mallory")


@pytest.fixture(scope="module")
def signed(mlp_onnx, keys, tmp_path_factory):
    out = tmp_path_factory.mktemp("signed") / "mlp"
    assert main(["compile", mlp_onnx, "-o", str(out), "--sign", str(keys[0][0])]) == 0
    return out


def test_keygen_writes_a_private_key_only_its_owner_reads(keys, tmp_path):
    (private, public), _ = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and len(public.read_text().strip()) == 64
    with pytest.raises(gearshift.GearshiftError, match="exists"):
        generate_key(private)


def test_a_signed_artifact_runs_with_its_key(signed, keys, mlp_case, tmp_path):
    (_, public), _ = keys
    _, feeds = mlp_case
    save_npz(tmp_path / "in.npz", {k: np.asarray(v) for k, v in feeds.items()})
    assert main(["run", str(signed), "-i", str(tmp_path / "in.npz"), "--trusted-key", str(public)]) == 0
    assert main(["run", str(signed), "-i", str(tmp_path / "in.npz"), "--trusted-key", public.read_text().strip()]) == 0
    gearshift.Session(signed, trusted_keys=[str(public)])


def test_unsigned_or_other_keys_are_refused(mlp_onnx, signed, keys, tmp_path, capsys):
    (_, alice), (_, mallory) = keys
    unsigned = gearshift.compile(mlp_onnx, "host", tmp_path / "unsigned")
    with pytest.raises(ArtifactError, match="not signed"):
        gearshift.Session(unsigned.path, trusted_keys=[str(alice)])
    with pytest.raises(ArtifactError, match="not among the trusted keys"):
        gearshift.Session(signed, trusted_keys=[str(mallory)])
    save_npz(tmp_path / "in.npz", {"x": np.zeros((2, 64), np.float32)})
    assert main(["run", str(signed), "-i", str(tmp_path / "in.npz"), "--trusted-key", str(mallory)]) == 2
    assert "not among the trusted keys" in capsys.readouterr().err


def test_a_tampered_artifact_is_refused_before_its_library_loads(signed, keys, tmp_path):
    """The attacker swaps lib.so for native code of their own and rewrites the manifest's hash to match
    (which defeats the hashes alone): without trusted keys the code runs on load, with them never."""
    (_, public), _ = keys
    evil = shutil.copytree(signed, tmp_path / "evil")
    marker = tmp_path / "ran"
    source = tmp_path / "evil.c"
    source.write_text(MARKER_C.replace("MARKER", json.dumps(str(marker))))
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(evil / "lib.so"), str(source)], check=True)
    manifest = json.loads((evil / "manifest.json").read_text())
    from gearshift.runtime.artifact import _fingerprint

    manifest["files"]["lib.so"] = _fingerprint(evil / "lib.so")
    (evil / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    with pytest.raises(ArtifactError, match="does not match its signature"):
        gearshift.Session(evil, trusted_keys=[str(public)])
    assert not marker.exists()
    try:  # no keys: the hashes match, so the library is loaded (it is no TVM module: what fails after, fails late)
        gearshift.Session(evil)
    except gearshift.GearshiftError:
        pass
    assert marker.exists()  # its code ran on load: what signing prevents


def test_bad_keys_are_named(signed, tmp_path):
    with pytest.raises(gearshift.GearshiftError, match="64-hex-digit"):
        gearshift.Session(signed, trusted_keys=["abc"])
    (tmp_path / "junk").write_text("not a key")
    assert main(["compile", "x.onnx", "-o", str(tmp_path / "o"), "--sign", str(tmp_path / "junk")]) == 2
