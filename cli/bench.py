"""`gearshift bench`: the benchmark suites with every peer side by side; `gearshift readme-results`:
the README's results section regenerated from a report.

    gearshift bench --suite kernels|models|rt3|accuracy|all [--quick] [--target host] [--db DIR] [--repeat N] -o DIR
    gearshift readme-results DIR/report.md README.md
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gearshift.cli.common import log
from gearshift.errors import InputError

BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def add_commands(sub) -> None:
    be = sub.add_parser("bench", help="run the benchmark suites against ONNX Runtime, torch and plain TVM; "
                                      "write results.json, report.md and plots")
    be.add_argument("--suite", default="all", choices=("kernels", "models", "rt3", "accuracy", "all"),
                    help="which suite (default all)")
    be.add_argument("--quick", action="store_true", help="fewer cases and shapes: minutes, not an hour")
    be.add_argument("--target", default="host", help="where the engines run: host (this machine; the only one "
                                                     "the peers run on)")
    be.add_argument("--db", metavar="DIR", help="a tuning database: gearshift's kernels take its records")
    be.add_argument("--repeat", type=int, help="timed calls per engine (default 20 quick, 40 full)")
    be.add_argument("--output", "-o", required=True, help="the folder for results.json, report.md and the PNGs")
    be.set_defaults(handler=_bench)

    rr = sub.add_parser("readme-results", help="replace the README's results section with a bench report's tables")
    rr.add_argument("report", help="report.md written by gearshift bench")
    rr.add_argument("readme", help="the README to update (between its bench-results markers)")
    rr.set_defaults(handler=_readme_results)


def _bench(args: argparse.Namespace) -> int:
    from gearshift.cli.common import with_quiet_pools

    with_quiet_pools()
    from gearshift.suites.run import run_bench
    from gearshift.suites.report import summary

    if args.target != "host":
        raise InputError(f"--target {args.target}: gearshift bench runs every peer on this machine (--target host); "
                         f"for a device, compile for it and time it there with `gearshift run --repeat` or "
                         f"`gearshift measure --rpc`")
    if args.repeat is not None and args.repeat < 1:
        raise InputError(f"--repeat must be at least 1, got {args.repeat}")
    results = run_bench(args.suite, args.output, quick=args.quick, db=args.db, repeat=args.repeat, log=log)
    print(summary(results))
    return 0


def _readme_results(args: argparse.Namespace) -> int:
    report, readme = Path(args.report), Path(args.readme)
    for path in (report, readme):
        if not path.is_file():
            raise InputError(f"{path}: no such file")
    text = readme.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise InputError(f"{readme}: needs one {BEGIN} line and one {END} line after it, around the results section")
    section = readme_section(report.read_text())
    head, rest = text.split(BEGIN, 1)
    updated = head + BEGIN + "\n" + section + END + rest.split(END, 1)[1]
    staging = readme.with_name(readme.name + ".tmp")
    staging.write_text(updated)
    os.replace(staging, readme)
    log(f"{readme}: results section replaced from {report}")
    return 0


def readme_section(report: str) -> str:
    """The README's share of a report: its lines of facts (machine, date, timing) and the models table
    (the headline), without the columns that hold no figure."""
    lines = report.splitlines()
    keep = [line for line in lines[2:4] if line.strip()]
    if "## Models" in lines:
        start = lines.index("## Models") + 2
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        keep += ["", *_drop_empty_columns(lines[start:end])]
    return "\n".join(keep) + "\n"


def _drop_empty_columns(table: list[str]) -> list[str]:
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table]
    if len(rows) < 3:
        return table
    useful = [i for i in range(len(rows[0])) if any(r[i] not in ("-", "") for r in rows[2:])]
    return ["| " + " | ".join(r[i] for i in useful) + " |" for r in rows]
