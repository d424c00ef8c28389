"""The level search's learned latency model: it learns a mix effect the additive model cannot, and the
assignments it trains on are compiled and timed for real."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_level_search import MENU, synthetic_latency
from test_rt3_levels import X, mlp_model

from gearshift.errors import InputError
from gearshift.level_latency import LearnedLatency, measure_assignments, random_assignments, relative_errors
from gearshift.level_search import layer_overrides, search_space


@pytest.fixture(scope="module")
def space():
    return search_space(mlp_model(), MENU)


def test_random_assignments_are_distinct_and_mixed(space):
    picked = random_assignments(space, 12, seed=3)
    assert len(picked) == len(set(picked)) == 12
    assert all(len(set(a)) > 1 for a in picked)
    assert len(random_assignments(space, 1000)) == len(MENU) ** 2 - len(MENU)  # every mixed one, then stops
    assert layer_overrides(space, (0.0, 0.5)) == ["^fc1\\.weight$=dense", "^fc2\\.weight$=bsr:0.5:16x1"]


def test_learned_model_corrects_what_the_additive_one_misses(space):
    # the "machine": both layers sparse at once costs 15 % more than their sum (say, a second pass over
    # the input) - an interaction no per-layer sum can express
    additive = synthetic_latency(space)

    def machine(a):
        return additive(space, a) * (1.15 if min(a) >= 0.7 else 1.0)

    every = list(itertools.product(MENU, repeat=2))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(every))
    train = {every[i]: machine(every[i]) for i in order[:18]}
    held = {every[i]: machine(every[i]) for i in order[18:]}
    learned = LearnedLatency(additive)
    assert learned(space, every[0]) == additive(space, every[0])  # the additive model until fitted
    learned.fit(space, train)
    assert max(relative_errors(additive, space, held)) > 0.1
    assert max(relative_errors(learned, space, held)) < 0.03
    with pytest.raises(InputError, match="at least 6 measured"):
        LearnedLatency(additive).fit(space, dict(list(train.items())[:3]))


def test_assignments_are_compiled_and_timed(space):
    picked = [(0.5, 0.93), (0.7, 0.5)]
    times = measure_assignments(mlp_model(), space, picked, calibration={"x": X}, repeat=3)
    assert list(times) == picked and all(t > 0 for t in times.values())
    # a layer dense in one level and sparse in another needs its own code: the baked form
    picked = [(0.0, 0.93), (0.7, 0.5)]
    with pytest.raises(InputError, match="need different code"):
        measure_assignments(mlp_model(), space, picked, calibration={"x": X}, repeat=3)
    assert list(measure_assignments(mlp_model(), space, picked, calibration={"x": X}, form="baked", repeat=3)) == picked
    with pytest.raises(InputError, match="at least one"):
        measure_assignments(mlp_model(), space, [])
