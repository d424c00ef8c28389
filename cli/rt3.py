"""The RT3 commands of the `gearshift` command line (levels, profiles, energy report).

    gearshift compile MODEL --levels levels.json --target T -o DIR     (in cli.py)
    gearshift profiles
    gearshift levels DIR --profile P --deadline-ms D [--strict] [--measurements M.json] [--json]
    gearshift rt3-report DIR --profile P --trace T.csv --deadline-ms D [-o OUT] [--strict]
    gearshift measure DIR [--mhz F] [--rpc TRACKER:PORT --key KEY] [--repeat N] -o measurements.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gearshift.errors import InputError


def add_commands(sub) -> None:
    pr = sub.add_parser("profiles", help="list the shipped device profiles (DVFS operating points, power model)")
    pr.set_defaults(handler=_profiles)

    lv = sub.add_parser("levels", help="print the level table: the level to run at each operating point")
    _table_options(lv)
    lv.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lv.set_defaults(handler=_levels)

    rep = sub.add_parser("rt3-report", help="energy per inference and battery-life gain over a DVFS trace (table + PNG)")
    _table_options(rep)
    rep.add_argument("--trace", required=True, help="CSV of time_s,mhz rows (e.g. gearshift/runtime/traces/throttle-74s.csv)")
    rep.add_argument("--output", "-o", default="out/rt3-report", help="directory for report.json/.md/.png")
    rep.set_defaults(handler=_report)

    me = sub.add_parser("measure", help="time every level at the CPU's current (pinned) frequency, here or on a "
                                        "device through TVM's RPC tracker; merges into a measurements file")
    me.add_argument("artifact", help="an artifact compiled with --levels")
    me.add_argument("--mhz", type=float, help="the frequency the CPU is pinned at (default: read from cpufreq here)")
    me.add_argument("--rpc", metavar="HOST:PORT", help="TVM RPC tracker to get the device from (default: this machine)")
    me.add_argument("--key", help="the device's key at the tracker")
    me.add_argument("--repeat", type=int, default=10, help="timed repeats per level (default 10)")
    me.add_argument("--output", "-o", required=True, help="measurements JSON to create or merge into")
    me.set_defaults(handler=_measure)


def _table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("artifact", help="an artifact compiled with --levels")
    p.add_argument("--profile", required=True, help="a shipped profile name (see `gearshift profiles`) or a profile JSON")
    p.add_argument("--deadline-ms", type=float, required=True, help="latency deadline per inference, ms")
    p.add_argument("--strict", action="store_true",
                   help="fail where no level meets the deadline (default: run the fastest level there, marked)")
    p.add_argument("--measurements", help="JSON {level: {MHz: ms}} measured on the device: the latency model is "
                                          "fitted to it instead of scaling this machine's measurement")


def _table(args):
    from gearshift.runtime.artifact import open_artifact
    from gearshift.runtime.dvfs import level_table, levels_of, load_profile

    art = open_artifact(args.artifact)
    if "rt3" not in art.manifest:
        raise InputError(f"{args.artifact} has no levels: compile it with --levels levels.json")
    profile = load_profile(args.profile)
    measurements = _measurements(args.measurements) if args.measurements else None
    levels = levels_of(art.manifest, profile, measurements)
    return art, profile, levels, level_table(levels, profile, args.deadline_ms, strict=args.strict)


def _measurements(path: str) -> dict[str, dict[float, float]]:
    try:
        doc = json.loads(Path(path).read_text())
        return {str(level): {float(f): float(ms) for f, ms in points.items()} for level, points in doc.items()}
    except FileNotFoundError:
        raise InputError(f"{path}: no such measurements file") from None
    except (ValueError, AttributeError, TypeError) as err:
        raise InputError(f"{path}: expected JSON {{level: {{MHz: ms}}}} ({err})") from None


def _profiles(args) -> int:
    from gearshift.cli.common import format_table
    from gearshift.runtime.dvfs import load_profile, profile_names

    rows = [("name", "cores", "MHz", "description")]
    for name in profile_names():
        p = load_profile(name)
        rows.append((name, str(p.cores), f"{p.points[0].mhz:g}-{p.max_mhz:g} ({len(p.points)} points)",
                     p.description + (" [approximate]" if p.approximate else "")))
    print(format_table(rows))
    return 0


def _levels(args) -> int:
    from gearshift.cli.common import format_table

    _, profile, levels, table = _table(args)
    if args.json:
        print(json.dumps(table.to_json(), indent=2))
        return 0
    facts = {lv.name: lv for lv in levels}
    rows = [("MHz", "level", "predicted ms", "meets", "error proxy", "density")]
    for r in table.rows:
        rows.append((f"{r.mhz:g}", r.level, f"{r.predicted_ms:.3f}", "yes" if r.meets else "NO (fastest level)",
                     f"{r.error:.3g}", f"{facts[r.level].density:.2f}"))
    print(f"{profile.name}{' (approximate profile)' if profile.approximate else ''}, deadline {args.deadline_ms:g} ms")
    print(format_table(rows))
    return 0


def _report(args) -> int:
    from gearshift.runtime.dvfs import LatencyModel
    from gearshift.runtime.energy import simulate, write_report
    from gearshift.runtime.governor import read_trace

    art, profile, levels, table = _table(args)
    trace = read_trace(args.trace)
    dense = art.manifest["rt3"].get("dense_reference", {})
    if dense.get("latency_ms") is None:
        raise InputError(f"{args.artifact}: no dense reference latency (compiled for another target): "
                         f"the baseline needs one")
    report = simulate(trace, table, levels, LatencyModel.from_host(dense["latency_ms"], dense.get("weight_bytes", 0), profile))
    files = write_report(report, trace, args.output)
    print(Path(files[1]).read_text())
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def _measure(args) -> int:
    from gearshift.runtime.measure import current_mhz, measure_levels, merge

    mhz = args.mhz
    if mhz is None:
        if args.rpc:
            raise InputError("give --mhz: the frequency the device's CPU is pinned at (it cannot be read over RPC)")
        mhz = current_mhz()
        if mhz is None:
            raise InputError("this machine has no cpufreq: give --mhz (the frequency its CPU runs at)")
    if not mhz > 0:
        raise InputError(f"--mhz must be positive, got {mhz}")
    from gearshift.cli.common import log as _log

    latencies = measure_levels(args.artifact, rpc=args.rpc, key=args.key, repeat=args.repeat, log=_log)
    merge(args.output, mhz, latencies)
    print(json.dumps({"mhz": mhz, "latency_ms": latencies}, indent=2))
    return 0
