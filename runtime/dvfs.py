"""DVFS: device profiles, the latency of a level at a frequency, and the level table (RT3).

A device profile is data (JSON): the operating points (MHz, mV) of one CPU cluster, its core count
and the parameters of a simple CMOS power model. `gearshift/runtime/profiles/` ships approximate
profiles of real phone SoCs (marked `"approximate": true`, with where the numbers come from);
users pass their own file.

Power at an operating point (f, V), `n` cores busy:
    active = n * (C_eff * V^2 * f + V * I_leak) + idle_mw      idle = cores * V * I_leak + idle_mw
(dynamic switching power plus leakage; between inferences the cores are clock-gated and only leak).

Latency of a level at frequency f (the model the issue asks for):
    t(f) = t_compute * f_ref / f + t_memory
The compute-bound part scales with the clock; the memory-bound part (waiting on DRAM, whose clock
DVFS of the CPU cluster does not change) does not. `LatencyModel.fit` fits both parts by least
squares to latencies measured at several frequencies (a device through TVM's RPC tracker, or a
board's cpufreq); `LatencyModel.from_host` splits one measurement: t_memory = the level's weight
bytes / the profile's memory bandwidth (every weight streamed from DRAM once per inference), the
rest compute. This machine has no cpufreq: its measurement stands in for the profile's top
operating point, which is an assumption to replace with device measurements.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.errors import InputError, read_json

PROFILE_DIR = Path(__file__).with_name("profiles")


@dataclass(frozen=True)
class OperatingPoint:
    mhz: float
    mv: float


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    cores: int
    points: tuple[OperatingPoint, ...]  # ascending frequency
    ceff_nf: float  # effective switched capacitance per core, nF
    leakage_ma: float  # leakage current per core, mA
    idle_mw: float  # the cluster's floor (clock tree, caches) whether busy or not
    memory_gbps: float
    approximate: bool = True
    source: str = ""

    @property
    def max_mhz(self) -> float:
        return self.points[-1].mhz

    def point_at(self, mhz: float) -> OperatingPoint:
        """The operating point in force at a reported frequency: the highest point at or below it
        (a reading between points is rounded down, the safe side for a deadline); the lowest point
        for readings below every point."""
        below = [p for p in self.points if p.mhz <= mhz + 1e-6]
        return below[-1] if below else self.points[0]

    def active_mw(self, point: OperatingPoint, busy: int | None = None) -> float:
        v, f = point.mv / 1e3, point.mhz * 1e6
        n = self.cores if busy is None else busy
        return n * (self.ceff_nf * 1e-9 * v * v * f + v * self.leakage_ma * 1e-3) * 1e3 + self.idle_mw

    def idle_mw_at(self, point: OperatingPoint) -> float:
        return self.cores * point.mv / 1e3 * self.leakage_ma + self.idle_mw


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(name_or_path: str | os.PathLike) -> DeviceProfile:
    """A shipped profile by name (`profile_names()`) or a user's JSON file; validated."""
    path = Path(name_or_path)
    if not path.suffix and (PROFILE_DIR / f"{path.name}.json").is_file():
        path = PROFILE_DIR / f"{path.name}.json"
    if not path.is_file():
        raise InputError(f"no device profile {str(name_or_path)!r}: give a JSON file or one of {', '.join(profile_names())}")
    return parse_profile(read_json(path), str(path))


def parse_profile(doc, where: str = "profile") -> DeviceProfile:
    def need(cond: bool, what: str) -> None:
        if not cond:
            raise InputError(f"{where}: {what}")

    need(isinstance(doc, dict), "expected a JSON object")
    for key in ("name", "cores", "operating_points", "power", "memory_gbps"):
        need(key in doc, f"missing {key!r} (see gearshift/runtime/profiles/*.json for the format)")
    need(isinstance(doc["cores"], int) and doc["cores"] >= 1, f"'cores' must be a positive integer, got {doc['cores']!r}")
    points = doc["operating_points"]
    need(isinstance(points, list) and points, "'operating_points' must be a non-empty list of {\"mhz\": ..., \"mv\": ...}")
    parsed = []
    for i, p in enumerate(points):
        need(isinstance(p, dict) and set(p) >= {"mhz", "mv"}, f"operating point {i} needs 'mhz' and 'mv'")
        mhz, mv = p["mhz"], p["mv"]
        need(_positive(mhz) and mhz < 10_000, f"operating point {i}: mhz {mhz!r} is not a frequency in (0, 10000)")
        need(_positive(mv) and 200 <= mv <= 2000, f"operating point {i}: mv {mv!r} is not a voltage in [200, 2000] mV")
        parsed.append(OperatingPoint(float(mhz), float(mv)))
    mhzs = [p.mhz for p in parsed]
    need(len(set(mhzs)) == len(mhzs), "two operating points share a frequency")
    parsed.sort(key=lambda p: p.mhz)
    need(all(a.mv <= b.mv for a, b in zip(parsed, parsed[1:])),
         "voltage must not fall as frequency rises (check the operating points)")
    power = doc["power"]
    need(isinstance(power, dict), "'power' must be an object with ceff_nf, leakage_ma, idle_mw")
    for key in ("ceff_nf", "leakage_ma", "idle_mw"):
        need(key in power and isinstance(power[key], (int, float)) and power[key] >= 0 and math.isfinite(power[key]),
             f"power.{key} must be a non-negative number")
    need(power["ceff_nf"] > 0, "power.ceff_nf must be positive")
    need(_positive(doc["memory_gbps"]), "'memory_gbps' must be positive")
    return DeviceProfile(str(doc["name"]), str(doc.get("description", "")), doc["cores"], tuple(parsed),
                         float(power["ceff_nf"]), float(power["leakage_ma"]), float(power["idle_mw"]),
                         float(doc["memory_gbps"]), bool(doc.get("approximate", False)), str(doc.get("source", "")))


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@dataclass(frozen=True)
class LatencyModel:
    """t(f) = compute_ms * reference_mhz / f + memory_ms."""

    compute_ms: float
    memory_ms: float
    reference_mhz: float

    def at(self, mhz: float) -> float:
        return self.compute_ms * self.reference_mhz / mhz + self.memory_ms

    @classmethod
    def from_host(cls, latency_ms: float, weight_bytes: int, profile: DeviceProfile) -> LatencyModel:
        memory = min(latency_ms, weight_bytes / (profile.memory_gbps * 1e9) * 1e3)
        return cls(latency_ms - memory, memory, profile.max_mhz)

    @classmethod
    def fit(cls, mhz: Sequence[float], ms: Sequence[float]) -> tuple[LatencyModel, float]:
        """Least squares (both parts kept non-negative) to latencies measured at several frequencies;
        returns the model and its largest relative error on the points."""
        f, t = np.asarray(mhz, float), np.asarray(ms, float)
        if len(f) < 2 or len(set(f.tolist())) < 2:
            raise InputError("fitting the latency model needs measurements at two or more frequencies")
        ref = float(f.max())
        a = np.stack([ref / f, np.ones_like(f)], axis=1)
        (compute, memory), *_ = np.linalg.lstsq(a, t, rcond=None)
        if memory < 0:
            compute, memory = float(np.dot(a[:, 0], t) / np.dot(a[:, 0], a[:, 0])), 0.0
        elif compute < 0:
            compute, memory = 0.0, float(t.mean())
        model = cls(float(compute), float(memory), ref)
        worst = float(np.max(np.abs(np.array([model.at(x) for x in f]) - t) / t))
        return model, worst


@dataclass(frozen=True)
class LevelFacts:
    """What the table needs of a level: its accuracy proxy (lower is better) and latency model."""

    name: str
    error: float
    latency: LatencyModel
    density: float = 1.0


def levels_of(manifest: Mapping, profile: DeviceProfile,
              measurements: Mapping[str, Mapping[float, float]] | None = None) -> list[LevelFacts]:
    """The levels of an artifact's manifest with a latency model each: fitted to `measurements`
    (level -> {MHz: ms}, e.g. from a device) where given, else from the host measurement."""
    out = []
    for name, entry in manifest["levels"].items():
        if measurements and name in measurements:
            model, _ = LatencyModel.fit(list(measurements[name]), list(measurements[name].values()))
        elif entry.get("latency_ms") is not None:
            model = LatencyModel.from_host(entry["latency_ms"], entry.get("read_bytes", entry.get("weight_bytes", 0)),
                                           profile)
        else:
            raise InputError(f"level {name!r} has no measured latency (compiled for another target): "
                             f"give measurements from the device")
        error = entry.get("error")
        if error is None:  # as infinity it would make the table pick the sparsest level everywhere
            raise InputError(f"level {name!r} has no accuracy proxy in the manifest: compile it again with this "
                             f"gearshift (it records the proxy for every target)")
        out.append(LevelFacts(name, float(error), model, entry.get("density", 1.0)))
    return out


@dataclass(frozen=True)
class TableRow:
    mhz: float
    level: str
    predicted_ms: float
    meets: bool
    error: float


@dataclass(frozen=True)
class LevelTable:
    """Per operating point, the level to run. `level_for(mhz)` is what the governor asks."""

    deadline_ms: float
    rows: tuple[TableRow, ...]  # ascending frequency, one per operating point
    profile: DeviceProfile

    def row_for(self, mhz: float) -> TableRow:
        point = self.profile.point_at(mhz)
        return next(r for r in self.rows if r.mhz == point.mhz)

    def level_for(self, mhz: float) -> str:
        return self.row_for(mhz).level

    def to_json(self) -> dict:
        return {"deadline_ms": self.deadline_ms, "profile": self.profile.name,
                "rows": [r.__dict__ for r in self.rows]}


def level_table(levels: Sequence[LevelFacts], profile: DeviceProfile, deadline_ms: float,
                strict: bool = False) -> LevelTable:
    """For each operating point, the most accurate level (lowest error proxy; ties: the faster)
    whose predicted latency meets the deadline. Where none does: with `strict` an InputError naming
    the point and the fastest level's latency; otherwise the fastest level, marked as missing."""
    if not levels:
        raise InputError("no levels to choose from")
    if not (isinstance(deadline_ms, (int, float)) and deadline_ms > 0):
        raise InputError(f"the deadline must be a positive number of milliseconds, got {deadline_ms!r}")
    rows = []
    for point in profile.points:
        timed = [(lv, lv.latency.at(point.mhz)) for lv in levels]
        fitting = [(lv, t) for lv, t in timed if t <= deadline_ms]
        if fitting:
            lv, t = min(fitting, key=lambda x: (x[0].error, x[1]))
            rows.append(TableRow(point.mhz, lv.name, round(t, 4), True, lv.error))
            continue
        lv, t = min(timed, key=lambda x: x[1])
        if strict:
            raise InputError(f"no level meets {deadline_ms:g} ms at {point.mhz:g} MHz: the fastest, {lv.name!r}, "
                             f"is predicted at {t:.3f} ms (raise the deadline, add a sparser level, or drop --strict)")
        rows.append(TableRow(point.mhz, lv.name, round(t, 4), False, lv.error))
    return LevelTable(float(deadline_ms), tuple(rows), profile)
