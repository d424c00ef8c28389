"""Block-sparse layers against dense peers on the same pruned matrices.

Kernels (fp32, M = 128 activation rows, a bias added; BERT-base FFN shapes):
  gearshift BSR vs ONNX Runtime dense, gearshift dense, torch dense, torch BSR (MKL, 16x16 blocks
  at the same density: torch rejects non-square blocks), at 90/80/50 % block sparsity (16x1) and
  90 % with 4x4 blocks.                 bars: >= 6x ORT at 90 %, >= 3.5x at 80 %, >= 3x for 4x4 at 90 %,
                                              never slower than gearshift dense at 50 %
  Each layer is timed twice: with all five engines interleaved (every engine then finds the caches
  holding the others' ~30 MB of weights, which costs the small sparse layer most), and gearshift BSR
  and ONNX Runtime alone, interleaved ("pairwise", as a deployed model runs), and, as a diagnostic, each
  called back to back with nothing between ("alone"). All three are reported; the headline is the first.
  The timings are repeated in rounds (every layer once per round, so a drift of the machine reaches
  them all): each figure is the median over rounds, with the range of the rounds beside it.
End to end: the 4-layer BERT-base-shaped encoder (bar: >= 2.5x ORT) and a real transformers.BertModel
  (2 layers, BERT-base dims, attention mask; bar: faster than ORT), every linear layer at 80 % 16x1
  block sparsity, against ONNX Runtime on the same pruned ONNX.
Writes benchmarks/results/block_sparse.{json,md}.

    python benchmarks/block_sparse.py [--repeat 20] [--rounds 3] [--skip-model]
"""

from __future__ import annotations

import argparse

from common import aligned, compare, in_rounds, log, machine_note, ort_session, pair_and_alone, table, threads_note, write_results  # first: sets thread env
import numpy as np
import onnx
import torch

import gearshift
from gearshift.bench import summarize, thread_count, time_blocks, time_interleaved
from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert
from gearshift.frontend.load import export_torch
from gearshift.compress.blocks import project
from gearshift.suites import kernels

M = 128
KERNELS = [  # (K, N, sparsity, block)
    (768, 3072, 0.9, (16, 1)), (3072, 768, 0.9, (16, 1)),
    (768, 3072, 0.8, (16, 1)), (3072, 768, 0.8, (16, 1)),
    (768, 3072, 0.5, (16, 1)), (3072, 768, 0.5, (16, 1)),
    (768, 3072, 0.9, (4, 4)), (3072, 768, 0.9, (4, 4)),
]


def matmul_model(w: np.ndarray, b: np.ndarray, rows: int = M) -> onnx.ModelProto:
    """y = x @ w + b with w [K, N] (the bench's builder takes Wᵀ)."""
    return kernels.matmul_model(np.ascontiguousarray(w.T), b, rows)


def kernel_case(k: int, n: int, sparsity: float, block: tuple[int, int]) -> dict:
    """One layer compiled for every engine, outputs checked; `time_round` times it."""
    rng = np.random.default_rng(0)
    wt = project((rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32), *block, sparsity)  # [out, in]
    w, b = np.ascontiguousarray(wt.T, dtype=np.float32), rng.standard_normal(n).astype(np.float32)
    x = aligned(rng.standard_normal((M, k)).astype(np.float32))
    proto = matmul_model(w, b)
    spec = f"bsr::{block[0]}x{block[1]}"  # the zeros are already there: keep them, in this block shape
    name = f"{k}->{n} {sparsity:.0%} {block[0]}x{block[1]}"
    slug = f"{k}-{n}-{round(sparsity * 100)}-{block[0]}x{block[1]}"  # every layer's artifacts stay loaded: one folder each
    sparse = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity=spec), f"out/bench-bsr-{slug}",
                                              overwrite=True))
    dense = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity="dense"), f"out/bench-dense-{slug}",
                                             overwrite=True))
    ort = ort_session(proto.SerializeToString())
    feeds = {"x": x}
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(b)
    # torch BSR: 16x16 blocks (MKL's only kind) at the same density, so the same FLOPs
    wt16 = project(rng.standard_normal((n, k)).astype(np.float32), 16, 16, sparsity).astype(np.float32)
    bsr16 = torch.from_numpy(wt16).to_sparse_bsr((16, 16))
    tb16 = tb[:, None].contiguous()
    engines = {"gearshift_bsr": lambda: sparse.run(feeds), "onnxruntime": lambda: ort.run(None, feeds),
               "gearshift_dense": lambda: dense.run(feeds), "torch_dense": lambda: torch.nn.functional.linear(tx, tw, tb),
               "torch_bsr_16x16": lambda: torch.addmm(tb16, bsr16, tx.T).T}
    with torch.no_grad():
        outputs = {"gearshift_bsr": sparse.run(feeds)["y"], "onnxruntime": ort.run(None, feeds)[0],
                   "gearshift_dense": dense.run(feeds)["y"], "torch_dense": engines["torch_dense"]().numpy()}
    ref = outputs["onnxruntime"]
    errors = {name: float(np.abs(out - ref).max()) for name, out in outputs.items()}
    errors["torch_bsr_16x16"] = None  # other weights (16x16 pruning): time only
    layer = sparse.artifact.manifest["report"]["sparse_layers"][0]
    return {"case": name, "k": k, "n": n, "sparsity": sparsity, "block": f"{block[0]}x{block[1]}", "engines": engines,
            "errors": errors, "dense_bytes": layer["dense_bytes"], "packed_bytes": layer["packed_bytes"],
            "decision": layer["decision"]}


def time_round(case: dict, repeat: int) -> dict:
    """One round of the timings of a layer: all five engines in alternating blocks (the headline, as
    the benchmark protocol decides); all five engines interleaved call by call; gearshift BSR and ONNX
    Runtime alone, interleaved ("pairwise", as a deployed model runs: no third engine's weights evicting
    the sparse layer's 1-2 MB between its calls); and, as a diagnostic, each called back to back with
    nothing between ("alone": the gap to the others is what a core left idle by the previous engine and
    cold caches cost). Medians in ms."""
    engines = case["engines"]
    with torch.no_grad():
        blocks = {name: summarize(t)["median_ms"] for name, t in time_blocks(engines, repeat=repeat).items()}
        every = {name: summarize(t)["median_ms"] for name, t in time_interleaved(engines, repeat=repeat).items()}
        return {"blocks": blocks, "interleaved": every, **pair_and_alone(engines, PAIR, repeat)}


PAIR = ("gearshift_bsr", "onnxruntime")


def summarize_rounds(case: dict, rounds: list[dict]) -> dict:
    """Per timing mode, the speedup vs ORT of every round, and its median (the figure reported)."""
    row = {key: case[key] for key in ("case", "k", "n", "sparsity", "block", "dense_bytes", "packed_bytes", "decision")}
    row["rounds"] = rounds
    for mode in ("blocks", "interleaved", "pairwise", "alone"):
        ratios = [r[mode]["onnxruntime"] / r[mode]["gearshift_bsr"] for r in rounds]
        row[f"speedup_vs_ort_{mode}"] = float(np.median(ratios))
        row[f"speedup_vs_ort_{mode}_rounds"] = ratios
    row["engines"] = {name: {"median_ms": float(np.median([r["blocks"][name] for r in rounds])),
                             "max_abs_error": case["errors"].get(name)} for name in case["engines"]}
    row["fraction_of_ideal"] = row["speedup_vs_ort_blocks"] * (1.0 - case["sparsity"])
    log(f"{row['case']}: {row['speedup_vs_ort_blocks']:.2f}x ORT in blocks, "
        f"{row['speedup_vs_ort_interleaved']:.2f}x interleaved, "
        f"{row['speedup_vs_ort_pairwise']:.2f}x pairwise, {row['speedup_vs_ort_alone']:.2f}x alone ({row['decision']})")
    return row


def prune_linears(model: torch.nn.Module, sparsity: float, block: tuple[int, int]) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.copy_(torch.from_numpy(project(module.weight.numpy(), *block, sparsity)))


def model_case(name: str, model: torch.nn.Module, feeds: dict, repeat: int) -> dict:
    prune_linears(model, 0.8, (16, 1))
    proto = export_torch(model, feeds, output_names=["y"])
    built = gearshift.compile_model(proto, "host", sparsity="bsr::16x1")
    sparse = gearshift.Session(gearshift.save(built, "out/bench-model-bsr", overwrite=True))
    dense = gearshift.Session(gearshift.save(gearshift.compile_model(proto, "host", sparsity="dense"), "out/bench-model-dense",
                                             overwrite=True))
    ort = ort_session(proto.SerializeToString())
    torch_in = {k: torch.from_numpy(v) for k, v in feeds.items()}

    def torch_call():
        out = model(**torch_in)
        return out if isinstance(out, torch.Tensor) else out[0]

    with torch.no_grad():
        outputs = {"gearshift_bsr": sparse.run(feeds)["y"], "onnxruntime": ort.run(None, feeds)[0],
                   "gearshift_dense": dense.run(feeds)["y"], "torch_dense": torch_call().numpy()}
        row = compare(name, {
            "gearshift_bsr": lambda: sparse.run(feeds), "onnxruntime": lambda: ort.run(None, feeds),
            "gearshift_dense": lambda: dense.run(feeds), "torch_dense": torch_call}, outputs, repeat=repeat)
    layers = built.report["sparse_layers"]
    row.update(sparse_layers=sum(layer["decision"] == "bsr" for layer in layers), layers=len(layers),
               dense_bytes=sum(layer["dense_bytes"] for layer in layers),
               packed_bytes=sum(layer["packed_bytes"] for layer in layers),
               speedup_vs_ort=row["engines"]["onnxruntime"]["median_ms"] / row["engines"]["gearshift_bsr"]["median_ms"])
    log(f"{name}: {row['speedup_vs_ort']:.2f}x ORT")
    return row


def models(repeat: int) -> list[dict]:
    cfg = BertConfig(vocab_size=30522, hidden=768, layers=4, heads=12, ffn=3072, max_positions=512)
    rows = [model_case("BERT-base x4 (HF idioms), seq 128, 80% 16x1", tiny_bert(cfg), bert_inputs(cfg, 1, 128), repeat)]
    try:
        import transformers
    except ImportError:
        log("transformers not installed: skipping the HuggingFace BertModel case")
        return rows
    hf_cfg = transformers.BertConfig(num_hidden_layers=2, max_position_embeddings=512)  # BERT-base dims, 2 layers
    torch.manual_seed(0)
    hf = transformers.BertModel(hf_cfg, add_pooling_layer=False).eval()
    rows.append(model_case("transformers.BertModel x2, seq 128, 80% 16x1", hf, bert_inputs(cfg, 1, 128), repeat))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3, help="timing rounds over all layers (the median is reported)")
    p.add_argument("--skip-model", action="store_true", help="kernels only")
    args = p.parse_args()
    torch.set_num_threads(thread_count())
    cases = [kernel_case(*case) for case in KERNELS]
    rounds = in_rounds(cases, lambda case: time_round(case, args.repeat), args.rounds)
    kernels = [summarize_rounds(case, timings) for case, timings in zip(cases, rounds)]

    def spread(r: dict, mode: str) -> str:
        values = r[f"speedup_vs_ort_{mode}_rounds"]
        return f"{r[f'speedup_vs_ort_{mode}']:.2f}x ({min(values):.2f}-{max(values):.2f})"

    rows = [("layer (M=128)", "gearshift BSR ms", "ORT dense ms", "speedup vs ORT (range over rounds)", "interleaved",
             "pairwise speedup",
             "alone speedup", "of ideal 1/density", "gearshift dense ms", "torch dense ms", "torch BSR 16x16 ms",
             "weights MB dense -> packed", "max err")]
    for r in kernels:
        e = r["engines"]
        rows.append((r["case"], f"{e['gearshift_bsr']['median_ms']:.3f}", f"{e['onnxruntime']['median_ms']:.3f}",
                     spread(r, "blocks"), spread(r, "interleaved"), spread(r, "pairwise"), spread(r, "alone"),
                     f"{r['fraction_of_ideal']:.0%}",
                     f"{e['gearshift_dense']['median_ms']:.3f}", f"{e['torch_dense']['median_ms']:.3f}",
                     f"{e['torch_bsr_16x16']['median_ms']:.3f}",
                     f"{r['dense_bytes'] / 1e6:.2f} -> {r['packed_bytes'] / 1e6:.2f}",
                     f"{e['gearshift_bsr']['max_abs_error']:.1e}"))
    text = f"# Block-sparse kernels vs dense peers\n\n{table(rows)}\n"
    payload = {"repeat": args.repeat, "rounds": args.rounds, "kernels": kernels}
    if not args.skip_model:
        model_rows = models(args.repeat)
        lines = [("model", "gearshift BSR ms", "ORT ms", "speedup vs ORT", "gearshift dense ms", "torch ms",
                  "sparse layers", "linear weights MB dense -> packed", "max err")]
        for model in model_rows:
            e = model["engines"]
            lines.append((model["case"], f"{e['gearshift_bsr']['median_ms']:.2f}", f"{e['onnxruntime']['median_ms']:.2f}",
                          f"{model['speedup_vs_ort']:.2f}x", f"{e['gearshift_dense']['median_ms']:.2f}",
                          f"{e['torch_dense']['median_ms']:.2f}", f"{model['sparse_layers']}/{model['layers']}",
                          f"{model['dense_bytes'] / 1e6:.1f} -> {model['packed_bytes'] / 1e6:.1f}",
                          f"{e['gearshift_bsr']['max_abs_error']:.1e}"))
        text += "\n## End to end (every linear layer pruned to 80 % in 16x1 blocks; ORT runs the same pruned ONNX)\n\n"
        text += table(lines) + "\n"
        payload["models"] = model_rows
    text += (f"\n{threads_note()}; {machine_note()}; headline: engines in alternating blocks (benchmark protocol); "
             f"kernels: medians of {args.repeat} runs after 3 warm-ups per timing, median of "
             f"{args.rounds} rounds (range in brackets); models: medians of {args.repeat} runs in alternating blocks.")
    write_results("block_sparse", payload, text)
    print(text)


if __name__ == "__main__":
    main()
