"""Read a kernel's hot loop out of generated assembly (x86-64 AT&T or AArch64), without running it.

The machines here have one x86 ISA each and no ARM CPU, so a schedule's quality on the other ISAs
is checked by reading its code: the hot loop is the innermost loop (a backward branch to a label
above it, with no other loop inside) holding the most vector FMAs. Of that loop we count what the
design decides: FMAs and their vector width, the distinct accumulator registers they write (the
register block), loads and stores, stack accesses (spills), and lane-by-lane moves or gathers
(the signature of a tile LLVM failed to keep in registers).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

FUNCTION = re.compile(r"^\s*\.type\s+([^,]+),\s*[@%]function")
LABEL = re.compile(r"^([.\w$]+):")
X86_BRANCH = re.compile(r"^\s+j[a-z]+\s+([.\w$]+)\s*$")
ARM_BRANCH = re.compile(r"^\s+(?:b(?:\.[a-z]+)?|cbn?z\s+\w+,|tbn?z\s+\w+,\s*#\d+,)\s*([.\w$]+)\s*$")

X86_FMA = re.compile(r"^\s+vfn?m(?:add|sub)(?:132|213|231)(ps|ss)\s+(.*)$")
ARM_FMA = re.compile(r"^\s+(fmla|fmls)\s+(v\d+)\.(\d+)s,")
ARM_SCALAR_FMA = re.compile(r"^\s+fn?m(?:add|sub)\s+s\d+")
X86_LANE_OPS = re.compile(r"^\s+(vinsertps|vextractps|vpinsrd|vpextrd|v?p?gather\w+|v?p?scatter\w+)\b")
ARM_LANE_OPS = re.compile(r"^\s+(ins\s+v\d+\.s\[|mov\s+v\d+\.s\[|ld1\s+\{[^}]*\}\[|st1\s+\{[^}]*\}\[)")
ARM_LOAD = re.compile(r"^\s+(ld[1-4]r?|ldr|ldur|ldp|ldnp)\s")
ARM_STORE = re.compile(r"^\s+(st[1-4]|str|stur|stp|stnp)\s")
X86_WIDTH = {"zmm": 512, "ymm": 256, "xmm": 128}
X86_REGISTER = re.compile(r"^\s+[a-z]\w*\s.*%(?:[re]?[a-z]{2}\b|[xyz]mm\d)", re.M)


@dataclass(frozen=True)
class HotLoop:
    """What one iteration of a kernel's hottest loop does."""

    function: str
    instructions: int
    fmas: int  # vector FMAs
    fma_bits: tuple[int, ...]  # the vector widths those FMAs use (one entry per width seen)
    scalar_fmas: int
    accumulators: int  # distinct registers the vector FMAs accumulate into
    loads: int  # instructions that read memory (stack reads included)
    stores: int
    stack: int  # accesses to the stack frame: spills and reloads
    lane_ops: int  # per-lane inserts/extracts, gathers and scatters

    @property
    def loads_per_fma(self) -> float:
        return self.loads / self.fmas if self.fmas else float("inf")

    def as_dict(self) -> dict:
        return {**asdict(self), "fma_bits": list(self.fma_bits), "loads_per_fma": round(self.loads_per_fma, 3)}


def hot_loop(asm: str, arm: bool | None = None) -> HotLoop | None:
    """The innermost loop with the most vector FMAs in `asm` (None: no loop has an FMA). `arm`:
    AArch64 rather than x86-64 AT&T syntax (None: x86 if any operand names a %register)."""
    if arm is None:
        arm = X86_REGISTER.search(asm) is None
    best: HotLoop | None = None
    for name, lines in _functions(asm):
        for start, end in _innermost_loops(lines, arm):
            loop = _count(name, lines[start:end + 1], arm)
            if loop.fmas and (best is None or loop.fmas > best.fmas):
                best = loop
    return best


def _functions(asm: str) -> list[tuple[str, list[str]]]:
    functions: list[tuple[str, list[str]]] = []
    for line in asm.splitlines():
        found = FUNCTION.match(line)
        if found:
            functions.append((found.group(1).strip(), []))
        elif functions:
            functions[-1][1].append(line)
    return functions


def _innermost_loops(lines: list[str], arm: bool) -> list[tuple[int, int]]:
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := LABEL.match(line))}
    branch = ARM_BRANCH if arm else X86_BRANCH
    loops = []
    for i, line in enumerate(lines):
        found = branch.match(line)
        if found and found.group(1) in labels and labels[found.group(1)] < i:
            loops.append((labels[found.group(1)], i))
    return [(s, e) for s, e in loops if not any((s, e) != (s2, e2) and s <= s2 and e2 <= e for s2, e2 in loops)]


def _count(name: str, body: list[str], arm: bool) -> HotLoop:
    code = [line for line in body if line.startswith("\t") and not line.lstrip().startswith((".", "#", "//"))]
    fmas, scalar, loads, stores, stack, lane_ops = 0, 0, 0, 0, 0, 0
    bits: set[int] = set()
    accumulators: set[str] = set()
    for line in code:
        if arm:
            fma = ARM_FMA.match(line)
            if fma:
                fmas += 1
                bits.add(32 * int(fma.group(3)))
                accumulators.add(fma.group(2))
            scalar += bool(ARM_SCALAR_FMA.match(line))
            loads += bool(ARM_LOAD.match(line))
            stores += bool(ARM_STORE.match(line))
            stack += bool(re.search(r"\[(sp|x29)\b", line))
            lane_ops += bool(ARM_LANE_OPS.match(line))
            continue
        fma = X86_FMA.match(line)
        if fma:
            operands = [op.strip() for op in _operands(fma.group(2))]
            if fma.group(1) == "ss":
                scalar += 1
            else:
                fmas += 1
                bits.update(X86_WIDTH[op[1:4]] for op in operands if op[1:4] in X86_WIDTH)
                accumulators.add(operands[-1])
        operands = _operands(line.split(None, 1)[1]) if len(line.split(None, 1)) > 1 else []
        memory = [i for i, op in enumerate(operands) if "(" in op]
        mnemonic = line.split()[0]
        if memory and not mnemonic.startswith(("lea", "nop", "prefetch")):
            if memory[-1] == len(operands) - 1 and len(operands) > 1 and not mnemonic.startswith(("cmp", "test")):
                stores += 1
            else:
                loads += 1
            stack += any("%rsp" in operands[i] for i in memory)
        lane_ops += bool(X86_LANE_OPS.match(line))
    return HotLoop(name, len(code), fmas, tuple(sorted(bits)), scalar, len(accumulators), loads, stores, stack, lane_ops)


def _operands(text: str) -> list[str]:
    """Split AT&T operands on top-level commas (not those inside `disp(base,index,scale)`)."""
    out, depth, current = [], 0, ""
    for ch in text.split("#")[0]:
        if ch == "," and depth == 0:
            out.append(current.strip())
            current = ""
            continue
        depth += (ch == "(") - (ch == ")")
        current += ch
    if current.strip():
        out.append(current.strip())
    return out
