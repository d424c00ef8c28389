"""Block pruning on real data: an MLP on scikit-learn's bundled digits (8x8 images, no download),
pruned to 80 % block sparsity (16x1 blocks) with reweighted group lasso, against its dense twin.
The pruned model is also exported and compiled by gearshift with `--sparsity bsr` (its zeros become
block-sparse kernels), and its accuracy re-measured through the compiled artifact.

Bar: the pruned model loses <= 1 point of test accuracy.
Writes benchmarks/results/prune_digits.{json,md}.

    python benchmarks/prune_digits.py [--epochs 60] [--seed 0]
"""

from __future__ import annotations

import argparse

from common import log, table, write_results  # first: sets thread env
import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import gearshift
from gearshift.frontend.load import export_torch
from gearshift.frontend.pruning import BlockPruner

HIDDEN = 256


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 10))


def train(model: nn.Module, x, y, epochs: int, lr: float, pruner: BlockPruner | None = None, seed: int = 0) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            if pruner is not None:
                loss = loss + pruner.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if pruner is not None:
                pruner.step()


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sparsity", type=float, default=0.8)
    args = p.parse_args()
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=args.seed,
                                                        stratify=digits.target)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    xv, yv = torch.from_numpy(x_test), torch.from_numpy(y_test).long()

    dense = make_model(args.seed)
    train(dense, xt, yt, args.epochs, 1e-3, seed=args.seed)
    dense_acc = accuracy(dense, xv, yv)
    log(f"dense: {dense_acc:.2%}")

    pruned = make_model(args.seed)
    pruned.load_state_dict(dense.state_dict())  # start from the dense twin, as the paper does
    pruner = BlockPruner(pruned, block=(16, 1), sparsity=args.sparsity, layers=r"^[02]$", lam=2e-4, refresh_every=20)
    train(pruned, xt, yt, args.epochs // 2, 1e-3, pruner=pruner, seed=args.seed + 1)  # group lasso phase
    lasso_acc = accuracy(pruned, xv, yv)
    pruner.prune()
    after_prune = accuracy(pruned, xv, yv)
    train(pruned, xt, yt, args.epochs // 2, 5e-4, seed=args.seed + 2)  # fine-tune, masks fixed
    pruner.finalize()
    pruned_acc = accuracy(pruned, xv, yv)
    sparsity = pruner.report()
    log(f"pruned: {pruned_acc:.2%} (before fine-tuning {after_prune:.2%}), block sparsity {sparsity}")

    proto = export_torch(pruned.eval(), {"image": x_test}, output_names=["logits"])
    built = gearshift.compile_model(proto, "host", sparsity="bsr")
    session = gearshift.Session(gearshift.save(built, "out/digits-pruned", overwrite=True))
    compiled_acc = float((session.run({"image": x_test})["logits"].argmax(1) == y_test).mean())
    layers = built.report["sparse_layers"]

    rows = [("model", "test accuracy", "block sparsity (16x1)", "notes"),
            ("dense twin", f"{dense_acc:.2%}", "0", f"MLP 64-{HIDDEN}-{HIDDEN}-10, {args.epochs} epochs"),
            ("pruned (torch)", f"{pruned_acc:.2%}", ", ".join(f"{v:.0%}" for v in sparsity.values()),
             f"group lasso {args.epochs // 2} epochs ({lasso_acc:.2%}), pruned ({after_prune:.2%}), "
             f"fine-tuned {args.epochs // 2} epochs"),
            ("pruned, compiled by gearshift", f"{compiled_acc:.2%}",
             ", ".join(f"{layer['block']} {1 - layer['density']:.0%}" for layer in layers if layer["decision"] == "bsr"),
             f"{sum(layer['decision'] == 'bsr' for layer in layers)} layers as BSR kernels")]
    loss = (dense_acc - pruned_acc) * 100
    text = (f"# Block pruning on digits\n\n{table(rows)}\n\naccuracy change: {-loss:+.2f} points "
            f"(bar: lose <= 1 point); seed {args.seed}; 1257 train / 540 test images.")
    write_results("prune_digits", {"dense_accuracy": dense_acc, "pruned_accuracy": pruned_acc,
                                   "compiled_accuracy": compiled_acc, "points_lost": loss, "sparsity": sparsity,
                                   "layers": layers, "epochs": args.epochs, "seed": args.seed}, text)
    print(text)


if __name__ == "__main__":
    main()
