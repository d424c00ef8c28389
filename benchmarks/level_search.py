"""Level search (RT3 §3) against uniform sparsity at equal latency, and both latency predictors checked.

Model: the BERT-base-shaped encoder x2 of benchmarks/rt3.py (seq 128, random weights), its 12 linear
layers searched over 16x1 block sparsities {50, 70, 85, 93 %}.
  1. Per-layer latencies measured here (`measure_layers`: each layer built alone by the driver).
  2. Training run: the four uniform levels and --train random mixed assignments compiled as levels of
     one runtime-form artifact and timed end to end. The additive model fits its `rest` to the
     uniform levels; the learned model (XGBoost correction, `level_latency.LearnedLatency`) trains
     on all of them.
  3. For budgets = the uniform 70 % and 85 % levels' predicted latency, the evolutionary search with
     each predictor against the most accurate uniform level within the budget (accuracy proxy:
     relative L2 error of the outputs against the dense model, ONNX Runtime, calibration inputs).
  4. Each predictor's error on mixed assignments it was not fitted to: k-fold within the training
     run; and a check run, a new artifact holding the uniform levels, --held-out fresh random
     assignments and the searched ones, timed end to end. The uniform levels are in both runs, so
     the machine's drift between the runs is measured, reported, and also taken out.
Writes benchmarks/results/level_search.{json,md}.

    python benchmarks/level_search.py [--train 24] [--held-out 12] [--generations 40] [--repeat 20]
"""

from __future__ import annotations

import argparse
import time

from common import log, machine_note, table, threads_note, write_results  # first: sets thread env

import numpy as np

from gearshift.level_latency import LearnedLatency, measure_assignments, random_assignments, relative_errors
from gearshift.level_search import AdditiveLatency, ErrorProxy, evolve, measure_layers, search_space
from rt3 import bert_base_x2

MENU = (0.5, 0.7, 0.85, 0.93)
FOLDS = 6


def cross_validated(space, additive: AdditiveLatency, measured: dict, uniform: list, mixed: list) -> dict[str, list[float]]:
    """Each predictor's error on the mixed assignments of one run, each fold predicted by models
    fitted without it (the uniform levels are in every fold's training set: the additive model needs them)."""
    errors: dict[str, list[float]] = {"additive": [], "learned": []}
    for fold in range(FOLDS):
        test = {a: measured[a] for a in mixed[fold::FOLDS]}
        train = {a: measured[a] for a in uniform + [a for i, a in enumerate(mixed) if i % FOLDS != fold]}
        fitted = AdditiveLatency(additive.layer_ms)
        fitted.fit_rest(space, {a[0]: measured[a] for a in uniform})
        learned = LearnedLatency(fitted)
        learned.fit(space, train)
        errors["additive"] += relative_errors(fitted, space, test)
        errors["learned"] += relative_errors(learned, space, test)
    return errors


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=24)
    ap.add_argument("--held-out", type=int, default=12)
    ap.add_argument("--generations", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    proto, feeds = bert_base_x2()
    space = search_space(proto, MENU)
    log(f"{len(space.layers)} layers, menu {MENU}")
    started = time.perf_counter()
    additive = AdditiveLatency(measure_layers(space, rows=128, repeat=args.repeat, log=log))
    uniform = [space.uniform(s) for s in MENU]
    mixed = random_assignments(space, args.train + args.held_out, seed=0)
    train, held_out = mixed[:args.train], mixed[args.train:]

    t = time.perf_counter()
    first = measure_assignments(proto, space, uniform + train, calibration=feeds, repeat=args.repeat, log=log)
    train_s = time.perf_counter() - t
    fit_error = additive.fit_rest(space, {s: first[space.uniform(s)] for s in MENU})
    learned = LearnedLatency(additive)
    learned.fit(space, first)
    log(f"training run: {len(first)} assignments in {train_s:.0f} s; additive rest {additive.rest_ms:.2f} ms")

    proxy = ErrorProxy(proto, space, feeds)
    predictors = {"additive": additive, "learned": learned}
    searched = []
    for s in (0.7, 0.85):
        budget = additive(space, space.uniform(s))  # the uniform level's own predicted latency: equal footing
        for name, predictor in predictors.items():
            r = evolve(space, budget, proxy, predictor, generations=args.generations, seed=0)
            log(f"budget {budget:.2f} ms, {name}: error {r.error:.4f} vs uniform {r.uniform} {r.uniform_error}")
            searched.append((name, r))

    check_set = list(dict.fromkeys(uniform + held_out + [r.assignment for _, r in searched]))
    second = measure_assignments(proto, space, check_set, calibration=feeds, repeat=args.repeat, log=log)
    drift = [second[a] / first[a] - 1 for a in uniform]
    held = {a: second[a] for a in held_out}
    errors = {name: relative_errors(p, space, held) for name, p in predictors.items()}
    scale = 1 + float(np.mean(drift))  # the machine's own drift between the runs, taken out
    corrected = {name: relative_errors(p, space, {a: ms / scale for a, ms in held.items()}) for name, p in predictors.items()}
    folds = cross_validated(space, additive, first, uniform, train)

    rows, out = [], []
    for name, r in searched:
        ms = second[r.assignment]
        u_ms = second[space.uniform(r.uniform)] if r.uniform is not None else None
        err = {k: abs(p(space, r.assignment) - ms) / ms for k, p in predictors.items()}
        rows.append((f"{r.budget_ms:.2f}", name, f"{r.uniform:g}: {r.uniform_error:.4f}", f"{r.error:.4f}",
                     f"{1 - r.error / r.uniform_error:.1%}", f"{u_ms:.2f}", f"{ms:.2f}",
                     f"{additive(space, r.assignment):.2f} ({err['additive']:.1%})",
                     f"{learned(space, r.assignment):.2f} ({err['learned']:.1%})",
                     " ".join(f"{s:g}" for s in r.assignment)))
        out.append({"budget_ms": r.budget_ms, "predictor": name, "assignment": list(r.assignment), "error": r.error,
                    "uniform": r.uniform, "uniform_error": r.uniform_error, "uniform_measured_ms": u_ms,
                    "measured_ms": ms, "additive_ms": additive(space, r.assignment),
                    "learned_ms": learned(space, r.assignment), "evaluations": r.evaluations})

    def stats(e):
        return f"{np.mean(e):.1%} / {np.max(e):.1%}"

    layer_rows = [(f"{k}->{n}", *(f"{additive.layer_ms[(k, n, s)]:.3f}" for s in MENU))
                  for k, n in sorted({x.shape for x in space.layers})]
    md = ["# Level search vs uniform sparsity, and the latency predictors", "",
          f"BERT-base-shaped encoder x2 (seq 128, random weights), 12 linear layers, menu {list(MENU)} (16x1); "
          f"{threads_note()}; levels in the runtime form, timed call by call (`compile_levels`' timing).", "",
          machine_note(), "",
          "Per-layer latency, ms (M = 128; each layer compiled alone by the driver and timed):", "",
          table([("layer", *(f"{s:g}" for s in MENU)), *layer_rows]), "",
          f"Additive model: rest {additive.rest_ms:.2f} ms, fitted to the uniform levels "
          f"({', '.join(f'{s:g}: {first[space.uniform(s)]:.2f} ms' for s in MENU)}); largest error there {fit_error:.1%}. "
          f"Learned model: XGBoost correction trained on those 4 and {len(train)} random mixed assignments "
          f"(one run, {train_s:.0f} s).", "",
          f"Prediction error on mixed assignments, mean / largest (check run: {len(held)} held-out random assignments, "
          "never trained on):", "",
          table([("predictor", f"{FOLDS}-fold, within the training run", "held-out mixed (check run)",
                  "held-out, the check run's drift taken out"),
                 *((k, stats(folds[k]), stats(errors[k]), stats(corrected[k])) for k in predictors)]), "",
          "Run-to-run drift of the machine (uniform levels, check run against training run): "
          + ", ".join(f"{s:g}: {d:+.1%}" for s, d in zip(MENU, drift))
          + f"; the third column divides the check run's times by {scale:.3f}.", "",
          "Searched assignments (measured in the check run):", "",
          table([("budget ms", "search with", "uniform baseline: error proxy", "searched error", "error reduced",
                  "uniform measured ms", "searched measured ms", "additive predicted (error)", "learned predicted (error)",
                  "searched sparsities (layer order)"), *rows]), "",
          "Layer order: " + ", ".join(x.name for x in space.layers), "",
          f"Whole benchmark: {time.perf_counter() - started:.0f} s."]
    write_results("level_search", {
        "menu": MENU, "rest_ms": additive.rest_ms, "fit_error": fit_error,
        "layer_ms": {f"{k}x{n}@{s}": v for (k, n, s), v in additive.layer_ms.items()},
        "training_run_ms": [[list(a), ms] for a, ms in first.items()],
        "check_run_ms": [[list(a), ms] for a, ms in second.items()],
        "held_out_errors": errors, "drift_corrected_errors": corrected, "fold_errors": folds, "drift": drift,
        "searched": out}, "\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
