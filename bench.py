"""Timing the way the benchmark protocol asks: peers in one run, warm-up, then medians.

Shared by `gearshift demo` and the scripts in `benchmarks/`. The headline mode is `time_blocks`:
each engine is called back to back for a block (after its own warm-up), then the next engine, and
the blocks alternate for several rounds. That is the steady state a deployed model sees (one model
called again and again), and alternating the blocks still spreads the machine's drift over every
engine alike. `time_interleaved` (one call of each engine per round) is the secondary mode: it
measures a model called right after a peer ran (cold caches, a pool woken from sleep).
"""

from __future__ import annotations

import os
import platform


from gearshift.runtime.timing import summarize, time_blocks, time_interleaved  # noqa: F401  (re-exported)


# Idle thread pools must not spin while another engine runs: on a 2-core machine a pool that
# spin-waits after its call (torch's OpenMP, TVM's) keeps a core busy while the next engine in the
# round runs (measured here: torch's OpenMP worker made gearshift's next call 2x slower). The
# libraries read these when they load, and `import tvm` loads torch (and its libgomp): set them
# before importing gearshift (`quiet_environment`), as benchmarks/common.py and `gearshift demo` do.
QUIET_POOLS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0", "KMP_BLOCKTIME": "0",
               "TVM_THREAD_POOL_SPIN_COUNT": "0"}


def quiet_environment() -> dict[str, str]:
    """This process's environment with QUIET_POOLS added (values the user set are kept)."""
    return {**QUIET_POOLS, **os.environ}


def pools_are_quiet() -> bool:
    return all(k in os.environ for k in QUIET_POOLS)


def ort_session(onnx_model: bytes | str):
    """ONNX Runtime as users run it (CPU provider, default graph optimisations), with the shared
    thread count and its pool's spin-wait off (see QUIET_POOLS)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = thread_count()
    options.log_severity_level = 3  # errors only: old-opset models draw a warning per session
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


def format_table(rows) -> str:
    """A markdown table, columns padded so it also reads as plain text."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def thread_count() -> int:
    """The one thread count every engine is given (TVM reads TVM_NUM_THREADS, default: all cores)."""
    return int(os.environ.get("TVM_NUM_THREADS", os.cpu_count() or 1))


def isa() -> str:
    """The widest fp32 vector ISA this CPU has: "AVX-512", "AVX2", "NEON" or the bare architecture."""
    from gearshift.runtime.cpu import cpu_flags

    flags = cpu_flags()
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    if "asimd" in flags or platform.machine() in ("aarch64", "arm64"):
        return "NEON"
    return platform.machine()


def machine() -> dict:
    import onnxruntime
    import torch
    import tvm

    from gearshift.runtime.cpu import cpu_model

    return {"machine": platform.machine(), "cpu": cpu_model(), "isa": isa(),
            "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "threads": thread_count(), "python": platform.python_version(),
            "tvm": tvm.__version__, "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
