"""An emulated aarch64 phone on an x86 machine: a Debian arm64 root run under qemu-user.

What users ship to an ARM phone is a whole artifact loaded by TVM's runtime there. Without a phone,
the artifact runs in an aarch64 Linux root on this machine: Debian's arm64 Python 3.11 and its
libraries, unpacked (not installed: nothing of the root runs at build time) by mmdebstrap, plus the
aarch64 wheels of TVM 0.27, numpy and safetensors. `qemu-aarch64 -L ROOT` runs that Python with
the root as its library prefix, so the artifact's code, TVM's runtime and numpy are all real aarch64
machine code translated instruction by instruction: outputs are the phone's outputs, timings are
not a phone's (a translated instruction costs several host instructions).

gearshift's own Python code is not copied in: a link in the root points at this installation, so
the phone always runs the code that compiled the artifact. The root is built once (`make arm-env`,
`gearshift device setup`) under ~/.cache/gearshift (or $GEARSHIFT_ARM_ROOT) and rebuilt only when
its recipe below changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from gearshift.errors import InputError
from gearshift.spec import Log

NOTE = "emulated aarch64 (qemu-user): results are real, timings are not"

SUITE = "bookworm"  # Debian 12: Python 3.11, the version of the cp311 wheels
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1", "zlib1g", "libffi8")
# What the phone needs of gearshift's dependencies: TVM's runtime side, the weights format, and
# what TVM's RPC server imports. Pinned to the versions this machine runs.
WHEELS = ("apache-tvm", "apache-tvm-ffi", "numpy", "safetensors", "ml_dtypes", "typing_extensions",
          "psutil", "cloudpickle")
AARCH64_PLATFORMS = ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64")
STAMP = "gearshift-root.json"
SITE = "opt/site"  # the wheels, installed with pip --target
SOURCE = "opt/gearshift-src"  # holds the link `gearshift` -> this installation's package
PYTHON = "usr/bin/python3.11"


def default_root() -> Path:
    env = os.environ.get("GEARSHIFT_ARM_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "gearshift" / "arm64-root"


def recipe() -> dict:
    """What the root is built from; a root built from another recipe is rebuilt."""
    from importlib.metadata import version

    return {"suite": SUITE, "packages": list(PACKAGES), "wheels": {w: version(w) for w in WHEELS}}


def recipe_id(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def missing_tools() -> list[str]:
    return [t for t in ("qemu-aarch64", "mmdebstrap") if shutil.which(t) is None]


def stamp(root: Path) -> dict | None:
    """The build record of the root at `root`, or None where none was built there (or it is stale)."""
    try:
        doc = json.loads((root / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("recipe_id") == recipe_id(recipe()) else None


def find_root(root: str | os.PathLike | None = None) -> Path:
    """The emulated phone's root, built and current, or a one-line error saying how to build it."""
    path = Path(root) if root else default_root()
    if shutil.which("qemu-aarch64") is None:
        raise InputError("running an ARM artifact here needs qemu-user (Debian qemu-user) and the phone's root: "
                         "run `make arm-env`")
    if stamp(path) is None:
        why = "is out of date" if (path / STAMP).exists() else "does not exist"
        raise InputError(f"the emulated aarch64 phone ({path}) {why}: run `make arm-env` (builds it once)")
    return path


def build_root(root: str | os.PathLike | None = None, *, force: bool = False, log: Log = print) -> Path:
    """Build the phone's root (Debian arm64 packages unpacked by mmdebstrap, aarch64 wheels installed
    with pip) in a sibling directory, check that TVM imports there under qemu, then move it into place."""
    path = Path(root) if root else default_root()
    if not force and stamp(path) is not None:
        log(f"the emulated aarch64 phone is up to date: {path}")
        return path
    missing = missing_tools()
    if missing:
        raise InputError(f"building the phone's root needs {', '.join(missing)}: "
                         f"apt-get install qemu-user mmdebstrap (or run `make arm-env`)")
    started = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        log(f"[1/3] Debian {SUITE} arm64: {', '.join(PACKAGES)} (mmdebstrap, unpacked only)")
        _check_call(["mmdebstrap", "--variant=extract", "--architectures=arm64", f"--include={','.join(PACKAGES)}",
                     "--skip=check/qemu", "--quiet", SUITE, str(tmp), *_mirrors()], "mmdebstrap")
        doc = recipe()
        log(f"[2/3] aarch64 wheels: {', '.join(f'{k}=={v}' for k, v in doc['wheels'].items())} (pip)")
        _check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                     "--only-binary=:all:", *[f"--platform={p}" for p in AARCH64_PLATFORMS], "--python-version=3.11",
                     "--implementation=cp", "--abi=cp311", "--abi=abi3", "--abi=none", "--target", str(tmp / SITE),
                     *[f"{k}=={v}" for k, v in doc["wheels"].items()]], "pip")
        log("[3/3] checking that TVM's runtime loads in it (qemu-aarch64)")
        probe = run_python(["-c", "import numpy, safetensors, tvm, tvm.relax; print(tvm.__version__)"], root=tmp)
        if probe.returncode != 0:
            raise InputError(f"the new root does not run TVM under qemu: {_last_line(probe.stderr)}")
        seconds = round(time.monotonic() - started, 1)
        record = {"recipe_id": recipe_id(doc), "recipe": doc, "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "build_seconds": seconds, "bytes": _size(tmp)}
        (tmp / STAMP).write_text(json.dumps(record, indent=2) + "\n")
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"built {path} in {seconds:.0f} s ({record['bytes'] / 1e6:.0f} MB)")
    return path


def python_command(argv: Sequence[str], root: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run the phone's Python with `argv` under qemu-user."""
    source = root / SOURCE
    source.mkdir(parents=True, exist_ok=True)
    _link(source / "gearshift", Path(__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "LD_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = f"{root / SITE}:{source}"
    env["GEARSHIFT_EMULATED"] = NOTE  # lets the phone's side label what it prints
    return ["qemu-aarch64", "-L", str(root), str(root / PYTHON), *argv], env


def run_python(argv: Sequence[str], *, root: Path | None = None, timeout: float | None = None,
               capture: bool = True) -> subprocess.CompletedProcess:
    """Run the phone's Python with `argv` and wait for it."""
    cmd, env = python_command(argv, root or find_root())
    return subprocess.run(cmd, env=env, capture_output=capture, text=True, timeout=timeout)


def start_python(argv: Sequence[str], *, root: Path | None = None, **popen) -> subprocess.Popen:
    """Start the phone's Python with `argv` (a server, say) and return at once."""
    cmd, env = python_command(argv, root or find_root())
    return subprocess.Popen(cmd, env=env, **popen)


def _mirrors() -> list[str]:
    """This machine's own Debian sources (the mirror its cross compiler came from), or mmdebstrap's default."""
    override = os.environ.get("GEARSHIFT_DEBIAN_MIRROR")
    if override:
        return [override]
    for candidate in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if candidate.is_file() and candidate.read_text().strip():
            return [str(candidate)]
    return []


def _link(link: Path, target: Path) -> None:
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


def _check_call(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise InputError(f"{what} failed (exit {done.returncode}): {_last_line(done.stderr or done.stdout)}")


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
