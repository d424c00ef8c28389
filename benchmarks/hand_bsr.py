"""Calibration: gearshift's generated 16x1 BSR kernel against the same algorithm hand-written in C.

The block-sparse bar (>= 6x ONNX Runtime dense at 90 %) was set from a hand-written 16x1 kernel that
reached 7.2-7.9x on an AVX-512 machine. This script asks the question that figure stands for, on the
machine it runs on: is gearshift's kernel as fast as hand-written code? `hand_bsr.c` is the
algorithm of schedules/kernels/bsr.py (along the outputs) in AVX2 intrinsics: 6 rows x 2 vectors of
accumulators, activation rows in the chunks `chunk_tiles` picks, block rows split over the threads
(OpenMP); and, where gearshift reads x through panels (`uses_panels`: 3072->768 here), the panel
design (tiles split over the threads, rows transposed into [k, 8] panels per chunk). It is built here
with the system C compiler.

BERT-base FFN shapes, M = 128, 90 % block sparsity in 16x1 blocks, fp32, a bias. gearshift runs as
users run it (a compiled artifact through `Session.run`). Timing: gearshift and the C kernel
interleaved; then every engine alone, back to back (as the "alone" column of block_sparse.py).
ONNX Runtime is timed alone only: an OpenMP pool in its round slows it (1.5-1.8x measured here),
which would flatter both kernels.
Writes benchmarks/results/hand_bsr.{json,md}. x86-64 with AVX2 and a C compiler only.

    python benchmarks/hand_bsr.py [--repeat 20]
"""

from __future__ import annotations

import ctypes
from pathlib import Path

from common import aligned, ort_session, table, threads_note, write_results  # first: sets thread env
import numpy as np
from block_sparse import M, matmul_model
from handwritten import HAND_HEADERS, against_hand, build_c, calibrate, hand_cells

import gearshift
from gearshift.bench import thread_count
from gearshift.schedules.kernels.bsr import Tile, chunk_tiles, panel_split, to_bsr, uses_panels
from gearshift.compress.blocks import project

SHAPES = [(768, 3072), (3072, 768)]
SPARSITY, ROWS = 0.9, 6
SOURCE = Path(__file__).with_name("hand_bsr.c")


def build(tmp: str) -> dict:
    """The C kernels by design: "rows" (row-major x) and "panels"."""
    argtypes = [ctypes.c_int] * 3 + [ctypes.c_void_p] * 6 + [ctypes.c_int] * 2
    return {design: build_c(SOURCE, Path(tmp) / "hand_bsr.so", symbol, argtypes)
            for design, symbol in (("rows", "bsr16x1"), ("panels", "bsr16x1_panels"))}


def case(kernels: dict, k: int, n: int, repeat: int) -> dict:
    rng = np.random.default_rng(0)
    wt = project((rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32), 16, 1, SPARSITY)
    b, x = rng.standard_normal(n).astype(np.float32), aligned(rng.standard_normal((M, k)).astype(np.float32))
    data, indices, indptr = to_bsr(wt, 16, 1)
    data, y = aligned(data.reshape(-1, 16)), aligned(np.zeros((M, n), np.float32))
    threads = thread_count()
    design = "panels" if uses_panels(M, k, n, 16, 1, len(indices), Tile("outputs", ROWS), threads) else "rows"
    # the C kernels' last argument but one: rows a chunk (row-major x) or tiles a chunk (panels)
    chunk = panel_split(M, k, ROWS, threads)[2] if design == "panels" else ROWS * chunk_tiles(M, k, ROWS)
    fn = kernels[design]
    proto = matmul_model(np.ascontiguousarray(wt.T), b)
    session = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity="bsr::16x1"),
                                               "out/bench-hand-bsr", overwrite=True))
    ort = ort_session(proto.SerializeToString())
    feeds = {"x": x}

    def hand():
        fn(M, k, n, x.ctypes.data, data.ctypes.data, indices.ctypes.data, indptr.ctypes.data, b.ctypes.data,
           y.ctypes.data, chunk, threads)
        return y

    outputs = {"hand_c": hand().copy(), "gearshift_bsr": session.run(feeds)["y"]}
    engines = {"gearshift_bsr": lambda: session.run(feeds), "hand_c": hand, "onnxruntime": lambda: ort.run(None, feeds)}
    row = against_hand(f"{k}->{n} {SPARSITY:.0%} 16x1 ({design})", "gearshift_bsr", engines, outputs, ort.run(None, feeds)[0],
                       repeat)
    row.update(k=k, n=n, design=design, chunk=chunk)
    return row


def main() -> None:
    def rows_of(tmp: str, repeat: int) -> list[dict]:
        kernels = build(tmp)  # both designs, built once
        return [case(kernels, k, n, repeat) for k, n in SHAPES]

    repeat, rows = calibrate("hand_bsr.py", __doc__, rows_of)
    lines = [("layer (M=128)", *HAND_HEADERS)] + [(r["case"], *hand_cells(r, "gearshift_bsr")) for r in rows]
    text = (f"# gearshift's 16x1 BSR kernel vs the same algorithm hand-written in C (AVX2), 90 % sparse\n\n"
            f"{table(lines)}\n\n{threads_note()}; C and gearshift interleaved, then each engine alone; medians of "
            f"{repeat} runs after 3 warm-ups. Interleaved, gearshift's time includes waking TVM's "
            f"thread pool right after the OpenMP kernel ran (0.1-0.4 ms on this VM, machine-dependent); "
            f"\"alone\" compares the kernels.")
    write_results("hand_bsr", {"repeat": repeat, "kernels": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
