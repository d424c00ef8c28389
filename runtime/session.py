"""Run a compiled artifact: load the library and the weights once, then run inputs through it."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from gearshift.errors import ArtifactError, InputError, TargetError, summarize
from gearshift.runtime.cpu import missing_features
from gearshift.runtime.artifact import Artifact, open_artifact
from gearshift.runtime.timing import time_engines


class _Level(NamedTuple):
    name: str
    library: str  # key into Session._libraries
    weights: tuple  # device tensors, in the order main takes them


class Session:
    """A loaded model. `run` takes a dict of input arrays and returns a dict of output arrays.

    An artifact with several compression levels (RT3) has them all loaded up front; `switch(level)`
    makes the next inferences use another one. A switch swaps one reference: it allocates nothing,
    and an inference reads the active level once, when it starts, so a switch falls between
    inferences, never inside one. `run` may be called from several threads at once: each thread gets
    its own virtual machine (TVM's VM keeps per-call state) and its own input buffers."""

    def __init__(self, artifact: str | os.PathLike | Artifact, level: str | None = None,
                 trusted_keys: Sequence[str] | None = None):
        """`trusted_keys`: Ed25519 public keys (hex, or .pub files); when given, the artifact must be
        signed by one of them (`gearshift compile --sign`), checked before anything is loaded."""
        import tvm

        if trusted_keys is not None:  # (re)opened from disk: a signature covers the files as they are now
            artifact = open_artifact(artifact.path if isinstance(artifact, Artifact) else artifact, trusted_keys)
        self.artifact = artifact if isinstance(artifact, Artifact) else open_artifact(artifact)
        target = self.artifact.target
        here = platform.machine()
        if target.get("arch") != here:
            raise TargetError(f"{self.artifact.path} was built for {target.get('name')} ({target.get('arch')}); "
                              f"this machine is {here}: copy it to such a device")
        self._gpu = target.get("config", {}).get("kind", "llvm") == "opencl"
        if self._gpu:
            problem = opencl_runtime_problem()
            if problem:
                raise TargetError(f"{self.artifact.path} targets {target.get('name')} through OpenCL, but {problem}: "
                                  "run it on the phone (its TVM runtime built with OpenCL), or check its kernels "
                                  "here with `gearshift check-gpu`")
        elif target.get("config", {}).get("kind", "llvm") != "llvm":
            raise TargetError(f"{self.artifact.path} targets {target.get('name')}, a GPU this runtime cannot drive")
        missing = [] if self._gpu else missing_features(target.get("config", {}))
        if missing:
            raise TargetError(f"{self.artifact.path} was built for {target.get('name')} "
                              f"({target.get('config', {}).get('mcpu', '?')}), whose code uses {', '.join(missing)}; "
                              f"this CPU lacks it: compile for `host` or `x86-avx2` instead")
        self._device = tvm.opencl() if self._gpu else tvm.cpu()
        self._vta = None  # vta-sim: the layers the simulated accelerator runs (runtime/vta/offload.py)
        if target.get("accelerator") == "vta":
            from gearshift.runtime.vta import offload

            self._vta = offload.load_layers(self.artifact.path)
            offload.register()
        self.accelerator_report: dict | None = None  # vta-sim: cycles per layer of the last inference
        self._libraries: dict[str, object] = {}
        self._levels: dict[str, _Level] = {}
        for name in self.artifact.level_names:
            path = self.artifact.level_library(name)
            key = path.relative_to(self.artifact.path).as_posix()
            if key not in self._libraries:
                try:
                    self._libraries[key] = tvm.runtime.load_module(str(_content_addressed(self.artifact, key)))
                except Exception as err:
                    raise ArtifactError(f"{path}: cannot be loaded ({summarize(err, last=True)})") from None
            weights = tuple(tvm.runtime.tensor(w, self._device) for w in self.artifact.load_weights(name))
            self._levels[name] = _Level(name, key, weights)
        self.inputs = self.artifact.inputs
        self.outputs = self.artifact.outputs
        # Inputs are copied into buffers made once per thread: allocating a fresh device tensor per
        # call cost as much as the copy (0.05 ms for 0.4 MB, a tenth of a sparse layer).
        self._local = threading.local()
        self._active = self._level(level or self.artifact.level_names[0])
        self.switches = 0

    @property
    def level(self) -> str:
        """The level the next inference runs."""
        return self._active.name

    @property
    def levels(self) -> list[str]:
        return list(self._levels)

    def switch(self, level: str) -> str:
        """Make `level` the one the next inferences run; returns the previous level."""
        new = self._level(level)
        previous, self._active = self._active, new
        self.switches += 1
        return previous.name

    def _level(self, name: str) -> _Level:
        found = self._levels.get(name)
        if found is None:
            raise InputError(f"no level {name!r} in {self.artifact.path}; levels: {', '.join(self._levels)}")
        return found

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one inference. Inputs are keyed by the model's input names."""
        out = self._call(self._prepare(inputs))
        if self._gpu:  # device memory: copied back
            out = [out.numpy()] if hasattr(out, "numpy") else [o.numpy() for o in out]
            return dict(zip((o.name for o in self.outputs), out))
        return dict(zip((o.name for o in self.outputs), as_arrays(out)))

    def time(self, inputs: Mapping[str, np.ndarray], repeat: int = 20, warmup: int = 3) -> list[float]:
        """Latencies in milliseconds of `repeat` runs after `warmup` runs (inputs copied to the device once)."""
        args = self._prepare(inputs)
        return time_engines({"run": lambda: self._call(args)}, warmup=warmup, repeat=repeat)["run"]

    def _prepare(self, inputs: Mapping[str, np.ndarray]) -> list:
        import tvm

        missing = [s.name for s in self.inputs if s.name not in inputs]
        extra = sorted(set(inputs) - {s.name for s in self.inputs})
        if missing or extra:
            raise InputError(f"inputs do not match the model: missing {missing}, unexpected {extra}; "
                             f"the model takes {[s.name for s in self.inputs]}")
        staging = getattr(self._local, "tensors", None)
        if staging is None:  # per thread: concurrent callers never share an input buffer
            staging = self._local.tensors = [tvm.runtime.empty(s.shape, s.dtype, self._device) for s in self.inputs]
        args = []
        views = self._local.__dict__.setdefault("views", {})
        for spec, tensor in zip(self.inputs, staging):
            value = spec.check(inputs[spec.name])
            if not self._gpu and value.ctypes.data % ALIGNMENT == 0 and value.size and value.flags.writeable:  # in place
                # (see `aligned_empty`; DLPack cannot export a read-only numpy array). The view of the
                # array passed last time is reused: a fresh view made each call slower by 20-40 us
                # here; holding the array keeps its memory from being reused under the view.
                held = views.get(spec.name)
                if held is None or held[0] is not value:
                    held = views[spec.name] = (value, tvm.runtime.from_dlpack(value))
                args.append(held[1])
            else:
                tensor.copyfrom(value)
                args.append(tensor)
        return args

    def _call(self, args: list):
        level = self._active  # read once: a concurrent switch takes effect at the next inference
        if self._vta is None:
            return self._mains()[level.library](*args, *level.weights)
        from gearshift.runtime.vta import offload

        offload.active.layers, offload.active.stats = self._vta, {}
        try:
            return self._mains()[level.library](*args, *level.weights)
        finally:
            self.accelerator_report = offload.report(self._vta, offload.active.stats)
            offload.active.layers = None

    def _mains(self) -> dict:
        mains = getattr(self._local, "mains", None)
        if mains is None:  # this thread's first inference: one VM per library, made once
            from tvm import relax

            mains = self._local.mains = {key: relax.VirtualMachine(lib, self._device)["main"]
                                         for key, lib in self._libraries.items()}
        return mains


ALIGNMENT = 64  # bytes: what TVM requires of memory it uses in place


def opencl_runtime_problem() -> str | None:
    """None where this process's TVM runtime can run OpenCL kernels, else why not (one line)."""
    import tvm

    if not tvm.runtime.enabled("opencl"):
        return "the TVM runtime here was built without OpenCL (as PyPI's wheels are)"
    if not tvm.opencl(0).exist:
        return "the TVM runtime here finds no OpenCL device"
    return None


def aligned_empty(shape, dtype="float32") -> np.ndarray:
    """An uninitialised C-contiguous array at a 64-byte aligned address. `Session.run` reads such
    inputs in place; others (numpy aligns to 16 bytes) are first copied into a staging buffer, which
    costs ~0.08 ms per 1.5 MB here: a tenth of a fast sparse layer."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + ALIGNMENT, np.uint8)
    start = (-raw.ctypes.data) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _content_addressed(artifact: Artifact, rel: str = "lib.so") -> Path:
    """The library under a name derived from its sha256. dlopen hands back an already-loaded library
    for a path it has seen, even if the file changed since: an artifact rewritten in place (or two
    artifacts at one path) would otherwise run the old code in this process."""
    digest = artifact.manifest["files"][rel]["sha256"]
    cache = Path(tempfile.gettempdir()) / f"gearshift-{os.getuid()}"
    cache.mkdir(mode=0o700, exist_ok=True)
    path = cache / f"{digest}.so"
    if not path.exists():
        tmp = cache / f".{digest}.{os.getpid()}.tmp"
        shutil.copyfile(artifact.path / rel, tmp)
        os.replace(tmp, path)
    return path


def as_arrays(out) -> list[np.ndarray]:
    """Outputs as numpy arrays without a copy: each array keeps its TVM tensor (a fresh one per call)
    alive, so a later run never overwrites an output already returned."""
    if hasattr(out, "numpy"):
        return [np.from_dlpack(out)]
    return [np.from_dlpack(o) for o in out]
