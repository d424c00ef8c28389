"""What the CLI's commands share: the log line, the table format, the --input-shape option."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gearshift.errors import InputError


def log(msg: str) -> None:
    print(f"[gearshift] {msg}", file=sys.stderr, flush=True)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table, columns padded so it also reads as plain text."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


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
