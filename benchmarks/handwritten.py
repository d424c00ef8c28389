"""What the two calibration scripts (hand_bsr.py, hand_pattern_conv.py) share: building a C kernel
with the system compiler, and timing gearshift's kernel against it the same way.

Import after `common` (which sets the thread pools' environment)."""

from __future__ import annotations

import argparse
import ctypes
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import compare, log

from gearshift.bench import summarize, time_interleaved


def require_x86(script: str) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        sys.exit(f"{script}: the C kernel is AVX2 code; run it on x86-64")


def calibrate(script: str, doc: str, rows: Callable[[str, int], list[dict]]) -> tuple[int, list[dict]]:
    """What both calibration scripts' `main` does first: parse `--repeat`, refuse a non-x86 machine,
    then `rows(tmp, repeat)` with a temporary directory for the C build; a failed build exits naming
    `script`. Returns (repeat, rows)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    repeat = p.parse_args().repeat
    require_x86(script)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            return repeat, rows(tmp, repeat)
        except (OSError, subprocess.CalledProcessError) as err:
            sys.exit(f"{script}: building the C kernel failed (needs cc with OpenMP and AVX2): {err}")


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


HAND_HEADERS = ("C kernel ms", "gearshift ms", "gearshift / C", "C alone ms", "gearshift alone ms", "gearshift / C alone",
                "ORT alone ms", "C vs ORT (alone)", "gearshift vs ORT (alone)", "max err vs ORT")


def hand_cells(row: dict, gearshift: str) -> tuple[str, ...]:
    """An `against_hand` row's table cells, in HAND_HEADERS order."""
    e, a = row["engines"], row["alone_ms"]
    return (f"{e['hand_c']['median_ms']:.3f}", f"{e[gearshift]['median_ms']:.3f}", f"{row['gearshift_over_hand']:.2f}",
            f"{a['hand_c']:.3f}", f"{a[gearshift]:.3f}", f"{a[gearshift] / a['hand_c']:.2f}", f"{a['onnxruntime']:.3f}",
            f"{row['hand_vs_ort_alone']:.2f}x", f"{row['gearshift_vs_ort_alone']:.2f}x",
            f"{max(e['hand_c']['max_abs_error'], e[gearshift]['max_abs_error']):.1e}")
