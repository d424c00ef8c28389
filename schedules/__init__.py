"""Targets, kernels and schedules: turning a Relax module into a library for a device."""

from gearshift.schedules.build import Built, build
from gearshift.schedules.targets import TargetInfo, get_target, target_names

__all__ = ["Built", "TargetInfo", "build", "get_target", "target_names"]
