"""Runs an instruction stream against a DRAM image, bit-exactly, and counts its cycles.

Functional model (what VTA's hardware computes):
  - LOAD copies a 2-D strided tile of DRAM elements into a buffer, zero-filling the padding;
    `dram_base` and `sram_base` count elements of the buffer's type (a 1 x 16 int8 input vector, a
    16 x 16 int8 weight block, a 1 x 16 int32 accumulator vector, a 32-bit micro-op).
  - GEMM runs its micro-ops in two nested loops: acc[dst] += inp[src] . wgt[wgt]^T in int32
    (wrapping), or acc[dst] = 0 with `reset`.
  - ALU: acc[dst] = op(acc[dst], imm or acc[src]) for MIN, MAX, ADD (wrapping) and SHR (arithmetic
    shift right by the operand's low 5 bits read as signed, -16..15; a negative amount shifts left),
    in order, so overlapping operands behave as on the hardware.
  - every write to acc[i] also writes out[i] = acc[i] narrowed to int8 by truncation, as the
    hardware's output buffer does; STORE copies out[] to DRAM. Requantising is therefore the
    program's job (SHR, then MAX/MIN to the int8 range) before the store.

Modules and dependency queues: LOADs of inputs and weights run on the load module, GEMM, ALU,
FINISH and LOADs of micro-ops and accumulators on the compute module, STOREs on the store
module, each in stream order. Four token queues join them (load->compute, compute->load,
compute->store, store->compute); an instruction that pops waits for a token, one that pushes
gives one when it ends. A stream where every module waits is a deadlock: DeadlockError.

Cycle model: the three modules run in parallel. A LOAD or STORE takes `dram_latency` +
bytes / `dram_bytes_per_cycle` cycles; a GEMM one cycle per micro-op execution (one 1 x 16 x 16
block) plus its pipeline depth; an ALU instruction one cycle per micro-op execution plus the
same. An instruction starts when its module is free and the tokens it pops were pushed, so double
buffering (loads of the next tile while the GEMM core works on this one) shows in the count.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from gearshift.errors import GearshiftError
from gearshift.runtime.vta import isa
from gearshift.runtime.vta.config import VtaConfig

PIPELINE = 4  # cycles a GEMM or ALU instruction takes to drain its pipeline
CHUNK = 4096  # micro-op executions computed at once (bounds the simulator's memory)


class VtaExecutionError(GearshiftError):
    """A malformed stream: an index outside a buffer or DRAM, a STORE from the wrong buffer, a deadlock."""


class DeadlockError(VtaExecutionError):
    pass


@dataclass
class Stats:
    cycles: int = 0
    gemm_cycles: int = 0  # cycles the GEMM core multiplies (one 1 x 16 x 16 block each)
    busy: dict = field(default_factory=lambda: {"load": 0, "compute": 0, "store": 0})
    instructions: int = 0
    dram_bytes: int = 0

    @property
    def utilisation(self) -> float:
        """The GEMM core's busy fraction: its block-multiply cycles over all cycles."""
        return self.gemm_cycles / self.cycles if self.cycles else 0.0

    def seconds(self, config: VtaConfig) -> float:
        return self.cycles / (config.clock_mhz * 1e6)

    def as_dict(self, config: VtaConfig) -> dict:
        return {"cycles": self.cycles, "gemm_cycles": self.gemm_cycles, "utilisation": round(self.utilisation, 4),
                "microseconds": round(self.seconds(config) * 1e6, 2), "busy": dict(self.busy),
                "instructions": self.instructions, "dram_bytes": self.dram_bytes}


def module_of(insn: isa.Insn) -> str:
    if isinstance(insn, isa.Mem):
        if insn.opcode == isa.STORE:
            return "store"
        return "load" if insn.memory_type in (isa.MEM_INP, isa.MEM_WGT) else "compute"
    return "compute"


# queue names: (module, "prev" | "next") -> the queue it pops from / pushes to
POPS = {("load", "next"): "c2l", ("compute", "prev"): "l2c", ("compute", "next"): "s2c", ("store", "prev"): "c2s"}
PUSHES = {("load", "next"): "l2c", ("compute", "prev"): "c2l", ("compute", "next"): "c2s", ("store", "prev"): "s2c"}


class Simulator:
    """The accelerator's buffers and DRAM; `run` executes a stream and returns its Stats."""

    def __init__(self, config: VtaConfig, dram: np.ndarray):
        c = self.config = config
        if dram.dtype != np.uint8 or dram.ndim != 1:
            raise VtaExecutionError("the DRAM image must be a flat uint8 array")
        self.dram = dram
        self.uop = np.zeros(c.uop_depth, np.uint32)
        self.inp = np.zeros((c.inp_depth, c.batch, c.block_in), np.int8)
        self.wgt = np.zeros((c.wgt_depth, c.block_out, c.block_in), np.int8)
        self.acc = np.zeros((c.acc_depth, c.batch, c.block_out), np.int32)
        self.out = np.zeros((c.acc_depth, c.batch, c.block_out), np.int8)
        layout = isa.layouts(c)["uop"]
        self._uop_fields = isa._positions(layout, 32)

    # -- the schedule and the clock ----------------------------------------------------------------
    def run(self, insns: list[isa.Insn]) -> Stats:
        stats = Stats(instructions=len(insns))
        queues = {m: deque() for m in ("load", "compute", "store")}
        for index, insn in enumerate(insns):
            queues[module_of(insn)].append((index, insn))
        tokens = {q: deque() for q in ("l2c", "c2l", "c2s", "s2c")}
        clock = {"load": 0, "compute": 0, "store": 0}
        while any(queues.values()):
            progressed = False
            for module, queue in queues.items():
                while queue:
                    index, insn = queue[0]
                    pops = [POPS[(module, side)] for side in ("prev", "next") if getattr(insn.deps, f"pop_{side}")
                            and (module, side) in POPS]
                    if any(not tokens[q] for q in pops):
                        break
                    start = max([clock[module], *(tokens[q].popleft() for q in pops)])
                    cycles = self._execute(index, insn, stats)
                    clock[module] = start + cycles
                    stats.busy[module] += cycles
                    for side in ("prev", "next"):
                        if getattr(insn.deps, f"push_{side}") and (module, side) in PUSHES:
                            tokens[PUSHES[(module, side)]].append(clock[module])
                    queue.popleft()
                    progressed = True
            if not progressed:
                stuck = [f"{m}: #{q[0][0]} {_name(q[0][1])}" for m, q in queues.items() if q]
                raise DeadlockError("deadlock: every module waits for a dependency token that is never pushed ("
                                    + "; ".join(stuck) + ")")
        stats.cycles = max(clock.values())
        return stats

    def _execute(self, index: int, insn: isa.Insn, stats: Stats) -> int:
        if isinstance(insn, isa.Mem):
            moved = self._load(index, insn) if insn.opcode == isa.LOAD else self._store(index, insn)
            stats.dram_bytes += moved
            return self.config.dram_latency + math.ceil(moved / self.config.dram_bytes_per_cycle)
        if isinstance(insn, isa.Gemm):
            n = self._gemm(index, insn)
            stats.gemm_cycles += 0 if insn.reset else n
            return n + PIPELINE
        if isinstance(insn, isa.Alu):
            return self._alu(index, insn) + PIPELINE
        return 1  # FINISH

    # -- memory ---------------------------------------------------------------------------------------
    def _buffer(self, memory_type: int) -> tuple[np.ndarray, np.dtype]:
        return {isa.MEM_UOP: (self.uop, np.dtype("<u4")), isa.MEM_INP: (self.inp, np.dtype("i1")),
                isa.MEM_WGT: (self.wgt, np.dtype("i1")), isa.MEM_ACC: (self.acc, np.dtype("<i4")),
                isa.MEM_OUT: (self.out, np.dtype("i1"))}[memory_type]

    def _dram_elements(self, buffer: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """DRAM viewed as an array of `buffer`'s elements (addresses count elements, as VTA's do)."""
        shape = buffer.shape[1:]
        per = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        count = self.dram.size // per
        return self.dram[:count * per].view(dtype).reshape(count, *shape)

    def _load(self, index: int, insn: isa.Mem) -> int:
        if insn.memory_type == isa.MEM_OUT:
            raise VtaExecutionError(f"#{index} LOAD: the output buffer cannot be loaded")
        buffer, dtype = self._buffer(insn.memory_type)
        dram = self._dram_elements(buffer, dtype)
        width = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        height = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        last = insn.sram_base + height * width
        if last > len(buffer):
            raise VtaExecutionError(f"#{index} LOAD {isa.MEMORIES[insn.memory_type]}: buffer index {last - 1} beyond "
                                    f"its depth {len(buffer)}")
        rows = insn.dram_base + np.arange(insn.y_size)[:, None] * insn.x_stride + np.arange(insn.x_size)[None, :]
        if insn.y_size and insn.x_size and rows.max() >= len(dram):
            raise VtaExecutionError(f"#{index} LOAD {isa.MEMORIES[insn.memory_type]}: DRAM element {rows.max()} beyond "
                                    f"the image ({len(dram)} elements)")
        tile = np.zeros((height, width, *buffer.shape[1:]), buffer.dtype)
        tile[insn.y_pad_0:insn.y_pad_0 + insn.y_size, insn.x_pad_0:insn.x_pad_0 + insn.x_size] = dram[rows]
        buffer[insn.sram_base:last] = tile.reshape(height * width, *buffer.shape[1:])
        return rows.size * dram.itemsize * int(np.prod(buffer.shape[1:], dtype=np.int64))

    def _store(self, index: int, insn: isa.Mem) -> int:
        if insn.memory_type != isa.MEM_OUT:
            raise VtaExecutionError(f"#{index} STORE: stores come from the output buffer, not "
                                    f"{isa.MEMORIES.get(insn.memory_type, insn.memory_type)}")
        if insn.y_pad_0 or insn.y_pad_1 or insn.x_pad_0 or insn.x_pad_1:
            raise VtaExecutionError(f"#{index} STORE: stores take no padding")
        dram = self._dram_elements(self.out, np.dtype("i1"))
        last = insn.sram_base + insn.y_size * insn.x_size
        if last > len(self.out):
            raise VtaExecutionError(f"#{index} STORE: output buffer index {last - 1} beyond its depth {len(self.out)}")
        rows = insn.dram_base + np.arange(insn.y_size)[:, None] * insn.x_stride + np.arange(insn.x_size)[None, :]
        if rows.size and rows.max() >= len(dram):
            raise VtaExecutionError(f"#{index} STORE: DRAM element {rows.max()} beyond the image ({len(dram)} elements)")
        dram[rows] = self.out[insn.sram_base:last].reshape(insn.y_size, insn.x_size, *self.out.shape[1:])
        return rows.size * self.config.out_elem_bytes

    # -- compute --------------------------------------------------------------------------------------
    def _indices(self, index: int, insn, src_depth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not insn.uop_bgn <= insn.uop_end <= len(self.uop):
            raise VtaExecutionError(f"#{index} {_name(insn)}: micro-ops {insn.uop_bgn}..{insn.uop_end} outside the "
                                    f"micro-op buffer ({len(self.uop)})")
        words = self.uop[insn.uop_bgn:insn.uop_end].astype(np.int64)
        uops = {name: (words >> at) & ((1 << bits) - 1) for name, at, bits in self._uop_fields}
        i = np.arange(insn.iter_out)[:, None, None]
        j = np.arange(insn.iter_in)[None, :, None]
        dst = (uops["dst_idx"][None, None, :] + i * insn.dst_factor_out + j * insn.dst_factor_in).ravel()
        src = (uops["src_idx"][None, None, :] + i * insn.src_factor_out + j * insn.src_factor_in).ravel()
        wgt = (uops["wgt_idx"][None, None, :] + i * getattr(insn, "wgt_factor_out", 0)
               + j * getattr(insn, "wgt_factor_in", 0)).ravel()
        for what, values, depth in (("accumulator", dst, len(self.acc)), ("source", src, src_depth),
                                    ("weight", wgt, len(self.wgt))):
            if values.size and values.max() >= depth:
                raise VtaExecutionError(f"#{index} {_name(insn)}: {what} index {values.max()} beyond its buffer's depth {depth}")
        return dst, src, wgt

    def _gemm(self, index: int, insn: isa.Gemm) -> int:
        dst, src, wgt = self._indices(index, insn, len(self.inp))
        touched, slot = np.unique(dst, return_inverse=True)  # the accumulators written; each write's among them
        if insn.reset:
            self.acc[touched] = 0
        else:  # only the touched accumulators are widened (not the whole buffer on every GEMM)
            acc = self.acc[touched].astype(np.int64)
            for at in range(0, len(dst), CHUNK):
                s, w = src[at:at + CHUNK], wgt[at:at + CHUNK]
                products = np.einsum("nbi,noi->nbo", self.inp[s].astype(np.int64), self.wgt[w].astype(np.int64))
                np.add.at(acc, slot[at:at + CHUNK], products)
            self.acc[touched] = _wrap(acc)
        self.out[touched] = self.acc[touched].astype(np.int8)
        return len(dst)

    def _alu(self, index: int, insn: isa.Alu) -> int:
        dst, src, _ = self._indices(index, insn, len(self.acc))
        if insn.reset:
            self.acc[dst] = 0
        elif len(np.unique(dst)) == len(dst) and (insn.use_imm or not np.intersect1d(dst, src).size):
            operand = np.int64(insn.imm) if insn.use_imm else self.acc[src].astype(np.int64)
            self.acc[dst] = _alu_op(insn.alu_opcode, self.acc[dst].astype(np.int64), operand)
        else:  # operands overlap: element by element, in order, as the hardware does
            for d, s in zip(dst, src):
                operand = np.int64(insn.imm) if insn.use_imm else self.acc[s].astype(np.int64)
                self.acc[d] = _alu_op(insn.alu_opcode, self.acc[d].astype(np.int64), operand)
        touched = np.unique(dst)
        self.out[touched] = self.acc[touched].astype(np.int8)
        return len(dst)


def _alu_op(op: int, a: np.ndarray, b) -> np.ndarray:
    if op == isa.ALU_MIN:
        return np.minimum(a, b).astype(np.int32)
    if op == isa.ALU_MAX:
        return np.maximum(a, b).astype(np.int32)
    if op == isa.ALU_ADD:
        return _wrap(a + b)
    shift = shift_amount(np.broadcast_to(np.asarray(b, np.int64), np.shape(a)))
    right = np.right_shift(a, np.maximum(shift, 0))
    left = np.left_shift(a, np.maximum(-shift, 0))
    return _wrap(np.where(shift >= 0, right, left))


def shift_amount(b):
    """SHR's amount as the hardware reads it: the operand's low 5 bits as a signed number (-16..15);
    a negative amount shifts left."""
    return ((np.asarray(b, np.int64) & 31) ^ 16) - 16


def _wrap(values: np.ndarray) -> np.ndarray:
    """int64 -> int32 with two's-complement wrap-around, as 32-bit hardware adds."""
    return ((np.asarray(values, np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def _name(insn: isa.Insn) -> str:
    if isinstance(insn, isa.Mem):
        return f"{isa.OPCODES[insn.opcode]} {isa.MEMORIES.get(insn.memory_type, insn.memory_type)}"
    if isinstance(insn, isa.Alu):
        return f"ALU {isa.ALU_OPS.get(insn.alu_opcode, insn.alu_opcode)}"
    return "GEMM" if isinstance(insn, isa.Gemm) else "FINISH"
