"""The artifact: one directory that holds everything a device needs to run a compiled model.

    DIR/manifest.json               format version, target, inputs/outputs, weights order, levels,
                                    and the sha256 and size of every other file
    DIR/lib.so                      the compiled code (TVM `export_library`, cross-linked for ARM)
    DIR/levels/<level>.safetensors  the weights of each compression level ("default" for one level)
    DIR/levels/<level>.so           a level's own code, where levels were compiled "baked" (RT3:
                                    relay_passes/levels.py); otherwise every level runs lib.so

Nothing is pickled. An artifact is written into a temporary sibling directory and renamed into
place, so a crash never leaves a half-written one under the final name; loading checks every hash
and size before anything is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.errors import ArtifactError
from gearshift.spec import TensorSpec

FORMAT = "gearshift-artifact"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LIBRARY = "lib.so"


@dataclass(frozen=True)
class Artifact:
    """A verified artifact directory (construct with `open_artifact`)."""

    path: Path
    manifest: dict

    @property
    def inputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(d) for d in self.manifest["inputs"]]

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec.from_json(d) for d in self.manifest["outputs"]]

    @property
    def target(self) -> dict:
        return self.manifest["target"]

    @property
    def library(self) -> Path:
        return self.path / LIBRARY

    def level_file(self, level: str = "default") -> Path:
        levels = self.manifest["levels"]
        if level not in levels:
            raise ArtifactError(f"{self.path}: no level {level!r}; levels: {', '.join(levels)}")
        return self.path / levels[level]["file"]

    @property
    def level_names(self) -> list[str]:
        return list(self.manifest["levels"])

    def level_library(self, level: str) -> Path:
        """The code a level runs: its own library where it has one, else lib.so."""
        self.level_file(level)
        rel = self.manifest["levels"][level].get("library")
        return self.path / rel if rel else self.library

    def load_weights(self, level: str = "default") -> list[np.ndarray]:
        """The level's weights in the order the model takes them, checked against the manifest."""
        from safetensors.numpy import load_file

        path = self.level_file(level)
        try:
            tensors = load_file(str(path))
        except Exception as err:
            raise ArtifactError(f"{path}: unreadable weights ({err})") from None
        out = []
        specs = self.manifest["levels"][level].get("weights", self.manifest["weights"])
        for spec in (TensorSpec.from_json(d) for d in specs):
            if spec.name not in tensors:
                raise ArtifactError(f"{path}: weight {spec.name!r} is missing")
            w = tensors[spec.name]
            if tuple(w.shape) != spec.shape or w.dtype != np.dtype(spec.dtype):
                raise ArtifactError(f"{path}: weight {spec.name!r} is {w.dtype}{list(w.shape)}, "
                                    f"the manifest says {spec.dtype}{list(spec.shape)}")
            out.append(w)
        return out


def write_artifact(
    out_dir: str | os.PathLike,
    *,
    write_library: Callable[[Path], None],
    levels: Mapping[str, Mapping[str, np.ndarray]],
    manifest: Mapping,
    overwrite: bool = False,
    level_info: Mapping[str, Mapping] | None = None,
    level_libraries: Mapping[str, Callable[[Path], None]] | None = None,
    extra_files: Callable[[Path], list[str]] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
) -> Artifact:
    """Write an artifact atomically. `manifest` gives the model's facts (target, inputs, outputs, ...);
    the format fields, weights order, levels and file hashes are added here. `level_info`: facts per
    level (density, latency, ...); `level_libraries`: a writer of its own library per level (baked levels);
    `extra_files`: writes more files into the artifact's directory and returns their paths (hashed too);
    `sign`: manifest bytes -> manifest.sig (`runtime/signing.py`), written before the artifact appears."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ArtifactError(f"{out} exists; pass overwrite (CLI: --force) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write_library(tmp / LIBRARY)
        level_entries = {}
        first = None
        for name, weights in levels.items():
            rel = f"levels/{name}.safetensors"
            (tmp / "levels").mkdir(exist_ok=True)
            save_file({k: np.asarray(v, order="C") for k, v in weights.items()}, str(tmp / rel))
            level_entries[name] = {"file": rel, **(level_info or {}).get(name, {})}
            specs = _specs(weights)
            if first is not None and specs != _specs(first):  # baked levels: weights of their own
                level_entries[name]["weights"] = specs
            if level_libraries and name in level_libraries:
                level_entries[name]["library"] = f"levels/{name}.so"
                level_libraries[name](tmp / level_entries[name]["library"])
            first = first or weights
        extra = extra_files(tmp) if extra_files is not None else []
        full = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            **manifest,
            "weights": _specs(first or {}),
            "levels": level_entries,
            "files": {rel: _fingerprint(tmp / rel) for rel in [LIBRARY, *_level_files(level_entries), *extra]},
        }
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
        if sign is not None:
            from gearshift.runtime.signing import SIGNATURE

            (tmp / SIGNATURE).write_bytes(sign((tmp / MANIFEST).read_bytes()))
        _fsync_tree(tmp)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return open_artifact(out)


def open_artifact(path: str | os.PathLike, trusted_keys: Iterable[str] | None = None) -> Artifact:
    """Open an artifact and verify it: format, version, and the hash and size of every file; with
    `trusted_keys` (Ed25519 public keys, hex or .pub paths) first its signature over the manifest."""
    root = Path(path)
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise ArtifactError(f"{root}: not a gearshift artifact (no {MANIFEST})")
    raw = mpath.read_bytes()  # read once: what is verified is what is parsed
    if trusted_keys is not None:
        from gearshift.runtime.signing import verify

        verify(root, raw, trusted_keys)
    try:
        manifest = json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{mpath}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{mpath}: not a gearshift manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{mpath}: format version {manifest.get('format_version')!r}, this gearshift reads "
                            f"version {FORMAT_VERSION}; recompile the model")
    for key in ("target", "inputs", "outputs", "weights", "levels", "files"):
        if key not in manifest:
            raise ArtifactError(f"{mpath}: the manifest has no {key!r}")
    _check_fields(manifest, mpath)
    files = manifest["files"]
    needed = {LIBRARY, *_level_files(manifest["levels"])}
    if not needed <= set(files):
        raise ArtifactError(f"{mpath}: no hash recorded for {', '.join(sorted(needed - set(files)))}")
    for rel, expected in files.items():
        f = (root / rel).resolve()
        if root.resolve() not in f.parents:
            raise ArtifactError(f"{mpath}: file {rel!r} lies outside the artifact")
        if not f.is_file():
            raise ArtifactError(f"{root}: {rel} is missing")
        actual = _fingerprint(f)
        if actual["bytes"] != expected.get("bytes"):
            raise ArtifactError(f"{root}: {rel} has {actual['bytes']} bytes, the manifest says {expected.get('bytes')} "
                                f"(truncated or modified)")
        if actual["sha256"] != expected.get("sha256"):
            raise ArtifactError(f"{root}: {rel} does not match its sha256 in the manifest (modified)")
    return Artifact(root, manifest)


def _check_fields(manifest: dict, mpath: Path) -> None:
    """The manifest's structure, field by field, so that a malformed one is named here and not met
    later as a KeyError (found by fuzzing the loader)."""
    if not isinstance(manifest["target"], dict) or not isinstance(manifest["target"].get("config", {}), dict):
        raise ArtifactError(f"{mpath}: malformed 'target'")
    levels = manifest["levels"]
    if not isinstance(levels, dict) or not levels or not all(
            isinstance(e, dict) and isinstance(e.get("file"), str) and isinstance(e.get("library", ""), str)
            for e in levels.values()):
        raise ArtifactError(f"{mpath}: malformed 'levels'")
    specs = [("inputs", manifest["inputs"]), ("outputs", manifest["outputs"]), ("weights", manifest["weights"])]
    specs += [(f"levels.{name}.weights", e["weights"]) for name, e in levels.items() if "weights" in e]
    for field, items in specs:
        if not isinstance(items, list):
            raise ArtifactError(f"{mpath}: '{field}' must be a list")
        for i, item in enumerate(items):
            try:
                spec = TensorSpec.from_json(item)
                np.dtype(spec.dtype)
            except (KeyError, TypeError, ValueError, AttributeError) as err:
                raise ArtifactError(f"{mpath}: {field}[{i}] is not a tensor spec ({type(err).__name__}: {err})") from None
    files = manifest["files"]
    if not isinstance(files, dict) or not all(
            isinstance(rel, str) and isinstance(e, dict) and isinstance(e.get("bytes"), int)
            and isinstance(e.get("sha256"), str) for rel, e in files.items()):
        raise ArtifactError(f"{mpath}: malformed 'files'")


def _specs(weights: Mapping[str, np.ndarray]) -> list[dict]:
    return [TensorSpec(k, tuple(v.shape), np.dtype(v.dtype).name).to_json() for k, v in weights.items()]


def _level_files(entries: Mapping) -> list[str]:
    return [rel for e in entries.values() for rel in (e["file"], e.get("library")) if rel]


def _fingerprint(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return {"sha256": h.hexdigest(), "bytes": path.stat().st_size}


def _fsync_tree(root: Path) -> None:
    """Flush every file to disk and give the tree ordinary permissions (mkdtemp makes it private)."""
    os.chmod(root, 0o755)
    for p in sorted(root.rglob("*")):
        if p.is_dir():
            os.chmod(p, 0o755)
        else:
            os.chmod(p, 0o755 if p.suffix == ".so" else 0o644)
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def _replace(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an existing `out` is moved aside first and removed only after."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
