"""VtaOffload: linear layers -> calls into the simulated VTA-style accelerator (`vta-sim` target).

Every `matmul(x, W)` with W a weight (the Q/K/V/out/FFN projections, classifier heads) becomes
`call_dps_packed("gearshift.vta.layer", [x, index])`; a following bias add is folded into the
accelerator's int32 bias. The rest of the graph (attention's activation matmuls, softmax, layer
norm, embeddings) stays on the host CPU. Per layer:

  1. the weight takes the layer's structure from the plan: dense; `bsr:S[:RxC]` projected onto
     blocks (zeros the accelerator skips wherever a 16 x 16 tile is all zero); `circulant:B`
     projected onto circulant blocks and run as its expanded dense tiles (an FFT unit, as in
     FTRANS, would run b times fewer MACs: the tiles here do the dense count);
  2. int8 quantisation calibrated on the layer's real input, taken from the float model run on the
     calibration inputs (`schedules/vta/quantize.py`);
  3. the instruction stream (`schedules/vta/matmul.py`), checked bit-exact against the numpy int8
     reference on the calibration input; a layer that is not falls back to the host, with a warning.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import mutator

from gearshift.compress.blocks import project as block_project
from gearshift.compress.circulant import project as circulant_project
from gearshift.compress.circulant import reconstruct
from gearshift.relay_passes.block_sparse import bias_fits
from gearshift.relay_passes.exprs import bias_adds, dims, weight_matmul
from gearshift.relay_passes.plan import SparsityPlan
from gearshift.relay_passes.walk import LayerReport, WeightLayerWalk, rewrite_main
from gearshift.runtime.vta.config import VtaConfig
from gearshift.runtime.vta.offload import FUNCTION, VtaLayer, VtaLayers
from gearshift.schedules.vta.matmul import lower_matmul
from gearshift.schedules.vta.quantize import quantize_linear, reference
from gearshift.spec import Log


def vta_offload(mod: tvm.IRModule, weights: list[np.ndarray], names: list[str], plan: SparsityPlan | None,
                calibration: list[np.ndarray], config: VtaConfig, log: Log = lambda _m: None):
    """Rewrite `mod["main"]` (weights, names: its weight parameters in order; calibration: one array per
    model input). Returns (mod, weights, names, reports, VtaLayers)."""
    main = mod["main"]
    params = list(main.params[int(main.attrs["num_input"]):])
    values = dict(zip(params, weights))
    activations = layer_inputs(mod, weights, calibration, values)
    biases = bias_adds(main, values, lambda call: weight_matmul(call, values) is not None, bias_fits)
    rewriter = _VtaOffload(mod, values, dict(zip(params, names)), biases, plan or SparsityPlan.parse("dense"),
                           None, 1, log)
    rewriter.config, rewriter.activations, rewriter.layers, rewriter.seen = config, activations, [], 0
    mod, weights, names, reports = rewrite_main(rewriter, main, params)
    return mod, weights, names, reports, VtaLayers(config, rewriter.layers)


def layer_inputs(mod: tvm.IRModule, weights: list[np.ndarray], calibration: list[np.ndarray], values: dict
                 ) -> list[np.ndarray]:
    """Each weight matmul's input x, in binding order, from the float model run on the calibration inputs."""
    flat = relax.transform.ToNonDataflow()(mod)
    main = flat["main"]
    weight_params = set(main.params[int(main.attrs["num_input"]):])
    probes = [b.value.args[0] for block in main.body.blocks for b in block.bindings
              if weight_matmul(b.value, weight_params) is not None]
    if not probes:
        return []
    result = relax.Tuple(probes)
    ret = relax.TupleType([p.ty for p in probes])
    body = relax.SeqExpr(main.body.blocks, result)
    probe = tvm.IRModule({"main": relax.Function(main.params, body, ret, main.is_pure, main.attrs)})
    host = tvm.target.Target({"kind": "llvm"})
    with host:
        executable = tvm.compile(probe, target=host, relax_pipeline=relax.get_default_pipeline(host))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.require(a, requirements="C")) for a in [*calibration, *weights]])
    return [np.asarray(o.numpy()) for o in out]


@mutator
class _VtaOffload(WeightLayerWalk):
    def rewrite_layer(self, var, call: relax.Call, new: relax.Expr) -> relax.Expr:
        matmul = weight_matmul(call, self.values)
        if matmul is None:
            return new
        index, self.seen = self.seen, self.seen + 1
        x, w = matmul
        name, weight = self.names[w], np.asarray(self.values[w], np.float64)
        k, n = weight.shape
        m = int(np.prod(dims(x)[:-1]))
        size = self.values[w].nbytes
        report = LayerReport(name, (k, n), "dense", "", dense_bytes=size, packed_bytes=size)
        self.reports.append(report)
        spec = self.plan.for_layer(name)
        weight, report.block = _structured(weight, spec)
        bias_param = self.biases.get(var)
        bias = np.asarray(self.values[bias_param], np.float64) if bias_param is not None else None
        calibration = self.activations[index].reshape(-1, k)
        layer = quantize_linear(weight, bias, calibration)
        tiles = np.abs(layer.w_q.astype(np.int32))
        kb, nb = -(-k // 16), -(-n // 16)
        padded = np.zeros((kb * 16, nb * 16), np.int32)
        padded[:k, :n] = tiles
        kept = padded.reshape(kb, 16, nb, 16).sum(axis=(1, 3)).T > 0
        program = lower_matmul(layer, m, self.config, kept=kept)
        x_q = layer.quantize_input(calibration)
        y_q, stats = program.run(x_q)
        if not np.array_equal(y_q, reference(x_q, layer)):
            report.why = "the accelerator's stream is not bit-exact against the int8 reference; kept on the host"
            self.log(f"warning: {name}: {report.why}")
            return new
        report.decision, report.density = "vta", float(kept.mean())
        report.why = (f"int8 on the accelerator: {int(kept.sum())} of {kept.size} 16x16 tiles, {stats.cycles} cycles "
                      f"(cycle model, {stats.utilisation:.0%} GEMM utilisation)")
        report.packed_bytes = int(kept.sum()) * 256 + n * 8
        report.check_error = 0.0
        self.layers.append(VtaLayer(name, program, layer.x_scale, layer.out_scale))
        if bias_param is not None:
            self.bias_done.add(var)
        bb = self.builder_
        x2 = self.visit_expr(x)
        if len(x.ty.shape) != 2:
            x2 = bb.emit(relax.op.reshape(x2, (m, k)))
        out = relax.call_dps_packed(FUNCTION, [x2, relax.prim_value(len(self.layers) - 1)],
                                    relax.TensorType((m, n), "float32"))
        if len(x.ty.shape) != 2:
            out = relax.op.reshape(bb.emit(out), [*dims(x)[:-1], n])
        return out


def _structured(weight: np.ndarray, spec) -> tuple[np.ndarray, str]:
    """The weight [K, N] with the spec's structure, and how the report names it."""
    if spec.kind == "bsr" and spec.sparsity is not None:
        r, c = spec.block or (16, 16)
        if weight.shape[1] % r == 0 and weight.shape[0] % c == 0:
            return block_project(weight.T, r, c, spec.sparsity).T, f"bsr {r}x{c} at {spec.sparsity:g}"
    if spec.kind == "circulant" and spec.block:
        b = spec.block[0]
        vectors = circulant_project(weight.T, b)
        return reconstruct(vectors, weight.shape[1], weight.shape[0]).T.astype(np.float64), f"circulant b={b} (dense tiles)"
    return weight, "dense"
