"""Every structure x every training method on real data: scikit-learn's bundled digits (no download).

Structures (the `--sparsity` grammar, as `frontend.compression.Pruner` takes it):
- blocks: MLP 64-256-256-10, both hidden layers bsr:0.8:16x1 (80 % of the weights zero);
- block patterns: the same MLP, pattern:4:0.6:16x4:32 (2 of 4 columns of each 16x4 block kept, 4 patterns,
  60 % of blocks removed: 80 % zero; the kind that runs along the outputs for a 540-image batch);
- 3x3 patterns: CNN (two 3x3 convs), pattern:4:0.55 (4-of-9 patterns, 55 % of kernels removed: 80 % zero);
- circulant: the MLP's hidden layers circulant:8 (8x fewer parameters).
Methods: one-shot projection (no penalty phase: the baseline), lasso, ADMM, SLR; each then hard
prune and masked fine-tuning. Every trained model is exported, compiled by gearshift with no flag,
the layers it runs structured counted (a column block pattern compiles as the equivalent BSR 16x1),
and its logits checked against torch (1e-4).

Bar: every structure x method within 1 point of the dense twin. Writes benchmarks/results/compression_digits.{json,md}.

    python benchmarks/compression_digits.py [--epochs 60] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import time

from common import log, machine_note, table, write_results  # first: sets thread env
import numpy as np
import torch
from pattern_digits import make_model as make_cnn
from prune_digits import accuracy, dense_twin, digits_split, train
from prune_digits import make_model as make_mlp

import gearshift
from gearshift.frontend.compression import METHODS, Pruner
from gearshift.frontend.load import export_torch

STRUCTURES = {  # name -> (model maker, {layer regex: spec})
    "blocks": (make_mlp, {r"^[02]$": "bsr:0.8:16x1"}),
    "block patterns": (make_mlp, {r"^[02]$": "pattern:4:0.6:16x4:32"}),
    "3x3 patterns": (make_cnn, {r"^[13]$": "pattern:4:0.55"}),
    "circulant": (make_mlp, {r"^[02]$": "circulant:8"}),
}
SETTINGS = {"lasso": {"lam": 5e-4}, "admm": {"rho": 1e-2}, "slr": {"rho": 1e-2}}


def run(structure: str, method: str, seed: int, epochs: int, data: tuple, dense: dict) -> dict:
    make, config = STRUCTURES[structure]
    x_test, y_test, xt, yt, xv, yv = data
    key = (make.__module__, seed)  # one dense twin per model and seed, shared by every structure and method
    if key not in dense:
        acc, trained = dense_twin(make, seed, epochs, data)
        dense[key] = (acc, {k: v.clone() for k, v in trained.state_dict().items()})
    dense_acc, state = dense[key]
    model = make(seed)
    model.load_state_dict(state)
    started = time.perf_counter()
    pruner = Pruner(model, config, method="admm" if method == "one-shot" else method, update_every=20,
                    **SETTINGS.get(method, {}))
    if method != "one-shot":
        train(model, xt, yt, epochs // 2, 1e-3, pruner=pruner, seed=seed + 1)
    pruner.prune()
    after_prune = accuracy(model, xv, yv)
    train(model, xt, yt, epochs, 5e-4, pruner=pruner, seed=seed + 2)
    pruner.finalize()
    seconds = time.perf_counter() - started
    acc = accuracy(model, xv, yv)
    proto = export_torch(model.eval(), {"image": x_test}, output_names=["logits"])
    built = gearshift.compile_model(proto, "host")  # no flag
    logits = gearshift.Session(gearshift.save(built, f"out/compression-digits/{structure}-{method}-{seed}",
                                              overwrite=True)).run({"image": x_test})["logits"]
    with torch.no_grad():
        reference = model(torch.from_numpy(x_test)).numpy()
    decisions = [layer["decision"] for layer in built.report["sparse_layers"] if layer["decision"] != "dense"]
    zeros = [float((t.weight == 0).float().mean()) for t in pruner.targets]
    out = {"structure": structure, "method": method, "seed": seed, "dense": dense_acc, "after_prune": after_prune,
           "model": acc, "points_lost": (dense_acc - acc) * 100, "train_seconds": round(seconds, 1),
           "compiled_matches_torch": bool(np.allclose(logits, reference, atol=1e-4, rtol=1e-3)),
           "compiled_max_abs_diff": float(np.abs(logits - reference).max()),
           "structured_layers": f"{len(decisions)} of {len(pruner.targets)} ({', '.join(sorted(set(decisions))) or '-'})",
           "zeros": zeros}
    log(f"{structure} / {method} / seed {seed}: dense {dense_acc:.2%}, after prune {after_prune:.2%}, "
        f"tuned {acc:.2%} ({out['points_lost']:+.2f} points), structured when compiled: {out['structured_layers']}, "
        f"max |compiled - torch| {out['compiled_max_abs_diff']:.1e}, {seconds:.0f} s")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seeds", default="0,1,2")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs, dense = [], {}
    for seed in seeds:
        data = digits_split(seed)
        for structure in STRUCTURES:
            for method in ("one-shot", *METHODS):
                runs.append(run(structure, method, seed, args.epochs, data, dense))
    rows = [("structure", "method", "dense", "after hard prune", "after fine-tuning", "points lost (mean / worst)",
             "compiled = torch", "layers structured when compiled", "train s")]
    for structure in STRUCTURES:
        for method in ("one-shot", *METHODS):
            rs = [r for r in runs if r["structure"] == structure and r["method"] == method]
            lost = [r["points_lost"] for r in rs]
            rows.append((structure, method, f"{np.mean([r['dense'] for r in rs]):.2%}",
                         f"{np.mean([r['after_prune'] for r in rs]):.2%}", f"{np.mean([r['model'] for r in rs]):.2%}",
                         f"{np.mean(lost):+.2f} / {max(lost):+.2f}", "yes" if all(r["compiled_matches_torch"] for r in rs)
                         else "NO", rs[0]["structured_layers"], f"{np.mean([r['train_seconds'] for r in rs]):.0f}"))
    worst = max(r["points_lost"] for r in runs)
    text = (f"# Every structure x every method on digits ({len(seeds)} seeds, means)\n\n{table(rows)}\n\n"
            f"Worst points lost over every run: {worst:+.2f} (bar: <= 1). Dense twin {args.epochs} epochs; penalty "
            f"phase {args.epochs // 2} epochs (none for one-shot), hard prune, fine-tune {args.epochs} epochs; 1257 "
            f"train / 540 test images per seed. Compiled with no flag; logits against torch within 1e-4.\n\n"
            f"{machine_note()}")
    write_results("compression_digits", {"epochs": args.epochs, "seeds": seeds, "runs": runs}, text)
    print(text)


if __name__ == "__main__":
    main()
