"""Coverage-guided fuzzing of one target with atheris (libFuzzer under Python).

    python -m gearshift.fuzz.run TARGET [--seconds N] [--corpus DIR]     (`make fuzz` runs every target)

Starts from fuzz/corpus/TARGET (new interesting inputs are added there; crashes are written as
crash-* files in fuzz/crashes/ and stop the run). Prints the execution count at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("target")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--corpus", type=Path, help="the corpus folder to start from and grow (default: fuzz/corpus/TARGET)")
    args = ap.parse_args()
    import atheris

    with atheris.instrument_imports(include=["gearshift"]):
        from gearshift.fuzz.targets import TARGETS, run_one
    if args.target not in TARGETS:
        print(f"unknown target {args.target!r}; targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    corpus = args.corpus or HERE / "corpus" / args.target
    crashes = corpus.parent / "crashes" if args.corpus else HERE / "crashes"
    crashes.mkdir(exist_ok=True)

    def one(data: bytes) -> None:
        run_one(args.target, data)

    atheris.Setup([sys.argv[0], str(corpus), f"-max_total_time={args.seconds}", "-rss_limit_mb=4096",
                   "-timeout=20", f"-artifact_prefix={crashes}/{args.target}-", "-print_final_stats=1"], one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
