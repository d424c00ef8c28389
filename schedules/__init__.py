"""Targets, kernels and schedules: turning a Relax module into a library for a device.

`targets.py` names the targets, `pipeline.py` is the Relax -> library lowering per target kind,
`kernels/` defines the kernels gearshift adds, `cpu/` holds the CPU schedule rules (one per file),
`asm.py` reads a hot loop out of generated assembly, `qemu.py` runs an ARM kernel under qemu-user.
The compile driver that uses them is `gearshift.driver`, a layer above (it also runs the passes).
"""

from gearshift.schedules.targets import TargetInfo, get_target, target_names

__all__ = ["TargetInfo", "get_target", "target_names"]
