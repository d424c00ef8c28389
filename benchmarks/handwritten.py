"""What the two calibration scripts (hand_bsr.py, hand_pattern_conv.py) share: building a C kernel
with the system compiler, and timing gearshift's kernel against it the same way.

Import after `common` (which sets the thread pools' environment)."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import compare, log

from gearshift.bench import summarize, time_interleaved


def require_x86(script: str) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        sys.exit(f"{script}: the C kernel is AVX2 code; run it on x86-64")


def build_c(source: Path, out: Path, symbol: str, argtypes: list):
    """`source` compiled with AVX2, FMA and OpenMP into `out`; the function `symbol` (returns nothing)."""
    subprocess.run(["cc", "-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC", str(source), "-o", str(out)],
                   check=True, capture_output=True)
    fn = getattr(ctypes.CDLL(str(out)), symbol)
    fn.argtypes, fn.restype = argtypes, None
    return fn


def against_hand(name: str, gearshift: str, engines: dict[str, Callable], outputs: dict[str, np.ndarray],
                 reference: np.ndarray, repeat: int) -> dict:
    """`engines`: gearshift's kernel (under the name `gearshift`), "hand_c" and "onnxruntime". The first
    two are timed interleaved (their pools, both quiet, do not disturb each other); then every engine
    alone, back to back (an OpenMP pool in ONNX Runtime's round slows it, which would flatter both
    kernels). `outputs` of the first two are checked against ONNX Runtime's `reference`."""
    row = compare(name, {gearshift: engines[gearshift], "hand_c": engines["hand_c"]}, outputs, reference="hand_c",
                  repeat=repeat)
    for engine, out in outputs.items():
        row["engines"][engine]["max_abs_error"] = float(np.abs(out - reference).max())
    alone = {engine: summarize(time_interleaved({engine: fn}, repeat=repeat)[engine])["median_ms"]
             for engine, fn in engines.items()}
    e = row["engines"]
    row.update(alone_ms=alone, gearshift_over_hand=e[gearshift]["median_ms"] / e["hand_c"]["median_ms"],
               hand_vs_ort_alone=alone["onnxruntime"] / alone["hand_c"],
               gearshift_vs_ort_alone=alone["onnxruntime"] / alone[gearshift])
    log(f"{name}: gearshift {row['gearshift_over_hand']:.2f}x the C kernel's time; alone vs ORT: "
        f"C {row['hand_vs_ort_alone']:.2f}x, gearshift {row['gearshift_vs_ort_alone']:.2f}x")
    return row
