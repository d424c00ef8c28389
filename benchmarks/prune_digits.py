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
from collections.abc import Callable

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


def train(model: nn.Module, x, y, epochs: int, lr: float, pruner=None, seed: int = 0) -> None:
    """Adam over shuffled batches of 64; with `pruner` (any of gearshift's pruners) its penalty added and its step taken."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            task = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss = task if pruner is None else task + pruner.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if pruner is not None:
                pruner.step(task)  # the task loss: SLR's acceptance test needs it (compression.Pruner)


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def digits_split(seed: int) -> tuple:
    """(x_test, y_test as numpy; x_train, y_train, x_test, y_test as torch): 70/30, stratified."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, digits.target, test_size=0.3, random_state=seed,
                                                        stratify=digits.target)
    return (x_test, y_test, torch.from_numpy(x_train), torch.from_numpy(y_train).long(),
            torch.from_numpy(x_test), torch.from_numpy(y_test).long())


def dense_twin(make: Callable[[int], nn.Module], seed: int, epochs: int, data: tuple) -> tuple[float, nn.Module]:
    """Train the dense model; return its test accuracy and a copy to prune (pruning starts from the
    dense twin, as the papers do)."""
    xt, yt, xv, yv = data[2:]
    dense = make(seed)
    train(dense, xt, yt, epochs, 1e-3, seed=seed)
    pruned = make(seed)
    pruned.load_state_dict(dense.state_dict())
    return accuracy(dense, xv, yv), pruned


def accuracy_rows(runs: list[dict], model_column: str, extra: list[tuple[str, Callable[[dict], str]]]
                  ) -> tuple[list[tuple], str]:
    """The per-seed table of a compression experiment on digits (dense twin, compressed in torch and
    through gearshift, points lost, then `extra` (header, formatter of a run) columns) and its summary."""
    rows = [("seed", "dense twin", f"{model_column} (torch)", f"{model_column}, compiled by gearshift", "points lost",
             *(header for header, _ in extra))]
    for r in runs:
        rows.append((r["seed"], f"{r['dense']:.2%}", f"{r['model']:.2%}",
                     f"{r['compiled']:.2%}", f"{r['points_lost']:+.2f}", *(show(r) for _, show in extra)))
    lost = [r["points_lost"] for r in runs]
    return rows, f"points lost: mean {np.mean(lost):+.2f}, worst {max(lost):+.2f} (bar: <= 1 point)"


def run_seed(seed: int, epochs: int, sparsity_target: float) -> dict:
    data = digits_split(seed)
    x_test, y_test, xt, yt, xv, yv = data
    dense_acc, pruned = dense_twin(make_model, seed, epochs, data)
    pruner = BlockPruner(pruned, block=(16, 1), sparsity=sparsity_target, layers=r"^[02]$", lam=5e-4, refresh_every=20)
    train(pruned, xt, yt, epochs // 2, 1e-3, pruner=pruner, seed=seed + 1)  # group lasso phase
    pruner.prune()
    after_prune = accuracy(pruned, xv, yv)
    train(pruned, xt, yt, epochs, 5e-4, seed=seed + 2)  # fine-tune, masks fixed
    pruner.finalize()
    pruned_acc = accuracy(pruned, xv, yv)

    proto = export_torch(pruned.eval(), {"image": x_test}, output_names=["logits"])
    built = gearshift.compile_model(proto, "host", sparsity="bsr")
    session = gearshift.Session(gearshift.save(built, f"out/digits-pruned-{seed}", overwrite=True))
    compiled_acc = float((session.run({"image": x_test})["logits"].argmax(1) == y_test).mean())
    layers = [layer for layer in built.report["sparse_layers"] if layer["decision"] == "bsr"]
    result = {"seed": seed, "dense": dense_acc, "model": pruned_acc, "after_prune": after_prune,
              "compiled": compiled_acc, "points_lost": (dense_acc - pruned_acc) * 100,
              "block_sparsity": pruner.report(),
              "bsr_layers": [f"{layer['name']} {layer['block']} {1 - layer['density']:.0%}" for layer in layers]}
    log(f"seed {seed}: dense {dense_acc:.2%}, pruned {pruned_acc:.2%}, compiled {compiled_acc:.2%}")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (data split and initialisation)")
    p.add_argument("--sparsity", type=float, default=0.8)
    args = p.parse_args()
    runs = [run_seed(int(seed), args.epochs, args.sparsity) for seed in args.seeds.split(",")]
    rows, summary = accuracy_rows(runs, "pruned", [("accuracy right after hard prune", lambda r: f"{r['after_prune']:.2%}"),
                                                   ("layers run as BSR", lambda r: "; ".join(r["bsr_layers"]))])
    lost = [r["points_lost"] for r in runs]
    text = (f"# Block pruning on digits (80 % of 16x1 blocks zero in both hidden layers)\n\n{table(rows)}\n\n"
            f"{summary}; MLP 64-{HIDDEN}-{HIDDEN}-10, dense {args.epochs} epochs; pruning: group lasso {args.epochs // 2} epochs, hard prune, fine-tune "
            f"{args.epochs} epochs; 1257 train / 540 test images per seed.")
    write_results("prune_digits", {"epochs": args.epochs, "runs": runs, "mean_points_lost": float(np.mean(lost))}, text)
    print(text)


if __name__ == "__main__":
    main()
