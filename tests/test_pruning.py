"""BlockPruner: reweighted group lasso shrinks blocks, pruning is exact and stays so, export has zeros."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import gearshift
from gearshift.frontend.inventory import inventory
from gearshift.frontend.pruning import BlockPruner


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 5))


def fit(net, pruner=None, steps=60):
    torch.manual_seed(1)
    x, y = torch.randn(256, 32), torch.randint(0, 5, (256,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x), y) + (pruner.penalty() if pruner else 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if pruner:
            pruner.step()


def test_group_lasso_shrinks_block_norms():
    net = model()
    pruner = BlockPruner(net, block=(16, 1), sparsity=0.75, layers=r"^[02]$", lam=5e-2, refresh_every=10)
    before = [pruner.block_norms(t).sum().item() for t in pruner.targets]
    fit(net, pruner)
    after = [pruner.block_norms(t).sum().item() for t in pruner.targets]
    assert all(a < 0.7 * b for a, b in zip(after, before)), (before, after)
    assert [t.name for t in pruner.targets] == ["0", "2"]


def test_prune_is_exact_stays_exact_and_exports(tmp_path):
    net = model()
    pruner = BlockPruner(net, block=(16, 1), sparsity=0.75, layers=r"^[02]$")
    fit(net, pruner, steps=10)
    pruner.prune()
    assert pruner.report() == {"0": 0.75, "2": 0.75}
    fit(net, steps=20)  # fine-tuning: the masked blocks must stay zero
    assert pruner.report() == {"0": 0.75, "2": 0.75}
    pruner.finalize()
    assert not any("parametrizations" in name for name, _ in net.named_parameters())
    x = np.random.default_rng(0).standard_normal((4, 32)).astype(np.float32)
    layers = inventory(gearshift.load(net, {"x": x}))
    assert [(layer.block, round(layer.block_sparsity, 2)) for layer in layers[:2]] == [("16x1", 0.75), ("16x1", 0.75)]


def test_pruner_errors():
    with pytest.raises(ValueError, match="does not divide"):
        BlockPruner(model(), block=(16, 1), layers=r"^4$")  # 5 outputs
    with pytest.raises(ValueError, match="no Linear"):
        BlockPruner(model(), layers="nothing", types=(nn.Linear,))
    with pytest.raises(ValueError, match="sparsity"):
        BlockPruner(model(), sparsity=1.5)
