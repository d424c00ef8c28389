"""The simulated VTA-style accelerator's cycle model on the issue's layers (no FPGA here: every
figure is the model's, see docs/design/vta.md).

    python benchmarks/vta_cycles.py   -> results/vta_cycles.{json,md}

  - dense 768 x 3072 at batch 16: GEMM-core utilisation with and without double buffering, at
    DRAM bandwidths of 8 (VTA's PYNQ-Z1 build: a 64-bit port), 16, 32 and 64 bytes per cycle;
  - the same layer block-sparse with 50/80/90 % (and 20/10 %) of its 16 x 16 blocks kept: cycles
    against the density-proportional ideal (dense cycles x density).
  - the bundled demo BERT (512 wide, 4 layers, sequence 128) compiled for `vta-sim`: every linear
    layer on the accelerator, the rest on the host; output cosine and max relative error against
    the float model, calibrated on other samples (seed 1) and on random inputs; cycles per layer.
Every run is also checked bit-exact against the numpy int8 reference.
"""

from __future__ import annotations

import numpy as np

from common import log, machine_note, table, write_results  # noqa: I001
from gearshift.runtime.vta.config import VtaConfig
from gearshift.schedules.vta.matmul import lower_matmul
from gearshift.schedules.vta.quantize import quantize_linear, reference

M, K, N = 16, 768, 3072


def main() -> None:
    rng = np.random.default_rng(0)
    w, b, x = rng.standard_normal((K, N)) * 0.05, rng.standard_normal(N) * 0.1, rng.standard_normal((M, K))
    layer = quantize_linear(w, b, x)
    x_q = layer.quantize_input(x)
    dense_rows, dense_runs = [], {}
    for bandwidth in (8, 16, 32, 64):
        config = VtaConfig(dram_bytes_per_cycle=bandwidth)
        for double in (True, False):
            program = lower_matmul(layer, M, config, double_buffer=double)
            y_q, stats = program.run(x_q)
            exact = bool(np.array_equal(y_q, reference(x_q, layer)))
            dense_runs[(bandwidth, double)] = stats.cycles
            dense_rows.append({"bytes_per_cycle": bandwidth, "double_buffer": double, "cycles": stats.cycles,
                               "gemm_cycles": stats.gemm_cycles, "utilisation": round(stats.utilisation, 4),
                               "microseconds_at_clock": round(stats.seconds(config) * 1e6, 1), "bit_exact": exact,
                               "tiles": program.tiles})
            log(f"dense {bandwidth} B/cycle {'double' if double else 'single'}: {stats.cycles} cycles, "
                f"utilisation {stats.utilisation:.1%}, exact {exact}")
    sparse_rows = []
    config = VtaConfig()  # the default: 16 bytes/cycle
    for density in (0.9, 0.8, 0.5, 0.2, 0.1):
        kept = rng.random((N // 16, K // 16)) < density
        ws = (w.reshape(K // 16, 16, N // 16, 16) * kept.T[:, None, :, None]).reshape(K, N)
        sparse = quantize_linear(ws, b, x)
        program = lower_matmul(sparse, M, config, kept=kept)
        y_q, stats = program.run(sparse.quantize_input(x))
        ideal = dense_runs[(config.dram_bytes_per_cycle, True)] * kept.mean()
        sparse_rows.append({"kept": round(float(kept.mean()), 4), "cycles": stats.cycles,
                            "density_proportional_ideal": round(ideal), "ratio": round(stats.cycles / ideal, 3),
                            "utilisation": round(stats.utilisation, 4),
                            "bit_exact": bool(np.array_equal(y_q, reference(sparse.quantize_input(x), sparse)))})
        log(f"sparse {kept.mean():.0%} kept: {stats.cycles} cycles, {stats.cycles / ideal:.2f}x the ideal")
    model = demo_on_vta()
    payload = {"layer": {"m": M, "k": K, "n": N}, "config": VtaConfig().to_json(), "dense": dense_rows,
               "block_sparse_at_default_bandwidth": sparse_rows, "demo_model": model,
               "note": "cycle model of a simulated accelerator; no FPGA measured"}
    md = [f"# VTA-style accelerator: cycle model (simulated; computed on {machine_note()})", "",
          f"Dense {M} x {K} -> {N} (int8), every run bit-exact against numpy: {all(r['bit_exact'] for r in dense_rows)}.", "",
          table([("bytes/cycle", "double buffer", "cycles", "GEMM utilisation", "us at 100 MHz")]
                + [(r["bytes_per_cycle"], r["double_buffer"], r["cycles"], f"{r['utilisation']:.1%}",
                    r["microseconds_at_clock"]) for r in dense_rows]), "",
          f"Block-sparse (16 x 16 blocks kept at random), {VtaConfig().dram_bytes_per_cycle} bytes/cycle (the default), "
          "double buffered:", "",
          table([("blocks kept", "cycles", "density-proportional ideal", "ratio", "utilisation", "bit-exact")]
                + [(f"{r['kept']:.0%}", r["cycles"], r["density_proportional_ideal"], f"{r['ratio']:.2f}x",
                    f"{r['utilisation']:.1%}", r["bit_exact"]) for r in sparse_rows])]
    cal = model["calibrations"]
    md += ["", f"Demo BERT ({model['model']}) with its {len(model['layers'])} linear layers on the accelerator "
           f"(default configuration, {VtaConfig().dram_bytes_per_cycle} bytes/cycle):", "",
           table([("calibration", "output cosine vs float", "max abs error / max abs output")]
                 + [(c["calibration"], f"{c['cosine']:.5f}", f"{c['max_relative_error']:.3f}") for c in cal]), "",
           table([("layer", "cycles", "GEMM utilisation", "us at 100 MHz")]
                 + [(r["layer"], r["cycles"], f"{r['utilisation']:.1%}", r["microseconds"]) for r in model["layers"]]), "",
           f"Total: {model['total_cycles']} cycles, {model['total_microseconds']:.0f} us at 100 MHz, GEMM utilisation "
           f"{model['utilisation']:.1%} (offloaded layers only)."]
    write_results("vta_cycles", payload, "\n".join(md))


def demo_on_vta() -> dict:
    """The demo model's linear layers on the accelerator: accuracy against the float model, cycles."""
    import tempfile

    import torch

    import gearshift
    from gearshift.frontend.examples import BertConfig, bert_inputs
    from gearshift.suites.models import demo_model

    module, feeds = demo_model()
    config = BertConfig(hidden=512, layers=4, heads=8, ffn=2048, max_positions=128)
    with torch.no_grad():
        expected = module(**{k: torch.tensor(v) for k, v in feeds.items()})
    expected = (expected[0] if isinstance(expected, (tuple, list)) else expected).numpy().astype(np.float64)
    rows, report = [], None
    for label, calibration in (("other samples (seed 1)", bert_inputs(config, batch=1, seq_len=128, seed=1)),
                               ("random inputs (the default)", None)):
        with tempfile.TemporaryDirectory() as tmp:
            art = gearshift.compile(module, "vta-sim", f"{tmp}/demo", example_inputs=feeds, calibration=calibration)
            session = gearshift.Session(art)
            got = next(iter(session.run(feeds).values())).astype(np.float64)
        cosine = float(got.ravel() @ expected.ravel() / np.linalg.norm(got) / np.linalg.norm(expected))
        rows.append({"calibration": label, "cosine": cosine,
                     "max_relative_error": float(np.abs(got - expected).max() / np.abs(expected).max())})
        report = report or session.accelerator_report
        log(f"demo on vta-sim, calibration {label}: cosine {cosine:.5f}")
    return {"model": "BERT-style encoder, 512 wide, 4 layers, FFN 2048, sequence 128", "calibrations": rows, **report}


if __name__ == "__main__":
    main()
