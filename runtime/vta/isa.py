"""The instruction set: 128-bit LOAD, STORE, GEMM, ALU and FINISH instructions and 32-bit micro-ops,
laid out as VTA's `hw_spec.h` lays them out, with an encoder and a decoder.

Every instruction starts with the opcode (3 bits) and four dependency flags: pop_prev, pop_next,
push_prev, push_next. "prev" and "next" are relative to the module that runs the instruction
(load -> compute -> store): the compute module's pop_prev takes a token from the load module,
its push_next gives one to the store module, and so on. Fields are packed from bit 0 in the order
below into two 64-bit words, a field never straddling the two (as the C bit-fields on uint64_t do).
Field widths follow the configuration: buffer indices take log2(depth) bits.

    LOAD/STORE  memory_type(3) sram_base(16) dram_base(32) | y_size(16) x_size(16) x_stride(16)
                y_pad_0(4) y_pad_1(4) x_pad_0(4) x_pad_1(4)
    GEMM        reset(1) uop_bgn uop_end(+1 bit) iter_out(14) iter_in(14) | dst_factor_out dst_factor_in
                src_factor_out src_factor_in wgt_factor_out wgt_factor_in
    ALU         as GEMM up to the source factors, then alu_opcode(3) use_imm(1) imm(16, signed)
    FINISH      nothing else
    micro-op    dst_idx (accumulator) src_idx (input, or accumulator for ALU) wgt_idx (weight)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from gearshift.errors import GearshiftError
from gearshift.runtime.vta.config import VtaConfig

LOAD, STORE, GEMM, FINISH, ALU = 0, 1, 2, 3, 4
OPCODES = {LOAD: "LOAD", STORE: "STORE", GEMM: "GEMM", FINISH: "FINISH", ALU: "ALU"}
MEM_UOP, MEM_WGT, MEM_INP, MEM_ACC, MEM_OUT = 0, 1, 2, 3, 4
MEMORIES = {MEM_UOP: "uop", MEM_WGT: "wgt", MEM_INP: "inp", MEM_ACC: "acc", MEM_OUT: "out"}
ALU_MIN, ALU_MAX, ALU_ADD, ALU_SHR = 0, 1, 2, 3
ALU_OPS = {ALU_MIN: "MIN", ALU_MAX: "MAX", ALU_ADD: "ADD", ALU_SHR: "SHR"}
LOOP_BITS, IMM_BITS, PAD_BITS = 14, 16, 4


class IsaError(GearshiftError):
    """An instruction that cannot be encoded or decoded (a field out of range, an unknown opcode)."""


@dataclass(frozen=True)
class Deps:
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False


@dataclass(frozen=True)
class Mem:
    """LOAD or STORE of a 2-D strided tile, with zero padding on loads (in buffer elements)."""
    opcode: int
    memory_type: int
    sram_base: int
    dram_base: int
    y_size: int
    x_size: int
    x_stride: int
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0
    deps: Deps = Deps()


@dataclass(frozen=True)
class Gemm:
    uop_bgn: int
    uop_end: int
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0
    reset: bool = False
    deps: Deps = Deps()


@dataclass(frozen=True)
class Alu:
    alu_opcode: int
    uop_bgn: int
    uop_end: int
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    use_imm: bool = True
    imm: int = 0
    reset: bool = False
    deps: Deps = Deps()


@dataclass(frozen=True)
class Finish:
    deps: Deps = Deps()


@dataclass(frozen=True)
class Uop:
    dst_idx: int
    src_idx: int
    wgt_idx: int = 0


Insn = Mem | Gemm | Alu | Finish


def layouts(config: VtaConfig) -> dict[str, list[tuple[str, int]]]:
    """(field, bits) per instruction kind, in encoding order (after the opcode and the flags)."""
    acc, inp, wgt, uop = config.log_acc_depth, config.log_inp_depth, config.log_wgt_depth, config.log_uop_depth
    loops = [("reset", 1), ("uop_bgn", uop), ("uop_end", uop + 1), ("iter_out", LOOP_BITS), ("iter_in", LOOP_BITS),
             ("dst_factor_out", acc), ("dst_factor_in", acc)]
    return {
        "mem": [("memory_type", 3), ("sram_base", 16), ("dram_base", 32), ("y_size", 16), ("x_size", 16),
                ("x_stride", 16), ("y_pad_0", PAD_BITS), ("y_pad_1", PAD_BITS), ("x_pad_0", PAD_BITS), ("x_pad_1", PAD_BITS)],
        "gemm": loops + [("src_factor_out", inp), ("src_factor_in", inp), ("wgt_factor_out", wgt), ("wgt_factor_in", wgt)],
        "alu": loops + [("src_factor_out", acc), ("src_factor_in", acc), ("alu_opcode", 3), ("use_imm", 1),
                        ("imm", IMM_BITS)],
        "finish": [],
        "uop": [("dst_idx", acc), ("src_idx", max(inp, acc)), ("wgt_idx", wgt)],
    }


HEAD = [("opcode", 3), ("pop_prev", 1), ("pop_next", 1), ("push_prev", 1), ("push_next", 1)]


def _positions(spec: list[tuple[str, int]], width: int) -> list[tuple[str, int, int]]:
    """(field, first bit, bits): packed from bit 0, never straddling a 64-bit word."""
    out, at = [], 0
    for name, bits in spec:
        if at // 64 != (at + bits - 1) // 64:
            at = (at // 64 + 1) * 64
        out.append((name, at, bits))
        at += bits
    if at > width:
        raise IsaError(f"the configuration's fields take {at} bits; an instruction has {width}")
    return out


def _kind(insn: Insn) -> str:
    return {Mem: "mem", Gemm: "gemm", Alu: "alu", Finish: "finish"}[type(insn)]


def encode(insn: Insn, config: VtaConfig) -> int:
    """The instruction as a 128-bit integer (little-endian bit order: bit 0 is the opcode's lowest)."""
    kind = _kind(insn)
    opcode = insn.opcode if kind == "mem" else {"gemm": GEMM, "alu": ALU, "finish": FINISH}[kind]
    values = {"opcode": opcode, **{f.name: int(getattr(insn.deps, f.name)) for f in fields(Deps)}}
    values.update({name: getattr(insn, name) for name, _ in layouts(config)[kind]})
    word = 0
    for name, at, bits in _positions(HEAD + layouts(config)[kind], 128):
        value = int(values[name])
        if name == "imm":
            if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
                raise IsaError(f"ALU immediate {value} does not fit {bits} signed bits")
            value &= (1 << bits) - 1
        elif not 0 <= value < (1 << bits):
            raise IsaError(f"{OPCODES.get(opcode, opcode)}: {name} = {value} does not fit {bits} bits")
        word |= value << at
    return word


def decode(word: int, config: VtaConfig) -> Insn:
    """The instruction a 128-bit integer encodes; IsaError for an opcode VTA does not have."""
    opcode = word & 7
    if opcode not in OPCODES:
        raise IsaError(f"unknown opcode {opcode}")
    kind = {LOAD: "mem", STORE: "mem", GEMM: "gemm", ALU: "alu", FINISH: "finish"}[opcode]
    values = {}
    for name, at, bits in _positions(HEAD + layouts(config)[kind], 128):
        value = (word >> at) & ((1 << bits) - 1)
        if name == "imm" and value >> (bits - 1):
            value -= 1 << bits
        values[name] = value
    deps = Deps(*(bool(values.pop(f.name)) for f in fields(Deps)))
    values.pop("opcode")
    if kind == "mem":
        if values["memory_type"] not in MEMORIES:
            raise IsaError(f"{OPCODES[opcode]}: unknown memory type {values['memory_type']}")
        return Mem(opcode, deps=deps, **values)
    if kind == "finish":
        return Finish(deps)
    values["reset"] = bool(values["reset"])
    if kind == "alu":
        if values["alu_opcode"] not in ALU_OPS:
            raise IsaError(f"ALU: unknown ALU opcode {values['alu_opcode']}")
        values["use_imm"] = bool(values["use_imm"])
        return Alu(deps=deps, **values)
    return Gemm(deps=deps, **values)


def encode_uop(uop: Uop, config: VtaConfig) -> int:
    word = 0
    for name, at, bits in _positions(layouts(config)["uop"], 32):
        value = getattr(uop, name)
        if not 0 <= value < (1 << bits):
            raise IsaError(f"micro-op {name} = {value} does not fit {bits} bits")
        word |= value << at
    return word


def decode_uop(word: int, config: VtaConfig) -> Uop:
    return Uop(**{name: (word >> at) & ((1 << bits) - 1) for name, at, bits in _positions(layouts(config)["uop"], 32)})


def to_bytes(insns: list[Insn], config: VtaConfig) -> bytes:
    """An instruction stream as VTA's DRAM holds it: 16 little-endian bytes per instruction."""
    return b"".join(encode(i, config).to_bytes(16, "little") for i in insns)


def from_bytes(data: bytes, config: VtaConfig) -> list[Insn]:
    if len(data) % 16:
        raise IsaError(f"an instruction stream is a multiple of 16 bytes; got {len(data)}")
    return [decode(int.from_bytes(data[i:i + 16], "little"), config) for i in range(0, len(data), 16)]
