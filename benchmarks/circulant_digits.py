"""Block-circulant training on real data: the digits MLP (64-256-256-10, scikit-learn's bundled 8x8
images) with both hidden layers block-circulant (b = 8: 8x fewer weights in them), against its
dense twin. The circulant model starts from the dense twin's projection and is fine-tuned in
circulant form (its parameters are the defining vectors; forward and backward through torch.fft),
then exported as its dense reconstruction (`to_dense`) and compiled by gearshift with
`--sparsity circulant`, which finds the blocks again; its accuracy is re-measured through the artifact.

Bar: the circulant model loses <= 1 point of test accuracy.
Writes benchmarks/results/circulant_digits.{json,md}.

    python benchmarks/circulant_digits.py [--epochs 60] [--seeds 0,1,2,3,4] [--block 8]
"""

from __future__ import annotations

import argparse

from common import log, table, write_results  # first: sets thread env
import numpy as np
from prune_digits import HIDDEN, accuracy, accuracy_rows, dense_twin, digits_split, make_model, train

import gearshift
from gearshift.frontend.circulant import circulantize, to_dense
from gearshift.frontend.load import export_torch


def run_seed(seed: int, epochs: int, block: int, tune_epochs: int, lr: float) -> dict:
    data = digits_split(seed)
    x_test, y_test, xt, yt, xv, yv = data
    dense_acc, model = dense_twin(make_model, seed, epochs, data)
    circulantize(model, block, layers=r"^[02]$")
    projected = accuracy(model, xv, yv)
    train(model, xt, yt, tune_epochs, lr, seed=seed + 1)  # fine-tune the defining vectors, then settle
    train(model, xt, yt, tune_epochs // 2, lr / 4, seed=seed + 2)
    circ_acc = accuracy(model, xv, yv)
    to_dense(model.eval())
    proto = export_torch(model, {"image": x_test}, output_names=["logits"])
    built = gearshift.compile_model(proto, "host", sparsity="circulant")
    session = gearshift.Session(gearshift.save(built, f"out/digits-circulant-{seed}", overwrite=True))
    compiled_acc = float((session.run({"image": x_test})["logits"].argmax(1) == y_test).mean())
    layers = [f"{layer['name']} {layer['block']}" for layer in built.report["sparse_layers"] if layer["decision"] == "circulant"]
    log(f"seed {seed}: dense {dense_acc:.2%}, circulant {circ_acc:.2%} (projected {projected:.2%}), compiled {compiled_acc:.2%}")
    return {"seed": seed, "dense": dense_acc, "model": circ_acc, "projected": projected, "compiled": compiled_acc,
            "points_lost": (dense_acc - circ_acc) * 100, "circulant_layers": layers}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds (data split and initialisation)")
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--tune-epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=2e-3)
    args = p.parse_args()
    runs = [run_seed(int(seed), args.epochs, args.block, args.tune_epochs, args.lr) for seed in args.seeds.split(",")]
    rows, summary = accuracy_rows(runs, f"circulant b={args.block}", [
        ("right after projection", lambda r: f"{r['projected']:.2%}"),
        ("layers run circulant", lambda r: "; ".join(r["circulant_layers"]))])
    lost = [r["points_lost"] for r in runs]
    text = (f"# Block-circulant MLP on digits (b = {args.block} in both hidden layers)\n\n{table(rows)}\n\n"
            f"{summary}; MLP 64-{HIDDEN}-{HIDDEN}-10, "
            f"dense {args.epochs} epochs, circulant fine-tuning {args.tune_epochs} epochs at lr {args.lr:g} then {args.tune_epochs // 2} at {args.lr / 4:g}; 1257 train / 540 test images per seed.")
    write_results("circulant_digits", {"epochs": args.epochs, "block": args.block, "runs": runs,
                                       "mean_points_lost": float(np.mean(lost))}, text)
    print(text)


if __name__ == "__main__":
    main()
