"""`gearshift demo` / `make demo`: what compression buys, on the bundled BERT-style encoder.

1. The model (built in code, no download) compiled dense, at 80 % block sparsity (16x1 blocks),
   with block patterns and block-circulant weights: each variant's weights are projected first, so
   ONNX Runtime and torch run exactly the numbers gearshift runs (its "dense twin"). One table: time
   against ONNX Runtime and torch, error against the dense twin, artifact size.
2. One RT3 artifact with three levels, switched by the governor along the bundled DVFS trace
   (simulated: this machine has no cpufreq), with the level table and the energy estimate.
3. The commands to try next.
"""

from __future__ import annotations

from pathlib import Path

from gearshift.spec import Log

NEXT = """Try next:
  gearshift inspect out/demo/demo-bert.onnx                      the model's layers
  gearshift compile out/demo/demo-bert.onnx --sparsity bsr:0.8:16x1 -o out/my-model
  gearshift tune out/demo/demo-bert.onnx --sparsity bsr:0.8:16x1 --db out/tuning --trials 16
  gearshift levels out/demo/artifacts/rt3-levels --profile sd855-gold --deadline-ms 10
  gearshift bench --suite all --quick -o out/bench                 every peer, every structure, plots"""


def run_demo(out_dir: Path, repeat: int = 20, log: Log = lambda _msg: None) -> str:
    import torch

    from gearshift.bench import machine
    from gearshift.cli.common import format_table
    from gearshift.frontend.load import export_torch
    from gearshift.suites import models, rt3
    from gearshift.suites import structures as S

    out_dir = Path(out_dir)
    workdir = out_dir / "artifacts"
    workdir.mkdir(parents=True, exist_ok=True)
    module, feeds = models.demo_model()
    with torch.no_grad():
        (out_dir / "demo-bert.onnx").write_bytes(export_torch(module, feeds, output_names=["y"]).SerializeToString())
    log("the bundled model: a BERT-style encoder, 4 layers, 512 wide, sequence 128 (random weights)")

    rows = [("variant", "gearshift ms", "vs ONNX Runtime", "vs torch", "error vs dense twin", "artifact MB")]
    for structure in (None, S.bsr(0.2), S.block_patterns(0.125), S.circulant_blocks(8)):
        label = structure.label if structure else "dense"
        log(f"compiling and checking: {label}")
        row = models.case("demo", module, feeds, structure, workdir, log=log).run(repeat)
        engines = row["engines"]
        mine = engines.get("gearshift") or engines["gearshift dense"]
        if "median_ms" not in mine:
            rows.append((label, "-", "-", "-", mine.get("skipped", "not run"), "-"))
            continue
        ms = mine["median_ms"]
        rows.append((label, f"{ms:.3f}", f"{engines['onnxruntime']['median_ms'] / ms:.2f}x",
                     f"{engines['torch']['median_ms'] / ms:.2f}x" if "median_ms" in engines["torch"] else "-",
                     f"{mine['relative_error']:.1e}", f"{mine['facts']['artifact_bytes'] / 1e6:.1f}"))

    log("RT3: three levels in one artifact, switched along the bundled trace")
    r = rt3.run(True, out_dir, workdir, repeat=repeat, log=log)
    levels = [("level", "spec", "ms here", "vs ONNX Runtime dense", "output error vs the unpruned model")]
    levels += [(n, lv["spec"], f"{lv['median_ms']:.3f}", f"{lv['ratio_vs_onnxruntime']:.2f}x", f"{lv['error_vs_dense']:.3g}")
               for n, lv in r["levels"].items()]
    table = [("device MHz", "level", "predicted ms", "meets deadline")]
    table += [(f"{t['mhz']:g}", t["level"], f"{t['predicted_ms']:.3f}", "yes" if t["meets"] else "NO") for t in r["table"]]
    e, g = r["energy"], r["governor"]
    m = machine()
    return "\n".join([
        format_table(rows),
        "Each variant's weights are projected first; ONNX Runtime and torch run the same weights ('dense twin'). "
        "Speedups: their time / gearshift's.", "",
        format_table(levels),
        "The levels prune the model's random weights in one shot: the output error says how far each level moves "
        "the outputs, not what a trained model would lose.", "",
        f"Level table for the {rt3.PROFILE} profile, deadline {r['deadline_ms']:.2f} ms:",
        format_table(table), "",
        f"{r['simulated']}.",
        f"Governor: {g['switches']} switches while {sum(g['inferences'].values())} inferences ran; "
        f"a switch takes {r['switch_us']['median']:.2f} us. Energy estimate: battery-life gain "
        f"{e['battery_gain']:.2f}x over the dense model at the top frequency "
        f"(deadline missed in {e['missed_fraction']:.1%} of inferences); report in {out_dir / 'rt3'}.", "",
        f"machine: {m['cpu']} ({m['isa']}), {m['cores']} cores, {m['threads']} threads for every engine; engines timed "
        "in alternating blocks (the benchmark protocol's headline mode).", "",
        NEXT])
