"""What every gearshift CPU rule does first: take PrimFuncs for LLVM targets, analyse their blocks."""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir.dlight.analysis import SBlockInfo, normalize_prim_func
from tvm.s_tir.dlight.cpu.base import CPUScheduleRule


class Rule(CPUScheduleRule):
    """A dlight CPU rule whose `schedule` sees the function's blocks in order; None: not mine.

    Schedule errors count as "not mine" too, so that a shape a rule cannot handle falls through to
    the next rule instead of failing the build.
    """

    def apply(self, func: tirx.PrimFunc, target, _tunable: bool) -> s_tir.Schedule | None:
        if not isinstance(func, tirx.PrimFunc) or not self.is_target_available(target):
            return None
        sch = s_tir.Schedule(func)
        infos = normalize_prim_func(sch)
        if not infos:
            return None
        try:
            return self.schedule(sch, infos, target)
        except (s_tir.ScheduleError, ValueError, TypeError):
            return None

    def schedule(self, sch: s_tir.Schedule, infos: list[SBlockInfo], target) -> s_tir.Schedule | None:
        raise NotImplementedError
