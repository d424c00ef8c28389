"""`gearshift tune`: search the sparse kernels' knobs for a target and keep the results in a database.

    gearshift tune MODEL --target T --db DIR [--sparsity SPEC ...|--levels F] [--trials N]
                   [--rpc TRACKER:PORT --key KEY] [--metaschedule] [--json]
    gearshift compile MODEL --target T --db DIR ...      (builds with the fastest records)
"""

from __future__ import annotations

import argparse
import json

from gearshift.cli.common import format_table, log, parse_input_shapes, shape_option
from gearshift.errors import InputError
from gearshift.relay_passes.plan import grammar_help


def add_commands(sub) -> None:
    tu = sub.add_parser("tune", help="tune the sparse kernels of a model for a target (here or on devices "
                                     "through an RPC tracker) into a tuning database")
    tu.add_argument("model", help="an .onnx file")
    tu.add_argument("--target", "-t", default="host", help="a target name (see `gearshift targets`); default: host")
    tu.add_argument("--db", required=True, metavar="DIR",
                    help="the tuning database folder (created if needed; a rerun resumes from its records)")
    tu.add_argument("--trials", type=int, default=64, help="measured settings per kernel (default 64)")
    tu.add_argument("--sparsity", metavar="SPEC", help="what every weight layer becomes, as for compile. "
                                                      + grammar_help())
    tu.add_argument("--layer-sparsity", action="append", default=[], metavar="REGEX=SPEC",
                    help="per-layer override, as for compile (repeatable)")
    tu.add_argument("--sparse-form", choices=("baked", "runtime"), default="baked", help="as for compile")
    tu.add_argument("--levels", metavar="LEVELS.json", help="tune the kernels of every level of a levels file")
    tu.add_argument("--rpc", metavar="HOST:PORT", help="measure on devices registered with this RPC tracker")
    tu.add_argument("--key", help="the device key those devices registered with (needs --rpc)")
    tu.add_argument("--metaschedule", action="store_true",
                    help="also search the dense matmuls and convs with MetaSchedule (XGBoost cost model; on this "
                         "machine; minutes a kernel). Its schedule is used only where it beats the rule's")
    tu.add_argument("--seed", type=int, default=0, help="the search's random seed (default 0)")
    tu.add_argument("--json", action="store_true", help="print the summary as JSON")
    shape_option(tu)
    tu.set_defaults(handler=_tune)


def _tune(args: argparse.Namespace) -> int:
    from gearshift.autotune import autotune, summary_rows
    from gearshift.relay_passes.plan import SparsityPlan

    if args.levels and (args.sparsity or args.layer_sparsity):
        raise InputError("--levels gives each level its sparsity: drop --sparsity/--layer-sparsity")
    if args.key and not args.rpc:
        raise InputError("--key needs --rpc: the tracker the devices registered with")
    plan = None if args.levels else SparsityPlan.parse(args.sparsity, args.layer_sparsity, args.sparse_form)
    try:
        report = autotune(args.model, args.target, db=args.db, trials=args.trials, sparsity=plan, levels=args.levels,
                          rpc=args.rpc, key=args.key, input_shapes=parse_input_shapes(args.input_shape),
                          seed=args.seed, metaschedule=args.metaschedule, log=log)
    except KeyboardInterrupt:
        log(f"interrupted: every measured record is kept in {args.db}; run the same command again to resume")
        return 130
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_table(summary_rows(report)))
        print(f"{report.new_trials} new trials in {report.seconds:.0f} s on {report.device}; database {report.database}")
    return 0
