"""Targets, kernels and schedules: turning a Relax module into a library for a device.

`targets.py` names the targets, `build.py` runs the pipeline (`pipeline.py`), `kernels/` defines the
kernels gearshift adds, `cpu/` holds the CPU schedule rules. (Import `gearshift.driver`
directly: it depends on the graph passes, which depend on the kernels here.)
"""

from gearshift.schedules.targets import TargetInfo, get_target, target_names

__all__ = ["TargetInfo", "get_target", "target_names"]
