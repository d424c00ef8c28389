"""The bench's PNGs: speedup against density per structure (with the ideal line and the peers),
circulant speedup against block size, per-model bars, the RT3 trace, accuracy against compression."""

from __future__ import annotations

import shutil
from pathlib import Path

COLORS = {"gearshift": "tab:blue", "torch BSR": "tab:orange", "torch": "tab:green", "plain TVM": "tab:gray",
          "gearshift dense": "tab:purple", "ideal": "black"}


def write_all(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    suites, written = results["suites"], []
    if suites.get("kernels"):
        written += _density(suites["kernels"], out) + _circulant(suites["kernels"], out)
    if suites.get("models"):
        written += _models(suites["models"], out)
    if suites.get("rt3"):
        shutil.copyfile(out / "rt3" / "report.png", out / "rt3-trace.png")
        written.append("rt3-trace.png")
    if suites.get("accuracy"):
        written += _accuracy(suites["accuracy"], out)
    return written


def _speedup(row: dict, engine: str) -> float | None:
    e = row["engines"]
    ms = e.get(engine, {}).get("median_ms")
    return e["onnxruntime"]["median_ms"] / ms if ms else None


def _density(rows: list[dict], out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    families = [f for f in ("bsr 16x1", "bsr 4x4", "block patterns", "pattern conv") if any(r["family"] == f for r in rows)]
    if not families:
        return []
    shapes = sorted({r["shape"] for r in rows if r["family"] in families})
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 4), squeeze=False)
    for ax, family in zip(axes[0], families):
        mine = [r for r in rows if r["family"] == family]
        densities = sorted({r["setting"] for r in mine})
        ideal_x = [d * 100 for d in densities]
        ax.plot(ideal_x, [1 / d for d in densities], "k--", label="ideal (1/density)")
        for shape in shapes:
            pts = sorted((r["setting"] * 100, _speedup(r, "gearshift"), _speedup(r, "torch BSR"), _speedup(r, "torch"))
                         for r in mine if r["shape"] == shape)
            if not pts:
                continue
            marker = "o" if shape == shapes[0] else "s"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker + "-", color=COLORS["gearshift"], label=f"gearshift {shape}")
            if any(p[2] for p in pts):
                ax.plot([p[0] for p in pts if p[2]], [p[2] for p in pts if p[2]], marker + ":", color=COLORS["torch BSR"],
                        label=f"torch BSR {shape}")
            ax.plot([p[0] for p in pts], [p[3] for p in pts], marker + ":", color=COLORS["torch"], label=f"torch dense {shape}")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(family)
        ax.set_xlabel("density (% of weights kept)")
        ax.set_ylabel("speedup over ONNX Runtime dense (x)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, which="both")
    fig.suptitle("Speedup against density, per structure (same weights for every engine; torch BSR 16x1: 16x16 blocks)")
    fig.tight_layout()
    fig.savefig(out / "kernels-density.png", dpi=100)
    plt.close(fig)
    return ["kernels-density.png"]


def _circulant(rows: list[dict], out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["family"] == "circulant"]
    if not mine:
        return []
    fig, ax = plt.subplots(figsize=(6, 4))
    blocks = sorted({r["setting"] for r in mine})
    ax.plot(blocks, [b / 2 for b in blocks], "k--", label="ideal (FLOP ratio, b/2)")
    for shape in sorted({r["shape"] for r in mine}):
        pts = sorted((r["setting"], _speedup(r, "gearshift"), _speedup(r, "torch")) for r in mine if r["shape"] == shape)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=COLORS["gearshift"], label=f"gearshift {shape}")
        ax.plot([p[0] for p in pts], [p[2] for p in pts], "o:", color=COLORS["torch"], label=f"torch dense {shape}")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(blocks, [f"{b:g}" for b in blocks])
    ax.set_xlabel("circulant block size b")
    ax.set_ylabel("speedup over ONNX Runtime dense (x)")
    ax.set_title("Block-circulant layers")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "kernels-circulant.png", dpi=100)
    plt.close(fig)
    return ["kernels-circulant.png"]


def _models(rows: list[dict], out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["model"] for r in rows))
    series: dict[str, dict[str, float]] = {}
    for r in rows:
        if r["family"] == "dense":
            for engine in ("torch", "plain TVM", "gearshift dense"):
                s = _speedup(r, engine)
                if s:
                    series.setdefault(engine, {})[r["model"]] = s
        else:
            label = r["case"].split(", ")[-1]
            s = _speedup(r, "gearshift")
            if s:
                series.setdefault(f"gearshift {label}", {})[r["model"]] = s
    fig, ax = plt.subplots(figsize=(max(7.0, 2.2 * len(names) + 3), 4.5))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        x = [j + i * width for j, n in enumerate(names) if n in values]
        ax.bar(x, [values[n] for n in names if n in values], width, label=label,
               color=COLORS.get(label) if label in COLORS else None)
    ax.axhline(1.0, color="black", lw=0.8, label="ONNX Runtime dense")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(names))], [n.split(" (")[0] for n in names])
    ax.set_ylabel("speedup over ONNX Runtime dense (x)")
    ax.set_yscale("log")
    ax.set_title("Whole models: each engine and structure against ONNX Runtime (same weights)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.tight_layout()
    fig.savefig(out / "models.png", dpi=100)
    plt.close(fig)
    return ["models.png"]


def _accuracy(acc: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for family in dict.fromkeys(r["family"] for r in acc["rows"]):
        pts = sorted((r["removed"] * 100, r["cosine_mean"]) for r in acc["rows"] if r["family"] == family)
        style = "k--" if family.startswith("unstructured") else "o-"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=family.split(" (")[0])
    ax.set_xlabel("weights removed (%)")
    ax.set_ylabel("embedding cosine to the dense model")
    ax.set_ylim(0, 1.02)
    ax.set_title("all-MiniLM-L6-v2, one-shot projection (no retraining)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=100)
    plt.close(fig)
    return ["accuracy.png"]
