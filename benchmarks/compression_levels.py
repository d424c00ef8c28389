"""RT3 levels from one training run: the digits MLP trained progressively to 50, 70, 85 and 93 % BSR
16x1 (each stage ADMM while distilling from the dense model, then the hard prune inside the previous
stage's mask and distilled fine-tuning), compiled into one runtime-form artifact whose levels carry
their own trained weights and their accuracy (the levels file's `report`), then every level run
through the artifact by switching.

Checks: every level's mask contains the next (sparser) level's; each level's accuracy through the
artifact equals its torch accuracy. Writes benchmarks/results/compression_levels.{json,md}.

    python benchmarks/compression_levels.py [--seed 0] [--epochs 60] [--method admm]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import log, machine_note, table, write_results  # first: sets thread env
import torch
from prune_digits import accuracy, dense_twin, digits_split, make_model
from torch import nn

import gearshift
from gearshift.frontend.compression import Pruner
from gearshift.frontend.distill import Distiller, progressive
from gearshift.frontend.load import export_torch
from gearshift.levels_compiler import compile_levels_to

SPARSITIES = (0.5, 0.7, 0.85, 0.93)
SETTINGS = {"lasso": {"lam": 5e-4}, "admm": {"rho": 1e-2}, "slr": {"rho": 1e-2}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--method", default="admm", choices=list(SETTINGS))
    args = p.parse_args()
    out = Path("out/compression-levels")
    out.mkdir(parents=True, exist_ok=True)
    x_test, y_test, xt, yt, xv, yv = data = digits_split(args.seed)
    dense_acc, model = dense_twin(make_model, args.seed, args.epochs, data)
    teacher = make_model(args.seed)
    teacher.load_state_dict(model.state_dict())
    dense_path = out / "dense.onnx"
    dense_path.write_bytes(export_torch(teacher, {"image": x_test}, output_names=["logits"]).SerializeToString())
    pruner = Pruner(model, {r"^[02]$": "bsr:0.5:16x1"}, method=args.method, update_every=20, **SETTINGS[args.method])
    distiller = Distiller(teacher, model)
    levels, masks = [], []

    def epochs(count: int, with_penalty: bool, seed: int) -> None:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        for _ in range(count):
            for idx in torch.randperm(len(xt), generator=g).split(64):
                task = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
                loss = task + distiller.loss(xt[idx])
                opt.zero_grad()
                (loss + (pruner.penalty() if with_penalty else 0)).backward()
                opt.step()
                pruner.step(task)

    def keep(sparsity: float) -> None:
        epochs(args.epochs // 2, False, seed=int(sparsity * 1000))
        name = f"bsr{round(sparsity * 100)}"
        level = pruner.snapshot(model)
        (out / f"{name}.onnx").write_bytes(export_torch(level, {"image": x_test}, output_names=["logits"]).SerializeToString())
        acc = accuracy(level, xv, yv)
        masks.append(pruner.masks())
        levels.append({"name": name, "sparsity": "bsr::16x1", "model": f"{name}.onnx",
                       "report": {"accuracy": round(acc, 4), "dense_accuracy": round(dense_acc, 4),
                                  "method": args.method, "distilled": True}})
        log(f"level {name}: accuracy {acc:.2%} (dense {dense_acc:.2%})")

    for sparsity in progressive(pruner, SPARSITIES, finetune=keep):
        epochs(args.epochs // 2, True, seed=int(sparsity * 100))
    distiller.close()
    nested = all(bool((later[n] <= earlier[n]).all()) for earlier, later in zip(masks, masks[1:]) for n in earlier)
    (out / "levels.json").write_text(json.dumps({"form": "runtime", "levels": levels}, indent=2) + "\n")
    art = compile_levels_to(str(dense_path), out / "levels.json", "host", out / "artifact", overwrite=True,
                            calibration={"image": x_test})
    session = gearshift.Session(art)
    rows = [("level", "kept weights", "accuracy (torch)", "accuracy (artifact)", "points lost", "error proxy",
             "latency here ms")]
    results = []
    for entry in levels:
        session.switch(entry["name"])
        compiled = float((session.run({"image": x_test})["logits"].argmax(1) == y_test).mean())
        facts = art.manifest["levels"][entry["name"]]
        results.append({"level": entry["name"], "density": facts["density"], **entry["report"], "compiled": compiled,
                        "error": facts["error"], "latency_ms": facts["latency_ms"]})
        rows.append((entry["name"], f"{facts['density']:.1%}", f"{entry['report']['accuracy']:.2%}", f"{compiled:.2%}",
                     f"{(dense_acc - entry['report']['accuracy']) * 100:+.2f}", f"{facts['error']:.3f}",
                     f"{facts['latency_ms']:.3f}"))
    text = (f"# RT3 levels from one progressive run (digits MLP, BSR 16x1, {args.method} + distillation)\n\n"
            f"{table(rows)}\n\nDense twin {dense_acc:.2%}. Masks nested (each level keeps a subset of the previous "
            f"level's weights): {'yes' if nested else 'NO'}. One runtime-form artifact; each level's weights are its "
            f"own trained ones (levels.json `model`), its accuracy the levels file's `report`, carried into the "
            f"manifest. Error proxy: relative L2 of the level's outputs against the dense model on the test images.\n\n"
            f"{machine_note()}")
    write_results("compression_levels", {"seed": args.seed, "method": args.method, "nested": nested, "levels": results},
                  text)
    print(text)


if __name__ == "__main__":
    main()
