"""The per-ISA code check as a table: each schedule rule and sparse kernel built for AVX2, AVX-512
and NEON, its hot loop read from the assembly (no timing: most of these ISAs are not on this machine).

Columns: FMAs per iteration of the hot loop and their width, accumulator registers (expected: the
design's register block), loads per FMA, stack accesses (spills), per-lane moves or gathers.
Writes benchmarks/results/code_check.{json,md}.

    python benchmarks/code_check.py
"""

from __future__ import annotations

from common import log, table, write_results

from gearshift.codecheck import CASES, ISAS, run


def main() -> None:
    rows, md = [], [("case", "ISA", "FMAs / iter", "bits", "accumulators (expected)", "loads / FMA", "spills",
                     "lane moves", "verdict")]
    for case in CASES:
        for isa in ISAS:
            result = run(case, isa)
            loop = result.loop
            log(f"{case.name} {isa}: {'ok' if result.ok else '; '.join(result.problems)}")
            rows.append({"case": case.name, "what": case.what, "isa": isa, "target": ISAS[isa],
                         "hot_loop": loop.as_dict() if loop else None,
                         "expected_accumulators": result.expected_accumulators, "problems": list(result.problems)})
            md.append((case.name, isa, loop.fmas if loop else "-", "/".join(map(str, loop.fma_bits)) if loop else "-",
                       f"{loop.accumulators} ({result.expected_accumulators})" if loop else "-",
                       f"{loop.loads_per_fma:.2f}" if loop else "-", loop.stack if loop else "-",
                       loop.lane_ops if loop else "-", "ok" if result.ok else "; ".join(result.problems)))
    bad = sum(1 for r in rows if r["problems"])
    text = (f"# Hot loops per ISA (read from the assembly, not timed)\n\n{table(md)}\n\n"
            f"{len(rows) - bad} of {len(rows)} (kernel, ISA) pairs pass.\n\n"
            + "\n".join(f"- `{c.name}`: {c.what}" for c in CASES))
    write_results("code_check", {"cases": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
