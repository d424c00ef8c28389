"""What this CPU can run: its vector features, against what an artifact's code was built to use.

An x86 library built for AVX-512 (`x86-avx512`, or `host` on an AVX-512 machine) dies with an
illegal instruction on a CPU without it; the session refuses it first, by name, instead.
"""

from __future__ import annotations

import functools
import platform

# The x86 features gearshift's code generation depends on, widest first; /proc/cpuinfo spells them alike.
X86_FEATURES = ("avx512f", "avx2", "fma", "avx")


@functools.cache
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    flags: set[str] = set()
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.split(":", 1)[1].split())
    return frozenset(flags)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, e.g. "Intel(R) Xeon(R) Processor"."""
    for line in _cpuinfo().splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def missing_features(config: dict) -> list[str]:
    """The x86 vector features an LLVM target `config` lets the code use that this CPU lacks
    (nothing for other architectures, or where /proc/cpuinfo cannot be read)."""
    if config.get("kind", "llvm") != "llvm" or not str(config.get("mtriple", "x86_64")).startswith("x86_64"):
        return []
    flags = cpu_flags()
    if not flags:
        return []
    import tvm
    from tvm.target import codegen

    target = tvm.target.Target(config)
    return [f for f in X86_FEATURES if f not in flags and codegen.llvm_cpu_has_features(f, target)]
