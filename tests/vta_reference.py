"""A second, deliberately naive VTA interpreter for the tests: program order, element by element,
plain Python integers. It shares nothing with runtime/vta/simulator.py but the instruction
dataclasses, so the two agreeing on random streams checks the simulator's vectorised arithmetic.
Valid only for streams whose program order is an execution order (every cross-module hand-off
synchronised), which is what the tests' generator builds."""

from __future__ import annotations

from gearshift.runtime.vta import isa


def wrap32(v: int) -> int:
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


def int8(v: int) -> int:
    return (v + 128) % 256 - 128


def run(insns, config, dram: bytearray) -> None:
    c = config
    sizes = {isa.MEM_INP: c.block_in, isa.MEM_WGT: c.block_out * c.block_in, isa.MEM_ACC: c.block_out,
             isa.MEM_UOP: 1, isa.MEM_OUT: c.block_out}
    nbytes = {isa.MEM_INP: 1, isa.MEM_WGT: 1, isa.MEM_ACC: 4, isa.MEM_UOP: 4, isa.MEM_OUT: 1}
    mem = {isa.MEM_INP: [[0] * c.block_in for _ in range(c.inp_depth)],
           isa.MEM_WGT: [[0] * (c.block_out * c.block_in) for _ in range(c.wgt_depth)],
           isa.MEM_ACC: [[0] * c.block_out for _ in range(c.acc_depth)],
           isa.MEM_UOP: [[0] for _ in range(c.uop_depth)],
           isa.MEM_OUT: [[0] * c.block_out for _ in range(c.acc_depth)]}

    def read(memory, element):
        size, width = sizes[memory], nbytes[memory]
        at = element * size * width
        signed = memory != isa.MEM_UOP
        return [int.from_bytes(dram[at + i * width:at + (i + 1) * width], "little", signed=signed) for i in range(size)]

    def write(memory, element, values):
        size, width = sizes[memory], nbytes[memory]
        at = element * size * width
        for i, v in enumerate(values):
            dram[at + i * width:at + (i + 1) * width] = (v % (1 << (8 * width))).to_bytes(width, "little")

    def set_acc(i, values):
        mem[isa.MEM_ACC][i] = [wrap32(v) for v in values]
        mem[isa.MEM_OUT][i] = [int8(v) for v in mem[isa.MEM_ACC][i]]

    for insn in insns:
        if isinstance(insn, isa.Mem) and insn.opcode == isa.LOAD:
            width = insn.x_pad_0 + insn.x_size + insn.x_pad_1
            for y in range(insn.y_pad_0 + insn.y_size + insn.y_pad_1):
                for x in range(width):
                    inside = insn.y_pad_0 <= y < insn.y_pad_0 + insn.y_size and insn.x_pad_0 <= x < insn.x_pad_0 + insn.x_size
                    values = read(insn.memory_type, insn.dram_base + (y - insn.y_pad_0) * insn.x_stride
                                  + (x - insn.x_pad_0)) if inside else [0] * sizes[insn.memory_type]
                    mem[insn.memory_type][insn.sram_base + y * width + x] = values
        elif isinstance(insn, isa.Mem):
            for y in range(insn.y_size):
                for x in range(insn.x_size):
                    write(isa.MEM_OUT, insn.dram_base + y * insn.x_stride + x,
                          mem[isa.MEM_OUT][insn.sram_base + y * insn.x_size + x])
        elif isinstance(insn, (isa.Gemm, isa.Alu)):
            for i in range(insn.iter_out):
                for j in range(insn.iter_in):
                    for k in range(insn.uop_bgn, insn.uop_end):
                        u = isa.decode_uop(mem[isa.MEM_UOP][k][0], config)
                        dst = u.dst_idx + i * insn.dst_factor_out + j * insn.dst_factor_in
                        src = u.src_idx + i * insn.src_factor_out + j * insn.src_factor_in
                        if insn.reset:
                            set_acc(dst, [0] * c.block_out)
                        elif isinstance(insn, isa.Gemm):
                            wgt = u.wgt_idx + i * insn.wgt_factor_out + j * insn.wgt_factor_in
                            a, x, w = mem[isa.MEM_ACC][dst], mem[isa.MEM_INP][src], mem[isa.MEM_WGT][wgt]
                            set_acc(dst, [a[o] + sum(x[t] * w[o * c.block_in + t] for t in range(c.block_in))
                                          for o in range(c.block_out)])
                        else:
                            a = mem[isa.MEM_ACC][dst]
                            b = [insn.imm] * c.block_out if insn.use_imm else mem[isa.MEM_ACC][src]
                            set_acc(dst, [_alu(insn.alu_opcode, p, q) for p, q in zip(a, b)])


def _alu(op: int, a: int, b: int) -> int:
    if op == isa.ALU_MIN:
        return min(a, b)
    if op == isa.ALU_MAX:
        return max(a, b)
    if op == isa.ALU_ADD:
        return a + b
    amount = ((b & 31) ^ 16) - 16  # the low 5 bits, signed
    return a >> amount if amount >= 0 else a << -amount
