"""Last-resort CPU rule: run each root block's outermost spatial loop in parallel, nothing more.

It matches whatever the other rules did not, so that no kernel runs single-threaded; the build
report names every function that ended up here, as candidates for a dedicated rule.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import normalize_prim_func
from tvm.s_tir.dlight.base.utils import get_extent
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule


class Fallback(CPUScheduleRule):
    def apply(self, func: tirx.PrimFunc, target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        for info in infos:
            loops = sch.get_loops(info.block_rv)
            extent = get_extent(sch, loops[0]) if loops else 1
            if info.dom_kind().startswith("S") and isinstance(extent, int) and extent > 1:
                try:
                    sch.parallel(loops[0])
                except s_tir.ScheduleError:
                    pass
        return sch
