"""CPU rule for gearshift's packed direct conv2d (`schedules/kernels/conv2d.py`).

    parallel (image, channel panel) -> [image row] -> pixel block -> ci -> kh -> kw
        -> [pixels x vectors x lanes] accumulators

Row form: the epilogue (bias, activation, crop) runs per pixel block, on the tile in registers,
as in the matmul rule. Flattened form: a block of flattened pixels can straddle two image rows,
which no rectangular loop nest over [oh, ow] covers (TVM's compute-at then silently computes the
wrong region: seen at 17 x 19), so the accumulators go to a buffer and the epilogue (with the
unflatten) runs afterwards as its own parallel pass. The input padding stage runs first, in parallel.
"""

from __future__ import annotations

import math

from tvm import s_tir
from tvm.s_tir.dlight.base.utils import get_extent

from gearshift.schedules.cpu.base import Rule
from gearshift.schedules.cpu.elementwise import PARALLEL_MIN_ELEMENTS, schedule_flat, vectorize_innermost
from gearshift.schedules.cpu.microkernel import microkernel
from gearshift.schedules.kernels.conv2d import CONV_BLOCK, CONV_FLAT_BLOCK


class Conv2d(Rule):
    def schedule(self, sch: s_tir.Schedule, infos: list, target) -> s_tir.Schedule | None:
        names = [sch.get(b.block_rv).name_hint for b in infos]
        flat = CONV_FLAT_BLOCK in names
        if not flat and CONV_BLOCK not in names:
            return None
        at = names.index(CONV_FLAT_BLOCK if flat else CONV_BLOCK)
        return self._schedule(sch, infos, at, microkernel(target).for_conv(), flat)

    def _schedule(self, sch, infos, at, micro, flat: bool) -> s_tir.Schedule | None:
        block = infos[at].block_rv
        consumers = [b.block_rv for b in infos[at + 1:]]
        for consumer in consumers[:-1]:
            sch.compute_inline(consumer)
        cols = int(sch.get(block).reads[1].source.shape[-1])  # the packed weight's panel width
        lanes = micro.lanes if cols % micro.lanes == 0 else 1
        # TVM drops unit loops (batch 1, a 1x1 kernel): take the loops by kind, not by position.
        kinds = infos[at].dom_kind()
        loops = sch.get_loops(block)
        spatial = [loop for loop, kind in zip(loops, kinds) if kind == "S"]
        reduce = [loop for loop, kind in zip(loops, kinds) if kind == "R"]
        if len(spatial) < (2 if flat else 3) or not reduce or len(spatial) + len(reduce) != len(loops):
            return None
        *batch, co, pixels = spatial if flat else (*spatial[:-3], spatial[-3], spatial[-1])
        image_row = [] if flat else [spatial[-2]]
        if get_extent(sch, co) % cols:
            return None
        rows = micro.rows_for(get_extent(sch, pixels))
        panel, vec, lane = sch.split(co, [None, cols // lanes, lanes])
        mo, mi = sch.split(pixels, [None, rows])
        sch.reorder(*batch, panel, *image_row, mo, *reduce, mi, vec, lane)
        parallel = [*batch, panel, *image_row]  # image rows too: more, smaller tasks balance better
        outer = sch.fuse(*parallel) if len(parallel) > 1 else panel
        sch.parallel(outer)
        if flat:  # epilogue stays a separate pass (see the module docstring)
            tile = sch.cache_write(block, 0, "local")
            sch.reverse_compute_at(tile, mo)
            schedule_flat(sch, consumers[-1], micro.lanes)
        elif consumers:
            sch.set_scope(block, 0, "local")
            sch.reverse_compute_at(consumers[-1], mo)
        else:
            tile = sch.cache_write(block, 0, "local")
            sch.reverse_compute_at(tile, mo)
        channels_innermost(sch, block)
        sch.unroll(mi)
        sch.unroll(vec)
        if lanes > 1:
            sch.vectorize(lane)
        sch.decompose_reduction(block, reduce[0])
        for producer in infos[:at]:  # the input padding
            schedule_padding(sch, producer.block_rv, micro.lanes)
        return sch


def schedule_padding(sch: s_tir.Schedule, block, lanes: int) -> None:
    """The input padding per channel plane: zeros, then a plain copy of the interior, vectorised,
    both in one parallel loop over the planes. In one pass every element tests the image bounds and
    the loop stays scalar; as two parallel passes (all zeros, then all copies) the thread pool is
    woken once more per call, which with idle workers asleep cost as much as the copy itself."""
    loops = sch.get_loops(block)
    extents = [get_extent(sch, loop) for loop in loops]
    if len(loops) < 3:
        schedule_flat(sch, block, lanes)
        return
    try:
        sch.decompose_padding(block, loops[-2])  # the fill goes inside the plane loop, before the rows
    except s_tir.ScheduleError:
        schedule_flat(sch, block, lanes)
        return
    planes = sch.get_loops(block)[:-2]
    vectorize_innermost(sch, block, lanes)
    if all(isinstance(e, int) for e in extents) and math.prod(extents) >= PARALLEL_MIN_ELEMENTS:
        sch.parallel(sch.fuse(*planes) if len(planes) > 1 else planes[0])


def channels_innermost(sch: s_tir.Schedule, block) -> None:
    """Lay the accumulator tile out with the output channel (the vector lanes) innermost.

    In the output's own order ([N, CO, OH, OW] or [N, CO, M]) the lanes of one vector are strided by
    the pixel count, so each vector FMA's accumulator is a gather and a scatter until LLVM promotes
    the tile to registers, which it gives up on past 250 accesses per loop: an AVX-512 tile (8 pixels
    x 3 x 16 channels) is past it, an AVX2 tile (4 x 3 x 8) is not. Channel-innermost, every access
    is one whole vector and the tile is promoted on both.
    """
    if len(sch.get(block).writes[0].source.shape) == 4:
        sch.transform_layout(block, ("write", 0), lambda n, co, h, w: (n, h, w, co))
    else:
        sch.transform_layout(block, ("write", 0), lambda n, co, m: (n, m, co))
