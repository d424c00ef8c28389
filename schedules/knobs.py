"""Knobs: the choices the sparse kernels' hand rules make, as data a tuner can vary and a database can hold.

A `Task` is one kernel as a model uses it: its kind, sizes, target microkernel and the exact
structure it runs (a fingerprint of its index arrays or masks), plus, not part of its identity, the
real arrays needed to run it. Its knobs are what the rules otherwise decide:
- BSR (`kernels/bsr.py`): the tiling (`along` the outputs or the activations), the register tile's
  activation `rows`, and along the outputs the L2 `chunk` (register tiles per chunk) and whether x
  is read through `panels` (rules: `choose_tile`, `chunk_tiles`, `uses_panels`);
- pattern conv (`kernels/pattern_conv.py`): the register block (`rows` x `vectors` of output pixels)
  and the input-channel `group` (rules: `choose_block`, `channel_group`).

`space(task)` lists every valid setting, `build(task, knobs)` makes the kernel and real arguments,
`features(task, knobs)` describes a setting to a cost model. `Tuning` is all the passes see: tuned
knobs by task key (from a database), and the tasks a build met (what `gearshift tune` tunes).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import tvm

from gearshift.schedules.cpu.microkernel import Microkernel
from gearshift.schedules.kernels.bsr import (Tile, bsr_matmul, chunk_tiles, kept_columns, panel_split, panels_fit,
                                             uses_panels)
from gearshift.schedules.kernels.pattern_conv import (choose_block, default_group, out_extent, pack, padded_extent,
                                                      pattern_conv2d)

KINDS = ("bsr", "pattern_conv")
CHUNKS = (1, 2, 4, 8, 16)  # register tiles per L2 chunk a tuner may try, besides the rule's
GROUPS = (1, 2, 4, 8)  # input-channel groups a tuner may try, besides the rule's


@dataclass(frozen=True)
class Task:
    """One sparse kernel as a model uses it. `sizes` and `structure` are its identity (with the
    target, which the database keys separately); `payload` holds the real arrays it runs on."""

    kind: str
    sizes: tuple
    structure: str
    name: str = field(default="", compare=False)
    payload: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def key(self) -> str:
        return f"{self.kind}:{json.dumps(_plain(self.sizes), separators=(',', ':'))}:{self.structure}"

    @property
    def label(self) -> str:
        """A short human name: "bsr 128x3072->768 16x1" or "pattern_conv 64x56x56->64 s1"."""
        if self.kind == "bsr":
            m, k, n, r, c = self.sizes[:5]
            return f"bsr {m}x{k}->{n} {r}x{c}"
        _, cin, cout, h, w, _, stride = self.sizes[:7]
        return f"pattern_conv {cin}x{h}x{w}->{cout} s{stride}"


def fingerprint(*arrays: np.ndarray) -> str:
    """16 hex digits of sha256 over the arrays' shapes and bytes: the structure a kernel runs."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# -- BSR -----------------------------------------------------------------------------------------
def bsr_task(name: str, m: int, k: int, n: int, r: int, c: int, arrays: tuple, masks: np.ndarray | None,
             epilogue: tuple | None, micro: Microkernel, threads: int, tile: Tile) -> Task:
    """The BSR (or block-pattern) kernel of one layer: `arrays` = (data, indices, indptr) as stored,
    `tile` the rules' choice (the default knobs)."""
    _, indices, indptr = arrays
    structure = fingerprint(indices, indptr, *(() if masks is None else (masks,)))
    sizes = (m, k, n, r, c, len(indices), threads, micro.lanes, micro.rows * micro.vectors, repr(epilogue))
    task = Task("bsr", sizes, structure, name, {"arrays": arrays, "masks": masks, "epilogue": epilogue})
    task.payload["default"] = bsr_default(task, tile)
    return task


def bsr_tile(knobs: dict, lanes: int) -> Tile:
    return Tile(knobs["along"], int(knobs["rows"]), lanes, int(knobs.get("chunk", 0)), knobs.get("panels"))


def bsr_default(task: Task, tile: Tile) -> dict:
    """The rules' choice as explicit knobs (chunk and panels resolved): the same kernel as `tile`."""
    m, k, n, r, c, nnz, threads = task.sizes[:7]
    if tile.along == "activations":
        return {"along": "activations", "rows": tile.rows, "chunk": 0, "panels": False}
    masks = task.payload.get("masks")
    panels = masks is None and uses_panels(m, k, n, r, c, nnz, tile, threads)
    rows = min(tile.rows, m)
    chunk = panel_split(m, k, tile.rows, threads)[2] if panels else chunk_tiles(m, k, rows)
    return {"along": "outputs", "rows": tile.rows, "chunk": chunk, "panels": panels}


def _bsr_space(task: Task) -> list[dict]:
    m, k, _, r, _, _, threads, lanes, budget = task.sizes[:9]
    masks = task.payload.get("masks")
    out = []
    per_row = max(1, math.ceil(r / lanes))
    if masks is None or kept_columns(masks) is not None:
        for rows in range(1, min(m, budget // per_row) + 1):
            tiles = m // rows
            chunks = sorted({chunk_tiles(m, k, rows), *(ch for ch in CHUNKS if ch <= max(1, tiles))})
            for chunk in chunks:
                out.append({"along": "outputs", "rows": rows, "chunk": chunk, "panels": False})
            tile = Tile("outputs", rows, lanes)
            if panels_fit(k, tile, masks) and rows * 2 <= m:
                each = panel_split(m, k, rows, threads)[1]
                for chunk in sorted({panel_split(m, k, rows, threads)[2], *(ch for ch in CHUNKS if ch <= each)}):
                    out.append({"along": "outputs", "rows": rows, "chunk": chunk, "panels": True})
    if m % lanes == 0 and k % lanes == 0:
        for vectors in range(1, max(1, budget // r) + 1):
            if m % (vectors * lanes) == 0:
                out.append({"along": "activations", "rows": vectors * lanes, "chunk": 0, "panels": False})
    return out


def _bsr_build(task: Task, knobs: dict, rng: np.random.Generator):
    m, k, n, r, c, nnz, threads, lanes = task.sizes[:8]
    data, indices, indptr = task.payload["arrays"]
    func = bsr_matmul(m, k, n, r, c, nnz, bsr_tile(knobs, lanes), threads, task.payload.get("masks"),
                      task.payload.get("epilogue"))
    x = rng.standard_normal((m, k)).astype(np.float32)
    return func, [x, data, indices, indptr, np.zeros(n, np.float32), np.zeros((m, n), np.float32)]


def _bsr_features(task: Task, knobs: dict) -> list[float]:
    m, k, n, r, c, nnz, threads, lanes, budget = task.sizes[:9]
    rows = int(knobs["rows"])
    outputs = knobs["along"] == "outputs"
    accumulators = rows * max(1, math.ceil(r / lanes)) if outputs else (rows // lanes) * r
    density = nnz / ((n // r) * (k // c))
    tile_kb = (min(rows, m) if outputs else rows) * k * 4 / 1024
    return [float(outputs), rows, int(knobs.get("chunk", 0)), float(bool(knobs.get("panels"))), accumulators,
            accumulators / budget, tile_kb, tile_kb * int(knobs.get("chunk", 0) or 1), m % rows if outputs else 0,
            m, k, n, r, c, density, math.log2(max(nnz, 1)), threads, lanes]


# -- pattern conv --------------------------------------------------------------------------------
def pattern_conv_task(name: str, sizes: tuple, pruned: np.ndarray, masks: np.ndarray, micro: Microkernel,
                      threads: int) -> Task:
    """The pattern conv of one layer: `sizes` = (n, cin, cout, h, w, pads, stride), `pruned` its weight."""
    structure = fingerprint(pruned.reshape(*pruned.shape[:2], 9) != 0, masks)
    full = (*sizes, micro.lanes, micro.rows * micro.vectors, threads)
    task = Task("pattern_conv", full, structure, name, {"pruned": pruned, "masks": masks})
    task.payload["default"] = conv_default(task)
    return task


def _conv_space(task: Task) -> list[dict]:
    _, cin, _, h, w, pads, stride, lanes, budget = task.sizes[:9]
    oh, ow = out_extent(h, w, tuple(pads), stride)
    total = math.ceil(ow / lanes)
    groups = sorted({-(-cin // g) for g in GROUPS if g <= cin} | {conv_default_group(task)})
    out = []
    for vectors in range(1, min(7, total) + 1):
        for rows in range(1, min(8, oh) + 1):
            if rows * vectors <= budget:
                out += [{"rows": rows, "vectors": vectors, "group": g} for g in groups]
    return out


def conv_default_group(task: Task) -> int:
    _, cin, cout, h, w, pads, stride, lanes = task.sizes[:8]
    kept = int((task.payload["pruned"].reshape(cout, cin, 9) != 0).any(axis=2).sum())
    return default_group(cin, h, w, tuple(pads), stride, lanes, kept / cout)


def conv_default(task: Task) -> dict:
    _, _, _, h, w, pads, stride, lanes = task.sizes[:8]
    rows, vectors = choose_block(*out_extent(h, w, tuple(pads), stride), lanes)
    return {"rows": rows, "vectors": vectors, "group": conv_default_group(task)}


def conv_arrays(task: Task, knobs: dict) -> tuple[np.ndarray, ...]:
    threads = task.sizes[9]
    return pack(task.payload["pruned"], task.payload["masks"], threads, int(knobs["group"]))


def conv_kernel(task: Task, knobs: dict, kept: int) -> tvm.tirx.PrimFunc:
    n, cin, cout, h, w, pads, stride, lanes, _, threads = task.sizes[:10]
    block = (int(knobs["rows"]), int(knobs["vectors"]))
    return pattern_conv2d(n, cin, cout, h, w, tuple(pads), stride, task.payload["masks"], kept, lanes, threads,
                          block=block, ngroups=-(-cin // int(knobs["group"])))


def _conv_build(task: Task, knobs: dict, rng: np.random.Generator):
    n, cin, cout, h, w, pads, stride, lanes = task.sizes[:8]
    arrays = conv_arrays(task, knobs)
    func = conv_kernel(task, knobs, len(arrays[1]))
    out = [n, cout, *padded_extent(h, w, tuple(pads), stride, lanes, (int(knobs["rows"]), int(knobs["vectors"])))]
    x = rng.standard_normal((n, cin, h, w)).astype(np.float32)
    return func, [x, *arrays, np.zeros(cout, np.float32), np.zeros(out, np.float32)]


def _conv_features(task: Task, knobs: dict) -> list[float]:
    _, cin, cout, h, w, pads, stride, lanes, budget = task.sizes[:9]
    rows, vectors, group = int(knobs["rows"]), int(knobs["vectors"]), int(knobs["group"])
    oh, ow = out_extent(h, w, tuple(pads), stride)
    ohp, owp = padded_extent(h, w, tuple(pads), stride, lanes, (rows, vectors))
    pruned = task.payload["pruned"]
    density = float((pruned.reshape(cout, cin, 9) != 0).any(axis=2).mean())
    rows_kb = ((rows - 1) * stride + 3) * (owp * stride + 3) * 4 * group / 1024  # input rows a block reads
    return [rows, vectors, rows * vectors, rows * vectors / budget, group, -(-cin // group), rows_kb,
            ohp * owp / (oh * ow), cin, cout, h, w, stride, density, lanes]


# -- one interface over the kinds ----------------------------------------------------------------
def space(task: Task) -> list[dict]:
    """Every valid knob setting of `task` (the rules' own choice among them)."""
    return _bsr_space(task) if task.kind == "bsr" else _conv_space(task)


def build(task: Task, knobs: dict, seed: int = 0) -> tuple[tvm.tirx.PrimFunc, list[np.ndarray]]:
    """The kernel for `knobs` and arguments to time it with: the task's real structure arrays, random
    activations, zero bias and output (the last argument)."""
    rng = np.random.default_rng(seed)
    return _bsr_build(task, knobs, rng) if task.kind == "bsr" else _conv_build(task, knobs, rng)


def features(task: Task, knobs: dict) -> list[float]:
    """Numbers a cost model can learn from: the knobs, what they imply (accumulators, footprint),
    and the task's shape and structure."""
    return _bsr_features(task, knobs) if task.kind == "bsr" else _conv_features(task, knobs)


def canonical(knobs: dict) -> str:
    return json.dumps({key: knobs[key] for key in sorted(knobs)}, separators=(",", ":"))


class Tuning:
    """What a build consults: tuned knobs by task key (`records`), and the tasks it met (`tasks`).
    `used` lists (task label, knobs) for every kernel that took tuned knobs, for the build log.
    `per_layer`: a layer keeps the knobs of its first lookup whatever its structure (levels in the
    runtime form share one kernel per layer, so every level must get the same code)."""

    def __init__(self, records: dict[str, dict] | None = None, per_layer: bool = False,
                 dense: dict | None = None):
        self.records = dict(records or {})
        self.per_layer = per_layer
        self.dense = dict(dense or {})  # `pipeline.dense_key` -> MetaSchedule's scheduled PrimFunc
        self.tasks: list[Task] = []
        self.used: list[tuple[str, dict]] = []
        self._pinned: dict[tuple, dict | None] = {}

    def knobs(self, task: Task) -> dict | None:
        """The tuned knobs of `task`, or None (the rules decide). Records the task either way."""
        if task not in self.tasks:
            self.tasks.append(task)
        layer = (task.name, task.kind, task.sizes)
        if self.per_layer and layer in self._pinned:
            found = self._pinned[layer]
        else:
            found = self._pinned[layer] = self.records.get(task.key)
        if found is not None:
            self.used.append((task.label, found))
        return found


def _plain(value):
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value

