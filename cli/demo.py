"""`gearshift demo` / `make demo`: compile the bundled BERT-style encoder and set it beside ONNX Runtime.

The model is built deterministically in code (no download), exported with torch's legacy exporter,
compiled by gearshift for this machine, written as an artifact, loaded back and timed interleaved
with ONNX Runtime and torch on the same inputs and thread count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gearshift.bench import machine, ort_session, summarize, thread_count, time_blocks
from gearshift.spec import Log

BATCH, SEQ_LEN = 1, 128


def run_demo(out_dir: Path, repeat: int = 20, log: Log = lambda _msg: None) -> str:
    import torch

    from gearshift.compiler import compile_model, save
    from gearshift.frontend.examples import BertConfig, bert_inputs, tiny_bert
    from gearshift.frontend.load import export_torch
    from gearshift.runtime import Session

    config = BertConfig(vocab_size=8000, hidden=256, layers=4, heads=4, ffn=1024, max_positions=SEQ_LEN)
    model = tiny_bert(config)
    inputs = bert_inputs(config, batch=BATCH, seq_len=SEQ_LEN)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir.with_suffix(".onnx")
    proto = export_torch(model, inputs, output_names=["last_hidden_state"])
    onnx_path.write_bytes(proto.SerializeToString())
    log(f"exported {onnx_path} (TinyBert: {config.layers} layers, hidden {config.hidden}, "
        f"batch {BATCH}, sequence {SEQ_LEN})")

    built = compile_model(onnx_path, "host", log=log)
    artifact = save(built, out_dir, name="tiny-bert", overwrite=True)
    log(f"wrote {artifact.path}")

    threads = thread_count()
    session = Session(artifact)
    ort = ort_session(str(onnx_path))
    torch.set_num_threads(threads)
    torch_inputs = {k: torch.from_numpy(v) for k, v in inputs.items()}

    reference = ort.run(None, inputs)[0]
    with torch.no_grad():
        torch_out = model(**torch_inputs).numpy()
    gear_out = session.run(inputs)["last_hidden_state"]
    errors = {"gearshift": float(np.abs(gear_out - reference).max()), "onnxruntime": 0.0,
              "torch": float(np.abs(torch_out - reference).max())}

    log(f"timing {repeat} runs per engine in alternating blocks, {threads} threads")
    with torch.no_grad():
        times = time_blocks({
            "gearshift": lambda: session.run(inputs),
            "onnxruntime": lambda: ort.run(None, inputs),
            "torch": lambda: model(**torch_inputs),
        }, repeat=repeat)
    stats = {k: summarize(v) for k, v in times.items()}
    base = stats["onnxruntime"]["median_ms"]
    from gearshift.cli.common import format_table

    rows = [("engine", "median ms", "p90 ms", "time / ONNX Runtime", "max abs error vs ONNX Runtime")]
    for name, s in stats.items():
        rows.append((name, f"{s['median_ms']:.3f}", f"{s['p90_ms']:.3f}", f"{s['median_ms'] / base:.2f}x",
                     f"{errors[name]:.2e}"))
    m = machine()
    note = (f"\nmachine: {m['cpu']} ({m['isa']}), {m['cores']} cores, {threads} threads; tvm {m['tvm']}, "
            f"onnxruntime {m['onnxruntime']}, torch {m['torch']}\n"
            "Engines timed in alternating blocks, idle thread pools not spinning; benchmarks/ has full-size models.")
    return format_table(rows) + note
