"""What every stage shares: `TensorSpec` (the name, shape and dtype of a model input or output),
`Log` (the progress callback that compile steps write their one-line reports to), and the two error
measures the checks report (`scaled_error`, `relative_l2`)."""

from __future__ import annotations

import warnings
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
        """`value` as this input takes it, or InputError naming what does not match.

        The policy (docs/design/inputs.md): the shape must match exactly (a 0-d array, another batch
        size: refused). Within a kind, a lossless cast is silent (int32 token ids for an int64 input,
        float16 for float32); a lossy one (float64 for float32) is done with a warning, and an integer
        narrowing refused where a value does not fit. Across kinds (ints for a float input, floats or
        bools for an int input, objects, strings) refused: the caller casts. Layout never matters:
        non-contiguous, read-only or misaligned arrays are copied as needed. NaN and Inf are data."""
        value = np.asarray(value)
        expected = np.dtype(self.dtype)
        if tuple(value.shape) != self.shape:
            raise InputError(f"input {self.name!r}: expected shape {list(self.shape)}, got {list(value.shape)}")
        if value.dtype != expected:
            value = self._cast(value, expected)
        return np.asarray(value, order="C")

    def _cast(self, value: np.ndarray, expected: np.dtype) -> np.ndarray:
        kind = {"f": "float", "i": "int", "u": "int"}
        given, wanted = kind.get(value.dtype.kind), kind.get(expected.kind)
        if given is None or given != wanted:
            raise InputError(f"input {self.name!r}: expected dtype {expected.name}, got {value.dtype.name} "
                             f"(cast it first, e.g. x.astype(np.{expected.name}))")
        if np.can_cast(value.dtype, expected, casting="safe"):
            return value.astype(expected)
        if wanted == "int":
            info = np.iinfo(expected)
            if value.size and (value.min() < info.min or value.max() > info.max):
                raise InputError(f"input {self.name!r}: {value.dtype.name} values outside {expected.name}'s range "
                                 f"[{info.min}, {info.max}]")
            return value.astype(expected)
        warnings.warn(f"input {self.name!r}: {value.dtype.name} cast to {expected.name} (precision is lost)",
                      InputCastWarning, stacklevel=3)
        return value.astype(expected)


def scaled_error(got: np.ndarray, expected: np.ndarray) -> float:
    """max |got - expected| / max(1, max |expected|): the measure every kernel and model check uses
    (absolute below 1, relative to the outputs' magnitude above)."""
    return float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))


def relative_l2(got, expected) -> float:
    """|got - expected| / |expected| (L2) over all arrays given (an array or a list of them)."""
    def flat(arrays):
        arrays = arrays if isinstance(arrays, (list, tuple)) else [arrays]
        return np.concatenate([np.ravel(a).astype(np.float64) for a in arrays])

    g, e = flat(got), flat(expected)
    return float(np.linalg.norm(g - e) / max(np.linalg.norm(e), 1e-30))


class InputCastWarning(UserWarning):
    """An input was cast to the model's dtype with a loss of precision (float64 -> float32)."""
