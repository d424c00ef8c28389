"""What every stage shares: `TensorSpec` (the name, shape and dtype of a model input or output) and
`Log` (the progress callback that compile steps write their one-line reports to)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gearshift.errors import InputError

Log = Callable[[str], None]


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, d: dict) -> "TensorSpec":
        return cls(str(d["name"]), tuple(int(n) for n in d["shape"]), str(d["dtype"]))

    def check(self, value: np.ndarray) -> np.ndarray:
        """Return `value` as this spec's dtype, or raise InputError saying what does not match."""
        value = np.asarray(value)
        if tuple(value.shape) != self.shape:
            raise InputError(f"input {self.name!r}: expected shape {list(self.shape)}, got {list(value.shape)}")
        if value.dtype != np.dtype(self.dtype):
            if not np.can_cast(value.dtype, self.dtype, casting="same_kind"):
                raise InputError(f"input {self.name!r}: expected dtype {self.dtype}, got {value.dtype}")
            value = value.astype(self.dtype)
        return np.asarray(value, order="C")
