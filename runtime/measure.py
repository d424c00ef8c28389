"""Measure every level of an artifact at one CPU frequency: here, or on a device through TVM's RPC tracker.

The latency model (`dvfs.LatencyModel.fit`) needs each level timed at several frequencies. On a
device, pin the cluster's frequency (e.g. the `userspace` cpufreq governor, or `performance` with
`scaling_max_freq` lowered), run `gearshift measure DIR --mhz F --rpc TRACKER:PORT --key KEY -o m.json`
once per frequency (each run merges into the file), then pass `--measurements m.json` to
`gearshift levels` / `rt3-report`. The device runs TVM's RPC server registered with the tracker
(`python -m tvm.exec.rpc_server --tracker HOST:PORT --key KEY`). Each level's library is uploaded,
its weights copied once, and `main` timed by TVM's time_evaluator on the device itself (no network
in the figure).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from gearshift.errors import InputError, read_json
from gearshift.runtime.artifact import Artifact, open_artifact
from gearshift.runtime.timing import vm_main_ms
from gearshift.spec import Log



def measure_levels(artifact: str | os.PathLike | Artifact, *, rpc: str | None = None, key: str | None = None,
                   repeat: int = 10, number: int = 3, inputs: dict[str, np.ndarray] | None = None,
                   log: Log = lambda _m: None) -> dict[str, float]:
    """Median latency (ms) of every level; on this machine, or on the device the tracker `rpc`
    ("host:port") hands out for `key`."""
    import tvm
    from tvm import relax

    from gearshift.runtime.calibration import calibration_inputs

    art = artifact if isinstance(artifact, Artifact) else open_artifact(artifact)
    if rpc is None:
        device, load = tvm.cpu(), lambda path: tvm.runtime.load_module(str(path))
        where = "this machine"
    else:
        remote = connect(rpc, key)
        device, where = remote.cpu(), f"{key} via tracker {rpc}{device_note(remote)}"

        def load(path: Path):
            name = f"gearshift-{art.manifest['files'][path.relative_to(art.path).as_posix()]['sha256'][:16]}.so"
            remote.upload(str(path), name)
            return remote.load_module(name)
    feeds = inputs or calibration_inputs(art.inputs)
    args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[s.name], dtype=s.dtype), device) for s in art.inputs]
    modules: dict[Path, object] = {}
    out = {}
    for level in art.level_names:
        path = art.level_library(level)
        if path not in modules:
            modules[path] = load(path)
        vm = relax.VirtualMachine(modules[path], device)
        weights = [tvm.runtime.tensor(w, device) for w in art.load_weights(level)]
        out[level] = round(vm_main_ms(vm, device, [*args, *weights], number=number, repeat=repeat), 4)
        log(f"measure: {level}: {out[level]:.3f} ms on {where}")
    return out


NOTE_FUNCTION = "gearshift.device.note"  # answered by gearshift's device server (runtime/device.py)


def tracker_address(text: str, what: str = "--rpc") -> tuple[str, int]:
    """("host", port) of a tracker given as "host:port", or a one-line error naming the option."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"bad {what} {text!r}: expected TRACKER_HOST:PORT, e.g. 127.0.0.1:9190")
    return host, int(port)


def reach_tracker(address: tuple[str, int], text: str):
    """A client of the tracker at `address` and its queues ({key: {"free": ..., ...}}), or a one-line error."""
    from tvm import rpc as tvm_rpc

    try:
        tracker = tvm_rpc.connect_tracker(*address)
        return tracker, tracker.summary()["queue_info"]
    except Exception as err:  # TVM raises plain RuntimeError/TVMError with its own text
        raise InputError(f"cannot reach the RPC tracker at {text}: {str(err).strip().splitlines()[-1]}") from None


def _tracker(rpc: str, key: str | None):
    """The tracker at `rpc` ("host:port"), checked to know `key`."""
    address = tracker_address(rpc)
    if not key:
        raise InputError("--rpc needs --key: the device key the RPC server registered with the tracker")
    tracker, queues = reach_tracker(address, rpc)
    if key not in queues:  # a request for an unknown key would wait forever
        raise InputError(f"the tracker at {rpc} has no device with key {key!r}; keys: {', '.join(sorted(queues)) or 'none'}")
    return tracker, queues[key]


def connect(rpc: str, key: str | None):
    """A session on one device the tracker at `rpc` hands out for `key`."""
    tracker, _ = _tracker(rpc, key)
    try:
        return tracker.request(key, priority=1, session_timeout=600, max_retry=2)
    except Exception as err:
        raise InputError(f"cannot get a device with key {key!r} from the tracker at {rpc}: "
                         f"{str(err).strip().splitlines()[-1]}") from None


def device_note(remote) -> str:
    """A suffix for the device's figures: the emulation note where the device is gearshift's emulated
    phone (its server says so), else nothing."""
    try:
        note = remote.get_function(NOTE_FUNCTION)()
    except Exception:  # a plain TVM server (a real phone, or an older gearshift): nothing to say
        return ""
    return f" [{note}]" if note else ""


def free_devices(rpc: str, key: str) -> int:
    """How many devices with `key` the tracker at `rpc` has free now."""
    return int(_tracker(rpc, key)[1].get("free", 0))


def current_mhz(cpu: int = 0) -> float | None:
    """This machine's frequency from cpufreq, or None where it has none."""
    from gearshift.runtime.governor import CpufreqSource

    return CpufreqSource(cpu).mhz() if CpufreqSource.available(cpu) else None


def merge(path: str | os.PathLike, mhz: float, latencies: dict[str, float]) -> dict[str, dict[str, float]]:
    """Add one frequency's latencies to the measurements file {level: {MHz: ms}} (written atomically)."""
    path = Path(path)
    doc: dict = {}
    if path.exists():
        doc = read_json(path, hint="; move it away or fix it")
        if not isinstance(doc, dict):
            raise InputError(f"{path}: expected {{level: {{MHz: ms}}}}")
    for level, ms in latencies.items():
        doc.setdefault(level, {})[f"{mhz:g}"] = ms
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)
    return doc
