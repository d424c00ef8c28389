"""Tuning: every knob setting computes the right answer, the database resumes and rejects bad lines,
a build takes the fastest record, the cost model ranks, and tuning runs across two RPC servers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_close, start_rpc
from test_block_sparse import fc_model
from test_pattern_sparse import conv_model

import gearshift
from gearshift.autotune import autotune, sparse_tasks
from gearshift.cli import main
from gearshift.errors import InputError
from gearshift.relay_passes.pattern_sparse import reference_conv
from gearshift.schedules import knobs
from gearshift.schedules.targets import get_target
from gearshift.tune.database import Database, target_key
from gearshift.tune.model import CostModel, spearman
from gearshift.tune.runner import compile_kernel

RNG = np.random.default_rng(11)
HOST = get_target("host")
FC = fc_model(RNG.standard_normal((512, 256)).astype(np.float32), None, 32)
FC_SPEC = "bsr:0.9:16x1"
CONV = conv_model(RNG.standard_normal((16, 16, 3, 3)).astype(np.float32), 14, 14)
CONV_SPEC = "pattern:4:0.5"


def _run(task, setting):
    lib, args = compile_kernel(task, setting, HOST)
    import tvm

    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    return args, tensors[-1].numpy()


@pytest.mark.parametrize("target", ["x86-avx2", "x86-avx512", "arm-a76"])
def test_the_space_holds_the_rules_choice(target):
    for model, spec in [(FC, FC_SPEC), (CONV, CONV_SPEC)]:
        (task,) = sparse_tasks(model, get_target(target), sparsity=spec)
        space = [knobs.canonical(s) for s in knobs.space(task)]
        assert knobs.canonical(task.payload["default"]) in space and len(space) == len(set(space)) > 4


def test_every_bsr_setting_computes_the_layer():
    (task,) = sparse_tasks(FC, HOST, sparsity=FC_SPEC)
    data, indices, indptr = task.payload["arrays"]
    space = knobs.space(task)
    assert {s["along"] for s in space} == {"outputs", "activations"} and any(s["panels"] for s in space)
    picks = [space[i] for i in np.random.default_rng(0).choice(len(space), 8, replace=False)]
    picks += [s for s in space if s["panels"]][:1] + [s for s in space if s["along"] == "activations"][:1]
    m, k, n, r = task.sizes[:4]
    dense = np.zeros((n, k), np.float32)  # W^T rebuilt from the blocks
    for br in range(n // r):
        for q in range(indptr[br], indptr[br + 1]):
            dense[br * r:(br + 1) * r, indices[q]] = data[q, 0]
    for setting in picks:
        (x, *_), y = _run(task, setting)
        assert_close(y, x @ dense.T)


def test_every_pattern_conv_setting_computes_the_layer():
    (task,) = sparse_tasks(CONV, HOST, sparsity=CONV_SPEC)
    space = knobs.space(task)
    assert len({s["group"] for s in space}) > 1
    picks = [space[i] for i in np.random.default_rng(1).choice(len(space), 8, replace=False)]
    for setting in picks:
        (x, *_), y = _run(task, setting)
        expected = reference_conv(x, task.payload["pruned"], (1, 1, 1, 1), 1)
        assert_close(y[:, :, :14, :14], expected.astype(np.float32))


def test_tuning_resumes_and_a_build_takes_the_fastest_record(tmp_path):
    db = tmp_path / "db"
    first = autotune(FC, db=db, trials=5, sparsity=FC_SPEC)
    assert first.new_trials == 5 and first.tasks[0].default_ms is not None
    again = autotune(FC, db=db, trials=5, sparsity=FC_SPEC)
    assert again.new_trials == 0 and again.tasks[0].trials == 5  # resumed: nothing measured twice
    records = Database(db).records
    trials, (final,) = [r for r in records if not r.get("final")], [r for r in records if r.get("final")]
    assert len(trials) == 5 and sum(r["default"] for r in trials) == 1
    fastest = min((r for r in trials if r["ms"]), key=lambda r: r["ms"])["knobs"]
    # the search's winner is measured again against the default: the build takes whichever stayed faster
    default = next(r["knobs"] for r in trials if r["default"])
    assert final["knobs"] in (fastest, default) and final["default"] == (final["knobs"] == default)
    built = gearshift.compile_model(FC, sparsity=FC_SPEC, db=db)
    assert built.report["tuned_kernels"] == [{"kernel": first.tasks[0].label, "knobs": final["knobs"]}]


def test_a_tuned_setting_unlike_the_rules_builds_the_right_model(tmp_path):
    """A record whose knobs differ from the rules' wins: the model built with it still matches ONNX
    Runtime (both structures)."""
    for model, spec in [(FC, FC_SPEC), (CONV, CONV_SPEC)]:
        (task,) = sparse_tasks(model, HOST, sparsity=spec)
        other = next(s for s in knobs.space(task) if knobs.canonical(s) != knobs.canonical(task.payload["default"])
                     and (s.get("rows", 0) % 3 == 1))
        db = Database(tmp_path / task.kind)
        db.add({"target": target_key(HOST), "task": task.key, "kind": task.kind, "knobs": other, "ms": 0.001,
                "default": False})
        artifact = gearshift.compile(model, out_dir=tmp_path / f"{task.kind}-art", sparsity=spec, db=db.path)
        assert artifact.manifest["report"]["tuned_kernels"][0]["knobs"] == other
        # the reference: the same projected weights, compiled without a database (the rules' kernel)
        plain = gearshift.compile_model(model, sparsity=spec)
        session = gearshift.Session(artifact)
        shape = [int(d.dim_value) for d in model.graph.input[0].type.tensor_type.shape.dim]
        x = RNG.standard_normal(shape).astype(np.float32)
        import tvm
        from tvm import relax

        vm = relax.VirtualMachine(plain.executable, tvm.cpu())
        expected = vm["main"](tvm.runtime.tensor(x), *(tvm.runtime.tensor(w) for w in plain.weights.values()))
        got = next(iter(session.run({model.graph.input[0].name: x}).values()))
        assert_close(got, expected.numpy())


def test_a_bad_database_is_named(tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / "gearshift-records.jsonl").write_text('{"target": "t"}\nnot json\n')
    with pytest.raises(InputError, match=r"line 1: field 'task' missing"):
        Database(db)
    (db / "gearshift-records.jsonl").write_text("[1, 2]\n")
    with pytest.raises(InputError, match="line 1: a record must be a JSON object"):
        Database(db)
    with pytest.raises(InputError, match="no tuning database"):
        gearshift.compile_model(FC, sparsity=FC_SPEC, db=tmp_path / "absent")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        Database(tmp_path / "file")


def test_spearman_and_the_cost_model_learn_a_ranking():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [5, 5, 6]) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 1, (200, 3)).tolist()
    speed = [float(np.exp(2 * a - b)) for a, b, _ in rows]  # a made-up law the model must recover
    model = CostModel()
    model.fit(rows[:150], speed[:150])
    assert model.ready and spearman(model.predict(rows[150:]), speed[150:]) > 0.8


def test_levels_in_the_runtime_form_tune_one_kernel_per_layer(tmp_path):
    levels = tmp_path / "levels.json"
    levels.write_text(json.dumps({"form": "runtime", "levels": [{"name": "a", "sparsity": "bsr:0.8:16x1"},
                                                                {"name": "b", "sparsity": "bsr:0.9:16x1"}]}))
    assert len(sparse_tasks(FC, HOST, levels=levels)) == 1
    levels.write_text(json.dumps({"form": "baked", "levels": [{"name": "a", "sparsity": "bsr:0.8:16x1"},
                                                              {"name": "b", "sparsity": "bsr:0.9:16x1"}]}))
    assert len(sparse_tasks(FC, HOST, levels=levels)) == 2


def test_tuning_across_two_rpc_servers_then_compile_from_the_cli(tmp_path, capsys):
    """A real tracker with two servers under one key (a two-phone farm on loopback)."""
    address, stop = start_rpc("gearshift-tune", servers=2)
    model = tmp_path / "fc.onnx"
    model.write_bytes(FC.SerializeToString())
    try:
        code = main(["tune", str(model), "--db", str(tmp_path / "db"), "--trials", "6", "--sparsity", FC_SPEC,
                     "--rpc", address, "--key", "gearshift-tune", "--json"])
    finally:
        stop()
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["new_trials"] == 6 and report["device"].startswith("2 device(s)")
    assert report["tasks"][0]["tuned_ms"] <= report["tasks"][0]["default_ms"]
    assert main(["compile", str(model), "-o", str(tmp_path / "art"), "--sparsity", FC_SPEC,
                 "--db", str(tmp_path / "db")]) == 0
    assert "tuned: 1 of 1 layers" in capsys.readouterr().err
    x = RNG.standard_normal((32, 512)).astype(np.float32)
    got = gearshift.Session(tmp_path / "art").run({"x": x})["y"]
    pruned = gearshift.compile_model(FC, sparsity=FC_SPEC)  # the projected weight, via the plain build
    import tvm
    from tvm import relax

    expected = relax.VirtualMachine(pruned.executable, tvm.cpu())["main"](
        tvm.runtime.tensor(x), *(tvm.runtime.tensor(w) for w in pruned.weights.values())).numpy()
    assert_close(got, expected)
    assert main(["tune", str(model), "--db", str(tmp_path / "db2"), "--key", "k"]) == 2


def test_gpu_targets_and_bad_trials_are_refused(tmp_path):
    with pytest.raises(InputError, match="GPU target"):
        sparse_tasks(FC, get_target("mali-g76"), sparsity=FC_SPEC)
    with pytest.raises(InputError, match="--trials"):
        autotune(FC, db=tmp_path / "db", trials=0, sparsity=FC_SPEC)
    with pytest.raises(InputError, match="does not run on this machine"):
        autotune(FC, "arm-a76", db=tmp_path / "db", trials=2, sparsity=FC_SPEC)


def test_an_isa_this_cpu_lacks_is_refused_before_anything_runs(monkeypatch):
    """Timing AVX-512 code on an AVX2-only CPU would kill the process: the runner refuses it by name
    (the CPU's flags stand in for an AVX2 machine's here)."""
    import gearshift.runtime.cpu as cpu
    from gearshift.tune.runner import LocalRunner

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx", "avx2", "fma", "sse4_2"}))
    with pytest.raises(InputError, match="this CPU lacks avx512f"):
        LocalRunner(get_target("x86-avx512"))
    assert "this machine" in LocalRunner(get_target("x86-avx2")).where


def test_metaschedule_searches_the_dense_kernels_and_a_build_takes_its_schedule_where_it_won(tmp_path):
    """MetaSchedule (XGBoost cost model) on a dense layer; the rule's schedule and MetaSchedule's are
    measured again and the final record names the faster. A final record choosing MetaSchedule makes
    the build use its schedule, and the model still matches ONNX Runtime."""
    from conftest import ort_run

    from gearshift.tune.metaschedule import MS_DIR

    w, b = RNG.standard_normal((64, 48)).astype(np.float32), RNG.standard_normal(48).astype(np.float32)
    model = fc_model(w, b, 16)
    report = autotune(model, db=tmp_path / "db", trials=4, sparsity="dense", metaschedule=True)
    (dense,) = report.tasks
    assert report.new_trials == 4 and autotune(model, db=tmp_path / "db", trials=4, sparsity="dense",
                                               metaschedule=True).new_trials == 0  # resumed
    db = Database(tmp_path / "db")
    (final,) = [r for r in db.records if r.get("final")]
    assert final["kind"] == "dense" and final["knobs"]["schedule"] in ("rule", "metaschedule")
    assert final["default_ms"] > 0 and final["metaschedule_ms"] > 0 and dense.default_ms == final["default_ms"]
    assert (tmp_path / "db" / MS_DIR / "database_tuning_record.json").stat().st_size > 0
    db.add({**{k: v for k, v in final.items() if k != "time"}, "knobs": {"schedule": "metaschedule"}, "default": False})
    built = gearshift.compile(model, out_dir=tmp_path / "art", sparsity="dense", db=tmp_path / "db")
    assert list(built.manifest["report"]["kernels"].values()) == ["MetaSchedule (tuned)"]
    x = RNG.standard_normal((16, 64)).astype(np.float32)
    assert_close(gearshift.Session(built).run({"x": x})["y"], ort_run(model.SerializeToString(), {"x": x})[0])
    with pytest.raises(InputError, match="--metaschedule measures on this machine only"):
        autotune(model, db=tmp_path / "db", trials=4, metaschedule=True, rpc="127.0.0.1:1", key="k")
