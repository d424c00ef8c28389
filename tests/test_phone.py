"""Whole ARM artifacts in the emulated aarch64 phone (runtime/emulated.py: Debian arm64 + TVM's aarch64
wheels under qemu-user), against the same model built for this machine.

Every structure compiled for arm-a76 and arm-a53 runs whole there (TVM's runtime, the Relax VM, the
weights, the level switch); outputs must match the host build within 1e-4 abs / 1e-3 rel, as
everywhere. The tier is marked `arm` (`make test-arm` runs it alone). Without the phone's root
(`make arm-env`) these tests skip, except where GEARSHIFT_REQUIRE_ARM is set (`make test` sets it),
where they fail: CI never passes by skipping them. Timings under emulation mean nothing; none is checked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_close, start_rpc, wait_registered
from test_rt3_levels import SPARSITIES, X, levels_doc, mlp_model, reference

import gearshift
from gearshift.cli import main
from gearshift.errors import InputError
from gearshift.frontend.examples import mlp, small_cnn
from gearshift.frontend.load import export_torch
from gearshift.levels_compiler import compile_levels, save_levels
from gearshift.relay_passes.levels import parse_levels
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.runtime.emulated import find_root, run_python

pytestmark = pytest.mark.arm

TARGETS = ("arm-a76", "arm-a53")
RNG = np.random.default_rng(21)
MLP_X = RNG.standard_normal((3, 64)).astype(np.float32)
CNN_X = RNG.standard_normal((1, 3, 20, 20)).astype(np.float32)
# One small model per structure: (model, input, sparsity, form)
STRUCTURES = {
    "dense": ("mlp", "dense", "baked"),
    "bsr-baked": ("mlp", "bsr:0.8:4x1", "baked"),
    "bsr-runtime": ("mlp", "bsr:0.8:4x1", "runtime"),
    "block-patterns": ("mlp", "pattern:4:0.5:4x4:8", "baked"),
    "pattern-conv": ("cnn", "pattern:4:0.5", "baked"),
    "circulant": ("mlp", "circulant:8", "baked"),
}


@pytest.fixture(scope="module")
def phone():
    try:
        return find_root()
    except InputError as err:
        if os.environ.get("GEARSHIFT_REQUIRE_ARM"):
            pytest.fail(f"GEARSHIFT_REQUIRE_ARM is set but {err}")
        pytest.skip(str(err))


def in_phone(phone, script: str, *args: str, timeout: float = 600) -> str:
    """Run a Python script in the emulated phone; its stdout, or a failure with its stderr."""
    done = run_python(["-c", textwrap.dedent(script), *args], root=phone, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


RUN_ALL = """
    import json, platform, sys
    from pathlib import Path
    from gearshift.runtime import Session
    from gearshift.runtime.device import read_npz, save_npz
    assert platform.machine() == "aarch64", platform.machine()
    for artifact, inputs, output in json.loads(sys.argv[1]):
        save_npz(Path(output), Session(artifact).run(read_npz(Path(inputs))))
"""


@pytest.fixture(scope="module")
def structures_run(phone, tmp_path_factory):
    """Every structure built for the host and both ARM targets; the ARM ones run in one phone process."""
    work = tmp_path_factory.mktemp("structures")
    models = {"mlp": (export_torch(mlp((64, 96, 40)), {"x": MLP_X}), {"x": MLP_X}),
              "cnn": (export_torch(small_cnn(8), {"image": CNN_X}), {"image": CNN_X})}
    for name, (_, feeds) in models.items():
        np.savez(work / f"{name}.npz", **feeds)
    jobs, host = [], {}
    for structure, (model, spec, form) in STRUCTURES.items():
        proto, feeds = models[model]
        plan = SparsityPlan.parse(spec, [], form)
        host_art = gearshift.save(gearshift.compile_model(proto, "host", sparsity=plan), work / f"{structure}-host")
        host[structure] = gearshift.Session(host_art).run(feeds)
        for target in TARGETS:
            art = gearshift.save(gearshift.compile_model(proto, target, sparsity=plan), work / f"{structure}-{target}")
            jobs.append([str(art.path), str(work / f"{model}.npz"), str(work / f"{structure}-{target}.npz")])
    in_phone(phone, RUN_ALL, json.dumps(jobs))
    return work, host


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_structure_runs_whole_in_the_phone(structures_run, structure, target):
    work, host = structures_run
    with np.load(work / f"{structure}-{target}.npz") as got:
        assert set(got.files) == set(host[structure])
        for name, expected in host[structure].items():
            assert_close(got[name], expected)


def test_huggingface_bert_at_80_percent_bsr_runs_in_the_phone(phone, tmp_path, capfd):
    """A real exported transformer (HuggingFace BertModel, padding in the attention mask), 80 %
    block-sparse, compiled for arm-a76 and run by `gearshift run` as a user would."""
    transformers = pytest.importorskip("transformers")
    import torch

    from gearshift.frontend.torch_compat import make_torchvision_importable

    make_torchvision_importable()  # transformers' BertModel imports torchvision

    config = transformers.BertConfig(vocab_size=1000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=512, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()
    mask = np.ones((2, 32), np.int64)
    mask[1, 20:] = 0
    feeds = {"input_ids": RNG.integers(1, 1000, (2, 32)).astype(np.int64), "attention_mask": mask}
    (tmp_path / "bert.onnx").write_bytes(
        export_torch(model, feeds, output_names=["last_hidden_state"]).SerializeToString())
    np.savez(tmp_path / "in.npz", **feeds)
    for target in ("host", "arm-a76"):
        assert main(["compile", str(tmp_path / "bert.onnx"), "-t", target, "-o", str(tmp_path / target),
                     "--sparsity", "bsr:0.8"]) == 0
        assert main(["run", str(tmp_path / target), "-i", str(tmp_path / "in.npz"),
                     "-o", str(tmp_path / f"{target}.npz")]) == 0
    assert "emulated aarch64 (qemu-user): results are real, timings are not" in capfd.readouterr().err
    with np.load(tmp_path / "arm-a76.npz") as arm, np.load(tmp_path / "host.npz") as here:
        assert np.abs(arm["last_hidden_state"] - here["last_hidden_state"]).max() < 1e-4
        assert_close(arm["last_hidden_state"], here["last_hidden_state"])


RT3 = """
    import json, sys
    import numpy as np
    from gearshift.runtime import Session
    from gearshift.runtime.dvfs import level_table, levels_of, load_profile
    from gearshift.runtime.governor import Governor, Trace, TraceSource
    artifacts, measured, deadline, out = json.loads(sys.argv[1])
    measurements = {lv: {float(f): ms for f, ms in points.items()} for lv, points in measured.items()}
    x = np.load(out + "/x.npy")
    profile = load_profile("sd855-gold")
    result = {}
    for form, path in artifacts.items():
        session = Session(path)
        levels = {}
        for name in session.levels:
            session.switch(name)
            levels[name] = session.run({"x": x})["y"]
            np.save(f"{out}/{form}-{name}.npy", levels[name])
        table = level_table(levels_of(session.artifact.manifest, profile, measurements), profile, deadline)
        trace = Trace((0.0, 1.0, 2.0, 3.0), (2419.0, 1497.0, 826.0, 2419.0), "steps")
        now = [0.0]
        governor = Governor(session, table, TraceSource(trace, clock=lambda: now[0], loop=False))
        steps = []
        for t in (0.5, 1.5, 2.5, 3.5):
            now[0] = t
            level = governor.step()
            same = bool(np.array_equal(session.run({"x": x})["y"], levels[level]))
            steps.append([trace.at(t), level, same])
        result[form] = {"steps": steps, "switches": session.switches}
    print(json.dumps(result))
"""


def test_rt3_artifact_switches_levels_in_the_phone(phone, tmp_path):
    """RT3 levels for arm-a76 in both forms: each level computes its pruned function there, and the
    governor replaying a trace switches to the level the table picks (the most accurate that meets
    the deadline, from the accuracy proxy in the manifest)."""
    from gearshift.runtime.dvfs import level_table, levels_of, load_profile

    artifacts = {form: str(save_levels(compile_levels(mlp_model(), parse_levels(levels_doc(form)), "arm-a76",
                                                      calibration={"x": X}), tmp_path / form).path)
                 for form in ("runtime", "baked")}
    # Device latencies (ms at 2419 MHz, scaling with 1/f) such that as the clock drops only sparser
    # levels meet the 1 ms deadline.
    at_max = {"l50": 0.8, "l70": 0.6, "l85": 0.45, "l93": 0.3}
    measurements = {name: {mhz: ms * 2419 / mhz for mhz in (2419, 1497, 826)} for name, ms in at_max.items()}
    np.save(tmp_path / "x.npy", X)
    result = json.loads(in_phone(phone, RT3, json.dumps([artifacts, measurements, 1.0, str(tmp_path)])))
    profile = load_profile("sd855-gold")
    manifest = gearshift.open_artifact(artifacts["baked"]).manifest
    table = level_table(levels_of(manifest, profile, measurements), profile, 1.0)
    expected_levels = [table.level_for(mhz) for mhz in (2419, 1497, 826, 2419)]
    assert expected_levels == ["l50", "l70", "l93", "l50"]  # accuracy first, as long as the deadline holds
    for form in ("runtime", "baked"):
        assert [s[1] for s in result[form]["steps"]] == expected_levels
        assert all(s[2] for s in result[form]["steps"]), "an inference ran another level than the active one"
        for name, sparsity in SPARSITIES.items():
            assert_close(np.load(tmp_path / f"{form}-{name}.npy"), reference(sparsity))


@pytest.fixture(scope="module")
def phone_server(phone):
    """A tracker here and the emulated phone's RPC server (`gearshift device serve`) registered with it."""
    address, stop_tracker = start_rpc("unused", servers=0)
    server = subprocess.Popen([sys.executable, "-m", "gearshift.cli", "device", "serve", "--tracker", address,
                               "--key", "emulated-phone", "--host", "127.0.0.1", "--port", "9500"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    if not wait_registered(address, "emulated-phone", timeout=180, alive=lambda: server.poll() is None):
        server.kill()
        stop_tracker()
        pytest.fail(f"the emulated phone never registered: {server.stdout.read()[-2000:]}")
    yield address
    os.killpg(server.pid, 15)
    server.wait(timeout=30)
    stop_tracker()


def test_measure_and_tune_over_rpc_against_the_phone(phone_server, tmp_path, capsys):
    """`gearshift measure --rpc` and `gearshift tune --rpc` get their figures from the emulated phone
    through a local tracker."""
    from test_tune import FC, FC_SPEC

    arm = save_levels(compile_levels(mlp_model(), parse_levels(levels_doc("runtime")), "arm-a76",
                                     calibration={"x": X}), tmp_path / "arm")
    out = tmp_path / "m.json"
    assert main(["measure", str(arm.path), "--mhz", "2419", "--rpc", phone_server, "--key", "emulated-phone",
                 "--repeat", "3", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert set(doc) == set(SPARSITIES) and all(doc[level]["2419"] > 0 for level in doc)
    assert "emulated aarch64 (qemu-user): results are real, timings are not" in capsys.readouterr().err
    (tmp_path / "fc.onnx").write_bytes(FC.SerializeToString())
    assert main(["tune", str(tmp_path / "fc.onnx"), "-t", "arm-a76", "--db", str(tmp_path / "db"), "--trials", "3",
                 "--sparsity", FC_SPEC, "--rpc", phone_server, "--key", "emulated-phone", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_trials"] == 3 and report["device"].startswith("1 device(s) with key emulated-phone")
    assert "timings are not" in report["device"]
    assert report["tasks"][0]["tuned_ms"] > 0


def test_the_phones_side_imports_no_compiler():
    """What runs on a phone (`gearshift.runtime.device`) needs TVM's runtime, numpy and safetensors only."""
    code = ("import sys, gearshift.runtime.device, gearshift.runtime.governor, gearshift.runtime.dvfs; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'torch', 'onnxruntime', 'xgboost') "
            "or m.startswith(('gearshift.compiler', 'gearshift.frontend', 'gearshift.relay_passes', "
            "'gearshift.schedules'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_arm_artifact_without_the_phone_names_make_arm_env(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GEARSHIFT_ARM_ROOT", str(tmp_path / "nowhere"))
    built = gearshift.compile_model(export_torch(mlp((8, 4)), {"x": np.zeros((1, 8), np.float32)}), "arm-a76")
    gearshift.save(built, tmp_path / "art")
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 8), np.float32))
    assert main(["run", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz")]) == 2
    err = capsys.readouterr().err
    assert "run `make arm-env`" in err and len(err.strip().splitlines()) == 1


def test_opencl_artifact_says_why_the_phone_cannot_run_it(phone, mlp_onnx, tmp_path):
    """A Mali artifact in a phone whose TVM runtime has no OpenCL (PyPI's aarch64 wheel): one line, no traceback."""
    art = gearshift.compile(mlp_onnx, "mali-g76", tmp_path / "mali")
    out = in_phone(phone, """
        import sys
        from gearshift.errors import TargetError
        from gearshift.runtime import Session
        try:
            Session(sys.argv[1])
        except TargetError as err:
            print("refused:", err)
    """, str(art.path))
    assert "refused:" in out and "built without OpenCL" in out and "check-gpu" in out
