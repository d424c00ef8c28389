"""The accelerator's parameters, as VTA names them, read from JSON and validated with named errors.

VTA's published default: a 1 x 16 x 16 GEMM core (batch 1, 16 inputs, 16 outputs), int8 inputs and
weights, int32 accumulators, int8 outputs; 32 KB of micro-ops and of inputs, 256 KB of weights,
128 KB of accumulators; 100 MHz. The cycle model's two memory figures are gearshift's, stated here
because every cycle count depends on them: `dram_bytes_per_cycle` = 16, a 128-bit AXI port (VTA's
bus width on its UltraScale+ builds; the PYNQ-Z1's port is 64-bit: 8), and `dram_latency` = 64
cycles per transfer.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gearshift.errors import GearshiftError


class VtaConfigError(GearshiftError):
    """A configuration field that is missing, of the wrong type, or outside what the ISA encodes."""

    def __init__(self, field: str, why: str):
        super().__init__(f"VTA configuration: {field}: {why}")
        self.field = field


@dataclass(frozen=True)
class VtaConfig:
    batch: int = 1
    block_in: int = 16
    block_out: int = 16
    inp_bits: int = 8
    wgt_bits: int = 8
    acc_bits: int = 32
    out_bits: int = 8
    uop_buffer_bytes: int = 32 * 1024
    inp_buffer_bytes: int = 32 * 1024
    wgt_buffer_bytes: int = 256 * 1024
    acc_buffer_bytes: int = 128 * 1024
    dram_bytes_per_cycle: int = 16  # the AXI port: 128 bits a cycle
    dram_latency: int = 64  # cycles from a LOAD/STORE's start to its first beat
    clock_mhz: float = 100.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise VtaConfigError(f.name, f"must be a positive number, got {value!r}")
        for name in ("batch", "block_in", "block_out", "uop_buffer_bytes", "inp_buffer_bytes", "wgt_buffer_bytes",
                     "acc_buffer_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value & (value - 1):
                raise VtaConfigError(name, f"must be a power of two (VTA's buffers and GEMM core are), got {value}")
        for name, allowed in (("inp_bits", (8,)), ("wgt_bits", (8,)), ("acc_bits", (32,)), ("out_bits", (8,))):
            if getattr(self, name) not in allowed:
                raise VtaConfigError(name, f"the simulator implements {allowed[0]}-bit values only, got {getattr(self, name)}")
        for name in ("uop", "inp", "wgt", "acc"):
            if getattr(self, f"{name}_depth") < 2:
                raise VtaConfigError(f"{name}_buffer_bytes", "holds fewer than two elements")
        if self.log_acc_depth + self.log_inp_depth + self.log_wgt_depth > 32 or self.log_acc_depth * 2 + self.log_wgt_depth > 32:
            raise VtaConfigError("acc_buffer_bytes", "buffer depths too large: a micro-op (32 bits) cannot index them")
        if self.log_uop_depth * 2 + 1 > 40:
            raise VtaConfigError("uop_buffer_bytes", "too deep for the GEMM instruction's micro-op fields")

    # element sizes (bytes) and buffer depths (elements), as VTA derives them
    @property
    def inp_elem_bytes(self) -> int:
        return self.batch * self.block_in * self.inp_bits // 8

    @property
    def wgt_elem_bytes(self) -> int:
        return self.block_out * self.block_in * self.wgt_bits // 8

    @property
    def acc_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.acc_bits // 8

    @property
    def out_elem_bytes(self) -> int:
        return self.batch * self.block_out * self.out_bits // 8

    @property
    def uop_depth(self) -> int:
        return self.uop_buffer_bytes // 4

    @property
    def inp_depth(self) -> int:
        return self.inp_buffer_bytes // self.inp_elem_bytes

    @property
    def wgt_depth(self) -> int:
        return self.wgt_buffer_bytes // self.wgt_elem_bytes

    @property
    def acc_depth(self) -> int:
        return self.acc_buffer_bytes // self.acc_elem_bytes

    @property
    def log_uop_depth(self) -> int:
        return int(math.log2(self.uop_depth))

    @property
    def log_inp_depth(self) -> int:
        return int(math.log2(self.inp_depth))

    @property
    def log_wgt_depth(self) -> int:
        return int(math.log2(self.wgt_depth))

    @property
    def log_acc_depth(self) -> int:
        return int(math.log2(self.acc_depth))

    def to_json(self) -> dict:
        return asdict(self)


def config_from_json(data: dict | str | Path) -> VtaConfig:
    """A VtaConfig from a dict, a JSON string or a .json file; unknown or ill-typed fields are named."""
    if isinstance(data, Path) or (isinstance(data, str) and data.lstrip()[:1] not in ("{", "[")):
        path = Path(data)
        try:
            data = json.loads(path.read_text())
        except OSError as err:
            raise VtaConfigError(str(path), f"cannot be read ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise VtaConfigError(str(path), f"not JSON (line {err.lineno}: {err.msg})") from None
        except UnicodeDecodeError:  # (found by fuzzing)
            raise VtaConfigError(str(path), "not text (not UTF-8)") from None
    elif isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise VtaConfigError("<json>", f"not JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict):
        raise VtaConfigError("<json>", f"must be an object, got {type(data).__name__}")
    known = {f.name for f in fields(VtaConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise VtaConfigError(unknown[0], f"unknown field (known: {', '.join(sorted(known))})")
    return VtaConfig(**data)


DEFAULT = VtaConfig()
