"""A dense or block-sparse int8 matmul as an instruction stream for the VTA-style accelerator.

    y_q[M, N] = clip((x_q[M, K] . w_q[K, N] + bias_q) >> shift, -128, 127)      (int8, int32 inside)

Tiling: output tiles of m rows x n blocks of 16 outputs; each is built from k-steps of k blocks of
16 inputs. A step loads its input tile and its weight blocks (load module) and multiplies them
(compute module: one GEMM over micro-ops, one 1x16x16 block a cycle); a tile starts from its bias
(an accumulator LOAD), is shifted per output channel and clipped to int8 (ALU), then stored (store
module). Block-sparse layers keep the same loop but a step loads and multiplies only its kept
16x16 weight blocks; a step with none is skipped.

Double buffering: input and weight buffers are split in halves used by alternate steps, the
accumulator buffer in halves used by alternate output tiles. The dependency tokens say when a half
may be refilled: the load module pops a compute->load token before reusing a half (pushed by the
GEMM that finished with it), the compute module pops a store->compute token before reusing an
accumulator half. With `double_buffer=False` everything uses one half and each module waits for
the others: the cycle model shows the difference.
"""

from __future__ import annotations

import numpy as np

from gearshift.runtime.vta import isa
from gearshift.runtime.vta.config import VtaConfig
from gearshift.runtime.vta.program import ALIGN, Program, blocks_of
from gearshift.schedules.vta.quantize import QuantizedLinear


def lower_matmul(layer: QuantizedLinear, m: int, config: VtaConfig, double_buffer: bool = True,
                 kept: np.ndarray | None = None) -> Program:
    """The layer's program for M = m rows. `kept` [N/16, K/16] bool: the weight blocks to multiply
    (block-sparse; the others must be zero); None: all of them (dense)."""
    if config.batch != 1 or config.block_in != 16 or config.block_out != 16:
        raise ValueError("the lowering is written for VTA's default 1 x 16 x 16 GEMM core")
    k, n = layer.w_q.shape
    kb, nb = blocks_of(k), blocks_of(n)
    w = np.zeros((kb * 16, nb * 16), np.int8)
    w[:k, :n] = layer.w_q
    blocks = w.reshape(kb, 16, nb, 16).transpose(2, 0, 3, 1)  # [n block, k block, out 16, in 16]
    kept = np.ones((nb, kb), bool) if kept is None else np.asarray(kept, bool)
    if kept.shape != (nb, kb):
        raise ValueError(f"kept must be [{nb}, {kb}] (N/16 x K/16 blocks), got {list(kept.shape)}")
    if np.abs(blocks[~kept].astype(np.int32)).sum():
        raise ValueError("a weight block marked as not kept holds nonzeros")
    halves = 2 if double_buffer else 1
    tile = _tiles(m, kb, nb, config, halves)
    builder = _Builder(config, halves)
    return builder.build(layer, m, k, n, blocks, kept, tile)


def _tiles(m: int, kb: int, nb: int, config: VtaConfig, halves: int) -> dict:
    inp_half, wgt_half, acc_half = config.inp_depth // halves, config.wgt_depth // halves, config.acc_depth // halves
    k_tile = min(kb, 16, wgt_half)
    m_tile = min(m, inp_half // k_tile, acc_half // 2)
    n_tile = max(1, min(nb, wgt_half // k_tile, acc_half // (m_tile + 1)))
    return {"m": m_tile, "k": k_tile, "n": n_tile}


class _Builder:
    def __init__(self, config: VtaConfig, halves: int):
        self.c, self.halves = config, halves
        self.insns: list = []
        self.uop_lists: list[np.ndarray] = []  # DRAM uop region, list by list
        self.resident: dict = {}  # uop list key -> (buffer offset, length)
        self.uop_used = 0

    def build(self, layer: QuantizedLinear, m: int, k: int, n: int, blocks, kept, tile) -> Program:
        c = self.c
        kb, nb = blocks.shape[1], blocks.shape[0]
        mt, kt, nt = tile["m"], tile["k"], tile["n"]
        inp_half, wgt_half, acc_half = c.inp_depth // self.halves, c.wgt_depth // self.halves, c.acc_depth // self.halves
        # the weights in DRAM, packed step by step in the order the stream loads them
        outputs = [(m0, n0) for m0 in range(0, m, mt) for n0 in range(0, nb, nt)]
        steps, packed = [], []
        position = 0
        for t, (m0, n0) in enumerate(outputs):
            for k0 in range(0, kb, kt):
                n_cur, k_cur = min(nt, nb - n0), min(kt, kb - k0)
                pairs = [(j, q) for j in range(n_cur) for q in range(k_cur) if kept[n0 + j, k0 + q]]
                if pairs:
                    steps.append((t, k0, pairs, position))
                    packed += [blocks[n0 + j, k0 + q] for j, q in pairs]
                    position += len(pairs)
        weights = np.asarray(packed, np.int8).reshape(-1, 16, 16) if packed else np.zeros((1, 16, 16), np.int8)
        bias = np.zeros((nb, 16), np.int32)
        bias.ravel()[:n] = layer.bias_q
        shift = np.zeros((nb, 16), np.int32)
        shift.ravel()[:n] = layer.shift
        sizes = {"inp": m * kb * 16, "wgt": weights.nbytes, "bias": bias.nbytes, "shift": shift.nbytes,
                 "out": m * nb * 16}
        regions, at = {}, 0
        for name, size in sizes.items():
            regions[name] = at
            at += -(-max(size, 1) // ALIGN) * ALIGN
        elem = {"inp": c.inp_elem_bytes, "wgt": c.wgt_elem_bytes, "bias": c.acc_elem_bytes,
                "shift": c.acc_elem_bytes, "out": c.out_elem_bytes}
        base = {name: regions[name] // elem[name] for name in sizes}

        total_steps, total_tiles = len(steps), len(outputs)
        by_tile: dict[int, list] = {}
        for s, step in enumerate(steps):
            by_tile.setdefault(step[0], []).append((s, *step[1:]))
        gemm_blocks = 0
        for t, (m0, n0) in enumerate(outputs):
            rows, n_cur = min(mt, m - m0), min(nt, nb - n0)
            acc_base = (t % self.halves) * acc_half
            shift_at = acc_base + rows * n_cur
            first = isa.Deps(pop_next=t >= self.halves)  # the accumulator half's last store is done
            self._mem(isa.LOAD, isa.MEM_ACC, acc_base, base["bias"] + n0, rows, n_cur, 0, first)
            self._mem(isa.LOAD, isa.MEM_ACC, shift_at, base["shift"] + n0, 1, n_cur, n_cur)
            for s, k0, pairs, pos in by_tile.get(t, []):
                k_cur = min(kt, kb - k0)
                half = s % self.halves
                self._mem(isa.LOAD, isa.MEM_INP, half * inp_half, base["inp"] + m0 * kb + k0, rows, k_cur, kb,
                          deps=isa.Deps(pop_next=s >= self.halves))
                self._mem(isa.LOAD, isa.MEM_WGT, half * wgt_half, base["wgt"] + pos, 1, len(pairs), len(pairs),
                          deps=isa.Deps(push_next=True))
                uops = [isa.Uop(acc_base + j, half * inp_half + q, half * wgt_half + i) for i, (j, q) in enumerate(pairs)]
                bgn, end = self._uops(uops)
                self.insns.append(isa.Gemm(bgn, end, iter_out=rows, dst_factor_out=n_cur, src_factor_out=k_cur,
                                           deps=isa.Deps(pop_prev=True, push_prev=s + self.halves < total_steps)))
                gemm_blocks += rows * len(pairs)
            shr = self._uops([isa.Uop(acc_base + j, shift_at + j) for j in range(n_cur)])
            self.insns.append(isa.Alu(isa.ALU_SHR, *shr, iter_out=rows, dst_factor_out=n_cur, use_imm=False))
            clip = self._uops([isa.Uop(acc_base, 0)])
            self.insns.append(isa.Alu(isa.ALU_MAX, *clip, iter_out=rows * n_cur, dst_factor_out=1, imm=-128))
            self.insns.append(isa.Alu(isa.ALU_MIN, *clip, iter_out=rows * n_cur, dst_factor_out=1, imm=127,
                                      deps=isa.Deps(push_next=True)))
            last = t == total_tiles - 1
            self._mem(isa.STORE, isa.MEM_OUT, acc_base, base["out"] + m0 * nb + n0, rows, n_cur, nb,
                      deps=isa.Deps(pop_prev=True, push_prev=t + self.halves < total_tiles or last))
        self.insns.append(isa.Finish(isa.Deps(pop_next=True)))
        uop_words = np.concatenate(self.uop_lists) if self.uop_lists else np.zeros(1, np.uint32)
        regions["uop"] = at
        image = np.zeros(at + -(-uop_words.nbytes // ALIGN) * ALIGN, np.uint8)
        image[regions["uop"]:regions["uop"] + uop_words.nbytes] = uop_words.view(np.uint8)
        for name, array in (("wgt", weights), ("bias", bias), ("shift", shift)):
            image[regions[name]:regions[name] + array.nbytes] = array.view(np.uint8).ravel()
        self._place_uop_loads(regions["uop"] // 4)
        return Program(c, self.insns, image, regions, m, k, n, gemm_blocks, tile)

    def _mem(self, opcode, memory, sram, dram, y, x, stride, deps=isa.Deps()):
        self.insns.append(isa.Mem(opcode, memory, sram, dram, y, x, stride, deps=deps))

    def _uops(self, uops: list[isa.Uop]) -> tuple[int, int]:
        """The micro-op list's place in the micro-op buffer, loaded (by the compute module, just
        before its first use) where it is not resident already."""
        words = np.array([isa.encode_uop(u, self.c) for u in uops], np.uint32)
        key = words.tobytes()
        if key not in self.resident:
            if self.uop_used + len(words) > self.c.uop_depth:
                self.resident.clear()
                self.uop_used = 0
            self.resident[key] = (self.uop_used, len(words), len(self.uop_lists))
            self.insns.append(("uop-load", self.uop_used, len(self.uop_lists), len(words)))
            self.uop_lists.append(words)
            self.uop_used += len(words)
        at, count, _ = self.resident[key]
        return at, at + count

    def _place_uop_loads(self, uop_base: int) -> None:
        """Turn the placeholders into LOAD UOP instructions now that the DRAM offsets are known."""
        offsets = np.cumsum([0] + [len(w) for w in self.uop_lists])
        for i, insn in enumerate(self.insns):
            if isinstance(insn, tuple):
                _, sram, list_index, count = insn
                self.insns[i] = isa.Mem(isa.LOAD, isa.MEM_UOP, sram, uop_base + int(offsets[list_index]), 1, count, count)
