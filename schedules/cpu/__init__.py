"""CPU schedule rules (x86 and ARM), in the style of TVM's dlight: one class per rule; `apply`
returns a schedule, or None when the function is not its kind. `default_rules` is tried in order."""

from __future__ import annotations

from tvm.s_tir import dlight

from gearshift.schedules.cpu.conv2d import Conv2d
from gearshift.schedules.cpu.elementwise import Elementwise
from gearshift.schedules.cpu.fallback import Fallback
from gearshift.schedules.cpu.matmul import Matmul
from gearshift.schedules.cpu.microkernel import Microkernel, microkernel


def default_rules() -> list:
    """gearshift's conv2d, matmuls (dense and batched), GEMV, norms and softmax (dlight's CPU
    Reduction rule), injective functions, then the fallback."""
    return [Conv2d(), Matmul(), dlight.cpu.GEMV(), dlight.cpu.Reduction(), Elementwise(), Fallback()]


__all__ = ["Conv2d", "Elementwise", "Fallback", "Matmul", "Microkernel", "default_rules", "microkernel"]
