"""What gearshift assumes about each mobile GPU: the facts its kernels and its cost model take.

Peak rates are the vendors' published figures for the phones the targets stand for, not measured
(there is no GPU here): every time computed from them is a prediction and is labelled so.

| target       | GPU (phone)                           | fp32 peak     | DRAM      | local memory            |
|--------------|---------------------------------------|---------------|-----------|-------------------------|
| `mali-g76`   | Mali-G76 MP10 @ 720 MHz (Kirin 980)   | 345.6 GFLOP/s | 34.1 GB/s | global memory, cached   |
| `adreno-640` | Adreno 640 @ 585 MHz (Snapdragon 855) | 898.6 GFLOP/s | 34.1 GB/s | on-chip                 |

Mali-G76: 10 cores x 3 execution engines x 8 lanes x 2 FLOPs x 720 MHz. Adreno 640: 768 fp32 FLOPs
per clock x 585 MHz. Both phones: 4 x 16-bit LPDDR4X channels at 4266 MT/s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    peak_gflops: float  # fp32, published
    bandwidth_gbs: float  # DRAM, published
    compute_units: int  # shader cores (Mali) / streaming processors x waves in flight (Adreno)
    wave: int  # work-items a core issues together (Mali-G76: quads of 8-wide warps; Adreno: 64-wide waves)
    max_work_group: int  # TVM's OpenCL target limit (max_threads_per_block)
    local_scratchpad: bool  # local memory is on-chip (worth staging into) rather than cached global memory
    local_bytes: int  # local memory a work-group may use (TVM's limit for both targets: 16 KB)
    registers: int  # fp32 accumulators a work-item may hold without spilling or halving occupancy


MALI_G76 = GpuSpec("mali-g76", 345.6, 34.1, 10, 8, 256, False, 16384, 32)
ADRENO_640 = GpuSpec("adreno-640", 898.6, 34.1, 2, 64, 256, True, 16384, 32)


def gpu_spec(target) -> GpuSpec:
    """The GpuSpec for a TVM OpenCL target (by its device: mali or adreno)."""
    return MALI_G76 if "mali" in target.keys else ADRENO_640
