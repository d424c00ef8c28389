"""The errors gearshift raises on bad input.

Every error a user can cause (a broken ONNX file, an op TVM cannot import, a tampered artifact)
is one of these, carries the facts needed to fix it (node, op type, file, reason) and prints in
one or two lines. The CLI turns them into an exit status instead of a traceback.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path


ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colours some libraries put in their messages


def summarize(err: BaseException, *, last: bool = False, lines: int = 1, width: int = 400) -> str:
    """A foreign error (protobuf, onnx, TVM) in a line or two for our messages. TVM puts its message
    last, after a C++ backtrace (`last=True`); onnx and protobuf put it first."""
    text = [ANSI.sub("", ln).strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not text:
        return type(err).__name__
    if "## Exception summary" in text:  # torch.export: the cause follows a page of advice
        text = [text[0], *text[text.index("## Exception summary") + 1:]]
        return " ".join(text[:2])[:width]
    return (text[-1] if last else " ".join(text[:lines]))[:width]


class GearshiftError(Exception):
    """Base of every error gearshift raises on purpose."""


class GearshiftImportError(GearshiftError):
    """A model could not be read or imported.

    `node` and `op_type` name the ONNX node at fault where there is one.
    """

    def __init__(self, reason: str, *, node: str | None = None, op_type: str | None = None):
        self.reason = reason
        self.node = node
        self.op_type = op_type
        where = ""
        if node is not None or op_type is not None:
            where = f"node {node!r} (op {op_type})" if node else f"op {op_type}"
            where += ": "
        super().__init__(where + reason)


class UnsupportedOpError(GearshiftImportError):
    """The model uses an op (or an op feature) that the importer cannot convert."""


class InputShapeError(GearshiftImportError):
    """An input's shape is missing, dynamic without a value given, or ambiguous."""


class InputError(GearshiftError, ValueError):
    """Run-time inputs (or a command-line value) that do not match what the model or command takes."""


class TargetError(GearshiftError):
    """An unknown target name, or an artifact built for another machine."""


class ArtifactError(GearshiftError):
    """An artifact directory is missing a file, was modified, truncated, or is of another format."""


def read_json(path: str | os.PathLike, error: type[GearshiftError] = InputError, hint: str = "") -> object:
    """A JSON file's content. A file that is not JSON (or not text) raises `error` naming the file,
    `hint` appended; a missing file is the caller's to handle (its message depends on what the file is)."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not valid JSON ({err}){hint}") from None
