"""The `gearshift device` commands: the phone gearshift compiles for, real or emulated.

    gearshift device setup [--force]        build the emulated aarch64 phone once (`make arm-env`)
    gearshift device info                   where it is, what it holds
    gearshift device serve --tracker H:P --key K [--port N] [--custom-addr A]
                                            TVM's RPC server on the phone, registered with a tracker:
                                            on an x86 machine in the emulated phone, on an ARM device
                                            (a phone with gearshift's runtime, a board) natively
    gearshift device python ARGS...         the emulated phone's Python, gearshift importable
                                            (e.g. a script using Session, switch and the governor)

Attaching a real phone is described in the README ("A real phone").
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

from gearshift.cli.common import format_table, log


def add_commands(sub) -> None:
    dev = sub.add_parser("device", help="the phone: build the emulated aarch64 one, serve it over TVM RPC")
    cmds = dev.add_subparsers(dest="device_command", required=True)

    st = cmds.add_parser("setup", help="build the emulated aarch64 phone (Debian arm64 + TVM's aarch64 wheels) once")
    st.add_argument("--force", action="store_true", help="rebuild it even if it is up to date")
    st.set_defaults(handler=_setup)

    info = cmds.add_parser("info", help="where the emulated phone is and what it holds")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_info)

    srv = cmds.add_parser("serve", help="TVM's RPC server on the phone, registered with a tracker under a key "
                                        "(for `gearshift measure --rpc` and `gearshift tune --rpc`)")
    srv.add_argument("--tracker", required=True, metavar="HOST:PORT", help="the RPC tracker (python -m tvm.exec.rpc_tracker)")
    srv.add_argument("--key", required=True, help="the device's key, e.g. pixel6 (clients ask the tracker for it)")
    srv.add_argument("--host", default="0.0.0.0", help="the address to listen on (default 0.0.0.0)")
    srv.add_argument("--port", type=int, default=9090, help="first port to try (default 9090)")
    srv.add_argument("--custom-addr", help="the address the tracker hands to clients, where it cannot see the real one")
    srv.set_defaults(handler=_serve)

    py = cmds.add_parser("python", help="run the emulated phone's Python (gearshift importable): ARGS as for python")
    py.add_argument("args", nargs=argparse.REMAINDER)
    py.set_defaults(handler=_python)


def _setup(args: argparse.Namespace) -> int:
    from gearshift.runtime.emulated import build_root

    build_root(force=args.force, log=log)
    return 0


def _info(args: argparse.Namespace) -> int:
    from gearshift.runtime.emulated import NOTE, STAMP, default_root, stamp

    root = default_root()
    record = stamp(root)
    doc = {"root": str(root), "built": record is not None, "note": NOTE, **(record or {})}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    if record is None:
        state = "out of date" if (root / STAMP).exists() else "not built"
        print(f"emulated aarch64 phone: {root} ({state}; `make arm-env` builds it)")
        return 0
    rows = [("what", "version")] + [(k, v) for k, v in record["recipe"]["wheels"].items()]
    print(f"emulated aarch64 phone: {root}\n  Debian {record['recipe']['suite']} arm64, built {record['built']} in "
          f"{record['build_seconds']:.0f} s, {record['bytes'] / 1e6:.0f} MB\n  {NOTE}")
    print(format_table(rows))
    return 0


def _serve(args: argparse.Namespace) -> int:
    options = ["--tracker", args.tracker, "--key", args.key, "--host", args.host, "--port", str(args.port),
               *(["--custom-addr", args.custom_addr] if args.custom_addr else [])]
    if platform.machine() == "aarch64":  # a real ARM device: serve natively
        from gearshift.runtime.device import main as device_main

        return device_main(["serve", *options])
    from gearshift.runtime.emulated import NOTE, find_root, start_python

    proc = start_python(["-m", "gearshift.runtime.device", "serve", *options], root=find_root())
    log(f"starting the emulated phone's RPC server ({NOTE}); it registers in ~15 s")
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        return 130


def _python(args: argparse.Namespace) -> int:
    from gearshift.runtime.emulated import find_root, python_command

    argv = args.args[1:] if args.args[:1] == ["--"] else args.args
    cmd, env = python_command(argv, find_root())
    return subprocess.run(cmd, env=env, stdin=sys.stdin).returncode
