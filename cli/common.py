"""What the CLI's commands share: the log line, the table format, the --input-shape option."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gearshift.bench import format_table  # noqa: F401  (re-exported: the commands' tables)
from gearshift.errors import InputError


def log(msg: str) -> None:
    print(f"[gearshift] {msg}", file=sys.stderr, flush=True)




def shape_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=D0,D1,...",
                   help="a static shape for a dynamic input (repeatable), e.g. input_ids=1,128")


def parse_input_shapes(items: Sequence[str]) -> dict[str, list[int]]:
    shapes = {}
    for item in items:
        name, sep, dims = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [int(d) for d in dims.replace("x", ",").split(",")]
        except ValueError:
            raise InputError(f"bad --input-shape {item!r}: expected NAME=D0,D1,... (e.g. input_ids=1,128)") from None
    return shapes


def with_quiet_pools() -> None:
    """Start this command again with idle thread pools set not to spin (they read the setting when
    they load, so it cannot be changed later): timings of several engines in one process need it."""
    import os

    from gearshift.bench import pools_are_quiet, quiet_environment

    if not pools_are_quiet():
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "gearshift.cli", *sys.argv[1:]], quiet_environment())
