"""Measure this machine's fp32 FMA peak: every core runs 12 independent FMA chains of the widest
vectors it has (512-bit on AVX-512, else 256-bit) on registers (no memory traffic), so the figure is
what the cores do at the clock they really run at (a VM's nominal MHz says little about turbo).
A 256-bit probe reads half the peak of an AVX-512 machine. x86 with AVX2+FMA only; elsewhere None.

The probe is a few lines of C built with the system compiler at run time: TVM's own TIR puts
accumulators of a parallel loop in memory, which would measure the store port instead.
"""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import tempfile
import threading
import time

from gearshift.bench import isa

CHAINS = 12
SOURCE = r"""
#include <immintrin.h>
float chains(long steps) {
    VEC a = SET1(0.5f), acc[12];
    for (int c = 0; c < 12; c++) acc[c] = SET1((float)c);
    for (long k = 0; k < steps; k++)
        for (int c = 0; c < 12; c++) acc[c] = FMA(acc[c], a, a);
    float out = 0.f;
    for (int c = 0; c < 12; c++) out += ((float*)&acc[c])[0];
    return out;
}
"""


def fma_peak_gflops(cores: int | None = None, steps: int = 1 << 24) -> float | None:
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    cores = cores or os.cpu_count() or 1
    wide = isa() == "AVX-512"
    lanes = 16 if wide else 8
    flags = (["-mavx512f", "-DVEC=__m512", "-DSET1=_mm512_set1_ps", "-DFMA=_mm512_fmadd_ps", "-mprefer-vector-width=512"]
             if wide else ["-DVEC=__m256", "-DSET1=_mm256_set1_ps", "-DFMA=_mm256_fmadd_ps"])
    with tempfile.TemporaryDirectory() as tmp:
        src, lib = os.path.join(tmp, "peak.c"), os.path.join(tmp, "peak.so")
        with open(src, "w") as f:
            f.write(SOURCE)
        try:
            subprocess.run(["cc", "-O3", "-funroll-loops", "-mavx2", "-mfma", *flags, "-shared", "-fPIC", src, "-o", lib],
                           check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        fn = ctypes.CDLL(lib).chains
        fn.argtypes, fn.restype = [ctypes.c_long], ctypes.c_float

        fn(1 << 16)
        cpus = sorted(os.sched_getaffinity(0))[:cores]

        def pinned(cpu: int) -> None:  # one thread per core, pinned: unpinned, two can share a core
            os.sched_setaffinity(0, {cpu})
            fn(steps)

        best = float("inf")
        for _ in range(5):
            threads = [threading.Thread(target=pinned, args=(cpu,)) for cpu in cpus]  # ctypes releases the GIL
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            best = min(best, time.perf_counter() - t0)
        cores = len(cpus)
    return 2 * CHAINS * lanes * steps * cores / best / 1e9
