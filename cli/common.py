"""What the CLI's commands share: the log line and the table format."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def log(msg: str) -> None:
    print(f"[gearshift] {msg}", file=sys.stderr, flush=True)


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """A markdown table, columns padded so it also reads as plain text."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
