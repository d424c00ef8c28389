"""A whole VGG-16- or ResNet-18-shaped network with pattern sparsity in every 3x3 conv, against ONNX Runtime.

VGG-16 (the default): its 13 convs (224 x 224 input, batch 1, fp32, random weights) with ReLU and max
pooling, then a small head (global average pool, 512 -> 1000) in place of VGG's 120 M-parameter
classifier. ResNet-18 (`--model resnet18`): the 7x7 stem, 8 basic blocks (16 3x3 convs, three of
them stride 2, with 1x1 stride-2 shortcuts), global average pool and 512 -> 1000; no batch norm (a
conv bias instead: with random weights it would only rescale). Every 3x3 conv is projected onto
4-of-9 patterns (a library of 4 per layer) with 72 % of its kernels removed (PatDNN's VGG-16 rate);
the stem and the shortcuts stay dense. Engines interleaved in one run, all on the same masked ONNX: gearshift
with `--sparsity pattern` (the patterns already in the weights), ONNX Runtime, gearshift dense,
torch dense. The pass decides per layer. Pruned weights are rescaled to their dense norm so that
activations keep their scale through the layers (errors are then comparable with the outputs).
Writes benchmarks/results/pattern_model.{json,md} (VGG-16) or pattern_model_resnet18.{json,md}.

    python benchmarks/pattern_model.py [--model vgg16|resnet18] [--repeat 10] [--size 224]
"""

from __future__ import annotations

import argparse

from common import aligned, compare, log, ort_session, table, threads_note, write_results  # first: sets thread env
import numpy as np
import torch
from torch import nn

import gearshift
from gearshift.bench import thread_count
from gearshift.frontend.load import export_torch
from gearshift.frontend.patterns import is_pattern_conv, library, project

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
PATTERNS, CONNECTIVITY = 4, 0.72


def vgg16_shaped() -> nn.Module:
    layers, channels = [], 3
    for v in VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
            channels = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1000)).eval()


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convs with an identity (or 1x1 stride-2) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))


def resnet18_shaped() -> nn.Module:
    blocks, channels = [], 64
    for width, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
        blocks.append(BasicBlock(channels, width, stride))
        channels = width
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, 1), *blocks,
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 1000)).eval()


MODELS = {"vgg16": ("VGG-16-shaped", vgg16_shaped, "pattern_model"),
          "resnet18": ("ResNet-18-shaped", resnet18_shaped, "pattern_model_resnet18")}


def prune_convs(model: nn.Module) -> int:
    """Project every 3x3 conv onto its pattern library plus connectivity pruning; returns the count."""
    count = 0
    with torch.no_grad():
        for m in model.modules():
            if is_pattern_conv(m):
                w = m.weight.numpy()
                pruned = project(w, library(w, PATTERNS), CONNECTIVITY)[0]
                # rescaled to the dense norm, so activations keep their scale through the layers
                m.weight.copy_(torch.from_numpy(pruned * (np.linalg.norm(w) / np.linalg.norm(pruned))))
                count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default="vgg16")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    torch.set_num_threads(thread_count())
    torch.manual_seed(0)
    title, make, results = MODELS[args.model]
    model = make()
    convs = prune_convs(model)
    x = aligned(np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32))
    proto = export_torch(model, {"x": x}, output_names=["y"])
    log("compiling (pattern)")
    built = gearshift.compile_model(proto, "host", sparsity="pattern", log=log)
    sparse = gearshift.Session(gearshift.save(built, f"out/bench-{args.model}-pattern", overwrite=True))
    log("compiling (dense)")
    dense = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity="dense"),
                                             f"out/bench-{args.model}-dense", overwrite=True))
    ort = ort_session(proto.SerializeToString())
    feeds, tx = {"x": x}, torch.from_numpy(x)
    with torch.no_grad():
        outputs = {"gearshift_pattern": sparse.run(feeds)["y"], "onnxruntime": ort.run(None, feeds)[0],
                   "gearshift_dense": dense.run(feeds)["y"], "torch_dense": model(tx).numpy()}
        row = compare(f"{title} {args.size}x{args.size}", {
            "gearshift_pattern": lambda: sparse.run(feeds), "onnxruntime": lambda: ort.run(None, feeds),
            "gearshift_dense": lambda: dense.run(feeds), "torch_dense": lambda: model(tx)}, outputs, repeat=args.repeat)
    layers = built.report["sparse_layers"]
    e = row["engines"]
    row["max_abs_output"] = float(np.abs(outputs["onnxruntime"]).max())
    row.update(convs=convs, pattern_layers=sum(layer["decision"] == "pattern" for layer in layers),
               layers=[{k: layer[k] for k in ("name", "decision", "why", "density", "dense_bytes", "packed_bytes")}
                       for layer in layers],
               speedup_vs_ort=e["onnxruntime"]["median_ms"] / e["gearshift_pattern"]["median_ms"],
               speedup_vs_dense=e["gearshift_dense"]["median_ms"] / e["gearshift_pattern"]["median_ms"])
    log(f"{row['case']}: {row['speedup_vs_ort']:.2f}x ORT, {row['speedup_vs_dense']:.2f}x gearshift dense "
        f"({row['pattern_layers']} of {convs} convs pattern-sparse)")
    rows = [("engine", "median ms", "p90 ms", "vs ORT", "max err vs ORT")]
    for name in ("gearshift_pattern", "onnxruntime", "gearshift_dense", "torch_dense"):
        s = e[name]
        rows.append((name, f"{s['median_ms']:.1f}", f"{s['p90_ms']:.1f}", f"{e['onnxruntime']['median_ms'] / s['median_ms']:.2f}x",
                     f"{s['max_abs_error']:.1e}"))
    dense_mb = sum(layer["dense_bytes"] for layer in layers) / 1e6
    packed_mb = sum(layer["packed_bytes"] for layer in layers) / 1e6
    text = (f"# {row['case']}, pattern sparsity in every 3x3 conv ({PATTERNS} patterns of 4-of-9, "
            f"{1 - CONNECTIVITY:.0%} of kernels kept)\n\n{table(rows)}\n\n{row['pattern_layers']} of {convs} convs run "
            f"the pattern kernel; conv weights {dense_mb:.1f} -> {packed_mb:.1f} MB; outputs up to {row['max_abs_output']:.2g}. {threads_note()}; medians of "
            f"{args.repeat} interleaved runs after 3 warm-ups.")
    write_results(results, {"repeat": args.repeat, "result": row}, text)
    print(text)


if __name__ == "__main__":
    main()
