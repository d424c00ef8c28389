"""Build an imported model for a target: weights transformed once on the host, code for the device.

No schedule is applied to CPU kernels yet (TVM's default legalisation gives plain loops); GPU targets
get DLight's generic GPU rules through TVM's default GPU pipeline, which they need to build at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from gearshift.frontend.importer import Imported
from gearshift.relay_passes import clip_gathers, split_weight_transforms
from gearshift.relay_passes.weights import TRANSFORM
from gearshift.schedules.targets import TargetInfo, get_target
from gearshift.spec import TensorSpec

Log = Callable[[str], None]


@dataclass
class Built:
    """A compiled model: the executable and the weights it takes, in the order `main` takes them."""

    executable: object  # tvm.runtime.Executable
    weights: dict[str, np.ndarray]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    target: TargetInfo
    report: dict = field(default_factory=dict)

    def export_library(self, path: Path) -> None:
        """Write the shared library, cross-linked for the target's CPU."""
        if self.target.cross_compiler:
            from tvm.support import cc

            self.executable.export_library(str(path), fcompile=cc.cross_compiler(self.target.cross_compiler))
        else:
            self.executable.export_library(str(path))


def build(imported: Imported, target: str | TargetInfo = "host", log: Log = lambda _msg: None) -> Built:
    """Compile `imported` for `target` (a name from `gearshift.schedules.target_names()` or a TargetInfo)."""
    info = get_target(target) if isinstance(target, str) else target
    t0 = time.perf_counter()
    model, transform = split_weight_transforms(clip_gathers(imported.mod))
    weights = transform_weights(transform, imported.weights)
    names = [p.name for p in model["main"].params[len(imported.inputs):]]
    if len(names) != len(weights):
        raise RuntimeError(f"weight transform returned {len(weights)} arrays for {len(names)} weight parameters")
    names = _unique(names)
    t1 = time.perf_counter()
    log(f"weights: {len(imported.weights)} in, {len(names)} prepared ({t1 - t0:.1f} s)")

    tvm_target = info.tvm_target()
    with tvm_target:
        executable = tvm.compile(model, target=tvm_target, relax_pipeline=relax.get_default_pipeline(tvm_target))
    t2 = time.perf_counter()
    log(f"code: built for {info.name} ({t2 - t1:.1f} s)")
    report = {"transform_seconds": round(t1 - t0, 3), "build_seconds": round(t2 - t1, 3)}
    return Built(executable, dict(zip(names, weights)), imported.inputs, imported.outputs, info, report)


def transform_weights(transform: tvm.IRModule, weights: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the lifted weight transforms on this machine's CPU, whatever the target is."""
    host = tvm.target.Target({"kind": "llvm"})
    with host:
        executable = tvm.compile(transform, target=host, relax_pipeline=relax.get_default_pipeline(host))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm[TRANSFORM]([tvm.runtime.tensor(np.ascontiguousarray(w)) for w in weights.values()])
    return [np.asarray(t.numpy()) for t in out]


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}.{k}")
    return out
