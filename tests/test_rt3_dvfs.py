"""RT3 run-time side: profiles, latency model, level table, trace parsing, governor, energy, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gearshift.errors import InputError
from gearshift.cli import main
from gearshift.runtime.dvfs import (LatencyModel, LevelFacts, level_table, load_profile, parse_profile,
                                    profile_names)
from gearshift.runtime.energy import energy_mj, simulate, write_report
from gearshift.runtime.governor import CpufreqSource, Governor, Trace, TraceSource, default_source, read_trace

PROFILE = {"name": "test", "cores": 2, "memory_gbps": 10.0,
           "operating_points": [{"mhz": 500, "mv": 600}, {"mhz": 1000, "mv": 700}, {"mhz": 2000, "mv": 900}],
           "power": {"ceff_nf": 0.3, "leakage_ma": 40, "idle_mw": 10}}


def profile():
    return parse_profile(PROFILE)


def facts(name: str, error: float, compute_ms: float, memory_ms: float = 0.0) -> LevelFacts:
    return LevelFacts(name, error, LatencyModel(compute_ms, memory_ms, 2000.0))


LEVELS = [facts("dense", 0.0, 4.0), facts("l50", 0.1, 2.0), facts("l80", 0.3, 0.8, 0.2), facts("l93", 0.6, 0.3, 0.2)]


def test_shipped_profiles_load_and_are_marked_approximate():
    assert {"sd855-gold", "sd855-silver", "kirin980-big"} <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.approximate and p.source and len(p.points) >= 5
        assert [q.mhz for q in p.points] == sorted(q.mhz for q in p.points)
        top, low = p.points[-1], p.points[0]
        assert p.active_mw(top) > p.active_mw(low) > p.idle_mw_at(low) > 0


@pytest.mark.parametrize("edit,msg", [
    (lambda d: d.pop("cores"), "missing 'cores'"),
    (lambda d: d.update(cores=0), "positive integer"),
    (lambda d: d.update(operating_points=[]), "non-empty list"),
    (lambda d: d["operating_points"][1].update(mv=5000), r"operating point 1: mv 5000"),
    (lambda d: d["operating_points"][0].update(mhz=-1), r"operating point 0: mhz -1"),
    (lambda d: d["operating_points"][2].update(mhz=500), "share a frequency"),
    (lambda d: d["operating_points"][2].update(mv=650), "voltage must not fall"),
    (lambda d: d["power"].pop("ceff_nf"), "power.ceff_nf"),
    (lambda d: d.update(memory_gbps="fast"), "memory_gbps"),
])
def test_profile_validation(edit, msg):
    doc = json.loads(json.dumps(PROFILE))
    edit(doc)
    with pytest.raises(InputError, match=msg):
        parse_profile(doc, "my.json")


def test_unknown_profile_names_the_shipped_ones():
    with pytest.raises(InputError, match="sd855-gold"):
        load_profile("nokia-3310")


def test_power_model():
    p = profile()
    top = p.points[-1]  # 2 cores x (0.3 nF x 0.81 V^2 x 2 GHz + 0.9 V x 40 mA) + 10 mW
    assert p.active_mw(top) == pytest.approx(2 * (0.3e-9 * 0.81 * 2e9 + 0.9 * 0.04) * 1e3 + 10)
    assert p.idle_mw_at(top) == pytest.approx(2 * 0.9 * 40 + 10)
    assert energy_mj(p, top, 3.0, 10.0) == pytest.approx((p.active_mw(top) * 3 + p.idle_mw_at(top) * 7) / 1e3)
    assert energy_mj(p, top, 12.0, 10.0) == pytest.approx(p.active_mw(top) * 12 / 1e3)  # overrun: no idle


def test_latency_model_fit_and_host_split():
    true = LatencyModel(3.0, 0.5, 2000.0)
    mhz = [500, 1000, 1500, 2000]
    model, worst = LatencyModel.fit(mhz, [true.at(f) for f in mhz])
    assert model.compute_ms == pytest.approx(3.0) and model.memory_ms == pytest.approx(0.5) and worst < 1e-9
    noisy = [true.at(f) * (1 + e) for f, e in zip(mhz, [0.02, -0.01, 0.015, -0.02])]
    model, worst = LatencyModel.fit(mhz, noisy)
    assert model.compute_ms == pytest.approx(3.0, rel=0.1) and worst < 0.05
    with pytest.raises(InputError, match="two or more frequencies"):
        LatencyModel.fit([1000], [1.0])
    split = LatencyModel.from_host(2.0, 5_000_000, profile())  # 5 MB at 10 GB/s = 0.5 ms memory-bound
    assert split.memory_ms == pytest.approx(0.5) and split.compute_ms == pytest.approx(1.5)
    assert split.at(1000) == pytest.approx(3.5)


def test_level_table_picks_the_most_accurate_level_meeting_the_deadline():
    table = level_table(LEVELS, profile(), deadline_ms=4.5)
    chosen = {r.mhz: r.level for r in table.rows}
    # at 2000 MHz dense (4.0 ms) fits; at 1000: dense 8, l50 4.0 fits; at 500: l50 8, l80 3.4 fits
    assert chosen == {2000: "dense", 1000: "l50", 500: "l80"}
    assert all(r.meets and r.predicted_ms <= 4.5 for r in table.rows)
    assert table.level_for(1500) == "l50"  # between points: the lower point's level
    assert table.level_for(100) == "l80" and table.level_for(5000) == "dense"


def test_level_table_when_no_level_fits():
    with pytest.raises(InputError, match="no level meets 1 ms at 500 MHz: the fastest, 'l93', is predicted at 1.400 ms"):
        level_table(LEVELS, profile(), deadline_ms=1.0, strict=True)
    table = level_table(LEVELS, profile(), deadline_ms=1.0)
    low = table.rows[0]
    assert low.level == "l93" and not low.meets and low.predicted_ms == pytest.approx(1.4)
    with pytest.raises(InputError, match="positive"):
        level_table(LEVELS, profile(), deadline_ms=0)


@pytest.mark.parametrize("text,msg", [
    ("time_s,mhz\n0,1000\n1,abc\n", "line 3: expected two numbers"),
    ("0,1000\n1,2000,3\n", "line 2: expected two columns"),
    ("0,1000\n2,1000\n1,500\n", "line 3: time 1.0 does not increase"),
    ("0,1000\n1,0\n", "line 2: frequency 0.0 MHz"),
    ("-1,1000\n", "line 1: time -1.0 is negative"),
    ("# only a comment\n", "no rows"),
    ("time_s,mhz\n0,1000\nfoo,bar\n", "line 3"),
])
def test_bad_traces_name_the_line(tmp_path, text, msg):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=msg):
        read_trace(path)


def test_trace_replay(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("# comment\ntime_s,mhz\n0,2000\n1,1000\n\n3,500\n")
    trace = read_trace(path)
    assert trace.times == (0, 1, 3) and trace.duration == pytest.approx(4.5)  # last row: the median step
    assert [trace.at(t) for t in (0, 0.99, 1, 2.5, 3, 100)] == [2000, 2000, 1000, 1000, 500, 500]
    now = [0.0]
    source = TraceSource(trace, speed=2.0, clock=lambda: now[0])
    now[0] = 0.6  # 1.2 s of trace
    assert source.mhz() == 1000 and "simulated" in source.description
    now[0] = 2.3  # 4.6 s: loops to 0.1 s
    assert source.mhz() == 2000


def test_cpufreq_source(tmp_path):
    freq = tmp_path / "cpu0" / "cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_cur_freq").write_text("1804800\n")
    assert CpufreqSource(0, root=tmp_path).mhz() == pytest.approx(1804.8)
    with pytest.raises(InputError, match="no cpufreq"):
        CpufreqSource(3, root=tmp_path)
    if not CpufreqSource.available():  # this machine (a VM): the default source asks for a trace
        with pytest.raises(InputError, match="give a DVFS trace"):
            default_source()


class FakeSession:
    def __init__(self):
        self.level, self.switched = "dense", []

    def switch(self, level):
        self.switched.append(level)
        self.level = level


def test_governor_switches_by_the_table():
    table = level_table(LEVELS, profile(), deadline_ms=4.5)
    trace = Trace((0.0, 1.0, 2.0, 3.0), (2000.0, 1000.0, 500.0, 2000.0))
    now = [0.0]
    session = FakeSession()
    gov = Governor(session, table, TraceSource(trace, clock=lambda: now[0], loop=False))
    for t in (0.0, 0.5, 1.2, 2.5, 3.1):
        now[0] = t
        gov.step()
    assert session.switched == ["l50", "l80", "dense"]
    assert [e[2] for e in gov.events] == ["l50", "l80", "dense"]


def test_governor_thread_runs_and_stops():
    table = level_table(LEVELS, profile(), deadline_ms=4.5)
    session = FakeSession()
    trace = Trace((0.0, 0.02), (500.0, 500.0))
    logs = []
    with Governor(session, table, TraceSource(trace), interval_s=0.001, log=logs.append):
        for _ in range(200):
            if session.switched:
                break
            threading_wait(0.005)
    assert session.switched[:1] == ["l80"] and "replayed" in logs[0]


def threading_wait(seconds: float) -> None:
    import threading

    threading.Event().wait(seconds)


def test_energy_simulation_against_hand_computation(tmp_path):
    p = profile()
    table = level_table(LEVELS, p, deadline_ms=4.5)
    trace = Trace((0.0, 1.0), (2000.0, 500.0))  # 1 s at 2000 MHz, then 1 s (median step) at 500 MHz
    dense = LEVELS[0].latency
    report = simulate(trace, table, LEVELS, dense)
    n = 1000 / 4.5  # inferences per second
    top, low = p.points[-1], p.points[0]
    ours = n * energy_mj(p, top, 4.0, 4.5) + n * energy_mj(p, low, LEVELS[2].latency.at(500), 4.5)
    base = 2 * n * energy_mj(p, top, 4.0, 4.5)
    assert report.energy_mj == pytest.approx(ours, rel=1e-4) and report.baseline_energy_mj == pytest.approx(base, rel=1e-4)
    assert report.battery_gain == pytest.approx(base / ours, rel=1e-3) and report.missed_fraction == 0
    assert report.level_share == {"dense": 0.5, "l80": 0.5}
    files = write_report(report, trace, tmp_path / "rep")
    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "battery-life gain" in files[1].read_text()
    assert json.loads(files[0].read_text())["battery_gain"] == report.battery_gain


def test_cli_levels_and_report(tmp_path, capsys):
    """compile --levels, levels, rt3-report, run --level on the MLP of test_rt3_levels."""
    import onnx

    from test_rt3_levels import SPARSITIES, levels_doc, mlp_model

    onnx.save(mlp_model(), tmp_path / "mlp.onnx")
    (tmp_path / "levels.json").write_text(json.dumps(levels_doc("runtime")))
    assert main(["compile", str(tmp_path / "mlp.onnx"), "--levels", str(tmp_path / "levels.json"),
                 "-o", str(tmp_path / "art")]) == 0
    assert main(["compile", str(tmp_path / "mlp.onnx"), "--levels", str(tmp_path / "levels.json"),
                 "--sparsity", "bsr:0.5", "-o", str(tmp_path / "art2")]) == 2
    assert "drop --sparsity" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    slowest = max(manifest["levels"][n]["latency_ms"] for n in SPARSITIES)
    capsys.readouterr()
    assert main(["levels", str(tmp_path / "art"), "--profile", "sd855-gold", "--deadline-ms", str(slowest * 4), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert len(table["rows"]) == 8 and table["rows"][-1]["level"] == "l50" and all(r["meets"] for r in table["rows"])
    trace = tmp_path / "trace.csv"
    trace.write_text("0,2419\n1,826\n2,1497\n")
    assert main(["rt3-report", str(tmp_path / "art"), "--profile", "sd855-gold", "--deadline-ms", str(slowest * 4),
                 "--trace", str(trace), "-o", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.png").is_file() and "battery-life gain" in capsys.readouterr().out
    assert main(["levels", str(tmp_path / "art"), "--profile", "sd855-gold", "--deadline-ms", "1e-6", "--strict"]) == 2
    assert "no level meets" in capsys.readouterr().err
    for mhz in ("2419", "1497"):
        assert main(["measure", str(tmp_path / "art"), "--mhz", mhz, "--repeat", "2", "-o", str(tmp_path / "m.json")]) == 0
    assert set(json.loads((tmp_path / "m.json").read_text())["l70"]) == {"2419", "1497"}
    assert main(["levels", str(tmp_path / "art"), "--profile", "sd855-gold", "--deadline-ms", "1",
                 "--measurements", str(tmp_path / "m.json")]) == 0
    if not CpufreqSource.available():
        assert main(["measure", str(tmp_path / "art"), "-o", str(tmp_path / "m.json")]) == 2
        assert "no cpufreq: give --mhz" in capsys.readouterr().err
    np.savez(tmp_path / "in.npz", x=np.zeros((16, 64), np.float32))
    assert main(["run", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz"), "--level", "l93"]) == 0
    assert main(["run", str(tmp_path / "art"), "-i", str(tmp_path / "in.npz"), "--level", "zz"]) == 2
    capsys.readouterr()
    assert main(["profiles"]) == 0 and "sd855-gold" in capsys.readouterr().out


def test_compile_levels_to_writes_a_switchable_artifact(tmp_path):
    """The Python form the README shows: compile_levels_to, then a Session switching between levels."""
    import gearshift
    from gearshift.levels_compiler import compile_levels_to

    from test_rt3_levels import levels_doc, mlp_model

    (tmp_path / "levels.json").write_text(json.dumps(levels_doc("runtime")))
    art = compile_levels_to(mlp_model(), tmp_path / "levels.json", "host", tmp_path / "art", repeat=2)
    session = gearshift.Session(art)
    x = {"x": np.ones((16, 64), np.float32)}
    first = session.run(x)["y"]
    session.switch(session.levels[-1])
    assert session.level == session.levels[-1] and session.run(x)["y"].shape == first.shape
