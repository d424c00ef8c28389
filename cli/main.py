"""The `gearshift` command line.

    gearshift inspect MODEL [--input-shape NAME=1,128 ...] [--json]
    gearshift compile MODEL --target T -o DIR [--input-shape ...] [--name N] [--force]
                      [--sparsity SPEC] [--layer-sparsity REGEX=SPEC ...] [--sparse-form baked|runtime]
                      [--levels levels.json]  (RT3: several compression levels in one artifact)
                      [--db DIR]  (tuned kernel knobs from `gearshift tune`)
    gearshift tune MODEL --target T --db DIR [--sparsity ...|--levels F] [--trials N] [--rpc H:P --key K]
    gearshift run DIR --inputs in.npz [-o out.npz] [--repeat N] [--json] [--level NAME] [--trusted-key K.pub]
                  (an ARM artifact on an x86 machine runs in the emulated phone: `make arm-env`)
    gearshift device setup | info | serve --tracker H:P --key K | python ...   (see cli/device.py)
    gearshift check-gpu MODEL --target mali-g76|adreno-640 [--sparsity ...]   (see cli/gpu.py)
    gearshift profiles | levels DIR ... | rt3-report DIR ...   (RT3, see cli/rt3.py)
    gearshift targets
    gearshift keygen KEY        (an Ed25519 pair for `compile --sign KEY`, `run --trusted-key KEY.pub`)
    gearshift demo [--repeat N]
    gearshift bench --suite kernels|models|rt3|accuracy|all [--quick] [--db DIR] -o DIR   (see cli/bench.py)
    gearshift readme-results REPORT.md README.md

Errors a user can cause print as one line (`gearshift: error: ...`) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gearshift.cli.common import format_table, log, parse_input_shapes, shape_option
from gearshift.errors import GearshiftError, InputError
from gearshift.relay_passes.plan import FORMS, grammar_help

EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["device", "python"] and argv[2:3] not in (["-h"], ["--help"]):  # argparse cannot pass
        argv = [*argv[:2], "--", *argv[2:]]  # options through untouched: everything after is the phone's
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except GearshiftError as err:
        print(f"gearshift: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("gearshift: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gearshift", description="Compile compressed neural networks for phones.")
    sub = p.add_subparsers(dest="command", required=True)

    ins = sub.add_parser("inspect", help="list the weight-carrying layers of a model")
    ins.add_argument("model", help="an .onnx file")
    shape_option(ins)
    ins.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ins.set_defaults(handler=_inspect)

    com = sub.add_parser("compile", help="compile a model into an artifact directory")
    com.add_argument("model", help="an .onnx file")
    com.add_argument("--target", "-t", default="host", help="a target name (see `gearshift targets`); default: host")
    com.add_argument("--output", "-o", required=True, help="the artifact directory to write")
    com.add_argument("--name", help="the model's name in the manifest (default: the file's stem)")
    com.add_argument("--force", action="store_true", help="replace an existing artifact directory")
    com.add_argument("--sparsity", metavar="SPEC", help="what every weight layer becomes. " + grammar_help())
    com.add_argument("--layer-sparsity", action="append", default=[], metavar="REGEX=SPEC",
                     help="override --sparsity for layers whose weight name matches REGEX (repeatable; "
                          "first match wins), e.g. 'attention=dense' or 'intermediate=bsr:0.9:16x1'")
    com.add_argument("--sparse-form", choices=FORMS, default="baked",
                     help="block structure as constants in the code (baked, default) or as runtime weight "
                          "arrays (runtime: one executable for several pattern sets of equal size)")
    com.add_argument("--levels", metavar="LEVELS.json",
                     help="compile several compression levels into one artifact (RT3), each a sparsity spec; "
                          "see relay_passes/levels.py for the file format. Replaces --sparsity")
    com.add_argument("--db", metavar="DIR", help="a tuning database (`gearshift tune`): the sparse kernels it has "
                                                  "records for take their fastest measured knobs")
    com.add_argument("--sign", metavar="KEY", help="sign the artifact's manifest with this Ed25519 private key "
                                                   "(`gearshift keygen`); `run --trusted-key` then checks it")
    com.add_argument("--calibration", metavar="INPUTS.npz",
                     help="sample inputs (keyed by input name) for the int8 scales of --target vta-sim "
                          "(default: random inputs; real ones give better accuracy)")
    shape_option(com)
    com.set_defaults(handler=_compile)

    run = sub.add_parser("run", help="run a compiled artifact on this machine (an ARM one on x86: in the emulated "
                                     "aarch64 phone, see `gearshift device`)")
    run.add_argument("artifact", help="an artifact directory written by `gearshift compile`")
    run.add_argument("--inputs", "-i", required=True, help=".npz with one array per model input, keyed by input name")
    run.add_argument("--output", "-o", help="write the outputs to this .npz, keyed by output name")
    run.add_argument("--repeat", type=int, default=0,
                     help="time N runs (the benchmark protocol's blocks, 3 warm-up runs before each); print median and p90")
    run.add_argument("--json", action="store_true", help="print a JSON summary")
    run.add_argument("--level", help="the compression level to run (default: the artifact's first)")
    run.add_argument("--trusted-key", action="append", default=[], metavar="KEY.pub",
                     help="refuse the artifact unless its manifest is signed by this key (64 hex digits or a .pub "
                          "file; repeatable), checked before the library is loaded")
    run.set_defaults(handler=_run)

    kg = sub.add_parser("keygen", help="write a new Ed25519 signing key pair: KEY (private, 0600) and KEY.pub")
    kg.add_argument("key", help="where to write the private key")
    kg.set_defaults(handler=_keygen)

    tg = sub.add_parser("targets", help="list the target names")
    tg.set_defaults(handler=_targets)

    demo = sub.add_parser("demo", help="the bundled BERT-style example dense, sparse, patterned and circulant against "
                                       "ONNX Runtime and torch, then RT3 levels switched along a DVFS trace")
    demo.add_argument("--repeat", type=int, default=20, help="timed runs per engine (default 20)")
    demo.add_argument("--output", "-o", default="out/demo", help="where to write the model, artifacts and RT3 report")
    demo.set_defaults(handler=_demo)

    from gearshift.cli.bench import add_commands as add_bench_commands
    from gearshift.cli.device import add_commands as add_device_commands
    from gearshift.cli.gpu import add_commands as add_gpu_commands
    from gearshift.cli.rt3 import add_commands as add_rt3_commands
    from gearshift.cli.tune import add_commands as add_tune_commands

    add_rt3_commands(sub)
    add_tune_commands(sub)
    add_bench_commands(sub)
    add_device_commands(sub)
    add_gpu_commands(sub)
    return p


def _inspect(args: argparse.Namespace) -> int:
    from gearshift.frontend.inventory import inventory
    from gearshift.frontend.load import load

    layers = inventory(load(args.model, input_shapes=parse_input_shapes(args.input_shape)))
    if args.json:
        print(json.dumps([layer.to_json() for layer in layers], indent=2))
        return 0
    rows = [("layer", "kind", "weight shape", "MFLOPs", "params", "sparsity", "blocks", "circulant")]
    for layer in layers:
        block = "-" if layer.block is None else (
            layer.block if layer.block == "unstructured" else f"{layer.block} ({layer.block_sparsity:.0%} empty)")
        rows.append((layer.name, layer.kind, "x".join(map(str, layer.weight_shape)), f"{layer.flops / 1e6:.2f}",
                     str(layer.params), f"{layer.sparsity:.1%}", block, f"b={layer.circulant}" if layer.circulant else "-"))
    print(format_table(rows))
    total = sum(layer.flops for layer in layers)
    print(f"{len(layers)} weight-carrying layers, {total / 1e6:.1f} MFLOPs, "
          f"{sum(layer.params for layer in layers)} parameters")
    return 0


def _compile(args: argparse.Namespace) -> int:
    from gearshift.compiler import compile_model, save

    out = Path(args.output)
    if out.exists() and not args.force:
        raise InputError(f"{out} exists; pass --force to replace it")
    if args.levels:
        if args.sparsity or args.layer_sparsity:
            raise InputError("--levels gives each level its sparsity: drop --sparsity/--layer-sparsity")
        from gearshift.levels_compiler import compile_levels_to

        art = compile_levels_to(args.model, args.levels, args.target, out, name=args.name, overwrite=args.force,
                                input_shapes=parse_input_shapes(args.input_shape), db=args.db, log=log,
                                sign_with=args.sign)
        size = sum(f["bytes"] for f in art.manifest["files"].values())
        log(f"wrote {out} ({size / 1e6:.2f} MB, {len(art.level_names)} levels, {art.manifest['rt3']['form']} form)")
        return 0
    from gearshift.relay_passes.plan import SparsityPlan

    plan = SparsityPlan.parse(args.sparsity, args.layer_sparsity, args.sparse_form)
    calibration = None
    if args.calibration:
        from gearshift.runtime.device import read_npz

        calibration = read_npz(Path(args.calibration))
    built = compile_model(args.model, args.target, input_shapes=parse_input_shapes(args.input_shape),
                          sparsity=plan, db=args.db, calibration=calibration, log=log)
    art = save(built, out, name=args.name or Path(args.model).stem, overwrite=args.force, sign_with=args.sign)
    size = sum(f["bytes"] for f in art.manifest["files"].values())
    log(f"wrote {out} ({size / 1e6:.2f} MB, target {built.target.name})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gearshift.runtime import device

    if _is_foreign_arm(args.artifact):  # (reads the manifest only; no code of the artifact is loaded)
        if args.trusted_key:  # refused here at once rather than after the phone's ~15 s start (it checks too)
            from gearshift.runtime import open_artifact

            open_artifact(args.artifact, args.trusted_key)
        return _run_emulated(args)
    summary = device.run_artifact(args.artifact, args.inputs, output=args.output, repeat=args.repeat, level=args.level,
                                  trusted_keys=args.trusted_key)
    device.print_summary(summary, args.json)
    return 0


def _is_foreign_arm(path: str) -> bool:
    """An aarch64 artifact on a machine that is not: it runs in the emulated phone."""
    import platform

    from gearshift.runtime import open_artifact

    return platform.machine() != "aarch64" and open_artifact(path).target.get("arch") == "aarch64"


def _run_emulated(args: argparse.Namespace) -> int:
    from gearshift.runtime.emulated import NOTE, find_root, run_python

    root = find_root()
    for name in ("inputs", "output"):
        if getattr(args, name):  # the phone resolves paths from its own working directory: pass them whole
            setattr(args, name, str(Path(getattr(args, name)).resolve()))
    if not Path(args.inputs).is_file():
        raise InputError(f"{args.inputs}: no such file")
    log(f"{NOTE}; starting it takes ~15 s")
    argv = ["-m", "gearshift.runtime.device", "run", str(Path(args.artifact).resolve()), "--inputs", args.inputs,
            *(["--output", args.output] if args.output else []), *(["--level", args.level] if args.level else []),
            *[arg for key in args.trusted_key for arg in ("--trusted-key", str(Path(key).resolve()) if Path(key).exists()
                                                          else key)],
            "--repeat", str(args.repeat), *(["--json"] if args.json else [])]
    return run_python(argv, root=root, capture=False).returncode


def _keygen(args: argparse.Namespace) -> int:
    from gearshift.runtime.signing import generate_key

    private, public = generate_key(args.key)
    log(f"wrote {private} (private: keep it secret) and {public} (public: give it to `run --trusted-key`)")
    return 0


def _targets(args: argparse.Namespace) -> int:
    from gearshift.schedules.targets import get_target, target_names

    rows = [("name", "runs on", "description")]
    rows += [(n, get_target(n).arch, get_target(n).description) for n in target_names()]
    print(format_table(rows))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from gearshift.cli.common import with_quiet_pools
    from gearshift.cli.demo import run_demo

    with_quiet_pools()
    print(run_demo(Path(args.output), repeat=args.repeat, log=log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
