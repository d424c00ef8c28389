"""Last-resort CPU rule: run each root block's outermost spatial loop in parallel, nothing more.

It matches whatever the other rules did not, so that no kernel runs single-threaded; the build
report names every function that ended up here, as candidates for a dedicated rule.
"""

from __future__ import annotations

from tvm import s_tir
from tvm.s_tir.dlight.base.utils import get_extent

from gearshift.schedules.cpu.base import Rule


class Fallback(Rule):
    def schedule(self, sch: s_tir.Schedule, infos: list, target) -> s_tir.Schedule | None:
        for info in infos:
            loops = sch.get_loops(info.block_rv)
            extent = get_extent(sch, loops[0]) if loops else 1
            if info.dom_kind().startswith("S") and isinstance(extent, int) and extent > 1:
                try:
                    sch.parallel(loops[0])
                except s_tir.ScheduleError:
                    pass
        return sch
