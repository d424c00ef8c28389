"""The fuzz targets (fuzz/targets.py) in CI: every stored corpus input, the crashes found so far
(regression-* files) among them, and a few hundred seeded random mutations of each. `make fuzz`
runs the coverage-guided fuzzers (atheris) for longer; this keeps what they found fixed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gearshift.fuzz.targets import TARGETS, run_one

CORPUS = Path(__file__).resolve().parent.parent / "fuzz" / "corpus"


def corpus(target: str) -> list[Path]:
    return sorted(p for p in (CORPUS / target).iterdir() if p.is_file())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_stored_corpus_gives_results_or_named_errors(target):
    files = corpus(target)
    assert files, f"no corpus for {target} (python -m gearshift.fuzz.seeds)"
    for path in files:
        run_one(target, path.read_bytes())  # anything but a GearshiftError escaping is a crash


def test_the_crashes_found_are_in_the_corpus():
    found = sorted(p.parent.name for p in CORPUS.glob("*/regression-*"))
    assert found == ["artifact_manifest", "npz_inputs", "onnx_graph", "vta_config", "vta_stream"]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """Bit flips, truncation, insertion and duplication: the mutations libFuzzer starts with."""
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        choice = int(rng.integers(0, 4))
        if choice == 0 and b:
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        elif choice == 1 and b:
            del b[int(rng.integers(0, len(b))):]
        elif choice == 2:
            i = int(rng.integers(0, len(b) + 1))
            b[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 8)), dtype=np.uint8))
        elif b:
            i, j = sorted(int(v) for v in rng.integers(0, len(b), 2))
            b[j:j] = b[i:j + 1]
    return bytes(b)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_random_mutations_give_results_or_named_errors(target):
    rng = np.random.default_rng(sum(map(ord, target)))
    seeds = [p.read_bytes() for p in corpus(target)]
    for _ in range(150 if target != "onnx_model" else 60):
        run_one(target, mutate(seeds[int(rng.integers(0, len(seeds)))], rng))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_each_fuzzer_runs_briefly_from_the_stored_corpus(target, tmp_path):
    """CI's short coverage-guided run (atheris) of every fuzzer, on a copy of its stored corpus."""
    import shutil
    import subprocess
    import sys

    corpus = tmp_path / target
    shutil.copytree(CORPUS / target, corpus)
    done = subprocess.run([sys.executable, "-m", "gearshift.fuzz.run", target, "--seconds", "2", "--corpus", str(corpus)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "stat::number_of_executed_units" in done.stdout + done.stderr
