"""RT3 levels: compile once with several levels, switch at run time, stress, refuse bad artifacts."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from conftest import start_rpc

import gearshift
from gearshift.errors import ArtifactError, InputError
from gearshift.levels_compiler import compile_levels, save_levels
from gearshift.relay_passes.levels import parse_levels
from gearshift.compress.blocks import project
from conftest import assert_close

RNG = np.random.default_rng(5)
M, K, H = 16, 64, 128
SPARSITIES = {"l50": 0.5, "l70": 0.7, "l85": 0.85, "l93": 0.93}
W1 = (RNG.standard_normal((K, H)) / 8).astype(np.float32)
B1 = RNG.standard_normal(H).astype(np.float32)
W2 = (RNG.standard_normal((H, K)) / 11).astype(np.float32)
B2 = RNG.standard_normal(K).astype(np.float32)
X = RNG.standard_normal((M, K)).astype(np.float32)


def mlp_model():
    nodes = [helper.make_node("MatMul", ["x", "fc1.weight"], ["h0"], name="fc1"),
             helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]), helper.make_node("Relu", ["h1"], ["h2"]),
             helper.make_node("MatMul", ["h2", "fc2.weight"], ["y0"], name="fc2"),
             helper.make_node("Add", ["y0", "fc2.bias"], ["y"])]
    inits = [numpy_helper.from_array(a, n) for a, n in [(W1, "fc1.weight"), (B1, "fc1.bias"), (W2, "fc2.weight"),
                                                        (B2, "fc2.bias")]]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, K])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [M, K])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def reference(sparsity: float) -> np.ndarray:
    """The level's function in float64: each weight's transpose pruned in 16x1 blocks, as the pass does."""
    w1 = project(np.ascontiguousarray(W1.T), 16, 1, sparsity).T.astype(np.float64)
    w2 = project(np.ascontiguousarray(W2.T), 16, 1, sparsity).T.astype(np.float64)
    return np.maximum(X @ w1 + B1, 0) @ w2 + B2


def levels_doc(form: str, block: str = "16x1") -> dict:
    return {"form": form, "levels": [{"name": n, "sparsity": f"bsr:{s}:{block}"} for n, s in SPARSITIES.items()]}


@pytest.fixture(scope="module", params=["runtime", "baked"])
def artifact(request, tmp_path_factory):
    built = compile_levels(mlp_model(), parse_levels(levels_doc(request.param)), "host",
                           calibration={"x": X}, repeat=3)
    return save_levels(built, tmp_path_factory.mktemp(request.param) / "art", name="mlp")


def test_every_level_computes_its_pruned_function(artifact):
    session = gearshift.Session(artifact)
    assert session.levels == list(SPARSITIES) and session.level == "l50"
    for name, sparsity in SPARSITIES.items():
        assert session.switch(name) in SPARSITIES
        assert session.level == name
        assert_close(session.run({"x": X})["y"], reference(sparsity))


def test_manifest_records_each_level(artifact):
    m = artifact.manifest
    assert m["rt3"]["order"] == list(SPARSITIES)
    dense = m["rt3"]["dense_reference"]
    assert dense["latency_ms"] > 0 and dense["error"] < 1e-5  # the dense build agrees with ONNX Runtime
    errors = []
    for name, sparsity in SPARSITIES.items():
        level = m["levels"][name]
        assert level["density"] == pytest.approx(1 - sparsity, abs=0.02)
        assert level["latency_ms"] > 0 and level["sparse_layers"] == 2
        expected = reference(sparsity)
        dense_out = reference(0.0)
        assert level["error"] == pytest.approx(np.linalg.norm(expected - dense_out) / np.linalg.norm(dense_out), rel=1e-3)
        errors.append(level["error"])
    assert errors == sorted(errors)  # sparser levels lose more
    if m["rt3"]["form"] == "runtime":  # one library, every level's arrays of one shape
        assert not any("library" in e for e in m["levels"].values())
        assert len({e["weight_bytes"] for e in m["levels"].values()}) == 1
    else:
        first, *rest = SPARSITIES  # the first level runs lib.so, the others their own library
        assert "library" not in m["levels"][first]
        assert all(m["levels"][n]["library"] == f"levels/{n}.so" for n in rest)


def test_levels_that_need_different_code_are_refused_in_the_runtime_form():
    doc = {"form": "runtime", "levels": [{"name": "a", "sparsity": "bsr:0.5:16x1"},
                                         {"name": "b", "sparsity": "bsr:0.9:4x4"}]}
    with pytest.raises(InputError, match="different code"):
        compile_levels(mlp_model(), parse_levels(doc), "host")


@pytest.mark.parametrize("doc,msg", [
    ({}, "at least one level"), ({"levels": []}, "at least one level"),
    ({"levels": [{"name": "a", "sparsity": "bsr:0.5"}], "extra": 1}, "unknown keys"),
    ({"form": "fast", "levels": [{"name": "a", "sparsity": "bsr"}]}, "form 'fast'"),
    ({"levels": [{"name": "a/b", "sparsity": "bsr"}]}, "needs a name"),
    ({"levels": [{"name": "a", "sparsity": "bsr"}, {"name": "a", "sparsity": "dense"}]}, "appears twice"),
    ({"levels": [{"name": "a", "sparsity": "bsr:2"}]}, "level 'a': sparsity"),
    ({"levels": [{"name": "a"}]}, "needs \"sparsity\""),
    ({"levels": [{"name": "a", "sparsity": "bsr", "speed": 1}]}, "unknown keys"),
])
def test_bad_levels_files(doc, msg):
    with pytest.raises(InputError, match=msg):
        parse_levels(doc, "levels.json")


def test_session_refuses_an_unknown_level(artifact):
    session = gearshift.Session(artifact)
    with pytest.raises(InputError, match="no level 'l99'.*l50, l70"):
        session.switch("l99")
    with pytest.raises(InputError, match="no level"):
        gearshift.Session(artifact, level="nope")


def _copy(artifact, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(artifact.path, dst)
    return dst


def test_missing_or_tampered_level_is_refused(artifact, tmp_path):
    path = _copy(artifact, tmp_path)
    level_file = path / "levels" / "l85.safetensors"
    data = bytearray(level_file.read_bytes())
    data[-5] ^= 0xFF
    level_file.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="l85.safetensors does not match its sha256"):
        gearshift.Session(path)
    level_file.unlink()
    with pytest.raises(ArtifactError, match="l85.safetensors is missing"):
        gearshift.Session(path)
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["files"]["levels/l85.safetensors"]
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="no hash recorded for levels/l85.safetensors"):
        gearshift.open_artifact(path)


def test_tampered_level_library_is_refused(artifact, tmp_path):
    if artifact.manifest["rt3"]["form"] != "baked":
        pytest.skip("the runtime form has one library, covered by the artifact tests")
    path = _copy(artifact, tmp_path)
    with open(path / "levels" / "l70.so", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="l70.so has .* bytes"):
        gearshift.Session(path)


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


RSS_BOUND_MB = 32  # growth allowed over the stress run, after a warm-up of every thread and level


def test_stress_switching_under_concurrent_inference(artifact):
    """8 threads infer continuously while another switches levels 1,000 times: every output is
    exactly one level's output (no torn weights), nothing raises, resident memory stays bounded
    (benchmarks/soak.py is the long version)."""
    session = gearshift.Session(artifact)
    expected = {}
    for name in SPARSITIES:
        session.switch(name)
        expected[name] = session.run({"x": X})["y"].copy()
    stop, errors, counts, seen = threading.Event(), [], [0] * 8, set()

    def infer(i: int) -> None:
        try:
            while not stop.is_set():
                y = session.run({"x": X})["y"]
                match = [n for n, e in expected.items() if np.array_equal(y, e)]
                if len(match) != 1:
                    raise AssertionError(f"output matches {len(match)} levels' outputs")
                seen.add(match[0])
                counts[i] += 1
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=infer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    while min(counts) < 5 and not errors:  # every thread warmed up (its VM and buffers made)
        threading.Event().wait(0.01)
    rss0 = _rss_mb()
    names = list(SPARSITIES)
    pause = threading.Event()
    for i in range(1000):
        session.switch(names[i % len(names)])
        pause.wait(0.0005)  # let inferences run between switches
    done = sum(counts)
    while sum(counts) < done + 200 and not errors:
        threading.Event().wait(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert len(seen) >= 2 and session.switches >= 1000 + len(SPARSITIES)
    assert _rss_mb() - rss0 < RSS_BOUND_MB


def test_sessions_open_and_close_without_leaks(artifact):
    """Opening and dropping sessions leaves no file descriptor, thread or memory behind."""
    import gc

    def fds() -> int:
        return len(os.listdir(f"/proc/{os.getpid()}/fd"))

    gearshift.Session(artifact).run({"x": X})  # warm: the library is loaded and cached once
    gc.collect()
    before = (fds(), threading.active_count(), _rss_mb())
    for _ in range(30):
        session = gearshift.Session(artifact)
        session.run({"x": X})
        del session
    gc.collect()
    assert (fds(), threading.active_count()) == before[:2] and _rss_mb() - before[2] < RSS_BOUND_MB


@pytest.fixture(scope="module")
def rpc_tracker():
    """A real TVM RPC tracker and server on this machine (what a phone would register with)."""
    address, stop = start_rpc("gearshift-test")
    yield address
    stop()


def test_measure_levels_over_rpc_and_here(artifact, rpc_tracker, tmp_path):
    from gearshift.runtime.dvfs import levels_of, load_profile
    from gearshift.runtime.measure import measure_levels, merge

    remote = measure_levels(artifact, rpc=rpc_tracker, key="gearshift-test", repeat=3)
    local = measure_levels(artifact, repeat=3)
    assert set(remote) == set(local) == set(SPARSITIES) and all(v > 0 for v in [*remote.values(), *local.values()])
    path = tmp_path / "m.json"
    merge(path, 2419, local)
    doc = merge(path, 1497, {k: v * 1.5 for k, v in local.items()})
    assert set(doc["l50"]) == {"2419", "1497"}
    measurements = {lv: {float(f): ms for f, ms in pts.items()} for lv, pts in doc.items()}
    fitted = {lv.name: lv.latency for lv in levels_of(artifact.manifest, load_profile("sd855-gold"), measurements)}
    assert fitted["l50"].at(1497) == pytest.approx(local["l50"] * 1.5, rel=1e-6)
    with pytest.raises(InputError, match="bad --rpc"):
        measure_levels(artifact, rpc="nohost", key="k")
    with pytest.raises(InputError, match="no device with key .absent.; keys: gearshift-test"):
        measure_levels(artifact, rpc=rpc_tracker, key="absent")


@pytest.mark.parametrize("block", ["4x4:8", "16x4:32"])
def test_block_pattern_levels_in_both_forms_agree(block, tmp_path):
    """RT3's named pattern sets: levels of block patterns (4 patterns of 8 in 4x4 blocks, or column
    patterns keeping 2 of 4 columns in 16x4 blocks), connectivity 50 / 75 %. The runtime form (padded
    structure arrays) and the baked form (constants) must compute the same."""
    outs = {}
    for form in ("runtime", "baked"):
        doc = {"form": form, "levels": [{"name": "p50", "sparsity": f"pattern:4:0.5:{block}"},
                                        {"name": "p75", "sparsity": f"pattern:4:0.75:{block}"}]}
        art = save_levels(compile_levels(mlp_model(), parse_levels(doc), "host", calibration={"x": X}, repeat=2),
                          tmp_path / form)
        assert [art.manifest["levels"][n]["density"] for n in ("p50", "p75")] == [0.25, 0.125]
        session = gearshift.Session(art)
        for name in ("p50", "p75"):
            session.switch(name)
            outs[form, name] = session.run({"x": X})["y"].copy()
    for name in ("p50", "p75"):
        assert_close(outs["runtime", name], outs["baked", name])
    assert not np.allclose(outs["runtime", "p50"], outs["runtime", "p75"])


@pytest.mark.parametrize("form", ["runtime", "baked"])
def test_device_levels_carry_their_accuracy_proxy(form, tmp_path):
    """An ARM artifact's levels get the accuracy proxy computed here (their graphs and weights built
    for the host): the same figure as the host build's, so the level table can pick by accuracy."""
    from gearshift.runtime.artifact import open_artifact
    from gearshift.runtime.dvfs import level_table, levels_of, load_profile

    arm = compile_levels(mlp_model(), parse_levels(levels_doc(form)), "arm-a76", calibration={"x": X})
    host = compile_levels(mlp_model(), parse_levels(levels_doc(form)), "host", calibration={"x": X}, repeat=2)
    for name, sparsity in SPARSITIES.items():
        dense = np.maximum(X @ W1 + B1, 0) @ W2 + B2
        expected = np.linalg.norm(reference(sparsity) - dense) / np.linalg.norm(dense)
        assert arm.info[name]["error"] == pytest.approx(host.info[name]["error"], rel=1e-3, abs=1e-6)
        assert arm.info[name]["error"] == pytest.approx(expected, rel=1e-3)
        assert "latency_ms" not in arm.info[name] and "host" in arm.info[name]["error_measured_on"]
    manifest = open_artifact(save_levels(arm, tmp_path / "arm", name="mlp").path).manifest
    profile = load_profile("sd855-gold")
    same_speed = {name: {1000.0: 2.0, 2000.0: 1.0} for name in SPARSITIES}  # every level meets the deadline
    table = level_table(levels_of(manifest, profile, same_speed), profile, deadline_ms=5)
    assert {row.level for row in table.rows} == {"l50"}  # the most accurate level, not the sparsest
    del manifest["levels"]["l70"]["error"]
    with pytest.raises(InputError, match="level 'l70' has no accuracy proxy"):
        levels_of(manifest, profile, same_speed)
