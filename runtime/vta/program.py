"""A lowered layer as the accelerator runs it: the instruction stream, the DRAM image it works on
(weights, bias, shifts and micro-ops in place; the input written per call) and the regions' offsets.
Written by `schedules/vta/matmul.py`, stored in artifacts, run by the simulator."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gearshift.runtime.vta.config import VtaConfig
from gearshift.runtime.vta.simulator import Simulator, Stats

ALIGN = 256  # DRAM regions start on a multiple of every element size


def blocks_of(size: int, block: int = 16) -> int:
    return -(-size // block)


@dataclass
class Program:
    """A lowered layer: its instruction stream, the DRAM image (weights, bias, shifts and micro-ops in
    place; inputs written per call) and where each region lies."""

    config: VtaConfig
    insns: list
    dram: np.ndarray
    regions: dict  # name -> byte offset
    m: int
    k: int
    n: int
    gemm_blocks: int  # block multiplies the stream performs (M x kept weight blocks)
    tiles: dict = field(default_factory=dict)

    def run(self, x_q: np.ndarray) -> tuple[np.ndarray, Stats]:
        """y_q [M, N] for x_q [M, K] (int8), and the cycle model's Stats."""
        if x_q.shape != (self.m, self.k) or x_q.dtype != np.int8:
            raise ValueError(f"expected int8 [{self.m}, {self.k}], got {x_q.dtype} {list(x_q.shape)}")
        kb, nb = blocks_of(self.k), blocks_of(self.n)
        dram = self.dram.copy()
        padded = np.zeros((self.m, kb * 16), np.int8)
        padded[:, :self.k] = x_q
        at = self.regions["inp"]
        dram[at:at + padded.nbytes] = padded.view(np.uint8).ravel()
        stats = Simulator(self.config, dram).run(self.insns)
        at = self.regions["out"]
        out = dram[at:at + self.m * nb * 16].view(np.int8).reshape(self.m, nb * 16)
        return out[:, :self.n].copy(), stats


