"""Compression training (frontend/compression.py, distill.py): every structure with every method.

Each combination trains a small model on a regression task for a few dozen steps: the method must
move the weights towards the structure (distance to it falls), the hard prune must land exactly in
it, and the exported model must compile with no flag onto the sparse kernels and match torch within
1e-4 abs / 1e-3 rel. Accuracy figures are not asserted here: benchmarks/ earns them.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import assert_close
from torch import nn

import gearshift
from gearshift.compress.circulant import circulant_error
from gearshift.frontend.compression import METHODS, Pruner
from gearshift.frontend.distill import Distiller, progressive
from gearshift.frontend.load import export_torch

SPECS = {  # structure -> (model kind, spec, the decision the compiler must take with no flag)
    "bsr": ("mlp", "bsr:0.75:16x1", "bsr"),
    "block-patterns": ("mlp", "pattern:4:0.5:4x4:8", "pattern"),
    "circulant": ("mlp", "circulant:8", "circulant"),
    "conv-patterns": ("cnn", "pattern:4:0.5", "pattern"),
}
SETTINGS = {"lasso": {"lam": 1e-2}, "admm": {"rho": 0.3}, "slr": {"rho": 0.3}}


def model_and_data(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
        x = torch.randn(256, 64)
    else:
        model = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 16, 3, padding=1))
        x = torch.randn(32, 16, 8, 8)
    teacher = copy.deepcopy(model)
    with torch.no_grad():
        y = teacher(x)
    return model, x, y


def train(model, pruner, x, y, steps: int, lr: float = 1e-2) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        (loss + pruner.penalty()).backward()
        opt.step()
        opt.zero_grad()
        pruner.step(loss)


def distance(pruner) -> float:
    return max(layer["distance"] for layer in pruner.report().values())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("structure", list(SPECS))
def test_every_method_drives_every_structure(structure, method, tmp_path):
    kind, spec, decision = SPECS[structure]
    model, x, y = model_and_data(kind)
    pruner = Pruner(model, spec, method=method, update_every=10, **SETTINGS[method])
    before = distance(pruner)
    train(model, pruner, x, y, steps=80)
    assert distance(pruner) < 0.95 * before, (before, distance(pruner))  # without the method: 1.0x (no drift)
    pruner.prune()
    train(model, pruner, x, y, steps=10)  # fine-tuning keeps the structure
    pruner.finalize()
    assert distance(pruner) < 1e-5 and pruner.penalty() == 0
    for layer in model:
        if isinstance(layer, nn.Linear) and structure == "circulant":
            assert circulant_error(layer.weight.detach().numpy(), 8) < 1e-6
    feeds = {"x": x[:32].numpy()}  # 32 rows: block patterns run along the activations
    proto = export_torch(model, feeds, output_names=["y"])
    built = gearshift.compile_model(proto, "host")  # no flag: the structure is found in the weights
    decisions = [layer["decision"] for layer in built.report["sparse_layers"]]
    assert decisions == [decision] * 2, built.report["sparse_layers"]
    got = gearshift.Session(gearshift.save(built, tmp_path / "art")).run(feeds)["y"]
    with torch.no_grad():
        assert_close(got, model(x[:32]).numpy())


@pytest.mark.parametrize("method", METHODS)
def test_progressive_levels_are_nested(method):
    """RT3's levels from one run: each level's kept weights contain the next (sparser) level's."""
    model, x, y = model_and_data("mlp")
    pruner = Pruner(model, {r"^0$": "bsr:0.5:16x1", r"^2$": "pattern:4:0.5:4x4:8"}, method=method, update_every=10,
                    **SETTINGS[method])
    masks, zeros = [], []
    stages = progressive(pruner, [0.5, 0.7, 0.85], finetune=lambda s: (masks.append(pruner.masks()),
                                                                        zeros.append(pruner.report())))
    for _ in stages:
        train(model, pruner, x, y, steps=20)
    assert len(masks) == 3
    for earlier, later in zip(masks, masks[1:]):
        for name in earlier:
            assert bool((later[name] <= earlier[name]).all()), f"{name}: a later level keeps a weight an earlier one pruned"
    assert [round(z["0"]["zeros"], 2) for z in zeros] == [0.5, 0.7, 0.85]
    with pytest.raises(ValueError, match="must increase"):
        list(progressive(pruner, [0.7, 0.5]))


def test_slr_updates_its_multipliers_and_needs_the_loss():
    model, x, y = model_and_data("mlp")
    pruner = Pruner(model, "bsr:0.75:16x1", method="slr", update_every=5, rho=3e-2)
    with pytest.raises(ValueError, match="needs the task loss"):
        pruner.step()
    train(model, pruner, x, y, steps=30)
    assert all(float(t.state["lam"].abs().sum()) > 0 for t in pruner.targets)
    assert 0 < pruner.step_size < 3e-2 * 10


def test_bad_configurations_are_named():
    model, _, _ = model_and_data("mlp")
    with pytest.raises(ValueError, match="method must be one of lasso, admm, slr"):
        Pruner(model, "bsr:0.5:16x1", method="sgd")
    with pytest.raises(ValueError, match="training needs an explicit target"):
        Pruner(model, "bsr")
    with pytest.raises(ValueError, match=r"layer '2' \(bsr:0.5:64x1\): weight \[32, 128\] does not divide"):
        Pruner(model, "bsr:0.5:64x1")
    with pytest.raises(ValueError, match="no Linear or Conv2d layer matches"):
        Pruner(model, {"nothing": "bsr:0.5:16x1"})


def test_distiller_matches_outputs_and_hidden_states():
    torch.manual_seed(3)
    teacher = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))
    student = copy.deepcopy(teacher)
    distiller = Distiller(teacher, student, hidden=r"^[13]$")
    assert distiller.hidden_names == ["1", "3"]
    x = torch.randn(128, 32)
    assert float(distiller.loss(x).detach()) == 0.0
    with torch.no_grad():
        for p in student.parameters():
            p.add_(0.1 * torch.randn_like(p))
    start = float(distiller.loss(x).detach())
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    for _ in range(100):
        loss = distiller.loss(x)
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert float(distiller.loss(x).detach()) < 0.2 * start
    assert all(not p.requires_grad for p in teacher.parameters())
    distiller.close()
    assert not any(m._forward_hooks for m in [*teacher.modules(), *student.modules()])
    with pytest.raises(ValueError, match="no module of both models matches"):
        Distiller(teacher, student, hidden="encoder")


def test_nested_levels_from_one_run_compile_into_one_rt3_artifact(tmp_path):
    """Progressive training writes one ONNX per level; a levels file names each level's model and
    report; the RT3 artifact carries them, and each level computes its own trained model."""
    from gearshift.levels_compiler import compile_levels_to
    from gearshift.relay_passes.levels import parse_levels

    model, x, y = model_and_data("mlp")
    dense_path = tmp_path / "dense.onnx"
    dense_path.write_bytes(export_torch(model, {"x": x[:32].numpy()}, output_names=["y"]).SerializeToString())
    pruner = Pruner(model, "bsr:0.5:16x1", method="admm", update_every=10, **SETTINGS["admm"])
    levels, expected = [], {}

    def keep(sparsity: float) -> None:
        train(model, pruner, x, y, steps=10)
        level = pruner.snapshot(model)
        name = f"bsr{round(sparsity * 100)}"
        proto = export_torch(level, {"x": x[:32].numpy()}, output_names=["y"])
        (tmp_path / f"{name}.onnx").write_bytes(proto.SerializeToString())
        with torch.no_grad():
            expected[name] = level(x[:32]).numpy()
            loss = float(nn.functional.mse_loss(level(x), y))
        levels.append({"name": name, "sparsity": "bsr::16x1", "model": f"{name}.onnx", "report": {"mse": loss}})

    for _ in progressive(pruner, [0.5, 0.7, 0.85], finetune=keep):
        train(model, pruner, x, y, steps=20)
    (tmp_path / "levels.json").write_text(json.dumps({"form": "runtime", "levels": levels}))
    art = compile_levels_to(str(dense_path), tmp_path / "levels.json", "host", tmp_path / "art", repeat=2)
    session = gearshift.Session(art)
    for entry in levels:
        facts = art.manifest["levels"][entry["name"]]
        assert facts["training"] == entry["report"] and facts["weights_from"] == entry["model"]
        session.switch(entry["name"])
        assert_close(session.run({"x": x[:32].numpy()})["y"], expected[entry["name"]])
    assert all(art.manifest["levels"][entry["name"]]["error"] > 0 for entry in levels)  # each against the dense model
    # Tuning the levels finds the sparse kernels of the levels' own weights (the dense model has none).
    from gearshift.autotune import sparse_tasks
    from gearshift.schedules.targets import get_target

    assert sparse_tasks(str(dense_path), get_target("host"), levels=tmp_path / "levels.json")
    bad = {"form": "runtime", "levels": [{**levels[0], "model": str(tmp_path / "nothing.onnx")}]}
    with pytest.raises(gearshift.GearshiftError, match="nothing.onnx"):
        compile_levels_to(str(dense_path), parse_levels(bad), "host", tmp_path / "bad")
