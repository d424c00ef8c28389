"""The targets gearshift compiles for, by name.

Each name stands for a TVM target (a dict, since TVM 0.26 refuses "llvm -mtriple=..." strings) plus
the facts the rest of the pipeline needs: the CPU architecture the library runs on, and the cross
compiler that links it. Phones' core counts are their big clusters (4 cores).

| name         | what                                                                 |
|--------------|----------------------------------------------------------------------|
| `host`       | this machine: LLVM for its own CPU (`-mcpu` detected), all its cores  |
| `arm-a53`    | Cortex-A53 little/budget cores, aarch64 NEON                          |
| `arm-a76`    | Cortex-A76 big cores, aarch64 NEON + dot-product (int8)               |
| `mali-g76`   | Mali-G76 GPU through OpenCL, host code for Cortex-A76                 |
| `adreno-640` | Adreno 640 GPU through OpenCL, host code for Cortex-A76 (Kryo 485)    |
| `x86-avx2`   | an x86-64 CPU with AVX2 + FMA (Zen 3), this machine's core count      |
| `x86-avx512` | an x86-64 CPU with AVX-512 (Skylake-SP), this machine's core count    |
| `vta-sim`    | linear layers on a simulated VTA-style int8 accelerator, the rest here |

The two x86 names pin the ISA, whatever this machine has: decisions that depend on the vector width
(the cost models, the register blocks) are tested against them, never against `host`.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from gearshift.errors import TargetError

AARCH64_CC = "aarch64-linux-gnu-gcc"


@dataclass(frozen=True)
class TargetInfo:
    name: str
    description: str
    config: dict = field(repr=False)  # the TVM target dict
    arch: str  # the CPU architecture of the code's host side, as `platform.machine()` names it
    cross_compiler: str | None  # None: the machine's own `cc` links the library
    accelerator: str | None = None  # "vta": linear layers run on the simulated VTA-style accelerator

    @property
    def is_gpu(self) -> bool:
        return self.config["kind"] != "llvm"

    def tvm_target(self):
        import tvm

        return tvm.target.Target(self.config)

    def host_tvm_target(self):
        """The CPU part of the target (the target itself for CPU targets)."""
        import tvm

        return tvm.target.Target(self.config.get("host", self.config))


def _arm(mcpu: str, mattr: list[str]) -> dict:
    return {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "mattr": mattr, "num-cores": 4}


def _x86(name: str, mcpu: str, what: str) -> TargetInfo:
    config = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": mcpu, "num-cores": os.cpu_count() or 1}
    return TargetInfo(name, f"{what} ({mcpu}), {config['num-cores']} cores", config, "x86_64", None)


def _vta_sim() -> TargetInfo:
    host = _host()
    return TargetInfo("vta-sim", "simulated VTA-style int8 accelerator (1x16x16 GEMM core) for the linear layers; "
                      f"the rest on {host.description}", host.config, host.arch, None, "vta")


def _host() -> TargetInfo:
    from tvm.target import codegen

    config = {"kind": "llvm", "mtriple": codegen.llvm_get_system_triple(), "mcpu": codegen.llvm_get_system_cpu(),
              "num-cores": os.cpu_count() or 1}
    return TargetInfo("host", f"this machine ({config['mcpu']}, {config['num-cores']} cores)", config,
                      platform.machine(), None)


A76 = _arm("cortex-a76", ["+neon", "+dotprod"])
_FIXED = {
    "arm-a53": TargetInfo("arm-a53", "Arm Cortex-A53, aarch64 NEON", _arm("cortex-a53", ["+neon"]), "aarch64", AARCH64_CC),
    "arm-a76": TargetInfo("arm-a76", "Arm Cortex-A76, aarch64 NEON + dotprod", A76, "aarch64", AARCH64_CC),
    "mali-g76": TargetInfo("mali-g76", "Arm Mali-G76 GPU (OpenCL), Cortex-A76 host",
                           {"kind": "opencl", "device": "mali", "host": A76}, "aarch64", AARCH64_CC),
    "adreno-640": TargetInfo("adreno-640", "Qualcomm Adreno 640 GPU (OpenCL), Cortex-A76 host",
                             {"kind": "opencl", "device": "adreno", "host": A76}, "aarch64", AARCH64_CC),
}


_X86 = {"x86-avx2": ("znver3", "x86-64 with AVX2 + FMA"), "x86-avx512": ("skylake-avx512", "x86-64 with AVX-512")}


def target_names() -> list[str]:
    return ["host", *_FIXED, *_X86, "vta-sim"]


def get_target(name: str) -> TargetInfo:
    if name == "host":
        return _host()
    if name == "vta-sim":
        return _vta_sim()
    if name in _X86:
        return _x86(name, *_X86[name])
    if name not in _FIXED:
        raise TargetError(f"unknown target {name!r}; known targets: {', '.join(target_names())}")
    return _FIXED[name]
