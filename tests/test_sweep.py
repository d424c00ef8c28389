"""The fast tier of the architecture sweep (benchmarks/sweep.py, `make sweep` runs it whole): real
torchvision and transformers architectures with random weights through both exporters, and
hand-built graphs of old-opset ops (LRN, Upsample, spatial BatchNormalization, Clip and Pad with
attributes), each compiled for the host and checked against ONNX Runtime (1e-4 abs / 1e-3 rel)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sweep  # noqa: E402
import zoo  # noqa: E402

FAST = zoo.fast()


@pytest.mark.parametrize("entry", FAST, ids=[f"{e.name}-{e.exporter}-{e.opset}" for e in FAST])
def test_architecture_matches_onnxruntime(entry, tmp_path):
    row = sweep.run_entry(entry, repeat=0, out_dir=str(tmp_path))
    assert row["matches"], row.get("error") or f"max abs error {row.get('max_abs_error')}"
    assert row["op_types"]


def test_failures_are_classified(tmp_path):
    """The sweep's table tells a named gearshift error (what a user sees) from a raw one (a bug)."""
    from gearshift.errors import UnsupportedOpError

    def named():
        raise UnsupportedOpError("no converter", node="n1", op_type="Mystery")

    def raw():
        raise ValueError("boom")

    first = sweep.run_entry(zoo.Entry("a", "onnx", named), repeat=0, out_dir=str(tmp_path))
    second = sweep.run_entry(zoo.Entry("b", "onnx", raw), repeat=0, out_dir=str(tmp_path))
    assert first["named"] and "Mystery" in first["error"] and not first["matches"]
    assert second["named"] is False and "boom" in second["error"]
