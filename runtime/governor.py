"""The governor (RT3): a thread that polls the CPU frequency and switches the session's level.

Frequency sources:
- `CpufreqSource`: Linux cpufreq, `/sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq` (kHz),
  where the kernel exposes it (phones, most ARM boards).
- `TraceSource`: a replayed trace, a CSV of `time_s,mhz` rows (header optional), each frequency
  holding from its time until the next row's. Machines without cpufreq (this one: a VM) can only
  replay: the governor logs which source is live, so a simulated run is never mistaken for a real one.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gearshift.errors import InputError

CPUFREQ = Path("/sys/devices/system/cpu")


class CpufreqSource:
    """The current frequency of one CPU from Linux cpufreq (real DVFS)."""

    def __init__(self, cpu: int = 0, root: str | os.PathLike = CPUFREQ):
        self.path = Path(root) / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq"
        if not self.path.is_file():
            raise InputError(f"no cpufreq on this machine ({self.path} does not exist): replay a trace instead")
        self.description = f"cpufreq ({self.path})"

    @staticmethod
    def available(cpu: int = 0, root: str | os.PathLike = CPUFREQ) -> bool:
        return (Path(root) / f"cpu{cpu}" / "cpufreq" / "scaling_cur_freq").is_file()

    def mhz(self) -> float:
        return int(self.path.read_text().strip()) / 1000.0


@dataclass(frozen=True)
class Trace:
    """Frequency over time: rows (seconds from the start, MHz), times strictly increasing."""

    times: tuple[float, ...]
    mhz: tuple[float, ...]
    source: str = "trace"

    @property
    def duration(self) -> float:
        """The last row holds for the median step between rows (a trace of one row: 1 s)."""
        steps = [b - a for a, b in zip(self.times, self.times[1:])]
        last = statistics.median(steps) if steps else 1.0
        return self.times[-1] + last - self.times[0]

    def at(self, t: float) -> float:
        """The frequency in force `t` seconds after the trace's first row."""
        t += self.times[0]
        lo, hi = 0, len(self.times) - 1
        while lo < hi:  # the last row with time <= t
            mid = (lo + hi + 1) // 2
            if self.times[mid] <= t:
                lo = mid
            else:
                hi = mid - 1
        return self.mhz[lo]

    def segments(self) -> list[tuple[float, float]]:
        """(duration s, MHz) per row."""
        ends = [*self.times[1:], self.times[0] + self.duration]
        return [(end - start, f) for start, end, f in zip(self.times, ends, self.mhz)]


def read_trace(path: str | os.PathLike) -> Trace:
    """Parse a `time_s,mhz` CSV (lines starting with # are comments; a header may come first).
    Every bad row is an InputError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: no such trace file") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file") from None
    times, mhz, first = [], [], True
    for lineno, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if first and not _is_number(row[0]):
            first = False
            continue  # a header: only as the first line that is not a comment
        first = False
        if len(row) != 2:
            raise InputError(f"{path} line {lineno}: expected two columns (time in s, MHz), got {len(row)}: {','.join(row)!r}")
        if not (_is_number(row[0]) and _is_number(row[1])):
            raise InputError(f"{path} line {lineno}: expected two numbers (time in s, MHz), got {','.join(row)!r}")
        t, f = float(row[0]), float(row[1])
        if t < 0:
            raise InputError(f"{path} line {lineno}: time {t} is negative")
        if times and t <= times[-1]:
            raise InputError(f"{path} line {lineno}: time {t} does not increase (previous row: {times[-1]})")
        if not 0 < f < 10_000:
            raise InputError(f"{path} line {lineno}: frequency {f} MHz is not in (0, 10000)")
        times.append(t)
        mhz.append(f)
    if not times:
        raise InputError(f"{path}: no rows (expected lines of `time_s,mhz`)")
    return Trace(tuple(times), tuple(mhz), f"trace {path}")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


class TraceSource:
    """A trace replayed against a clock, optionally `speed` times faster than real time, looping."""

    def __init__(self, trace: Trace, speed: float = 1.0, loop: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        if not speed > 0:
            raise InputError(f"replay speed must be positive, got {speed}")
        self.trace, self.speed, self.loop, self.clock = trace, speed, loop, clock
        self.start = clock()
        self.description = f"replayed {trace.source} (simulated DVFS: no cpufreq read)" + (
            f", {speed:g}x real time" if speed != 1 else "")

    def mhz(self) -> float:
        t = (self.clock() - self.start) * self.speed
        if self.loop:
            t %= self.trace.duration
        return self.trace.at(t)


@dataclass
class Governor:
    """Polls `source` every `interval_s` and switches `session` to `table.level_for(mhz)` when it
    differs from the active level. `events` records (time s, MHz, level) of every switch."""

    session: object  # gearshift.Session
    table: object  # gearshift.runtime.dvfs.LevelTable
    source: object  # CpufreqSource or TraceSource
    interval_s: float = 0.005
    log: Callable[[str], None] = lambda _msg: None
    events: list[tuple[float, float, str]] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def step(self) -> str:
        """One poll: read the frequency, switch if the table says so; returns the active level."""
        mhz = self.source.mhz()
        level = self.table.level_for(mhz)
        if level != self.session.level:
            self.session.switch(level)
            self.events.append((time.monotonic(), mhz, level))
        return level

    def start(self) -> Governor:
        self.log(f"governor: frequency source: {self.source.description}; polling every {self.interval_s * 1e3:g} ms")
        self._thread = threading.Thread(target=self._loop, name="gearshift-governor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.errors:
            raise self.errors[0]

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except BaseException as err:  # surfaced by stop(): a governor must not die silently
                self.errors.append(err)
                self.log(f"governor: stopped on error: {err}")
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Governor:
        return self.start()

    def __exit__(self, *_exc) -> None:
        self.stop()


def default_source(trace: str | os.PathLike | None = None, cpu: int = 0, speed: float = 1.0):
    """cpufreq where the machine has it and no trace is given; else the trace; else a clear error."""
    if trace is not None:
        return TraceSource(read_trace(trace), speed=speed)
    if CpufreqSource.available(cpu):
        return CpufreqSource(cpu)
    raise InputError("this machine has no cpufreq (no /sys/devices/system/cpu/cpu0/cpufreq): give a DVFS trace "
                     "(CSV of time_s,mhz) to replay")
