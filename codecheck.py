"""Per-ISA code checks: every CPU schedule rule and sparse kernel compiled for AVX2, AVX-512 and NEON,
its hot loop read from the assembly and held to what the design intends.

One machine here has one of the three ISAs and none has NEON, so speed cannot be timed everywhere;
the code can be read everywhere. A case builds a representative kernel for a named ISA (the
register block comes from that ISA's microkernel, as in a real build) and states the register
block it expects; `check` then asks of the hot loop:
- vector FMAs only, all of the ISA's full width (no scalar fallback, no half-width vectors);
- as many distinct accumulator registers as the register block has (fewer: the tile is not in
  registers, or is smaller than designed; LLVM may unroll, so the FMA count is a multiple of it);
- no per-lane inserts, extracts, gathers or scatters (the signature of a tile left in memory);
- at most `MAX_STACK` stack accesses per iteration (spills).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm

from gearshift.schedules.asm import HotLoop, hot_loop
from gearshift.schedules.cpu.microkernel import Microkernel, dividing_rows, microkernel

ISAS = {
    "avx2": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver3", "num-cores": 2},
    "avx512": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512", "num-cores": 2},
    "neon": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon"], "num-cores": 4},
}
VECTOR_BITS = {"avx2": 256, "avx512": 512, "neon": 128}
MAX_STACK = 2  # stack accesses per hot-loop iteration (a reloaded loop bound or pointer, not the tile)


@dataclass(frozen=True)
class Case:
    """A kernel as one ISA builds it: `build(target, micro)` -> (asm text, accumulators expected)."""

    name: str
    what: str
    build: Callable[[tvm.target.Target, Microkernel], tuple[str, int]]


@dataclass(frozen=True)
class Result:
    case: str
    isa: str
    loop: HotLoop | None
    expected_accumulators: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def run(case: Case, isa: str) -> Result:
    target = tvm.target.Target(ISAS[isa])
    asm, accumulators = case.build(target, microkernel(target))
    loop = hot_loop(asm, arm=isa == "neon")
    return Result(case.name, isa, loop, accumulators, tuple(problems(loop, isa, accumulators)))


def problems(loop: HotLoop | None, isa: str, accumulators: int) -> list[str]:
    if loop is None:
        return ["no loop with vector FMAs"]
    found = []
    if loop.fma_bits != (VECTOR_BITS[isa],):
        found.append(f"FMA widths {list(loop.fma_bits)} bits, expected {VECTOR_BITS[isa]} only")
    if loop.scalar_fmas:
        found.append(f"{loop.scalar_fmas} scalar FMAs")
    if loop.accumulators != accumulators:
        found.append(f"{loop.accumulators} accumulator registers, expected {accumulators}")
    if loop.fmas % accumulators:
        found.append(f"{loop.fmas} FMAs per iteration, not a multiple of the {accumulators}-register block")
    if loop.lane_ops:
        found.append(f"{loop.lane_ops} per-lane moves, gathers or scatters")
    if loop.stack > MAX_STACK:
        found.append(f"{loop.stack} stack accesses (spills), at most {MAX_STACK}")
    return found


def compiled_asm(func: tvm.tirx.PrimFunc, target: tvm.target.Target) -> str:
    """Assembly of one scheduled PrimFunc for `target`."""
    mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
    return tvm.compile(mod, target=target).mod.inspect_source("asm")


def model_asm(proto, target: tvm.target.Target) -> str:
    """Assembly of a whole ONNX model built by gearshift's pipeline for `target` (the rules' path)."""
    from gearshift.frontend.importer import to_relax
    from gearshift.driver import build
    from gearshift.schedules.targets import TargetInfo

    info = TargetInfo("check", "code check", dict(target.export()), "x86_64", None)
    built = build(to_relax(proto), info)
    return built.executable.mod.imports[0].inspect_source("asm")


# -- the cases ----------------------------------------------------------------------------------
def _onnx(nodes, inputs: dict, output: str, out_shape, inits: dict):
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "check", [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _dense(m: int, k: int, n: int):
    def build(target, micro: Microkernel):
        from onnx import helper

        rng = np.random.default_rng(0)
        nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["mm", "b"], ["pre"]),
                 helper.make_node("Relu", ["pre"], ["y"])]
        proto = _onnx(nodes, {"x": [m, k]}, "y", [m, n], {"w": rng.standard_normal((k, n)), "b": rng.standard_normal(n)})
        return model_asm(proto, target), micro.rows_for(m) * micro.vectors
    return build


def _conv(ci: int, co: int, hw: int, stride: int):
    def build(target, micro: Microkernel):
        from onnx import helper

        rng = np.random.default_rng(0)
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[stride, stride]),
                 helper.make_node("Relu", ["c"], ["y"])]
        out = (hw + 2 - 3) // stride + 1
        proto = _onnx(nodes, {"x": [1, ci, hw, hw]}, "y", [1, co, out, out],
                      {"w": rng.standard_normal((co, ci, 3, 3)), "b": rng.standard_normal(co)})
        conv = micro.for_conv()  # the row form takes rows_for(width); the flat form whole blocks of `rows`
        rows = dividing_rows(out, conv.rows) or conv.rows
        return model_asm(proto, target), rows * micro.conv_cols(co) // micro.lanes
    return build


def _bsr(m: int, k: int, n: int, r: int, c: int, density: float):
    def build(target, micro: Microkernel):
        from gearshift.schedules.kernels.bsr import bsr_matmul, choose_tile

        tile = choose_tile(m, k, r, micro, density)
        nnz = max(1, int(density * (n // r) * (k // c)))
        func = bsr_matmul(m, k, n, r, c, nnz, tile, int(target.attrs["num-cores"]))
        per_row = -(-r // micro.lanes) if tile.along == "outputs" else r
        rows = min(tile.rows, m) if tile.along == "outputs" else tile.rows // tile.lanes
        return compiled_asm(func, target), rows * per_row
    return build


def _pattern_conv(ci: int, co: int, hw: int, stride: int):
    def build(target, micro: Microkernel):
        from gearshift.compress.patterns import candidates
        from gearshift.schedules.kernels.pattern_conv import choose_block, out_extent, pattern_conv2d

        masks = candidates()[[0, 9, 30, 55]]
        kept = co * ci // 4
        func = pattern_conv2d(1, ci, co, hw, hw, (1, 1, 1, 1), stride, masks, kept, micro.lanes,
                              int(target.attrs["num-cores"]))
        rows, vectors = choose_block(*out_extent(hw, hw, (1, 1, 1, 1), stride), micro.lanes)
        return compiled_asm(func, target), rows * vectors
    return build


def _circulant_direct(m: int, k: int, n: int, b: int):
    def build(target, micro: Microkernel):
        from gearshift.schedules.kernels.circulant import direct, direct_rows

        budget = micro.rows * micro.vectors
        func = direct(m, k, n, b, micro.lanes, budget, int(target.attrs["num-cores"]))
        return compiled_asm(func, target), direct_rows(m, b, micro.lanes, budget) * max(1, b // micro.lanes)
    return build


def _circulant_mac(m: int, k: int, n: int, b: int):
    def build(target, micro: Microkernel):
        from gearshift.schedules.kernels.circulant import complex_budget, complex_mac, complex_tile

        budget = complex_budget(micro.rows * micro.vectors)
        rows, vectors = complex_tile(m, n // b, micro.lanes, budget)
        func = complex_mac(m, k // b, n // b, b // 2, micro.lanes, budget)
        return compiled_asm(func, target), 2 * rows * vectors
    return build


CASES = [
    Case("dense", "rule Matmul: packed dense 128 x 768 -> 3072", _dense(128, 768, 3072)),
    Case("dense-m5", "rule Matmul: packed dense, 5 rows", _dense(5, 256, 384)),
    Case("conv-56", "rule Conv2d: 3x3 56x56x128 -> 128 (row form)", _conv(128, 128, 56, 1)),
    Case("conv-14", "rule Conv2d: 3x3 14x14x512 -> 512 (flat form)", _conv(512, 512, 14, 1)),
    Case("conv-s2", "rule Conv2d: 3x3 stride 2 28x28x128 -> 256", _conv(128, 256, 28, 2)),
    Case("conv-7", "rule Conv2d: 3x3 stride 2 14x14x256 -> 512 (7x7 outputs)", _conv(256, 512, 14, 2)),
    Case("bsr-16x1", "kernel BSR 16x1, 10 % of blocks, 128 x 768 -> 3072", _bsr(128, 768, 3072, 16, 1, 0.1)),
    Case("bsr-16x1-k3072", "kernel BSR 16x1, 10 % of blocks, 128 x 3072 -> 768", _bsr(128, 3072, 768, 16, 1, 0.1)),
    Case("bsr-4x4", "kernel BSR 4x4 (along the activations), 10 %", _bsr(128, 768, 3072, 4, 4, 0.1)),
    Case("pattern-conv", "kernel pattern conv 3x3, 4 patterns, 28x28x64 -> 64", _pattern_conv(64, 64, 28, 1)),
    Case("pattern-conv-s2", "kernel pattern conv 3x3 stride 2, 28x28x64 -> 128", _pattern_conv(64, 128, 28, 2)),
    Case("circulant-direct", "kernel circulant direct, b = 16, 128 x 768 -> 768", _circulant_direct(128, 768, 768, 16)),
    Case("circulant-mac", "kernel circulant FFT products, b = 16, 128 x 768 -> 768", _circulant_mac(128, 768, 768, 16)),
]
