"""Calibration inputs: what the RT3 level measurements run when the user gives no real data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gearshift.spec import TensorSpec


def calibration_inputs(specs: Sequence[TensorSpec], seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for the accuracy proxy: floats ~ N(0, 1); integers (token ids, masks) in [0, 10)
    or {0, 1} for names that look like masks. Pass real data (`calibration=`) where it matters."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in specs:
        if np.issubdtype(np.dtype(s.dtype), np.floating):
            out[s.name] = rng.standard_normal(s.shape).astype(s.dtype)
        else:
            high = 2 if "mask" in s.name or "type" in s.name else 10
            out[s.name] = rng.integers(0, high, s.shape).astype(s.dtype)
    return out
