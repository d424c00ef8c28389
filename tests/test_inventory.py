"""`inspect`: the layer inventory finds weight-carrying layers, their cost and their block structure."""

from __future__ import annotations

import numpy as np
import pytest

import gearshift
from gearshift.frontend.inventory import detect_blocks, inventory


def block_pruned(rows: int, cols: int, r: int, c: int, keep: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols)).astype(np.float32) + 0.01  # no accidental zeros
    mask = rng.random((rows // r, cols // c)) < keep
    return w * np.kron(mask, np.ones((r, c), np.float32))


@pytest.mark.parametrize("r,c", [(16, 1), (1, 16), (4, 4), (8, 1)])
def test_detect_blocks_finds_the_pruning_shape(r, c):
    block, empty = detect_blocks(block_pruned(64, 64, r, c, keep=0.3))
    assert block == f"{r}x{c}"
    assert 0.5 < empty < 0.9


def test_detect_blocks_dense_unstructured_and_ragged():
    assert detect_blocks(np.ones((8, 8))) == (None, 0.0)
    w = np.ones((8, 8))
    w[3, 5] = 0
    assert detect_blocks(w) == ("unstructured", 0.0)
    ragged = block_pruned(48, 48, 16, 1, keep=0.5)[:40, :45]  # shape not divisible by the block
    assert detect_blocks(ragged)[0] == "16x1"


def test_inventory_of_mlp_and_cnn(mlp_case, cnn_case):
    import torch

    module, feeds = mlp_case
    with torch.no_grad():  # prune the first layer (torch: [out, in]) in 8x1 blocks
        module.layers[0].weight.mul_(torch.from_numpy(block_pruned(96, 64, 8, 1, keep=0.25, seed=1) != 0))
    layers = inventory(gearshift.load(module, feeds))
    assert [layer.kind for layer in layers] == ["gemm", "gemm"]
    first = layers[0]
    assert first.flops == 2 * 3 * 64 * 96 and first.params == 64 * 96 + 96
    assert first.block == "8x1" and 0.6 < first.sparsity < 0.9 and first.block_sparsity == pytest.approx(first.sparsity)
    assert layers[1].block is None
    assert first.circulant is None and layers[1].circulant is None

    import copy

    from gearshift.frontend.circulant import circulantize, to_dense
    twin = to_dense(circulantize(copy.deepcopy(module), 16, layers=r"layers\.1$"))  # its dense reconstruction
    assert [layer.circulant for layer in inventory(gearshift.load(twin, feeds))] == [None, 16]

    cnn_layers = inventory(gearshift.load(*cnn_case))
    assert [layer.kind for layer in cnn_layers] == ["conv"] * 4 + ["gemm"]
    conv0 = cnn_layers[0]
    assert conv0.weight_shape == (8, 3, 3, 3) and conv0.flops == 2 * (8 * 20 * 20) * 27


def test_detect_blocks_tolerates_a_stray_zero():
    w = block_pruned(64, 64, 16, 1, keep=0.3)
    kept = np.argwhere(w != 0)[0]
    w[tuple(kept)] = 0.0  # one exact zero inside a kept block, as training can leave
    assert detect_blocks(w)[0] == "16x1"
