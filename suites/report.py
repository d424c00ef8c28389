"""report.md from results.json: ratios against every peer, the fraction of the ideal reached, the
RT3 run and the accuracy figures; every figure comes from the results, none is typed in."""

from __future__ import annotations

PEERS = ("torch", "torch BSR", "plain TVM", "gearshift dense")


def markdown(results: dict) -> str:
    m, t = results["machine"], results["timing"]
    peak = f"{m['fp32_peak_gflops']:.0f} GFLOP/s" if m.get("fp32_peak_gflops") else "not measured (x86 only)"
    lines = ["# gearshift bench" + (" (quick)" if results["quick"] else "")
             + (" - interrupted: the cases measured before the interrupt" if results.get("interrupted") else ""), "",
             f"Machine: {m['cpu']} ({m['isa']}), {m['cores']} cores, {m['threads']} threads for every engine; "
             f"fp32 FMA peak {peak}. tvm {m['tvm']}, onnxruntime {m['onnxruntime']}, torch {m['torch']}; {results['date']}.",
             f"Timing: {t['description']}; >= {t['repeat']} timed calls per engine, medians. "
             "Every engine runs the same weights, its output checked against ONNX Runtime first. "
             "Ratios are speedups: peer time / gearshift time (> 1: gearshift faster).", ""]
    suites = results["suites"]
    if "kernels" in suites:
        lines += ["## Kernels", "", *_cases_table(suites["kernels"]), *_skips(suites["kernels"]), ""]
    if "models" in suites:
        lines += ["## Models", "", *_cases_table(suites["models"]), *_skips(suites["models"]), ""]
    if "rt3" in suites:
        lines += _rt3(suites["rt3"])
    if "accuracy" in suites:
        lines += _accuracy(suites["accuracy"])
    if results.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]] + [""]
    seconds = results.get("seconds", {})
    lines.append("Run time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".")
    return "\n".join(lines) + "\n"


def _ms(entry: dict) -> float | None:
    return entry.get("median_ms")


def _cases_table(rows: list[dict]) -> list[str]:
    out = ["| case | ONNX Runtime ms | gearshift ms | vs ONNX Runtime | vs torch | vs torch BSR | vs plain TVM "
           "| vs gearshift dense | ideal | of ideal |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if row.get("error"):
            out.append(f"| {row['case']} | not built: {row['error']} |" + " |" * 8)
            continue
        e = row["engines"]
        main = e.get("gearshift") or e.get("gearshift dense")
        g = _ms(main) if main else None
        name = row["case"] + (f" ({row['structured_layers']} layers structured)" if row.get("structured_layers") else "")
        cells = [name, _f(_ms(e["onnxruntime"]), 3), _f(g, 3), _ratio(e["onnxruntime"], g)]
        cells += [_ratio(e.get(p, {}), g) if p != "gearshift dense" or "gearshift" in e else "-" for p in PEERS]
        ideal = row.get("ideal", 1.0)
        speedup = _ms(e["onnxruntime"]) / g if g else None
        cells += [f"{ideal:.1f}x" if ideal != 1 else "-",
                  f"{speedup / ideal:.0%}" if speedup and ideal != 1 else "-"]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("'of ideal': the speedup over ONNX Runtime dense divided by the ideal (1/density; circulant: the "
               "spectral product's FLOP ratio, b/2). Dense rows compare gearshift dense with the peers.")
    return out


def _ratio(entry: dict, gearshift_ms: float | None) -> str:
    if not entry:
        return "-"
    if entry.get("skipped"):
        return "skipped"
    ms = _ms(entry)
    return f"{ms / gearshift_ms:.2f}x" if ms and gearshift_ms else "-"


def _skips(rows: list[dict]) -> list[str]:
    reasons: dict[str, set[str]] = {}
    for row in rows:
        for name, entry in row["engines"].items():
            if entry.get("skipped"):
                reasons.setdefault(name, set()).add(entry["skipped"])
            if entry.get("note"):
                reasons.setdefault(name, set()).add(entry["note"])
            if entry.get("timing"):
                reasons.setdefault(name, set()).add("timed " + entry["timing"].split(" (")[0])
    return [""] + [f"- {name}: " + "; ".join(sorted(r)) for name, r in sorted(reasons.items())]


def _rt3(r: dict) -> list[str]:
    out = ["## RT3: three levels in one artifact, switched along a DVFS trace", "", f"Simulated: {r['simulated']}.", "",
           "| level | spec | ms here | vs ONNX Runtime dense | output error vs the unpruned model (random weights) |",
           "|---|---|---|---|---|"]
    for name, lv in r["levels"].items():
        out.append(f"| {name} | {lv['spec']} | {lv['median_ms']:.3f} | {lv['ratio_vs_onnxruntime']:.2f}x | "
                   f"{lv['error_vs_dense']:.3g} |")
    g, e = r["governor"], r["energy"]
    out += ["", f"A switch takes {r['switch_us']['median']:.2f} us (median; p90 {r['switch_us']['p90']:.2f} us). "
            f"Replaying the trace, the governor switched {g['switches']} times while "
            f"{sum(g['inferences'].values())} inferences ran ({', '.join(f'{k}: {v}' for k, v in g['inferences'].items())}).",
            f"Energy model, deadline {r['deadline_ms']:.2f} ms: battery-life gain {e['battery_gain']:.2f}x over the dense "
            f"model at the top frequency; deadline missed in {e['missed_fraction']:.1%} of inferences.", ""]
    return out


def _accuracy(a: dict) -> list[str]:
    out = ["## Accuracy: one-shot projection, no retraining", "",
           f"{a['model']}, {a['sentences']} sentences of {a['sequence']} tokens; cosine of each sentence's embedding "
           "to the dense model's.", "",
           "| structure | weights removed | cosine mean | cosine min | compiled: cosine to torch (min) |",
           "|---|---|---|---|---|"]
    for row in a["rows"]:
        c = row.get("compiled")
        out.append(f"| {row['family']} | {row['removed']:.1%} | {row['cosine_mean']:.3f} | {row['cosine_min']:.3f} | "
                   + (f"{c['cosine_to_torch_min']:.6f} (max abs diff {c['max_abs_difference']:.1e})" if c else "-") + " |")
    return out + [""]


def _f(x: float | None, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def summary(results: dict) -> str:
    """One screen: per kernel family and per model the best gearshift speedup over ONNX Runtime, the
    RT3 run in a line, the accuracy at the lowest compression."""
    from gearshift.bench import format_table

    suites = results["suites"]
    rows = [("suite", "what", "gearshift vs ONNX Runtime", "best case")]
    for name in ("kernels", "models"):
        best: dict[str, tuple[float, str]] = {}
        for row in suites.get(name, []):
            if row.get("error"):
                continue
            key = row.get("model", row.get("family")) if name == "models" else row["family"]
            engine = row["engines"].get("gearshift") or row["engines"].get("gearshift dense")
            if engine and engine.get("median_ms"):
                s = row["engines"]["onnxruntime"]["median_ms"] / engine["median_ms"]
                if s > best.get(key, (0.0, ""))[0]:
                    best[key] = (s, row["case"])
        rows += [(name, key, f"{s:.2f}x", case) for key, (s, case) in best.items()]
    if "rt3" in suites:
        r = suites["rt3"]
        rows.append(("rt3", f"{len(r['levels'])} levels, {r['governor']['switches']} switches",
                     f"{min(v['ratio_vs_onnxruntime'] for v in r['levels'].values()):.2f}-"
                     f"{max(v['ratio_vs_onnxruntime'] for v in r['levels'].values()):.2f}x",
                     f"battery-life gain {r['energy']['battery_gain']:.2f}x (simulated DVFS)"))
    if "accuracy" in suites:
        for row in suites["accuracy"]["rows"]:
            if abs(row["removed"] - 0.5) < 1e-9:
                rows.append(("accuracy", f"{row['family'].split(' (')[0]}, 50 % removed", "-",
                             f"embedding cosine {row['cosine_mean']:.3f}"))
    return format_table(rows) + f"\n\nfull report: report.md beside results.json ({results['seconds']['total']:.0f} s)"
