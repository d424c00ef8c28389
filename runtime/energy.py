"""Energy and battery report (RT3): a DVFS trace, a device profile, a deadline, the level table.

The workload is one inference per deadline period (a frame, an utterance chunk). In each trace
segment the cluster runs at the trace's frequency; the governor's level runs for its predicted
latency at that frequency with the busy cores drawing active power, then the cores idle (leak)
until the period ends. The baseline is what a deployment without RT3 does: the dense model at the
profile's top frequency for every period. Battery-life gain = baseline energy / RT3 energy over the
same number of inferences (the rest of the phone's draw left out: the gain of the CPU cluster alone).
Everything here is a model (dvfs.py) fed with measured latencies; on this machine nothing reads a
power rail.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gearshift.runtime.dvfs import DeviceProfile, LatencyModel, LevelFacts, LevelTable, OperatingPoint
from gearshift.runtime.governor import Trace


def energy_mj(profile: DeviceProfile, point: OperatingPoint, latency_ms: float, period_ms: float) -> float:
    """Energy of one period: active for the inference, idle for the rest (none if it overruns)."""
    idle = max(0.0, period_ms - latency_ms)
    return (profile.active_mw(point) * latency_ms + profile.idle_mw_at(point) * idle) / 1e3


@dataclass
class Segment:
    start_s: float
    duration_s: float
    mhz: float
    level: str
    latency_ms: float
    meets: bool
    energy_per_inference_mj: float


@dataclass
class Report:
    profile: str
    approximate_profile: bool
    deadline_ms: float
    inferences: float
    energy_mj: float
    baseline_energy_mj: float
    baseline_latency_ms: float
    battery_gain: float
    missed_fraction: float
    level_share: dict[str, float]
    segments: list[Segment]
    table: dict

    def to_json(self) -> dict:
        return asdict(self)


def simulate(trace: Trace, table: LevelTable, levels: list[LevelFacts], dense: LatencyModel) -> Report:
    """Replay `trace` through `table` and account energy against the dense model at top frequency."""
    profile, period = table.profile, table.deadline_ms
    by_name = {lv.name: lv for lv in levels}
    top = profile.points[-1]
    base_ms = dense.at(top.mhz)
    base_per = energy_mj(profile, top, base_ms, period)
    segments, total, base_total, inferences, missed = [], 0.0, 0.0, 0.0, 0.0
    share: dict[str, float] = {}
    start = 0.0
    for duration, mhz in trace.segments():
        row = table.row_for(mhz)
        point = profile.point_at(mhz)
        t = by_name[row.level].latency.at(point.mhz)
        n = duration * 1e3 / period
        per = energy_mj(profile, point, t, period)
        segments.append(Segment(round(start, 6), round(duration, 6), mhz, row.level, round(t, 4), t <= period, round(per, 6)))
        total += n * per
        base_total += n * base_per
        inferences += n
        missed += n if t > period else 0.0
        share[row.level] = share.get(row.level, 0.0) + duration
        start += duration
    return Report(profile.name, profile.approximate, period, round(inferences, 2), round(total, 4),
                  round(base_total, 4), round(base_ms, 4), round(base_total / total, 3) if total else float("inf"),
                  round(missed / inferences, 4) if inferences else 0.0,
                  {k: round(v / start, 4) for k, v in share.items()}, segments, table.to_json())


def write_report(report: Report, trace: Trace, out_dir: str | os.PathLike) -> list[Path]:
    """report.json, report.md (a table) and report.png (frequency and active level over time)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))
    plot(report, trace, out / "report.png")
    return [out / "report.json", out / "report.md", out / "report.png"]


def markdown(report: Report) -> str:
    lines = [f"# RT3 energy report: {report.profile}" + (" (approximate profile)" if report.approximate_profile else ""),
             "", f"Deadline {report.deadline_ms:g} ms, one inference per period; {report.inferences:g} inferences.",
             f"Baseline (dense model at the top frequency): {report.baseline_latency_ms:.3f} ms per inference, "
             f"{report.baseline_energy_mj:.1f} mJ in all.",
             f"RT3 (level per frequency): {report.energy_mj:.1f} mJ in all: **battery-life gain {report.battery_gain:.2f}x**"
             f" (CPU cluster only); deadline missed in {report.missed_fraction:.1%} of inferences.", "",
             "| operating point MHz | level | predicted ms | meets deadline |", "|---|---|---|---|"]
    for row in report.table["rows"]:
        lines.append(f"| {row['mhz']:g} | {row['level']} | {row['predicted_ms']:.3f} | {'yes' if row['meets'] else 'NO'} |")
    lines += ["", "| level | share of time |", "|---|---|"]
    lines += [f"| {k} | {v:.1%} |" for k, v in sorted(report.level_share.items())]
    return "\n".join(lines) + "\n"


def plot(report: Report, trace: Trace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [row["level"] for row in report.table["rows"]]
    order = list(dict.fromkeys(levels))
    times = [s.start_s for s in report.segments] + [report.segments[-1].start_s + report.segments[-1].duration_s]
    fig, (a, b) = plt.subplots(2, 1, sharex=True, figsize=(8, 4.5))
    a.step(times, [s.mhz for s in report.segments] + [report.segments[-1].mhz], where="post")
    a.set_ylabel("CPU MHz")
    a.set_title(f"{report.profile}: deadline {report.deadline_ms:g} ms, battery-life gain {report.battery_gain:.2f}x")
    b.step(times, [order.index(s.level) for s in report.segments] + [order.index(report.segments[-1].level)], where="post",
           color="tab:orange")
    b.set_yticks(range(len(order)), order)
    b.set_ylabel("active level")
    b.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
