"""The tuning database: every measurement gearshift's tuner made, as JSON lines in one folder.

`DIR/gearshift-records.jsonl`, one JSON object a line, appended (and flushed to disk) as each
measurement comes back, so an interrupted run keeps every record and a rerun resumes from them:

    {"target": "<target key>", "task": "<task key>", "kind": "bsr", "label": "bsr 128x3072->768 16x1",
     "knobs": {...}, "ms": 0.31 or null, "error": null or "why it failed", "default": true/false,
     "features": [...], "device": "where it was measured", "time": "UTC ISO time"}

After a search, the winner and the default are measured again in turns; a record with "final": true
says which of them a build takes (the winner only if it stayed faster).

The target key is the TVM target's configuration (so `host` on two different machines does not
mix); the task key is the kernel's kind, sizes and structure fingerprint (`schedules/knobs.py`).
Nothing is pickled. A line that is not a record is reported by file and line number.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gearshift.errors import InputError
from gearshift.schedules.knobs import canonical
from gearshift.schedules.targets import TargetInfo

RECORDS = "gearshift-records.jsonl"
FIELDS = {"target": str, "task": str, "kind": str, "knobs": dict, "default": bool}


def target_key(info: TargetInfo) -> str:
    return json.dumps(info.config, sort_keys=True, separators=(",", ":"))


class Database:
    """The records of one database folder (created on first write)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.file = self.path / RECORDS
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"tuning database {self.path} is a file; give a folder")
        self.records: list[dict] = self._read() if self.file.exists() else []

    def _read(self) -> list[dict]:
        out = []
        for number, line in enumerate(self.file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"tuning database {self.file}, line {number}: not JSON ({err.msg})") from None
            problem = _problem(record)
            if problem:
                raise InputError(f"tuning database {self.file}, line {number}: {problem}")
            out.append(record)
        return out

    def add(self, record: dict) -> None:
        """Append one record and flush it to disk before returning."""
        problem = _problem(record)
        if problem:
            raise ValueError(f"not a tuning record: {problem}")
        record = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.file, "a") as f:
            f.write(json.dumps(record, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.records.append(record)

    def measured(self, target: str, task: str) -> dict[str, float | None]:
        """Canonical knobs -> ms (None: failed) of one task's search trials on one target."""
        return {canonical(r["knobs"]): r.get("ms") for r in self.records
                if r["target"] == target and r["task"] == task and not r.get("final")}

    def final(self, target: str, task: str) -> dict | None:
        """The latest confirmed record of a task (the search's winner, or the default where the winner
        did not beat it when measured again), or None before any."""
        finals = [r for r in self.records if r["target"] == target and r["task"] == task and r.get("final")]
        return finals[-1] if finals else None

    def best(self, target: str) -> dict[str, dict]:
        """Task key -> what a build takes on `target`: the confirmed knobs where there are some, else
        the fastest measured."""
        fastest: dict[str, tuple[float, dict]] = {}
        confirmed: dict[str, dict] = {}
        for r in self.records:
            if r["target"] != target or r.get("ms") is None:
                continue
            if r.get("final"):
                confirmed[r["task"]] = r["knobs"]
            elif r["task"] not in fastest or r["ms"] < fastest[r["task"]][0]:
                fastest[r["task"]] = (r["ms"], r["knobs"])
        return {**{task: knobs for task, (_, knobs) in fastest.items()}, **confirmed}


def search_trials(records: list[dict], target: str, kind: str) -> list[dict]:
    """The successful search trials of one kernel kind on one target (records with features)."""
    return [r for r in records if r["target"] == target and r["kind"] == kind
            and r.get("ms") is not None and r.get("features") and not r.get("final")]


def _problem(record) -> str | None:
    if not isinstance(record, dict):
        return "a record must be a JSON object"
    for name, kind in FIELDS.items():
        if not isinstance(record.get(name), kind):
            return f"field {name!r} missing or not a {kind.__name__}"
    ms = record.get("ms")
    if ms is not None and (not isinstance(ms, (int, float)) or ms <= 0):
        return f"field 'ms' must be a positive number or null, got {ms!r}"
    return None

