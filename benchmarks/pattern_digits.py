"""Pattern pruning on real data: a small CNN on scikit-learn's bundled digits (8x8 images, no
download), both 3x3 convs pruned to 4-of-9 patterns (a library of 4 per layer) with ADMM, the
second conv also connectivity-pruned (60 % of its kernels removed): >= 80 % of all conv weights
zero. Compared with its dense twin; the pruned model is also compiled by gearshift with
`--sparsity pattern` (its patterns become pattern-conv kernels) and re-measured through the artifact.

Bar: the pruned model loses <= 1 point of test accuracy.
Writes benchmarks/results/pattern_digits.{json,md}.

    python benchmarks/pattern_digits.py [--epochs 40] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse

from common import log, table, write_results  # first: sets thread env
import numpy as np
import torch
from prune_digits import accuracy, accuracy_rows, dense_twin, digits_split, train
from torch import nn

import gearshift
from gearshift.frontend.load import export_torch
from gearshift.frontend.patterns import PatternPruner


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 10))


class Pruners:
    """Several pruners (one per connectivity rate) behind the one-pruner interface `train` uses."""

    def __init__(self, *pruners: PatternPruner):
        self.pruners = pruners

    def penalty(self) -> torch.Tensor:
        return sum(p.penalty() for p in self.pruners)

    def step(self, loss=None) -> None:
        for p in self.pruners:
            p.step(loss)


def run_seed(seed: int, epochs: int) -> dict:
    data = digits_split(seed)
    x_test, y_test, xt, yt, xv, yv = data
    dense_acc, pruned = dense_twin(make_model, seed, epochs, data)
    first = PatternPruner(pruned, patterns=4, connectivity=0.0, layers="^1$", rho=1e-2, update_every=20)
    second = PatternPruner(pruned, patterns=4, connectivity=0.6, layers="^3$", rho=1e-2, update_every=20)
    train(pruned, xt, yt, epochs, 1e-3, pruner=Pruners(first, second), seed=seed + 1)  # ADMM phase
    for p in (first, second):
        p.prune()
    after_prune = accuracy(pruned, xv, yv)
    train(pruned, xt, yt, epochs, 5e-4, seed=seed + 2)  # masked fine-tuning
    for p in (first, second):
        p.finalize()
    pruned_acc = accuracy(pruned, xv, yv)
    convs = [pruned[1].weight, pruned[3].weight]
    sparsity = float(sum((w == 0).sum() for w in convs) / sum(w.numel() for w in convs))

    proto = export_torch(pruned.eval(), {"image": x_test}, output_names=["logits"])
    built = gearshift.compile_model(proto, "host", sparsity="pattern")
    session = gearshift.Session(gearshift.save(built, f"out/digits-pattern-{seed}", overwrite=True))
    compiled_acc = float((session.run({"image": x_test})["logits"].argmax(1) == y_test).mean())
    layers = [f"{layer['name']}: {layer['decision']}" for layer in built.report["sparse_layers"]]
    log(f"seed {seed}: dense {dense_acc:.2%}, pruned {pruned_acc:.2%}, compiled {compiled_acc:.2%}, "
        f"conv sparsity {sparsity:.1%}")
    return {"seed": seed, "dense": dense_acc, "model": pruned_acc, "after_prune": after_prune, "compiled": compiled_acc,
            "points_lost": (dense_acc - pruned_acc) * 100, "conv_sparsity": sparsity, "layers": layers}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    runs = [run_seed(int(s), args.epochs) for s in args.seeds.split(",")]
    rows, summary = accuracy_rows(runs, "pruned", [("right after hard prune", lambda r: f"{r['after_prune']:.2%}"),
                                                   ("conv weights zero", lambda r: f"{r['conv_sparsity']:.1%}"),
                                                   ("layers", lambda r: "; ".join(r["layers"]))])
    lost = [r["points_lost"] for r in runs]
    text = (f"# Pattern pruning on digits (4-of-9 patterns, library of 4; 60 % of conv2's kernels removed)\n\n"
            f"{table(rows)}\n\n{summary}; "
            f"CNN conv 1->16, conv 16->32, pool, linear; {args.epochs} epochs dense, {args.epochs} ADMM, "
            f"{args.epochs} masked fine-tuning; 1257 train / 540 test images per seed.")
    write_results("pattern_digits", {"epochs": args.epochs, "runs": runs, "mean_points_lost": float(np.mean(lost))}, text)
    print(text)


if __name__ == "__main__":
    main()
