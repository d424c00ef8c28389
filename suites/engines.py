"""One benchmark case: a model with its weights, every peer built on those same weights, outputs
checked against ONNX Runtime before anything is timed, then every peer timed in one run.

Peers: ONNX Runtime (the reference), torch eager (dense; `to_sparse_bsr` where torch has the block),
plain TVM (`tvm.compile` of the ONNX import without gearshift's schedules: naive loops on CPU, so it
runs only where the model is small enough; the case says where it was skipped), gearshift dense, and
gearshift with each structure. A peer that cannot run says why instead of a time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from gearshift.bench import ort_session
from gearshift.errors import summarize as one_line
from gearshift.runtime.timing import summarize, time_engines
from gearshift.spec import Log

TOLERANCE = 1e-3  # largest |error| / max |reference| an engine may show and still be timed
PLAIN_TVM_FLOPS = 300e6  # above this, plain TVM's naive loops (seconds a call) are not run
SLOW_CALLS = 3  # an engine whose first call took over SLOW_MS (plain TVM's naive loops) is timed alone, this many calls
SLOW_MS = 1000.0


@dataclass
class Engine:
    name: str
    call: Callable[[], object] | None = None  # None: not run (`skipped` says why)
    output: np.ndarray | None = None
    skipped: str | None = None
    same_weights: bool = True  # False: a peer on other weights of the same density (timed, not checked)
    facts: dict = field(default_factory=dict)  # artifact size, kernel decisions, ...
    first_ms: float = 0.0  # the first call's time: a slow engine is timed apart

    def __post_init__(self):
        if self.call is not None and self.output is None:
            t = time.perf_counter()
            try:
                self.output = _first_array(self.call())
            except Exception as err:  # one peer failing must not end a long run: it is reported instead
                self.call, self.skipped = None, f"failed on its first call: {_short(err)}"
                return
            self.first_ms = (time.perf_counter() - t) * 1e3


@dataclass
class Case:
    """A model, its feeds and its engines; `run` checks and times them."""

    suite: str
    name: str
    proto: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    facts: dict = field(default_factory=dict)  # density, shape, structure: what the report groups by
    engines: dict[str, Engine] = field(default_factory=dict)
    error: str | None = None  # the case could not be built (e.g. the model does not export): reported, not timed

    def add(self, engine: Engine) -> None:
        self.engines[engine.name] = engine

    def run(self, repeat: int, mode: str = "blocks") -> dict:
        """Check every engine's output against ONNX Runtime, time the ones that agree, and return the
        case's row: per engine median and p90 ms, ratio against ONNX Runtime, error, or why not."""
        if self.error:
            return {"suite": self.suite, "case": self.name, **self.facts, "error": self.error, "engines": {}}
        reference = self.engines["onnxruntime"].output
        scale = max(float(np.abs(reference).max()), 1e-30)
        row = {"suite": self.suite, "case": self.name, **self.facts, "timing": mode, "engines": {}}
        timed = {}
        for name, e in self.engines.items():
            entry = {"facts": e.facts} if e.facts else {}
            if e.call is None:
                entry["skipped"] = e.skipped
            elif e.same_weights:
                error = float(np.abs(np.asarray(e.output, np.float64) - reference).max()) / scale
                entry["relative_error"] = error
                if error > TOLERANCE:
                    entry["skipped"] = f"output differs from ONNX Runtime by {error:.2e} (relative): not timed"
                else:
                    timed[name] = e.call
            else:
                entry["note"] = "other weights of the same density (the block shape torch supports): timed, not checked"
                timed[name] = e.call
            row["engines"][name] = entry
        slow = {name: self.engines[name].first_ms for name in timed if self.engines[name].first_ms > SLOW_MS
                and name != "onnxruntime"}
        times = time_engines({k: v for k, v in timed.items() if k not in slow}, mode=mode, repeat=repeat)
        times.update(time_engines({k: timed[k] for k in slow}, mode="alone", warmup=0, repeat=SLOW_CALLS))
        base = summarize(times["onnxruntime"])["median_ms"]
        for name, t in times.items():
            stats = summarize(t)
            row["engines"][name].update(stats, ratio_vs_onnxruntime=base / stats["median_ms"])
            if name in slow:
                row["engines"][name]["timing"] = f"alone, {SLOW_CALLS} calls (one call took {slow[name]:.0f} ms)"
        return row


def onnx_runtime(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray]) -> Engine:
    session = ort_session(proto.SerializeToString())
    return Engine("onnxruntime", lambda: session.run(None, feeds))


def gearshift(name: str, proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], spec: str | None, workdir: Path,
              db=None, log: Log = lambda _m: None) -> Engine:
    """`spec` compiled for this machine, saved as an artifact and loaded back, as a user runs it."""
    from gearshift.compiler import compile_model, save
    from gearshift.errors import GearshiftError
    from gearshift.runtime import Session

    try:
        built = compile_model(proto, "host", sparsity=spec, db=db)
    except GearshiftError as err:
        return Engine(name, skipped=f"does not compile: {err}")
    except Exception as err:  # a compiler bug: reported with the case, the run goes on
        return Engine(name, skipped=f"compile failed (a gearshift bug, please report): {_short(err)}")
    path = workdir / slug(name)
    artifact = save(built, path, overwrite=True)
    session = Session(artifact)
    layers = built.report.get("sparse_layers", [])
    facts = {"artifact_bytes": sum(f.stat().st_size for f in Path(artifact.path).rglob("*") if f.is_file()),
             "sparse_layers": sum(layer["decision"] != "dense" for layer in layers), "layers": len(layers)}
    log(f"{name}: compiled ({facts['sparse_layers']} of {facts['layers']} layers structured)")
    return Engine(name, lambda: session.run(feeds), facts=facts)


def plain_tvm(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], flops: float) -> Engine:
    """TVM as it comes: the ONNX import built by `tvm.compile` with its default pipeline for this CPU."""
    if flops > PLAIN_TVM_FLOPS:
        return Engine("plain TVM", facts={"mflop": round(flops / 1e6)},
                      skipped=f"skipped above {PLAIN_TVM_FLOPS / 1e6:.0f} MFLOP a call: tvm.compile schedules no matmul "
                              f"or conv on CPU (naive loops), so one call takes seconds")
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    from gearshift.schedules.targets import get_target

    try:
        mod = from_onnx(proto, keep_params_in_input=False)
        vm = relax.VirtualMachine(tvm.compile(mod, target=get_target("host").tvm_target()), tvm.cpu())
    except Exception as err:
        return Engine("plain TVM", skipped=f"TVM's ONNX import or build failed: {_short(err)}")
    args = [tvm.runtime.tensor(np.ascontiguousarray(feeds[i.name])) for i in proto.graph.input if i.name in feeds]
    return Engine("plain TVM", lambda: vm["main"](*args))


def torch_engine(name: str, fn: Callable[[], object], same_weights: bool = True) -> Engine:
    """A torch callable (run under no_grad); its first output compared like the others."""
    import torch

    def call():
        with torch.no_grad():
            return fn()

    return Engine(name, call, same_weights=same_weights)


def _first_array(out) -> np.ndarray:
    """An engine's first output as numpy, whatever it returns: ORT's list, a dict of a Session, a
    TVM array or tuple, a torch tensor or a transformers output object."""
    if isinstance(out, dict):
        out = next(iter(out.values()))
    if hasattr(out, "last_hidden_state"):
        out = out.last_hidden_state
    if isinstance(out, (tuple, list)) or type(out).__name__ == "Array":
        out = out[0]
    if hasattr(out, "to_dense") and getattr(out, "layout", None) is not None and str(out.layout) != "torch.strided":
        out = out.to_dense()
    if hasattr(out, "detach"):
        out = out.detach()
    return np.asarray(out.numpy() if hasattr(out, "numpy") else out)


def slug(text: str) -> str:
    """A folder name for a case or engine name."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-")[:80]


def _short(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (no C++ traceback)."""
    return f"{type(err).__name__}: {one_line(err, width=200)}"
