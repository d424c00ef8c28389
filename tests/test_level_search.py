"""Level search: search space, error proxy against numpy, evolution against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_rt3_levels import X, mlp_model, reference

from gearshift.errors import InputError
from gearshift.level_search import AdditiveLatency, ErrorProxy, evolve, measure_layers, search_space

MENU = (0.0, 0.5, 0.7, 0.85, 0.93)


@pytest.fixture(scope="module")
def space():
    return search_space(mlp_model(), MENU)


def test_search_space_finds_the_weight_layers(space):
    assert [(layer.name, layer.shape) for layer in space.layers] == [("fc1.weight", (64, 128)), ("fc2.weight", (128, 64))]
    with pytest.raises(InputError, match="menu"):
        search_space(mlp_model(), [1.5])


def test_error_proxy_matches_numpy(space):
    proxy = ErrorProxy(mlp_model(), space, {"x": X})
    assert proxy(space.uniform(0.0)) == pytest.approx(0.0, abs=1e-6)
    dense = reference(0.0)
    for s in (0.5, 0.93):
        expected = np.linalg.norm(reference(s) - dense) / np.linalg.norm(dense)
        assert proxy(space.uniform(s)) == pytest.approx(expected, rel=1e-4)


def synthetic_latency(space):
    # fc1 gains little from sparsity, fc2 a lot: the best mixes do not look uniform
    times = {}
    for s in MENU:
        times[(64, 128, s)] = 1.0 - 0.2 * s
        times[(128, 64, s)] = 2.0 * (1 - s) + 0.1
    return AdditiveLatency(times, rest_ms=0.5)


def test_evolution_finds_the_brute_force_optimum(space):
    proxy = ErrorProxy(mlp_model(), space, {"x": X})
    latency = synthetic_latency(space)
    for budget in (1.6, 2.0, 2.6):
        result = evolve(space, budget, proxy, latency, generations=15, seed=1)
        best = min((a for a in itertools.product(MENU, repeat=2) if latency(space, a) <= budget), key=proxy)
        assert result.assignment == best and result.predicted_ms <= budget
        assert result.uniform_error is None or result.error <= result.uniform_error + 1e-12
        assert all(o.startswith("^fc") and (":16x1" in o or o.endswith("=dense")) for o in result.layer_sparsity(space))
    with pytest.raises(InputError, match="no assignment meets 0.1 ms"):
        evolve(space, 0.1, proxy, latency, generations=2)


def test_additive_latency_fit(space):
    latency = synthetic_latency(space)
    worst = latency.fit_rest(space, {0.5: 2.5 + 0.9 + 1.1, 0.93: 2.5 + 0.814 + 0.24})
    assert latency.rest_ms == pytest.approx(2.5) and worst < 1e-9


def test_measured_kernel_latencies(space):
    times = measure_layers(space, rows=16, repeat=3)
    assert set(times) == {(k, n, s) for k, n in [(64, 128), (128, 64)] for s in MENU}
    assert all(t > 0 for t in times.values())
