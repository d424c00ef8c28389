"""The level search's learned latency predictor: XGBoost trained on whole-model measurements.

The additive model (`level_search.AdditiveLatency`) sums per-layer kernel times measured one layer at
a time. A model's time is not quite that sum: in the runtime form every level runs the same kernels
with arrays padded to the largest level, neighbouring layers share caches and the thread pool, and
a layer timed alone pays a VM call of its own. Those effects depend on the mix, so a constant `rest`
cannot absorb them. `LearnedLatency` keeps the additive prediction as its baseline and learns the
correction: an XGBoost regression of log(measured / additive) on features of the assignment (each
layer's additive time and sparsity, the time per layer shape, the number of layers at each menu
step), trained on assignments compiled as levels in the form they ship in and timed end to end
(`measure_assignments`). Uniform levels alone do not teach a mix, so the training set is the uniform
levels plus random mixed assignments.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx

from gearshift.errors import InputError
from gearshift.level_search import AdditiveLatency, Assignment, SearchSpace, layer_overrides

MIN_SAMPLES = 6  # fewer measured assignments than this cannot train the correction


def random_assignments(space: SearchSpace, count: int, seed: int = 0) -> list[Assignment]:
    """`count` distinct assignments drawn uniformly from the menu (uniform ones excluded)."""
    rnd = random.Random(seed)
    uniform = {space.uniform(s) for s in space.menu}
    possible = len(space.menu) ** len(space.layers) - len(uniform)
    out: list[Assignment] = []
    while len(out) < min(count, possible):
        a = tuple(rnd.choice(space.menu) for _ in space.layers)
        if a not in uniform and a not in out:
            out.append(a)
    return out


def measure_assignments(proto: onnx.ModelProto, space: SearchSpace, assignments: Sequence[Assignment], *,
                        calibration: Mapping[str, np.ndarray] | None = None, form: str = "runtime",
                        repeat: int = 10, db=None, log: Callable[[str], None] = lambda _m: None) -> dict[Assignment, float]:
    """Each assignment compiled as one level of one artifact (in `form`, as it would ship) and timed
    end to end on this machine, interleaved with the others (median ms, `compile_levels`' timing).
    The runtime form shares one code between levels, so a layer that is dense (sparsity 0) in one
    assignment and sparse in another needs `form="baked"`."""
    from gearshift.levels_compiler import compile_levels
    from gearshift.relay_passes.levels import parse_levels

    if not assignments:
        raise InputError("measuring assignments needs at least one")
    names = [f"a{i}" for i in range(len(assignments))]
    doc = {"form": form, "levels": [{"name": n, "sparsity": "dense", "layer_sparsity": layer_overrides(space, a)}
                                    for n, a in zip(names, assignments)]}
    built = compile_levels(proto, parse_levels(doc), "host", calibration=calibration, repeat=repeat, db=db, log=log)
    return {a: float(built.info[n]["latency_ms"]) for n, a in zip(names, assignments)}


class LearnedLatency:
    """t = additive(assignment) * exp(XGBoost correction); the additive model alone until fitted."""

    def __init__(self, additive: AdditiveLatency, seed: int = 0):
        self.additive, self.seed = additive, seed
        self.model = None
        self.samples = 0

    def features(self, space: SearchSpace, a: Assignment) -> list[float]:
        per_layer = [self.additive.layer_ms[(*layer.shape, s)] for layer, s in zip(space.layers, a)]
        shapes = sorted({layer.shape for layer in space.layers})
        by_shape = [sum(t for layer, t in zip(space.layers, per_layer) if layer.shape == shape) for shape in shapes]
        steps = [sum(s == m for s in a) for m in space.menu]
        return [self.additive(space, a), *per_layer, *a, *by_shape, *steps]

    def fit(self, space: SearchSpace, measured: Mapping[Assignment, float]) -> None:
        """Train the correction on measured whole-model latencies (assignment -> ms)."""
        if len(measured) < MIN_SAMPLES:
            raise InputError(f"the learned latency model needs at least {MIN_SAMPLES} measured assignments, "
                             f"got {len(measured)}")
        import xgboost as xgb

        rows = np.asarray([self.features(space, a) for a in measured], np.float64)
        target = np.log([ms / self.additive(space, a) for a, ms in measured.items()])
        # few samples, a smooth correction: shallow trees, many small steps
        self.model = xgb.XGBRegressor(n_estimators=300, max_depth=2, learning_rate=0.05, subsample=1.0,
                                      min_child_weight=1, random_state=self.seed, n_jobs=1, verbosity=0)
        self.model.fit(rows, target)
        self.samples = len(measured)

    def __call__(self, space: SearchSpace, a: Assignment) -> float:
        base = self.additive(space, a)
        if self.model is None:
            return base
        return float(base * np.exp(self.model.predict(np.asarray([self.features(space, a)], np.float64))[0]))


def relative_errors(latency: Callable[[SearchSpace, Assignment], float], space: SearchSpace,
                    measured: Mapping[Assignment, float]) -> list[float]:
    """|predicted - measured| / measured per assignment."""
    return [abs(latency(space, a) - ms) / ms for a, ms in measured.items()]
