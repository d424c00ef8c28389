"""Tuned against default: gearshift's sparse kernels searched over their knobs (64 trials a kernel,
XGBoost-guided), on the kernels where the hand rules are weakest, with ONNX Runtime dense beside.

Cases (the tuning issue's): the pattern conv on VGG-16's three 3x3 layers and ResNet-18's three
stride-2 layers (the weights of benchmarks/pattern_sparse.py: 4 patterns, 28 % of kernels kept),
and BSR 16x1 3072->768 at 80 % and 90 % (M = 128). Per case: tune into a fresh database, then time
the model built by the rules, the model built with the database and ONNX Runtime dense on the same
masked weights, in alternating blocks (the protocol's headline), in rounds. After all cases, each
kernel's trials are ranked by a cost model trained on the *other* kernels' trials of its kind
(held-out Spearman). Last, the 4-layer BERT-base-shaped encoder at 80 % BSR is tuned (64 trials a
kernel) and timed, then compiled again with its database.
Writes benchmarks/results/tuning.{json,md}.

    python benchmarks/tuning.py [--trials 64] [--rounds 3] [--repeat 20] [--skip-bert]
"""

from __future__ import annotations

import argparse
import shutil
import time

from common import (RESULTS, aligned, compare, in_rounds, log, machine_note, merge_rounds,  # first: thread env
                    ort_session, table, threads_note, write_results)
import numpy as np
from block_sparse import matmul_model
from pattern_sparse import CONNECTIVITY, PATTERNS, conv_model

import gearshift
from gearshift.autotune import autotune
from gearshift.compress.blocks import project as bsr_project
from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert
from gearshift.frontend.load import export_torch
from gearshift.frontend.patterns import library, project
from gearshift.schedules.targets import get_target
from gearshift.tune.database import Database, search_trials, target_key
from gearshift.tune.model import CostModel, spearman
from gearshift.tune.search import training_rows

CONVS = [(128, 128, 56, 1), (256, 256, 28, 1), (512, 512, 14, 1), (64, 128, 56, 2), (128, 256, 28, 2), (256, 512, 14, 2)]
BSRS = [(3072, 768, 0.8), (3072, 768, 0.9)]
DB = "out/tuning-db"


def conv_case(cin: int, cout: int, size: int, stride: int) -> tuple[str, object, dict, str]:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
    masked, _, _ = project(w, library(w, PATTERNS), CONNECTIVITY)
    proto = conv_model(masked, rng.standard_normal(cout).astype(np.float32), size, stride)
    name = f"pattern conv {cin}x{size}x{size}->{cout}" + (f" s{stride}" if stride > 1 else "")
    return name, proto, {"x": aligned(rng.standard_normal((1, cin, size, size)).astype(np.float32))}, "pattern"


def bsr_case(k: int, n: int, sparsity: float) -> tuple[str, object, dict, str]:
    rng = np.random.default_rng(0)
    wt = bsr_project((rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32), 16, 1, sparsity)
    proto = matmul_model(np.ascontiguousarray(wt.T), rng.standard_normal(n).astype(np.float32))
    return (f"bsr 16x1 {k}->{n} {sparsity:.0%}", proto, {"x": aligned(rng.standard_normal((128, k)).astype(np.float32))},
            "bsr::16x1")


def prepare_case(case, trials: int) -> dict:
    name, proto, feeds, spec = case
    t = time.perf_counter()
    report = autotune(proto, db=DB, trials=trials, sparsity=spec, log=log)
    seconds = time.perf_counter() - t
    slug = name.replace(" ", "-").replace(">", "").replace("%", "")
    engines, outputs = with_and_without_db(proto, spec, DB, feeds, slug, "gearshift_default")
    return {"name": name, "engines": engines, "outputs": outputs, "task": report.tasks[0], "seconds": seconds}


def with_and_without_db(proto, spec: str, db: str, feeds: dict, slug: str, plain: str) -> tuple[dict, dict]:
    """The model built without the database (`plain`), with it ("gearshift_tuned"), and ONNX Runtime:
    (engines to time, their outputs)."""
    sessions = {plain: gearshift.Session(gearshift.save(gearshift.compile_model(proto, sparsity=spec),
                                                        f"out/tune-{plain}-{slug}", overwrite=True)),
                "gearshift_tuned": gearshift.Session(gearshift.save(gearshift.compile_model(proto, sparsity=spec, db=db),
                                                                    f"out/tune-tuned-{slug}", overwrite=True))}
    ort = ort_session(proto.SerializeToString())
    engines = {name: (lambda s=session: s.run(feeds)) for name, session in sessions.items()}
    engines["onnxruntime"] = lambda: ort.run(None, feeds)
    outputs = {name: session.run(feeds)["y"] for name, session in sessions.items()}
    outputs["onnxruntime"] = ort.run(None, feeds)[0]
    return engines, outputs


def held_out_spearman(target: str) -> list[dict]:
    """Per kernel: its trials ranked by a model trained on every other kernel's trials of its kind."""
    db = Database(DB)
    out = []
    for task in sorted({r["task"] for r in db.records if r["target"] == target}):
        kind = next(r["kind"] for r in db.records if r["task"] == task)
        rows, speedups = training_rows([r for r in db.records if r["task"] != task], target, kind)
        model = CostModel()
        model.fit(rows, speedups)
        own_rows, own_speedups = training_rows([r for r in db.records if r["task"] == task], target, kind)
        label = next(r["label"] for r in db.records if r["task"] == task)
        rho = spearman(model.predict(own_rows), own_speedups) if model.ready else float("nan")
        out.append({"kernel": label, "trials": len(own_rows), "spearman": round(rho, 3)})
    return out


def held_out_trials(target: str, splits: int = 5) -> list[dict]:
    """Per kind: a quarter of all trials held out at random, the model trained on the rest; Spearman
    over the held-out trials pooled, and the mean of per-kernel Spearman (kernels with 4+ held out)."""
    import random

    db = Database(DB)
    out = []
    for kind in ("bsr", "pattern_conv"):
        records = search_trials(db.records, target, kind)
        defaults = {r["task"]: r["ms"] for r in records if r["default"]}
        records = [r for r in records if r["task"] in defaults]
        pooled, per_kernel = [], []
        for seed in range(splits):
            order = list(range(len(records)))
            random.Random(seed).shuffle(order)
            cut = len(order) * 3 // 4
            train, test = [records[i] for i in order[:cut]], [records[i] for i in order[cut:]]
            model = CostModel()
            model.fit([r["features"] for r in train], [defaults[r["task"]] / r["ms"] for r in train])
            predicted = model.predict([r["features"] for r in test])
            measured = [defaults[r["task"]] / r["ms"] for r in test]
            pooled.append(spearman(predicted, measured))
            for task in {r["task"] for r in test}:
                idx = [i for i, r in enumerate(test) if r["task"] == task]
                if len(idx) >= 4:
                    per_kernel.append(spearman(predicted[idx], [measured[i] for i in idx]))
        out.append({"kind": kind, "trials": len(records), "pooled_spearman": round(float(np.nanmean(pooled)), 3),
                    "per_kernel_spearman": round(float(np.nanmean(per_kernel)), 3)})
    return out


def plot_search(path) -> None:
    """Best time so far over the trials, as a fraction of the kernel's default, one line per kernel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    db = Database(DB)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for task in dict.fromkeys(r["task"] for r in db.records):
        trials = [r for r in db.records if r["task"] == task and not r.get("final")]
        default = next((r["ms"] for r in trials if r["default"] and r["ms"]), None)
        if default is None:
            continue
        best, curve = default, []
        for r in trials:
            best = min(best, r["ms"] or best)
            curve.append(best / default)
        ax.plot(range(1, len(curve) + 1), curve, label=trials[0].get("label", task))
    ax.set_xlabel("trials")
    ax.set_ylabel("best time so far / the rules' time")
    ax.set_title("gearshift tune: search progress per kernel (this machine)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def bert_tuning(trials: int) -> dict:
    """The 4-layer BERT-base-shaped encoder at 80 % BSR: tuning time, then a second run and a compile."""
    cfg = BertConfig(vocab_size=2000, hidden=768, layers=4, heads=12, ffn=3072, max_positions=128)
    feeds = bert_inputs(cfg, batch=1, seq_len=128)
    proto = export_torch(tiny_bert(cfg), feeds)
    db = "out/tuning-db-bert"
    shutil.rmtree(db, ignore_errors=True)
    t = time.perf_counter()
    first = autotune(proto, db=db, trials=trials, sparsity="bsr:0.8:16x1", log=log)
    tune_s = time.perf_counter() - t
    t = time.perf_counter()
    again = autotune(proto, db=db, trials=trials, sparsity="bsr:0.8:16x1", log=log)
    again_s = time.perf_counter() - t
    t = time.perf_counter()
    tuned = gearshift.compile_model(proto, sparsity="bsr:0.8:16x1", db=db)
    compile_s = time.perf_counter() - t
    default = gearshift.compile_model(proto, sparsity="bsr:0.8:16x1")
    sessions = {name: gearshift.Session(gearshift.save(built, f"out/tune-bert-{name}", overwrite=True))
                for name, built in (("tuned", tuned), ("default", default))}
    ins = dict(feeds)
    engines = {name: (lambda s=s: s.run(ins)) for name, s in sessions.items()}
    outputs = {name: next(iter(s.run(ins).values())) for name, s in sessions.items()}
    timing = compare("bert-4 80% bsr", engines, outputs, reference="default", interleaved=False)
    return {"kernels": len(first.tasks), "tuning_seconds": round(tune_s, 1), "new_trials": first.new_trials,
            "second_run_new_trials": again.new_trials, "second_run_seconds": round(again_s, 1),
            "compile_with_db_seconds": round(compile_s, 1),
            "tuned_kernels": len(tuned.report["tuned_kernels"]), "timing": timing,
            "tasks": first.as_dict()["tasks"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--skip-bert", action="store_true")
    args = parser.parse_args()
    shutil.rmtree(DB, ignore_errors=True)
    cases = [prepare_case(c, args.trials) for c in [*(conv_case(*c) for c in CONVS), *(bsr_case(*b) for b in BSRS)]]
    timed = in_rounds(cases, lambda c: compare(c["name"], c["engines"], c["outputs"], repeat=args.repeat,
                                               interleaved=False), args.rounds)
    rows = []
    for case, rounds in zip(cases, timed):
        merged = merge_rounds(rounds)
        e = merged["engines"]
        task = case["task"]
        rows.append({"case": case["name"], "trials": task.trials, "tuning_seconds": round(case["seconds"], 1),
                     "confirmed_default_ms": task.default_ms, "confirmed_ms": task.best_ms, "knobs": task.best_knobs,
                     "tuned_ms": e["gearshift_tuned"]["median_ms"], "default_ms": e["gearshift_default"]["median_ms"],
                     "ort_ms": e["onnxruntime"]["median_ms"],
                     "tuned_over_default": e["gearshift_default"]["median_ms"] / e["gearshift_tuned"]["median_ms"],
                     "tuned_vs_ort": e["onnxruntime"]["median_ms"] / e["gearshift_tuned"]["median_ms"],
                     "default_vs_ort": e["onnxruntime"]["median_ms"] / e["gearshift_default"]["median_ms"],
                     "max_abs_error": max(s["max_abs_error"] for s in e.values()), "raw": merged})
    ranks = held_out_spearman(target_key(get_target("host")))
    random_split = held_out_trials(target_key(get_target("host")))
    bert = None if args.skip_bert else bert_tuning(args.trials)
    md = ["# Tuned against default (gearshift's sparse kernels, XGBoost-guided search)", "", machine_note(), "",
          f"{args.trials} trials a kernel; {threads_note()}; models timed in alternating blocks, "
          f"{args.rounds} rounds, median of round medians.", "",
          table([("kernel", "trials", "tuning s", "default ms", "tuned ms", "tuned / default", "default x ORT",
                  "tuned x ORT", "knobs"),
                 *((r["case"], r["trials"], r["tuning_seconds"], f"{r['default_ms']:.3f}", f"{r['tuned_ms']:.3f}",
                    f"{r['tuned_over_default']:.2f}x", f"{r['default_vs_ort']:.2f}x", f"{r['tuned_vs_ort']:.2f}x",
                    r["knobs"]) for r in rows)]), "",
          "Not in the table: the dense conv with 7x7 outputs and ResNet-18's 7x7 stem. They run the dense "
          "schedule rules, which MetaSchedule searches: see tuning_dense.md.", "",
          "Held-out ranking (a model trained on the other kernels' trials ranks this kernel's):", "",
          table([("kernel", "trials", "Spearman"), *((r["kernel"], r["trials"], r["spearman"]) for r in ranks)]), "",
          "Held-out trials (a quarter of each kind's trials held out at random, 5 splits, mean Spearman):", "",
          table([("kind", "trials", "pooled", "per kernel"),
                 *((r["kind"], r["trials"], r["pooled_spearman"], r["per_kernel_spearman"]) for r in random_split)]), ""]
    if bert:
        t = bert["timing"]["engines"]
        md += [f"BERT-base-shaped encoder, 4 layers, 80 % BSR 16x1: {bert['kernels']} kernels tuned in "
               f"{bert['tuning_seconds']:.0f} s ({bert['new_trials']} trials); a second run measured "
               f"{bert['second_run_new_trials']} new trials in {bert['second_run_seconds']:.0f} s; compiling with the "
               f"database took {bert['compile_with_db_seconds']:.1f} s ({bert['tuned_kernels']} kernels tuned). "
               f"Whole model (alternating blocks): tuned {t['tuned']['median_ms']:.2f} ms, default "
               f"{t['default']['median_ms']:.2f} ms.", ""]
    plot_search(RESULTS / "tuning.png")
    md.append("![search progress](tuning.png)")
    write_results("tuning", {"trials": args.trials, "rounds": args.rounds, "cases": rows, "held_out_spearman": ranks,
                             "held_out_trials": random_split,
                             "bert": bert}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
