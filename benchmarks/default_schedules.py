"""Dense models with gearshift's default CPU schedules (no tuning) against ONNX Runtime and torch.

Cases (fp32, one process, engines in alternating blocks; call-by-call interleaving beside it):
  mlp        768 -> 3072 -> GELU -> 768 at batch 128                 bar: <= 1.1x ONNX Runtime
  bert4      4-layer BERT-base-shaped encoder, seq 128, batch 1      bar: <= 1.5x
  vgg-*      VGG-16-shaped 3x3 convs (+bias, ReLU), batch 1          bar: <= 1.2x
  s2-*       ResNet-18's stride-2 3x3 convs (+bias, ReLU), batch 1   bar: <= 1.2x
Writes benchmarks/results/default_schedules.{json,md}.

    python benchmarks/default_schedules.py [--repeat 20] [--cases mlp,bert4,vgg56,vgg28,vgg14]
"""

from __future__ import annotations

import argparse
import time

from common import aligned, compare, log, machine_note, ort_session, table, threads_note, write_results  # first: sets thread env
import numpy as np
import torch
from gearshift.suites.peak import fma_peak_gflops

import gearshift
from gearshift.bench import thread_count
from gearshift.frontend.examples import BertConfig, bert_inputs, mlp, tiny_bert
from gearshift.frontend.load import export_torch

BARS = {"mlp": 1.1, "bert4": 1.5, "vgg56": 1.2, "vgg28": 1.2, "vgg14": 1.2, "s2-56": 1.2, "s2-28": 1.2, "s2-14": 1.2}
STRIDE2 = {"s2-56": (64, 128, 56), "s2-28": (128, 256, 28), "s2-14": (256, 512, 14)}  # (in, out, input size)


class ConvRelu(torch.nn.Module):
    def __init__(self, channels: int, out: int | None = None, stride: int = 1):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, out or channels, 3, stride=stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def case(name: str):
    """(torch module, inputs dict, FLOPs of the weight layers)"""
    rng = np.random.default_rng(0)
    if name == "mlp":
        return mlp((768, 3072, 768)), {"x": rng.standard_normal((128, 768)).astype(np.float32)}, 2 * 2 * 128 * 768 * 3072
    if name == "bert4":
        cfg = BertConfig(vocab_size=30522, hidden=768, layers=4, heads=12, ffn=3072, max_positions=512)
        per_layer = 2 * 128 * 768 * (4 * 768 + 2 * 3072) + 2 * 2 * 128 * 128 * 768
        return tiny_bert(cfg), bert_inputs(cfg, batch=1, seq_len=128), 4 * per_layer
    if name in STRIDE2:
        ci, co, hw = STRIDE2[name]
        out = (hw - 1) // 2 + 1
        return (ConvRelu(ci, co, 2).eval(), {"x": rng.standard_normal((1, ci, hw, hw)).astype(np.float32)},
                2 * ci * co * 9 * out * out)
    size = {"vgg56": (128, 56), "vgg28": (256, 28), "vgg14": (512, 14)}[name]
    c, hw = size
    module = ConvRelu(c).eval()
    return module, {"x": rng.standard_normal((1, c, hw, hw)).astype(np.float32)}, 2 * c * c * 9 * hw * hw


def run_case(name: str, repeat: int) -> dict:
    module, feeds, flops = case(name)
    feeds = {k: aligned(v) for k, v in feeds.items()}  # every engine reads the same 64-byte aligned arrays
    proto = export_torch(module, feeds, output_names=["y"])
    t0 = time.perf_counter()
    session = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host"), f"out/bench-{name}",
                                               overwrite=True))
    compile_s = time.perf_counter() - t0
    ort = ort_session(proto.SerializeToString())
    torch_in = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        outputs = {"gearshift": session.run(feeds)["y"], "onnxruntime": ort.run(None, feeds)[0],
                   "torch": module(**torch_in).numpy() if name.startswith("bert") else module(*torch_in.values()).numpy()}
        call = (lambda: module(**torch_in)) if name.startswith("bert") else (lambda: module(*torch_in.values()))
        row = compare(name, {"gearshift": lambda: session.run(feeds), "onnxruntime": lambda: ort.run(None, feeds),
                             "torch": call}, outputs, repeat=repeat, flops=flops)
    row["compile_seconds"] = round(compile_s, 2)
    row["bar"] = BARS[name]
    log(f"{name}: gearshift/ORT {row['engines']['gearshift']['ratio_vs_onnxruntime']:.2f}x, compile {compile_s:.1f} s")
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--cases", default=",".join(BARS))
    args = p.parse_args()
    torch.set_num_threads(thread_count())
    peak = fma_peak_gflops()
    rows = [run_case(name, args.repeat) for name in args.cases.split(",")]
    md = [("case", "gearshift ms", "ONNX Runtime ms", "torch ms", "gearshift / ORT", "bar", "interleaved", "torch / ORT",
           "gearshift GFLOP/s", "of fp32 peak", "max abs err", "compile s")]
    for r in rows:
        g, o, t = (r["engines"][k] for k in ("gearshift", "onnxruntime", "torch"))
        md.append((r["case"], f"{g['median_ms']:.2f}", f"{o['median_ms']:.2f}", f"{t['median_ms']:.2f}",
                   f"{g['ratio_vs_onnxruntime']:.2f}x", f"<= {r['bar']}x", f"{g['interleaved_ratio']:.2f}x",
                   f"{t['ratio_vs_onnxruntime']:.2f}x",
                   f"{g['gflops']:.0f}", f"{g['gflops'] / peak:.0%}" if peak else "n/a",
                   f"{g['max_abs_error']:.1e}", r["compile_seconds"]))
    text = (f"# Default schedules vs peers\n\n{table(md)}\n\n{threads_note()}; {machine_note()}; medians of "
            f"{args.repeat} runs per engine in alternating blocks (3 warm-ups per block; 'interleaved': call by "
            f"call, the secondary mode); fp32 FMA peak measured at {peak:.0f} GFLOP/s (benchmarks/peak.py)."
            if peak else "")
    write_results("default_schedules", {"fma_peak_gflops": peak, "repeat": args.repeat, "cases": rows}, text)
    print(text)


if __name__ == "__main__":
    main()
