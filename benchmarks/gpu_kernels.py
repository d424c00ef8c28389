"""GPU targets without a GPU: every OpenCL kernel of three real-shaped models, run on pocl, and the
GPU cost estimate per layer, dense against sparse, for Mali-G76 and Adreno 640.

    python benchmarks/gpu_kernels.py [--quick]   -> results/gpu_kernels.{json,md}

Models (the issue's bars):
  - a BERT-base-shaped encoder, 2 layers (hidden 768, 12 heads, FFN 3072, sequence 128) at 80 % BSR;
  - VGG-16's 13 3x3 conv layers (torchvision's `features`, 224 x 224) with 8 patterns, half the kernels kept;
  - a block-circulant b = 16 layer (768 -> 3072, 128 rows: BERT-base's FFN shape).
Each is built for both GPU targets as `gearshift compile` builds it; every kernel runs on this
machine's OpenCL (pocl) in graph order: dense kernels against their unscheduled form on the CPU,
sparse kernels against numpy in float64 when the pass makes them, the outputs against the same
compressed model built for this CPU. Tolerance 1e-4 abs / 1e-3 rel throughout.

No time here is a GPU's: pocl runs on the CPU. The per-layer GPU times are *predictions* from the
targets' published peak FLOP/s and bandwidth (`relay_passes/gpu_costs.py`), labelled so. `--quick`
shrinks every model (for a smoke run), and says so in the results.
"""

from __future__ import annotations

from common import log, machine_note, table, write_results  # noqa: I001  (first: quiet thread pools)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert  # noqa: E402
from gearshift.gpu_check import check_gpu  # noqa: E402
from gearshift.relay_passes.gpu_costs import LABEL  # noqa: E402
from gearshift.runtime.opencl import device_name  # noqa: E402

TARGETS = ("mali-g76", "adreno-640")


class Linear(torch.nn.Module):
    def __init__(self, k: int, n: int):
        super().__init__()
        self.fc = torch.nn.Linear(k, n)

    def forward(self, x):
        return self.fc(x)


def models(quick: bool) -> list[tuple[str, torch.nn.Module, dict, dict, str]]:
    """(name, module, feeds, load arguments, sparsity) per model."""
    from gearshift.frontend.torch_compat import make_torchvision_importable

    make_torchvision_importable()  # (its C ops do not load beside the CPU torch wheel; not needed here)
    import torchvision

    torch.manual_seed(0)
    bert = BertConfig(vocab_size=1000, hidden=768, layers=2, heads=12, ffn=3072, max_positions=128) if not quick \
        else BertConfig(hidden=128, layers=2, heads=4, ffn=512, max_positions=32)
    seq = 128 if not quick else 32
    feeds_b = bert_inputs(bert, batch=1, seq_len=seq)
    vgg = torchvision.models.vgg16(weights=None).features.eval()
    side = 224 if not quick else 32
    x_v = torch.randn(1, 3, side, side)
    rows, k, n = (128, 768, 3072) if not quick else (16, 128, 256)
    x_c = torch.randn(rows, k)
    return [
        (f"BERT-base encoder, 2 layers, seq {seq}" if not quick else "BERT (quick: hidden 128)", tiny_bert(bert),
         feeds_b, {"example_inputs": feeds_b}, "bsr:0.8"),
        (f"VGG-16 3x3 convs, {side}x{side}", vgg, {"x": x_v.numpy()}, {"example_inputs": (x_v,), "input_names": ["x"]},
         "pattern:8:0.5"),
        (f"circulant b=16, {rows}x{k} -> {n}", Linear(k, n), {"x": x_c.numpy()},
         {"example_inputs": (x_c,), "input_names": ["x"]}, "circulant:16"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small models (a smoke run; says so in the results)")
    args = ap.parse_args()
    results = []
    for name, module, feeds, load_args, sparsity in models(args.quick):
        for target in TARGETS:
            t = time.perf_counter()
            log(f"{name} for {target}, {sparsity}: building and running every kernel on pocl")
            check = check_gpu(module, target, feeds, sparsity=sparsity, **load_args)
            seconds = time.perf_counter() - t
            sparse = [layer for layer in check.layers if layer.decision != "dense"]
            rules: dict[str, int] = {}
            for kernel in check.run.kernels:
                rules[kernel.rule] = rules.get(kernel.rule, 0) + 1
            entry = {
                "model": name, "target": target, "sparsity": sparsity, "seconds": round(seconds, 1),
                "kernels_run": len(check.run.kernels), "rules": rules,
                "worst_dense_kernel_error": check.run.worst,
                "worst_sparse_kernel_error": max((layer.check_error or 0.0 for layer in sparse), default=None),
                "sparse_kernels_checked": sum(layer.check_error is not None for layer in sparse),
                "output_error": check.output_error, "output_relative_l2": check.relative_l2,
                "reference": check.reference_kind, "matches": check.matches(),
                "layers": [{"name": layer.name, "decision": layer.decision, "block": layer.block,
                            "density": round(layer.density, 3), "gpu": layer.gpu, "why": layer.why}
                           for layer in check.layers],
            }
            results.append(entry)
            log(f"  {entry['kernels_run']} kernels on pocl, {len(sparse)} sparse layers; worst kernel errors "
                f"{entry['worst_dense_kernel_error']:.1e} (dense) / {entry['worst_sparse_kernel_error'] or 0:.1e} (sparse); "
                f"outputs {entry['output_error']:.1e} (relative L2 {entry['output_relative_l2']:.1e}) vs "
                f"{entry['reference']} ({seconds:.0f} s)")
    payload = {"quick": args.quick, "opencl": device_name(), "prediction_label": LABEL, "results": results,
               "note": "kernels run on pocl (an OpenCL on the CPU): results real, no GPU time measured; "
                       "per-layer GPU times are predictions"}
    write_results("gpu_kernels" + ("_quick" if args.quick else ""), payload, markdown(payload))


def markdown(payload: dict) -> str:
    lines = [f"# GPU kernels on pocl, and predicted GPU time per layer{' (QUICK: small models)' if payload['quick'] else ''}",
             "", f"Machine: {machine_note()}; OpenCL: {payload['opencl']}. Every kernel ran; no time below is "
             "measured: the per-layer times are **predictions** from published peaks (no GPU here).", "",
             "## Every kernel run on pocl (tolerance 1e-4 abs / 1e-3 rel)", ""]
    rows = [("model", "target", "kernels run", "rules", "worst dense kernel", "worst sparse kernel", "outputs vs",
             "max error", "relative L2", "ok")]
    for r in payload["results"]:
        rows.append((r["model"], r["target"], r["kernels_run"], ", ".join(f"{k} x{v}" for k, v in sorted(r["rules"].items())),
                     f"{r['worst_dense_kernel_error']:.1e}", f"{r['worst_sparse_kernel_error'] or 0:.1e}"
                     f" ({r['sparse_kernels_checked']} checked)", r["reference"], f"{r['output_error']:.1e}",
                     f"{r['output_relative_l2']:.1e}", "yes" if r["matches"] else "NO"))
    lines += [table(rows), "", "## Predicted GPU time per layer, dense against the compressed kernel", "",
              f"All times {payload['prediction_label']}.", ""]
    for r in payload["results"]:
        rows = [("layer", "became", "dense us", "sparse us", "predicted speedup", "bound (sparse)")]
        for layer in r["layers"]:
            g = layer["gpu"]
            if g:
                rows.append((layer["name"], f"{layer['decision']} {layer['block'] or ''}", f"{g['dense']['microseconds']:.1f}",
                             f"{g['sparse']['microseconds']:.1f}", f"{g['predicted_speedup']:.2f}x", g["sparse"]["bound"]))
        if len(rows) > 1:
            total_d = sum(float(x[2]) for x in rows[1:])
            total_s = sum(float(x[3]) if not x[1].startswith("dense") else float(x[2]) for x in rows[1:])
            lines += [f"### {r['model']}, {r['target']}", "", table(rows), "",
                      f"Layers above together (predicted): {total_d:.0f} us dense, {total_s:.0f} us as compiled "
                      f"({total_d / total_s:.2f}x).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
