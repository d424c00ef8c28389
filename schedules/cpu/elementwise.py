"""CPU rule for functions made only of injective blocks (adds, activations, reshapes, gathers).

Everything that can be inlined is inlined into the last block(s); each remaining block's loops are
fused into one, split into vector-wide chunks (vectorised) under a parallel outer loop. Small
tensors stay on one thread: waking the pool costs more than they do.
"""

from __future__ import annotations

import math

from tvm import s_tir
from tvm.s_tir.dlight.base.common_schedules import try_inline
from tvm.s_tir.dlight.base.utils import get_extent

from gearshift.schedules.cpu.base import Rule
from gearshift.schedules.cpu.microkernel import microkernel

PARALLEL_MIN_ELEMENTS = 1 << 14


class Elementwise(Rule):
    def schedule(self, sch: s_tir.Schedule, infos: list, target) -> s_tir.Schedule | None:
        if not all(b.is_injective() for b in infos):
            return None
        lanes = microkernel(target).lanes
        for info in try_inline(sch, list(infos)):
            schedule_flat(sch, info.block_rv, lanes)
        return sch


def schedule_flat(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Vectorise the innermost loop (when `lanes` divides it) and run the fused outer loops in
    parallel (when the block is large enough). The innermost loop is kept whole: vectorising a fused
    loop would recompute every index with div/mod per lane."""
    loops = sch.get_loops(block)
    extents = [get_extent(sch, loop) for loop in loops]
    if not loops or not all(isinstance(e, int) for e in extents):
        return
    rest = vectorize_innermost(sch, block, lanes)
    if math.prod(extents) >= PARALLEL_MIN_ELEMENTS:
        outer = loops[:-1]
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0] if outer else rest)


def vectorize_innermost(sch: s_tir.Schedule, block, lanes: int):
    """Split a vector off the block's innermost loop and vectorise it: `lanes` wide, or the widest
    power-of-two part of it (at least 4) that divides the loop (a 56-wide image row on AVX-512: 8);
    return what remains of that loop outside the vector."""
    inner = sch.get_loops(block)[-1]
    extent = get_extent(sch, inner)
    width = next((w for w in (lanes, lanes // 2, lanes // 4) if w >= 4 and isinstance(extent, int)
                  and extent >= w and extent % w == 0), None)
    if width:
        inner, vec = sch.split(inner, [None, width])
        sch.vectorize(vec)
    return inner
