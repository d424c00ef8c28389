"""The GPU cost estimate: what decides dense or sparse per layer on a GPU target, as `costs.py` does on CPUs.

A layer's kernel is described by its FLOPs, the DRAM bytes it must move at least (each operand once),
and its work-items; its time is predicted from the target's *published* peak FLOP/s and bandwidth
(`schedules/gpu/devices.py`) as

    max(FLOPs / (peak x efficiency x occupancy), bytes / bandwidth) + one launch

where occupancy is the fraction of the GPU the work-items can keep busy (a GPU hides memory latency
only with several waves in flight per core) and efficiency the fraction of peak the kernel's kind
reaches when the GPU is full. The efficiencies are assumptions, not measurements (there is no GPU
here): dlight's tiled matmul at half of peak, the sparse kernels lower (an index load per block,
scattered activation reads). Every figure this module gives is a prediction and says so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from gearshift.schedules.gpu.devices import GpuSpec
from gearshift.schedules.kernels.gpu_bsr import gpu_tile

DENSE_EFFICIENCY = 0.5  # dlight Matmul: register-tiled, vector loads
SPARSE_EFFICIENCY = 0.25  # gpu_bsr_matmul: per block one index, r x TM FMAs per weight vector
PATTERN_EFFICIENCY = 0.2  # pattern conv: 4 taps per kernel, bounds-checked input reads
CIRCULANT_EFFICIENCY = 0.25  # direct circulant: rotated reads of x
WAVES_TO_FILL = 12  # waves per core a GPU needs in flight to hide DRAM latency
LAUNCH_US = 10.0  # one kernel launch through the OpenCL driver
LABEL = "predicted from published peaks (no GPU measured)"


@dataclass(frozen=True)
class GpuEstimate:
    kernel: str
    flops: float
    dram_bytes: float
    work_items: int
    occupancy: float
    microseconds: float
    bound: str  # "compute" or "memory"

    def as_dict(self) -> dict:
        return {**asdict(self), "microseconds": round(self.microseconds, 2), "occupancy": round(self.occupancy, 3)}


def estimate(kernel: str, flops: float, dram_bytes: float, work_items: int, efficiency: float,
             spec: GpuSpec) -> GpuEstimate:
    occupancy = min(1.0, work_items / (spec.compute_units * spec.wave * WAVES_TO_FILL))
    compute = flops / (spec.peak_gflops * 1e9 * efficiency * max(occupancy, 1e-3))
    memory = dram_bytes / (spec.bandwidth_gbs * 1e9)
    seconds = max(compute, memory)
    return GpuEstimate(kernel, flops, dram_bytes, work_items, occupancy, seconds * 1e6 + LAUNCH_US,
                       "compute" if compute >= memory else "memory")


def dense_matmul(m: int, k: int, n: int, spec: GpuSpec) -> GpuEstimate:
    """dlight's Matmul: a 4x4 (Mali) or 8x2 (Adreno) register tile per work-item."""
    return estimate("dense matmul", 2.0 * m * k * n, 4.0 * (m * k + k * n + m * n), math.ceil(m * n / 16),
                    DENSE_EFFICIENCY, spec)


def sparse_matmul(m: int, k: int, n: int, r: int, c: int, nnz: int, spec: GpuSpec,
                  entries: int | None = None) -> GpuEstimate:
    """gpu_bsr_matmul: `entries` weights per stored block (block patterns), r x c for BSR."""
    per_block = entries or r * c
    rows, group, _ = gpu_tile(m, k, r, spec)
    items = math.ceil(m / rows) * math.ceil(n // r / group) * group
    return estimate(f"sparse {r}x{c}", 2.0 * m * nnz * per_block,
                    4.0 * (m * k + nnz * (per_block + 1) + n // r + m * n), items, SPARSE_EFFICIENCY, spec)


def dense_conv(n: int, cin: int, cout: int, oh: int, ow: int, spec: GpuSpec) -> GpuEstimate:
    """A 3x3 conv as dlight's implicit GEMM: [N*OH*OW, 9*CI] x [9*CI, CO]."""
    return replace(dense_matmul(n * oh * ow, 9 * cin, cout, spec), kernel="dense conv (implicit GEMM)")


def pattern_conv(n: int, cin: int, cout: int, h: int, w: int, oh: int, ow: int, kept: int,
                 spec: GpuSpec) -> GpuEstimate:
    """gpu_pattern_conv2d: `kept` kernels of 4 taps; one work-item per output pixel and filter."""
    return estimate("pattern conv", 2.0 * n * oh * ow * kept * 4, 4.0 * (n * cin * h * w + kept * 5 + n * cout * oh * ow),
                    n * oh * ow * cout, PATTERN_EFFICIENCY, spec)


def circulant_direct(m: int, k: int, n: int, b: int, spec: GpuSpec) -> GpuEstimate:
    """The direct kernel: the dense FLOPs, weights b times smaller."""
    return estimate(f"circulant b={b} direct", 2.0 * m * k * n, 4.0 * (m * k + k * n / b + m * n), m * n,
                    CIRCULANT_EFFICIENCY, spec)


def circulant_fft(m: int, k: int, n: int, b: int, spec: GpuSpec) -> GpuEstimate:
    """Three GEMM-shaped kernels (DFT, per-pair MAC, inverse DFT) through dlight's Matmul, three launches."""
    kp, np_ = -(-k // b) * b, -(-n // b) * b
    flops = 2.0 * m * (kp + np_) * b + 2.0 * 2 * m * kp * np_ / b
    dram = 4.0 * (2 * m * k + 2 * m * kp + 2 * m * np_ + 2 * kp * np_ / b + m * n)
    est = estimate(f"circulant b={b} fft", flops, dram, math.ceil(m * np_ / 16), DENSE_EFFICIENCY, spec)
    return replace(est, microseconds=est.microseconds + 2 * LAUNCH_US)


def compare(dense: GpuEstimate, sparse: GpuEstimate) -> dict:
    """The report's GPU entry for one layer: both estimates and the predicted speedup."""
    return {"label": LABEL, "dense": dense.as_dict(), "sparse": sparse.as_dict(),
            "predicted_speedup": round(dense.microseconds / sparse.microseconds, 2)}
