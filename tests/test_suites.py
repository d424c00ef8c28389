"""gearshift bench: structures project to what they claim, a case checks every peer's output before
timing it (a wrong engine is refused, by name), the report and the plots come from the results, the
README's section is replaced in place, the accuracy suite pools as the model card says, and the
whole command runs end to end (the RT3 suite)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gearshift.cli.main import main
from gearshift.errors import InputError
from gearshift.suites import engines as E
from gearshift.suites import kernels, plots, report
from gearshift.suites import structures as S
from gearshift.suites.run import run_bench


def test_structures_keep_the_density_they_name():
    w = np.random.default_rng(0).standard_normal((128, 64)).astype(np.float32)
    for structure, density in ((S.bsr(0.2), 0.2), (S.bsr(0.25, (4, 4)), 0.25), (S.block_patterns(0.25), 0.25)):
        assert (S.project(structure, w) != 0).mean() == pytest.approx(density, abs=0.01), structure.label
    circ = S.project(S.circulant_blocks(8), w)
    assert np.allclose(S.project(S.circulant_blocks(8), circ), circ, atol=1e-6)  # projecting twice changes nothing
    conv = S.project(S.pattern_conv(0.5), np.random.default_rng(1).standard_normal((16, 8, 3, 3)))
    assert (conv != 0).mean() == pytest.approx(4 / 9 * 0.5, abs=0.02)
    assert S.fits(S.bsr(0.2), (128, 64)) and not S.fits(S.bsr(0.2), (120, 64)) and not S.fits(S.pattern_conv(0.5), (8, 8))
    assert S.bsr(0.1).ideal == pytest.approx(10) and S.circulant_blocks(16).ideal == 8


def _raises():
    raise RuntimeError("kernel launch failed\n  at some C++ frame")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    """Two real cases (every peer built for real, plain TVM included at this size), plus an engine
    that computes the wrong thing."""
    work = tmp_path_factory.mktemp("bench")
    out = []
    for structure in (S.bsr(0.25), S.circulant_blocks(8)):
        case = kernels._matmul((64, 128), structure, work, None, lambda _m: None)
        case.add(E.Engine("broken", lambda: np.zeros((kernels.ROWS, 128), np.float32)))
        case.add(E.Engine("raises", _raises))
        out.append(case.run(repeat=3))
    return out


def test_every_peer_is_checked_then_timed_or_says_why(rows):
    bsr, circ = rows
    e = bsr["engines"]
    for name in ("onnxruntime", "gearshift", "gearshift dense", "torch", "plain TVM"):
        assert e[name]["relative_error"] < 1e-5 and e[name]["median_ms"] > 0 and e[name]["ratio_vs_onnxruntime"] > 0, name
    assert "output differs from ONNX Runtime" in e["broken"]["skipped"] and "median_ms" not in e["broken"]
    assert e["raises"]["skipped"] == "failed on its first call: RuntimeError: kernel launch failed"
    assert "other weights" in e["torch BSR"]["note"] and e["torch BSR"]["median_ms"] > 0  # 16x1: torch takes 16x16
    assert circ["engines"]["torch BSR"]["skipped"] == "not a block-sparse structure"
    assert e["gearshift"]["facts"]["sparse_layers"] == 1 and e["gearshift"]["facts"]["artifact_bytes"] > 0
    assert bsr["ideal"] == 4 and bsr["family"] == "bsr 16x1"
    big = E.plain_tvm(bsr and kernels.matmul_model(np.ones((768, 3072), np.float32), np.ones(768, np.float32)),
                      {"x": np.ones((128, 3072), np.float32)}, 2 * 128 * 3072 * 768)
    assert big.call is None and "skipped above 300 MFLOP" in big.skipped and big.facts == {"mflop": 604}


def test_report_and_plots_come_from_the_results(rows, tmp_path):
    results = {"machine": {"cpu": "test cpu", "isa": "AVX2", "cores": 2, "threads": 2, "fp32_peak_gflops": None,
                           "tvm": "t", "onnxruntime": "o", "torch": "p"},
               "date": "today", "quick": True, "timing": {"description": "blocks", "repeat": 3},
               "suites": {"kernels": [*rows, {"case": "unbuildable", "error": "the exporter refused it", "engines": {},
                                              "family": "bsr 16x1"}]},
               "seconds": {"kernels": 1.0, "total": 1.0}}
    written = plots.write_all(results, tmp_path)
    assert written == ["kernels-density.png", "kernels-circulant.png"]
    assert all((tmp_path / p).stat().st_size > 10_000 for p in written)
    text = report.markdown(results)
    g = rows[0]["engines"]
    assert f"{rows[0]['case']} | {g['onnxruntime']['median_ms']:.3f} | {g['gearshift']['median_ms']:.3f}" in text
    assert "broken: output differs" in text and "not measured (x86 only)" in text
    assert "| unbuildable | not built: the exporter refused it |" in text
    assert "bsr 16x1" in report.summary(results)


def test_readme_section_is_replaced_in_place(tmp_path, capsys):
    report_md = "# gearshift bench\n\nMachine: X\nTiming: Y\n\n## Models\n\n| a | b |\n|---|---|\n| 1 | - |\n\nmore\n"
    (tmp_path / "report.md").write_text(report_md)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench-results:begin -->\nold\n<!-- bench-results:end -->\nrest\n")
    assert main(["readme-results", str(tmp_path / "report.md"), str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- bench-results:begin -->\nMachine: X\nTiming: Y\n\n| a |\n| --- |\n| 1 |\n")
    assert "old" not in text and text.endswith("<!-- bench-results:end -->\nrest\n")
    readme.write_text("no markers\n")
    assert main(["readme-results", str(tmp_path / "report.md"), str(readme)]) == 2
    assert "bench-results:begin" in capsys.readouterr().err and readme.read_text() == "no markers\n"


def test_unknown_suite_and_target_are_named(tmp_path, capsys, monkeypatch):
    with pytest.raises(InputError, match="unknown suite 'speed'"):
        run_bench("speed", tmp_path)
    from gearshift.bench import QUIET_POOLS

    for key, value in QUIET_POOLS.items():  # the command would otherwise restart this process with them
        monkeypatch.setenv(key, value)
    assert main(["bench", "--suite", "rt3", "--target", "arm-a76", "-o", str(tmp_path)]) == 2
    assert "runs every peer on this machine" in capsys.readouterr().err


def test_accuracy_pooling_matches_sentence_transformers():
    import torch

    from gearshift.frontend.torch_compat import make_torchvision_importable
    from gearshift.suites.accuracy import SENTENCES, model_dir

    make_torchvision_importable()  # transformers imports torchvision
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer, BertModel

    path = model_dir()
    theirs = SentenceTransformer(str(path), device="cpu").encode(SENTENCES[:4])
    batch = AutoTokenizer.from_pretrained(path)(SENTENCES[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = BertModel.from_pretrained(path).eval()(**batch).last_hidden_state.numpy()
    mask = batch["attention_mask"].numpy()[..., None]
    ours = (hidden * mask).sum(1) / mask.sum(1)
    ours /= np.linalg.norm(ours, axis=1, keepdims=True)
    assert np.abs(ours - theirs).max() < 1e-5


def test_bench_command_end_to_end(tmp_path):
    """The real command in a fresh process (it restarts itself with quiet thread pools)."""
    out = tmp_path / "bench"
    run = subprocess.run([sys.executable, "-m", "gearshift.cli", "bench", "--suite", "rt3", "--quick", "--repeat", "4",
                          "-o", str(out)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    levels = results["suites"]["rt3"]["levels"]
    assert list(levels) == ["accurate", "balanced", "fast"] and all(lv["median_ms"] > 0 for lv in levels.values())
    assert results["suites"]["rt3"]["governor"]["switches"] >= 2 and "simulated" in results["suites"]["rt3"]
    assert results["plots"] == ["rt3-trace.png"] and (out / "rt3-trace.png").stat().st_size > 10_000
    assert "## RT3" in (out / "report.md").read_text() and "battery-life gain" in run.stdout
