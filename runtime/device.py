"""The phone's side of gearshift: `python -m gearshift.runtime.device run|serve ...`.

It imports nothing but the runtime (TVM's runtime, numpy, safetensors), so it runs on a phone with
only those installed, and in the emulated phone (`runtime/emulated.py`), where `gearshift run` and
`gearshift device serve` call it under qemu-user.

    run ARTIFACT --inputs in.npz [-o out.npz] [--repeat N] [--level L] [--json]
    serve --tracker HOST:PORT --key KEY [--host 0.0.0.0] [--port 9090] [--custom-addr ADDR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gearshift.errors import GearshiftError, InputError

EXIT_USER_ERROR = 2


def emulation_note() -> str | None:
    """What the emulated phone says of its timings (set by the host that started it); None on real hardware."""
    return os.environ.get("GEARSHIFT_EMULATED") or None


def run_artifact(artifact: str | os.PathLike, inputs_path: str | os.PathLike, *, output: str | None = None,
                 repeat: int = 0, level: str | None = None, trusted_keys: Sequence[str] | None = None) -> dict:
    """Run an artifact on the inputs of an .npz; write the outputs to `output`; time `repeat` runs.
    Returns the summary `gearshift run` prints. `trusted_keys`: the artifact must be signed by one."""
    from gearshift.runtime.session import Session

    session = Session(artifact, level=level, trusted_keys=trusted_keys or None)
    inputs = read_npz(Path(inputs_path))
    outputs = session.run(inputs)
    summary: dict = {"machine": platform.machine(), "level": session.level,
                     "outputs": {k: {"shape": list(v.shape), "dtype": v.dtype.name} for k, v in outputs.items()}}
    if emulation_note():
        summary["emulated"] = emulation_note()
    if session.accelerator_report is not None:
        summary["accelerator"] = session.accelerator_report
    if output:
        save_npz(Path(output), outputs)
        summary["written"] = str(output)
    if repeat > 0:
        times = session.time(inputs, repeat=repeat)
        summary["latency_ms"] = {"median": float(np.median(times)), "p90": float(np.percentile(times, 90)),
                                 "runs": len(times), "timing": "blocks (3 warm-up runs before each)"}
    return summary


def print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    for name, info in summary["outputs"].items():
        print(f"{name}: {info['dtype']}{info['shape']}")
    if "accelerator" in summary:
        print_accelerator(summary["accelerator"])
    if "latency_ms" in summary:
        lat = summary["latency_ms"]
        caveat = " (emulated: not a phone's timing)" if summary.get("emulated") else ""
        print(f"latency over {lat['runs']} runs: median {lat['median']:.3f} ms, p90 {lat['p90']:.3f} ms{caveat}")


def print_accelerator(report: dict) -> None:
    """The simulated accelerator's cycles per layer (vta-sim artifacts)."""
    rows = [("layer", "cycles", "GEMM cycles", "utilisation", f"us at {report['clock_mhz']:g} MHz", "DRAM bytes")]
    rows += [(r["layer"], str(r["cycles"]), str(r["gemm_cycles"]), f"{r['utilisation']:.1%}", f"{r['microseconds']:.1f}",
              str(r["dram_bytes"])) for r in report["layers"]]
    print(f"accelerator ({report['note']}):")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
    print(f"total: {report['total_cycles']} cycles, {report['total_microseconds']:.1f} us, GEMM utilisation "
          f"{report['utilisation']:.1%} (offloaded layers only; the host part is not counted)")


def read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, AttributeError, EOFError, zipfile.BadZipFile):  # pickled, empty, not an
        # archive (found by fuzzing: an empty file raised EOFError): refused, never unpickled
        raise InputError(f"{path}: not an .npz archive of plain arrays") from None


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez appends .npz to names without it and writes in place: write a temp file, then rename."""
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def serve(tracker: str, key: str, *, host: str = "0.0.0.0", port: int = 9090, port_end: int | None = None,
          custom_addr: str | None = None, log=print) -> None:
    """TVM's RPC server, registered with the tracker under `key`; serves until interrupted.

    It runs in this process (TVM's `rpc.Server` starts a fresh Python for it, which an emulated
    process cannot exec); each session still gets a forked process of its own, as in TVM's server."""
    import tvm
    from tvm.rpc.server import PopenRPCServerState

    from gearshift.runtime.measure import NOTE_FUNCTION, reach_tracker, tracker_address

    if not key:
        raise InputError("--key is required: the name clients ask the tracker for (e.g. pixel6)")
    address = tracker_address(tracker, "--tracker")
    reach_tracker(address, tracker)
    # Clients ask for it (`measure.device_note`): figures timed here are then labelled as emulated.
    tvm.register_global_func(NOTE_FUNCTION, lambda: emulation_note() or "", override=True)
    try:
        state = PopenRPCServerState(host, port, port_end or port + 100, tracker_addr=address, key=key,
                                    custom_addr=custom_addr, silent=True)
    except (OSError, ValueError) as err:  # no free port, or an address this machine does not have
        raise InputError(f"cannot listen on {host}:{port}: {err}") from None
    note = f" [{emulation_note()}]" if emulation_note() else ""
    log(f"serving {platform.machine()} as key {key!r} on {host}:{state.port}, registered with the tracker at "
        f"{tracker}{note}; Ctrl-C stops", )
    state.thread.join()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gearshift.runtime.device", description="gearshift on the device")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an artifact on the inputs of an .npz")
    run.add_argument("artifact")
    run.add_argument("--inputs", "-i", required=True)
    run.add_argument("--output", "-o")
    run.add_argument("--repeat", type=int, default=0)
    run.add_argument("--level")
    run.add_argument("--json", action="store_true")
    run.add_argument("--trusted-key", action="append", default=[])
    srv = sub.add_parser("serve", help="TVM's RPC server, registered with a tracker")
    srv.add_argument("--tracker", required=True)
    srv.add_argument("--key", required=True)
    srv.add_argument("--host", default="0.0.0.0")
    srv.add_argument("--port", type=int, default=9090)
    srv.add_argument("--port-end", type=int)
    srv.add_argument("--custom-addr")
    args = p.parse_args(argv)
    try:
        if args.command == "run":
            summary = run_artifact(args.artifact, args.inputs, output=args.output, repeat=args.repeat, level=args.level,
                                   trusted_keys=args.trusted_key)
            print_summary(summary, args.json)
        else:
            serve(args.tracker, args.key, host=args.host, port=args.port, port_end=args.port_end,
                  custom_addr=args.custom_addr, log=lambda m: print(f"[gearshift] {m}", file=sys.stderr, flush=True))
    except GearshiftError as err:
        print(f"gearshift: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
