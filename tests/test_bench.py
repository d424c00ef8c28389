"""The timing helpers: alternating blocks, interleaving, statistics, and the benchmark's early environment."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

from gearshift.bench import QUIET_POOLS, summarize, time_blocks, time_interleaved


def test_interleaved_rounds_and_stats():
    calls = []
    times = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, repeat=5)
    assert calls == ["a", "b"] * 7  # warm-ups, then one call of each engine per round
    assert [len(v) for v in times.values()] == [5, 5]
    stats = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert stats["median_ms"] == 3.0 and 4.0 < stats["p90_ms"] < 100.0 and stats["runs"] == 5


def test_benchmark_environment_matches_library():
    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "gearshift_quiet.py"
    spec = importlib.util.spec_from_file_location("gearshift_quiet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.QUIET == QUIET_POOLS


def test_blocks_alternate_engines_with_their_own_warmup():
    calls = []
    times = time_blocks({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, warmup=2, repeat=5, rounds=2)
    assert calls == (["a"] * 5 + ["b"] * 5) * 2  # per round: 2 warm-ups + a block of 3, per engine in turn
    assert [len(v) for v in times.values()] == [6, 6]  # at least `repeat` timed calls each


def test_one_timing_helper_with_labelled_modes():
    from gearshift.runtime.timing import MODES, time_engines

    calls = []
    engines = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    assert set(time_engines(engines, mode="blocks", warmup=0, repeat=8)) == {"a", "b"}
    assert calls[:2] == ["a", "a"]  # back to back within a block
    calls.clear()
    time_engines(engines, mode="interleaved", warmup=0, repeat=2)
    assert calls == ["a", "b", "a", "b"]
    calls.clear()
    time_engines(engines, mode="alone", warmup=0, repeat=2)
    assert calls == ["a", "a", "b", "b"]
    assert set(MODES) == {"blocks", "interleaved", "alone"}
    with pytest.raises(ValueError, match="unknown timing mode 'pairs'"):
        time_engines(engines, mode="pairs")
