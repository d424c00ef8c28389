"""int8 symmetric quantisation as a VTA-style accelerator computes it.

Weights: per output channel, scale = max |w| / 127. Activations: per tensor, scale = max |x| / 127
over calibration inputs. The accumulator (int32) holds x_q . w_q + bias_q; the output is
requantised by an arithmetic right shift per output channel (the accelerator has no multiplier in
its ALU), chosen from the calibration so that the channel's outputs fill int8 without clipping
more than they must (at most 15: SHR's range); half of 2^shift is folded into the bias, so the
shift rounds to nearest.
The host dequantises with out_scale[n] = x_scale * w_scale[n] * 2^shift[n].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SHIFT = 15  # SHR reads 5 signed bits: right shifts of 0..15 (beyond, the channel's outputs clip)


@dataclass(frozen=True)
class QuantizedLinear:
    w_q: np.ndarray  # int8 [K, N]
    bias_q: np.ndarray  # int32 [N] (rounding offset included)
    shift: np.ndarray  # int32 [N]
    x_scale: float
    w_scale: np.ndarray  # float64 [N]

    @property
    def out_scale(self) -> np.ndarray:
        return self.x_scale * self.w_scale * np.exp2(self.shift)

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(x / self.x_scale), -127, 127).astype(np.int8)

    def dequantize_output(self, y_q: np.ndarray) -> np.ndarray:
        return y_q.astype(np.float64) * self.out_scale


def quantize_linear(w: np.ndarray, bias: np.ndarray | None, calibration: np.ndarray) -> QuantizedLinear:
    """w [K, N] float, bias [N] or None, calibration inputs [..., K]: the layer as the accelerator runs it."""
    w = np.asarray(w, np.float64)
    x = np.asarray(calibration, np.float64).reshape(-1, w.shape[0])
    w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127.0
    x_scale = max(float(np.abs(x).max()), 1e-12) / 127.0
    w_q = np.clip(np.rint(w / w_scale), -127, 127).astype(np.int8)
    bias = np.zeros(w.shape[1]) if bias is None else np.asarray(bias, np.float64)
    bias_q = np.rint(bias / (x_scale * w_scale)).astype(np.int64)
    acc = np.clip(np.rint(x / x_scale), -127, 127) @ w_q.astype(np.float64) + bias_q
    peak = np.maximum(np.abs(acc).max(axis=0), 1.0)
    shift = np.clip(np.ceil(np.log2(peak / 127.0)), 0, MAX_SHIFT).astype(np.int32)
    rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return QuantizedLinear(w_q, (bias_q + rounding).astype(np.int32), shift, x_scale, w_scale)


def reference(x_q: np.ndarray, layer: QuantizedLinear) -> np.ndarray:
    """What the accelerator computes, in numpy: int32 wrapping accumulation, arithmetic shift, clip."""
    acc = x_q.astype(np.int64) @ layer.w_q.astype(np.int64) + layer.bias_q
    acc = ((acc + (1 << 31)) % (1 << 32) - (1 << 31))
    return np.clip(acc >> layer.shift.astype(np.int64), -128, 127).astype(np.int8)
