"""Compression levels (RT3): several sparsity plans of one model, compiled into one artifact.

A levels file is JSON:

    {"form": "runtime",                      # or "baked"; default "runtime"
     "levels": [
        {"name": "bsr50", "sparsity": "bsr:0.5:16x1"},
        {"name": "bsr90", "sparsity": "bsr:0.9:16x1", "layer_sparsity": ["attention=bsr:0.7:16x1"]}]}

A level may bring its own weights: `"model": "level90.onnx"` (the same graph as the compiled model,
other weights: a level trained for its sparsity, e.g. by `frontend.distill.progressive`; a relative
path is taken from the levels file's folder), and a `"report"` object (what training measured, e.g.
its accuracy) that the manifest carries as the level's `training` facts.

`runtime`: one executable for every level; the block structure (indices, indptr) is a weight array,
padded to the most blocks any level keeps, so a switch only swaps weight arrays. That needs every
level to give each layer the same kind of kernel (same block shape, same pattern library): levels
that differ in code are refused with the layer named. `baked`: one executable per level with its
structure as constants (faster kernels, one library per level).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from gearshift.errors import InputError, read_json
from gearshift.relay_passes.plan import SparsityPlan

LEVEL_FORMS = ("runtime", "baked")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class Level:
    name: str
    plan: SparsityPlan
    spec: str  # the sparsity as written, for the manifest
    model: str | None = None  # the level's own weights (an ONNX file of the same graph), or None: the model's
    report: dict | None = None  # what training measured of the level, carried into the manifest


@dataclass(frozen=True)
class LevelSet:
    levels: tuple[Level, ...]
    form: str = "runtime"

    @property
    def names(self) -> list[str]:
        return [level.name for level in self.levels]


def read_levels(path: str | os.PathLike) -> LevelSet:
    """Parse a levels file; every problem is an InputError naming the file and the level."""
    path = Path(path)
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such levels file") from None
    return parse_levels(doc, str(path), base=path.parent)


def parse_levels(doc, where: str = "levels", base: Path | None = None) -> LevelSet:
    if not isinstance(doc, dict) or not isinstance(doc.get("levels"), list) or not doc["levels"]:
        raise InputError(f'{where}: expected {{"levels": [{{"name": ..., "sparsity": ...}}, ...]}} with at least one level')
    unknown = set(doc) - {"form", "levels"}
    if unknown:
        raise InputError(f"{where}: unknown keys {sorted(unknown)}; a levels file has 'form' and 'levels'")
    form = doc.get("form", "runtime")
    if form not in LEVEL_FORMS:
        raise InputError(f"{where}: form {form!r} is not one of {', '.join(LEVEL_FORMS)}")
    levels, seen = [], set()
    for i, item in enumerate(doc["levels"]):
        if not isinstance(item, dict):
            raise InputError(f"{where}: level {i} is not an object")
        name = item.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InputError(f"{where}: level {i} needs a name of letters, digits, '_', '.', '-' (got {name!r})")
        if name in seen:
            raise InputError(f"{where}: level name {name!r} appears twice")
        seen.add(name)
        extra = set(item) - {"name", "sparsity", "layer_sparsity", "model", "report"}
        if extra:
            raise InputError(f"{where}: level {name!r} has unknown keys {sorted(extra)}")
        spec = item.get("sparsity")
        overrides = item.get("layer_sparsity", [])
        if not isinstance(spec, str) or not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise InputError(f"{where}: level {name!r} needs \"sparsity\": SPEC and optionally \"layer_sparsity\": "
                             f"[\"REGEX=SPEC\", ...]")
        try:
            plan = SparsityPlan.parse(spec, overrides, form="runtime" if form == "runtime" else "baked")
        except InputError as err:
            raise InputError(f"{where}: level {name!r}: {err}") from None
        model, report = item.get("model"), item.get("report")
        if model is not None and not isinstance(model, str):
            raise InputError(f"{where}: level {name!r}: \"model\" must be the path of an .onnx file")
        if model is not None and base is not None and not Path(model).is_absolute():
            model = str(base / model)
        if report is not None and not isinstance(report, dict):
            raise InputError(f"{where}: level {name!r}: \"report\" must be an object")
        levels.append(Level(name, plan, spec + "".join(f"; {o}" for o in overrides), model, report))
    return LevelSet(tuple(levels), form)


def capacities(layer_reports: list[list]) -> dict[str, int]:
    """Per layer sparse in any level: the most blocks a level stores (what the shared arrays hold)."""
    out: dict[str, int] = {}
    for reports in layer_reports:
        for layer in reports:
            if layer.decision != "dense" and layer.nnz_blocks:
                out[layer.name] = max(out.get(layer.name, 0), layer.nnz_blocks)
    return out
