"""Run one compiled ARM kernel under qemu-user: the functional check of gearshift's NEON code.

This machine has no ARM board, and TVM's runtime for aarch64 would need an aarch64 Python. A single
PrimFunc needs far less: `qemu_harness.c` supplies the few runtime hooks a compiled kernel calls
(parallel launch on pthreads, workspace allocation, the error setter) and calls it through TVM's
packed-call ABI. The kernel is built by TVM's LLVM backend for the real ARM target (e.g. Cortex-A76
with NEON), linked statically with Debian's aarch64 cross compiler, and executed by `qemu-aarch64`.
qemu checks what the code computes, not how fast: timings under emulation mean nothing.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from gearshift.schedules.targets import get_target

QEMU = "qemu-aarch64"
HARNESS = Path(__file__).with_name("qemu_harness.c")
_DTYPES = {np.dtype("float32"): (2, 32), np.dtype("int32"): (0, 32), np.dtype("int64"): (0, 64),
           np.dtype("int8"): (0, 8), np.dtype("uint8"): (1, 8)}


def missing_tools(target: str = "arm-a76") -> list[str]:
    """The programs `run_kernel` needs that this machine lacks (empty: it can run)."""
    info = get_target(target)
    return [tool for tool in (info.cross_compiler, QEMU) if tool and not shutil.which(tool)]


def run_kernel(func, args: list[np.ndarray], target: str = "arm-a76", timeout: float = 300.0) -> list[np.ndarray]:
    """Build `func` (a PrimFunc) for the ARM `target`, run it once under qemu on `args` (inputs and
    output buffers, in the PrimFunc's order) and return every argument as it is after the call."""
    import tvm

    info = get_target(target)
    if info.arch != "aarch64" or info.is_gpu:
        raise ValueError(f"run_kernel: {target!r} is not an aarch64 CPU target")
    if missing := missing_tools(target):
        raise RuntimeError(f"run_kernel: missing {', '.join(missing)} (Debian packages gcc-aarch64-linux-gnu, qemu-user)")
    args = [np.ascontiguousarray(a) for a in args]
    for a in args:
        if a.dtype not in _DTYPES:
            raise TypeError(f"run_kernel: dtype {a.dtype} is not supported by the harness")
    module = tvm.tirx.build(tvm.IRModule({"kernel": func.with_attr("global_symbol", "kernel")}), target=info.tvm_target())
    with tempfile.TemporaryDirectory(prefix="gearshift-qemu-") as tmp:
        work = Path(tmp)
        module.write_to_file(str(work / "kernel.o"))
        include = Path(__import__("tvm_ffi").__file__).parent / "include"
        subprocess.run([info.cross_compiler, "-O2", "-static", "-I", str(include), str(HARNESS), str(work / "kernel.o"),
                        "-o", str(work / "run"), "-lpthread", "-lm"], check=True, capture_output=True, text=True)
        (work / "call.bin").write_bytes(_call_file(args))
        done = subprocess.run([QEMU, str(work / "run"), str(work / "call.bin"), str(work / "result.bin")],
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"run_kernel: the kernel failed under qemu (exit {done.returncode}): {done.stderr.strip()}")
        payload = (work / "result.bin").read_bytes()
    results, at = [], 0
    for a in args:
        results.append(np.frombuffer(payload, a.dtype, a.size, at).reshape(a.shape).copy())
        at += a.nbytes
    return results


def _call_file(args: list[np.ndarray]) -> bytes:
    parts = [struct.pack("<i", len(args))]
    for a in args:
        code, bits = _DTYPES[a.dtype]
        parts += [struct.pack("<3i", code, bits, a.ndim), struct.pack(f"<{a.ndim}q", *a.shape), a.tobytes()]
    return b"".join(parts)
