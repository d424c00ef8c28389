"""The sparsity plan: what each weight layer becomes, from `--sparsity` and `--layer-sparsity`.

One grammar for every kind, written once in `SPEC_FORMS` (the CLI's help and the parse errors are
made from it); errors name the bad part and show an example. Where each kind is rewritten:
found -> relay_passes/found.py, bsr and dense-layer patterns -> block_sparse.py, 3x3 patterns ->
pattern_sparse.py, circulant -> circulant.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gearshift.errors import InputError

FORMS = ("baked", "runtime")

SPEC_FORMS = (  # (form, what it means): the grammar of a sparsity spec
    ("found", "the structure the weight already has (zero blocks, 3x3 patterns, circulant blocks), "
              "where the cost model predicts a gain; the default"),
    ("dense", "leave the layer alone (turns found off)"),
    ("bsr", "block-sparse, with the zeros the weight has"),
    ("bsr:SPARSITY[:RxC]", "project onto RxC blocks with SPARSITY of them zero, e.g. bsr:0.8, bsr:0.8:16x1, "
                           "bsr::16x1; without RxC the cost model picks the block"),
    ("pattern", "the patterns the weight has"),
    ("pattern:K[:CONNECTIVITY[:RxC[:E]]]", "3x3 convs: K patterns of 4-of-9 with CONNECTIVITY of the kernels removed, "
                                           "e.g. pattern:4:0.72; dense layers: K patterns of E weights in RxC "
                                           "blocks (default 4x4, E half the block), e.g. pattern:4:0.75:16x4:32"),
    ("circulant[:B[:fft|direct]]", "block-circulant dense layers: the blocks the weight has, or projected onto "
                                   "BxB blocks, e.g. circulant:16"),
)


def grammar_help() -> str:
    """The spec grammar as one paragraph (the CLI's --sparsity help)."""
    return "; ".join(f"{form}: {meaning}" for form, meaning in SPEC_FORMS).replace("%", "%%")


@dataclass(frozen=True)
class LayerSpec:
    kind: str  # "found", "dense", "bsr", "pattern" or "circulant" (block = (B, B))
    sparsity: float | None = None  # bsr: fraction of blocks zeroed; pattern: of 3x3 kernels or blocks removed; None: keep W's zeros
    block: tuple[int, int] | None = None  # bsr: None = the cost model chooses; pattern (dense layers): None = 4x4
    patterns: int | None = None  # pattern: library size K; None: the patterns W already has
    entries: int | None = None  # pattern, dense layers: weights each block pattern keeps (None: half the block)
    path: str | None = None  # circulant: "fft" or "direct" forced (None: the cost model chooses)

    def __str__(self) -> str:
        if self.kind in ("dense", "found"):
            return self.kind
        if self.kind == "circulant":
            return ":".join(["circulant", str(self.block[0]) if self.block else "", self.path or ""]).rstrip(":")
        if self.kind == "pattern":
            conn = "" if self.sparsity is None else f"{self.sparsity:g}"
            block = f"{self.block[0]}x{self.block[1]}" if self.block else ""
            return ":".join(["pattern", str(self.patterns or ""), conn, block, str(self.entries or "")]).rstrip(":")
        sparsity = "" if self.sparsity is None else f"{self.sparsity:g}"
        block = f"{self.block[0]}x{self.block[1]}" if self.block else ""
        return ":".join(["bsr", sparsity, block]).rstrip(":")


def parse_spec(text: str) -> LayerSpec:
    """`dense`, `bsr` (use existing zeros), `bsr:0.8` (80 % of blocks zero), `bsr:0.8:16x1`, `bsr::16x1`."""
    parts = text.strip().lower().split(":")
    if parts in (["dense"], ["found"]):
        return LayerSpec(parts[0])
    if parts[0] == "pattern":
        return _parse_pattern(text, parts)
    if parts[0] == "circulant":
        return _parse_circulant(text, parts)
    if parts[0] != "bsr" or len(parts) > 3:
        raise InputError(f"bad sparsity spec {text!r}: expected one of {', '.join(f for f, _ in SPEC_FORMS)} "
                         f"(e.g. bsr:0.8:16x1, pattern:4:0.72, circulant:16)")
    sparsity = None
    if len(parts) > 1 and parts[1]:
        try:
            sparsity = float(parts[1])
        except ValueError:
            raise InputError(f"bad sparsity {parts[1]!r} in {text!r}: a fraction of zero blocks, e.g. 0.8") from None
        if not 0.0 <= sparsity < 1.0:
            raise InputError(f"sparsity {sparsity} in {text!r} must be in [0, 1)")
    block = None
    if len(parts) > 2:
        m = re.fullmatch(r"(\d+)x(\d+)", parts[2])
        if not m or int(m[1]) < 1 or int(m[2]) < 1:
            raise InputError(f"bad block shape {parts[2]!r} in {text!r}: expected RxC, e.g. 16x1")
        block = (int(m[1]), int(m[2]))
    return LayerSpec("bsr", sparsity, block)


def _parse_pattern(text: str, parts: list[str]) -> LayerSpec:
    """pattern[:K[:CONNECTIVITY[:RxC[:ENTRIES]]]]; the last two apply to dense layers only."""
    usage = "pattern, pattern:K, pattern:K:CONNECTIVITY or pattern:K:CONNECTIVITY:RxC:ENTRIES"
    if len(parts) > 5:
        raise InputError(f"bad sparsity spec {text!r}: expected {usage}")
    k = None
    if len(parts) > 1 and parts[1]:
        if not parts[1].isdigit() or not 1 <= int(parts[1]) <= 56:
            raise InputError(f"bad pattern count {parts[1]!r} in {text!r}: an integer K in [1, 56], e.g. pattern:4")
        k = int(parts[1])
    conn = None
    if len(parts) > 2 and parts[2]:
        try:
            conn = float(parts[2])
        except ValueError:
            raise InputError(f"bad connectivity {parts[2]!r} in {text!r}: a fraction of 3x3 kernels (or blocks) "
                             f"removed, e.g. 0.72") from None
        if not 0.0 <= conn < 1.0:
            raise InputError(f"connectivity {conn} in {text!r} must be in [0, 1)")
    if conn is not None and k is None:
        raise InputError(f"{text!r}: connectivity pruning needs a pattern count, e.g. pattern:4:{parts[2]}")
    block = None
    if len(parts) > 3 and parts[3]:
        m = re.fullmatch(r"(\d+)x(\d+)", parts[3])
        if not m or int(m[1]) < 1 or int(m[2]) < 1 or int(m[1]) * int(m[2]) > 64:
            raise InputError(f"bad pattern block {parts[3]!r} in {text!r}: expected RxC of at most 64 weights, e.g. 4x4")
        block = (int(m[1]), int(m[2]))
    entries = None
    if len(parts) > 4 and parts[4]:
        size = block[0] * block[1] if block else 16
        if not parts[4].isdigit() or not 1 <= int(parts[4]) < size:
            raise InputError(f"bad entry count {parts[4]!r} in {text!r}: weights kept per block, 1 to {size - 1}")
        entries = int(parts[4])
    if entries and k is None:
        raise InputError(f"{text!r}: an entry count needs a pattern count, e.g. pattern:4:0.75:4x4:8")
    return LayerSpec("pattern", conn, block, k, entries)


def _parse_circulant(text: str, parts: list[str]) -> LayerSpec:
    """circulant (the circulant blocks W has), circulant:B (project onto B x B blocks, B a power of
    two), and optionally :fft or :direct to force the kernel (default: the cost model's choice)."""
    if len(parts) > 3:
        raise InputError(f"bad sparsity spec {text!r}: expected circulant, circulant:B or circulant:B:fft|direct")
    path = None
    if len(parts) == 3 and parts[2]:
        if parts[2] not in ("fft", "direct"):
            raise InputError(f"bad circulant path {parts[2]!r} in {text!r}: fft or direct")
        path = parts[2]
    if len(parts) == 1 or not parts[1]:
        return LayerSpec("circulant", path=path)
    if not parts[1].isdigit() or int(parts[1]) < 1 or int(parts[1]) & (int(parts[1]) - 1) or int(parts[1]) > 256:
        raise InputError(f"bad circulant block {parts[1]!r} in {text!r}: a power of two up to 256, e.g. circulant:16")
    b = int(parts[1])
    return LayerSpec("circulant", block=(b, b), path=path)


@dataclass
class SparsityPlan:
    """What each weight-carrying layer becomes, by its weight's name (first matching override wins)."""

    default: LayerSpec = field(default_factory=lambda: LayerSpec("dense"))
    overrides: list[tuple[re.Pattern, LayerSpec]] = field(default_factory=list)
    form: str = "baked"
    # Several levels in one executable (runtime form): per layer, the stored blocks its arrays are
    # padded to (the most any level keeps); such a layer is sparse whatever the cost model says.
    capacity: dict[str, int] = field(default_factory=dict)
    check: bool = True  # run each rewritten layer's kernel against numpy (off only for a planning pass)

    @classmethod
    def parse(cls, default: str | None = None, overrides: Sequence[str] = (), form: str = "baked") -> SparsityPlan:
        if form not in FORMS:
            raise InputError(f"unknown sparse form {form!r}: use {' or '.join(FORMS)}")
        rules = []
        for item in overrides:
            pattern, sep, spec = item.rpartition("=")
            if not sep or not pattern:
                raise InputError(f"bad layer override {item!r}: expected REGEX=SPEC, e.g. 'intermediate=bsr:0.9:16x1'")
            try:
                rules.append((re.compile(pattern), parse_spec(spec)))
            except re.error as err:
                raise InputError(f"bad regular expression {pattern!r} in {item!r}: {err}") from None
        return cls(parse_spec(default) if default else LayerSpec("found"), rules, form)

    def for_layer(self, name: str) -> LayerSpec:
        for pattern, spec in self.overrides:
            if pattern.search(name):
                return spec
        return self.default

    @property
    def only_found(self) -> bool:
        """Nothing asked for: every layer takes the structure its weight has (the default)."""
        return self.default.kind in ("found", "dense") and all(s.kind in ("found", "dense") for _, s in self.overrides)

    @property
    def active(self) -> bool:
        return self.default.kind != "dense" or any(s.kind != "dense" for _, s in self.overrides)
