"""Level search (RT3 §3): per-layer sparsity for each level, most accurate within a latency budget.

RT3 searched its pattern sets with reinforcement learning. Here the search is evolutionary, because
of what the problem looks like in a compiler: a handful of layers, a short menu of sparsities per
layer (one kernel each), a latency that is *additive* over layers and measured rather than learned,
and an accuracy proxy that costs one ONNX Runtime run. A (mu + lambda) evolution over assignments
(mutation: one layer one menu step up or down; crossover: per layer from either parent; candidates
over the budget ranked behind every feasible one by their overshoot) converges in a few hundred
evaluations, is reproducible from its seed, and has no controller to train or tune. It is seeded
with every uniform assignment, so it can only match or beat the uniform baseline it is compared
with.

Latency model (stated, and checked in benchmarks/level_search.py against compiled levels; the
learned correction on top of it is `level_latency.LearnedLatency`):
    t(assignment) = rest + sum over layers of t_layer(shape, sparsity)
t_layer is the layer compiled alone by the compile driver (`driver.build`: the BSR kernel, or the
dense kernel where the sparsity is 0 or the cost model keeps it dense) and timed on this machine;
`rest` (attention, norms, activations: everything not searched) is fitted from end-to-end
measurements of uniform levels. Accuracy proxy: relative L2 error of the model's outputs against the
dense model, ONNX Runtime on calibration inputs, with the pruned weights fed as inputs (one session).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from gearshift.errors import InputError
from gearshift.frontend.inventory import inventory
from gearshift.compress.blocks import project
from gearshift.spec import relative_l2

BLOCK = (16, 1)
Assignment = tuple[float, ...]  # a sparsity per searched layer, in `SearchSpace.layers` order


@dataclass(frozen=True)
class SearchLayer:
    name: str  # the weight initializer's name (what --layer-sparsity matches)
    shape: tuple[int, int]  # [K, N]


@dataclass(frozen=True)
class SearchSpace:
    layers: tuple[SearchLayer, ...]
    menu: tuple[float, ...]  # sparsities a layer may take, ascending

    def uniform(self, sparsity: float) -> Assignment:
        return tuple(sparsity for _ in self.layers)


def search_space(proto: onnx.ModelProto, menu: Sequence[float]) -> SearchSpace:
    """Every MatMul with a constant [K, N] weight that divides into 16x1 blocks."""
    if not menu or any(not 0 <= s < 1 for s in menu):
        raise InputError(f"the sparsity menu needs values in [0, 1), got {list(menu)}")
    layers = []
    for layer in inventory(proto):
        k_n = layer.weight_shape
        if layer.kind == "matmul" and len(k_n) == 2 and k_n[1] % BLOCK[0] == 0:
            layers.append(SearchLayer(layer.weight, (int(k_n[0]), int(k_n[1]))))
    if not layers:
        raise InputError("no MatMul layer with a constant weight that divides into 16x1 blocks: nothing to search")
    return SearchSpace(tuple(layers), tuple(sorted(set(menu))))


class ErrorProxy:
    """Relative L2 error of the outputs against the dense model, under pruned weights."""

    def __init__(self, proto: onnx.ModelProto, space: SearchSpace, inputs: Mapping[str, np.ndarray]):
        import onnxruntime as ort
        from onnx import numpy_helper

        model = onnx.ModelProto()
        model.CopyFrom(proto)
        weights = {i.name: i for i in model.graph.initializer}
        self.dense = {}
        for layer in space.layers:  # an initializer that is also a graph input can be fed per run
            init = weights[layer.name]
            model.graph.input.append(onnx.helper.make_tensor_value_info(layer.name, init.data_type, list(init.dims)))
            self.dense[layer.name] = numpy_helper.to_array(init)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the weights are inputs on purpose: no warning about it
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.space, self.inputs = space, dict(inputs)
        self._pruned: dict[tuple[str, float], np.ndarray] = {}
        self.reference = self._run({})
        self.evaluations = 0

    def pruned(self, name: str, sparsity: float) -> np.ndarray:
        key = (name, sparsity)
        if key not in self._pruned:
            w = self.dense[name]
            self._pruned[key] = w if sparsity == 0 else np.ascontiguousarray(project(np.ascontiguousarray(w.T), *BLOCK, sparsity).T)
        return self._pruned[key]

    def _run(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        outs = self.session.run(None, {**self.inputs, **weights})
        return np.concatenate([np.ravel(o).astype(np.float64) for o in outs])

    def __call__(self, assignment: Assignment) -> float:
        self.evaluations += 1
        out = self._run({layer.name: self.pruned(layer.name, s) for layer, s in zip(self.space.layers, assignment)})
        return relative_l2(out, self.reference)


@dataclass
class AdditiveLatency:
    """t = rest_ms + sum of per-layer kernel times (`layer_ms[(K, N, sparsity)]`)."""

    layer_ms: dict[tuple[int, int, float], float]
    rest_ms: float = 0.0

    def __call__(self, space: SearchSpace, assignment: Assignment) -> float:
        return self.rest_ms + sum(self.layer_ms[(*layer.shape, s)] for layer, s in zip(space.layers, assignment))

    def fit_rest(self, space: SearchSpace, measured: Mapping[float, float]) -> float:
        """Set `rest_ms` from end-to-end latencies of uniform levels (sparsity -> ms); returns the
        model's largest relative error on them."""
        if not measured:
            raise InputError("fitting the latency model needs at least one measured uniform level")
        sums = {s: sum(self.layer_ms[(*layer.shape, s)] for layer in space.layers) for s in measured}
        self.rest_ms = float(np.mean([ms - sums[s] for s, ms in measured.items()]))
        return max(abs(self(space, space.uniform(s)) - ms) / ms for s, ms in measured.items())


def measure_layers(space: SearchSpace, rows: int, repeat: int = 20, log: Callable[[str], None] = lambda _m: None
                   ) -> dict[tuple[int, int, float], float]:
    """Each distinct (K, N, sparsity) layer compiled alone by the compile driver, as `compile` would
    build it in the model (the BSR kernel, or the packed dense kernel where the sparsity is 0 or the
    cost model keeps the layer dense), and timed on this machine (median, ms).

    Each figure is a one-layer model's call, so it carries one VM call's overhead; that overhead is
    the same for every assignment and `AdditiveLatency.fit_rest` takes it out of `rest`."""
    import tvm
    from tvm import relax

    from gearshift.driver import build
    from gearshift.frontend.importer import to_relax
    from gearshift.relay_passes.plan import SparsityPlan
    from gearshift.runtime.timing import vm_main_ms

    rng = np.random.default_rng(0)
    out = {}
    for k, n in sorted({layer.shape for layer in space.layers}):
        proto = _one_layer(rows, rng.standard_normal((k, n)).astype(np.float32))
        x = tvm.runtime.tensor(rng.standard_normal((rows, k)).astype(np.float32))
        for s in space.menu:
            built = build(to_relax(proto), "host", sparsity=SparsityPlan.parse(f"bsr:{s:g}:16x1") if s else None)
            vm = relax.VirtualMachine(built.executable, tvm.cpu())
            weights = [tvm.runtime.tensor(w) for w in built.weights.values()]
            out[(k, n, s)] = vm_main_ms(vm, tvm.cpu(), [x, *weights], number=5, repeat=repeat)
            kept = [layer["decision"] for layer in built.report["sparse_layers"]]
            log(f"layer {k}->{n} at sparsity {s:g} ({kept[0] if kept else 'dense'}): {out[(k, n, s)]:.3f} ms")
    return out


def _one_layer(rows: int, weight: np.ndarray) -> onnx.ModelProto:
    """x [rows, K] @ weight [K, N] as an ONNX model, the weight an initializer (what the passes rewrite)."""
    from onnx import TensorProto, helper, numpy_helper

    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])], [numpy_helper.from_array(weight, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@dataclass
class SearchResult:
    budget_ms: float
    assignment: Assignment
    error: float
    predicted_ms: float
    uniform: float | None  # the most accurate uniform sparsity within the budget (None: none fits)
    uniform_error: float | None
    uniform_ms: float | None
    evaluations: int

    def layer_sparsity(self, space: SearchSpace) -> list[str]:
        """The assignment as `--layer-sparsity` / levels-file overrides."""
        return layer_overrides(space, self.assignment)


def layer_overrides(space: SearchSpace, assignment: Assignment) -> list[str]:
    """An assignment as `--layer-sparsity` / levels-file overrides (sparsity 0: the layer stays dense)."""
    import re

    return [f"^{re.escape(layer.name)}$=" + (f"bsr:{s:g}:16x1" if s else "dense")
            for layer, s in zip(space.layers, assignment)]


def evolve(space: SearchSpace, budget_ms: float, error: Callable[[Assignment], float],
           latency: Callable[[SearchSpace, Assignment], float], *, population: int = 8, children: int = 16,
           generations: int = 25, seed: int = 0) -> SearchResult:
    """(mu + lambda) evolution of per-layer sparsities: lowest `error` with `latency` <= `budget_ms`."""
    rnd = random.Random(seed)
    cache: dict[Assignment, float] = {}
    menu = space.menu

    def score(a: Assignment) -> tuple[float, float]:
        t = latency(space, a)
        if t > budget_ms:
            return (1.0, t - budget_ms)  # infeasible: behind every feasible one, by overshoot
        if a not in cache:
            cache[a] = error(a)
        return (0.0, cache[a])

    def mutate(a: Assignment) -> Assignment:
        a = list(a)
        for _ in range(rnd.choice((1, 1, 2))):
            i = rnd.randrange(len(a))
            j = min(max(menu.index(a[i]) + rnd.choice((-1, 1)), 0), len(menu) - 1)
            a[i] = menu[j]
        return tuple(a)

    def cross(a: Assignment, b: Assignment) -> Assignment:
        return tuple(x if rnd.random() < 0.5 else y for x, y in zip(a, b))

    pool = [space.uniform(s) for s in menu]
    while len(pool) < population:
        pool.append(tuple(rnd.choice(menu) for _ in space.layers))
    pool = sorted(set(pool), key=score)[:population]
    for _ in range(generations):
        kids = [mutate(cross(rnd.choice(pool), rnd.choice(pool)) if rnd.random() < 0.5 else rnd.choice(pool))
                for _ in range(children)]
        pool = sorted(set(pool + kids), key=score)[:population]
    best = pool[0]
    feasible, value = score(best)
    if feasible:
        raise InputError(f"no assignment meets {budget_ms:g} ms: the fastest is predicted at "
                         f"{latency(space, space.uniform(menu[-1])):.3f} ms")
    uniform = [(s, latency(space, space.uniform(s))) for s in menu]
    fitting = [(s, t) for s, t in uniform if t <= budget_ms]
    u = min(fitting, key=lambda st: score(space.uniform(st[0]))[1]) if fitting else None
    return SearchResult(budget_ms, best, value, latency(space, best), u[0] if u else None,
                        score(space.uniform(u[0]))[1] if u else None, u[1] if u else None, len(cache))
