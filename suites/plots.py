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
    suites = {name: [r for r in rows if not r.get("error")] if isinstance(rows, list) else rows
              for name, rows in results["suites"].items()}  # rows of cases that could not be built have no times
    written: list[str] = []
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


def _axes(ax, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def _save(fig, out: Path, name: str, tight: bool = True) -> list[str]:
    """`tight=False`: keep the layout the caller set (a legend below the axes needs its own margin)."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return [name]


def _speedup(row: dict, engine: str) -> float | None:
    e = row["engines"]
    ms = e.get(engine, {}).get("median_ms")
    return e["onnxruntime"]["median_ms"] / ms if ms else None


def _density(rows: list[dict], out: Path) -> list[str]:
    import matplotlib.pyplot as plt
    import numpy as np

    families = [f for f in ("bsr 16x1", "bsr 4x4", "block patterns", "pattern conv") if any(r["family"] == f for r in rows)]
    if not families:
        return []
    shapes = sorted({r["shape"] for r in rows if r["family"] in families})
    grid = np.linspace(0.04, 0.55, 60)
    cols = 2 if len(families) > 1 else 1
    fig, axes = plt.subplots(-(-len(families) // cols), cols, figsize=(5.5 * cols, 4.2 * -(-len(families) // cols)),
                             squeeze=False)
    for ax, family in zip(axes.flat, families):
        mine = [r for r in rows if r["family"] == family]
        ax.plot(grid * 100, 1 / grid, "k--", label="ideal (1/density)")
        for shape, marker in zip(shapes, "osd^v"):
            pts = sorted((r["setting"] * 100, _speedup(r, "gearshift"), _speedup(r, "torch BSR"), _speedup(r, "torch"))
                         for r in mine if r["shape"] == shape)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker + "-", color=COLORS["gearshift"], label=f"gearshift {shape}")
            if any(p[2] for p in pts):
                ax.plot([p[0] for p in pts if p[2]], [p[2] for p in pts if p[2]], marker + ":", color=COLORS["torch BSR"],
                        label=f"torch BSR {shape}")
            ax.plot([p[0] for p in pts], [p[3] for p in pts], marker + ":", color=COLORS["torch"], label=f"torch dense {shape}")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_yscale("log")
        ax.set_yticks([0.5, 1, 2, 5, 10, 20], ["0.5", "1", "2", "5", "10", "20"])
        ax.set_ylim(0.3, 30)
        ax.set_xlim(0, 56)
        _axes(ax, "density (% of weights kept)", "speedup over ONNX Runtime dense (x)", family)
    for ax in list(axes.flat)[len(families):]:
        ax.set_visible(False)
    fig.suptitle("Speedup against density (every engine on the same weights; torch BSR for 16x1: 16x16 blocks, same density)",
                 fontsize=10)
    return _save(fig, out, "kernels-density.png")


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
    _axes(ax, "circulant block size b", "speedup over ONNX Runtime dense (x)", "Block-circulant layers")
    return _save(fig, out, "kernels-circulant.png")


def _models(rows: list[dict], out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["model"] for r in rows))
    values: dict[str, dict[str, float]] = {name: {} for name in names}  # model -> series -> speedup
    for r in rows:
        engines = ("torch", "plain TVM", "gearshift dense") if r["family"] == "dense" else ("gearshift",)
        for engine in engines:
            s = _speedup(r, engine)
            if s:
                label = engine if r["family"] == "dense" else f"gearshift {r['case'].split(', ')[-1]}"
                values[r["model"]][label] = s
    series = list(dict.fromkeys(label for per in values.values() for label in per))
    palette = iter(["tab:blue", "tab:orange", "tab:red", "tab:cyan", "tab:olive", "tab:brown", "tab:pink", "gold", "navy"])
    colors = {label: COLORS.get(label) or next(palette, "black") for label in series}
    widest = max(len(per) for per in values.values())
    width = 0.8 / widest
    wide = max(9.0, sum(len(p) for p in values.values()) * 0.5 + 4)
    columns = 4 if wide >= 12 else 3
    fig, ax = plt.subplots(figsize=(wide, 5.5))
    drawn = set()
    for j, name in enumerate(names):  # each model's bars side by side, centred on it
        present = [label for label in series if label in values[name]]
        for k, label in enumerate(present):
            x = j - width * len(present) / 2 + width * (k + 0.5)
            bar = ax.bar(x, values[name][label], width * 0.95, color=colors[label],
                         label=None if label in drawn else label)
            ax.bar_label(bar, [f"{values[name][label]:.2f}"], fontsize=7)
            drawn.add(label)
    ax.axhline(1.0, color="black", lw=0.8, label="ONNX Runtime dense (1x)")
    ax.set_xticks(range(len(names)), [n.split(" (")[0] for n in names])
    ax.set_yscale("log")
    low = min(v for per in values.values() for v in per.values())
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10) if low / 2 <= t <= 10]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_ylim(low / 2, 10)
    ax.set_ylabel("speedup over ONNX Runtime dense (x)")
    ax.set_title("Whole models against ONNX Runtime dense (every engine on the same weights)", fontsize=10)
    ax.grid(alpha=0.3, axis="y", which="both")
    fig.legend(loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.04 + 0.04 * -(-(len(series) + 1) // columns), 1, 1))
    return _save(fig, out, "models.png", tight=False)


def _accuracy(acc: dict, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for family in dict.fromkeys(r["family"] for r in acc["rows"]):
        pts = sorted((r["removed"] * 100, r["cosine_mean"]) for r in acc["rows"] if r["family"] == family)
        style = "k--" if family.startswith("unstructured") else "o-"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=family.split(" (")[0])
    ax.set_ylim(0, 1.02)
    _axes(ax, "weights removed (%)", "embedding cosine to the dense model (mean over sentences)",
          "all-MiniLM-L6-v2, one-shot projection (no retraining)")
    return _save(fig, out, "accuracy.png")
