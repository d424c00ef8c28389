"""The kernels suite: single layers at the sizes users ship, each structure at several densities.

Dense layers: BERT-base's FFN (x [128, 768] @ [768, 3072] and back), bias added. Convs: VGG-16's and
ResNet-18's 3x3 layers, batch 1. Circulant: block sizes 4 to 64 on the FFN shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gearshift.spec import Log
from gearshift.suites import engines as E
from gearshift.suites import structures as S

ROWS = 128  # activation rows: BERT's sequence length


def matmul_model(wt: np.ndarray, bias: np.ndarray, rows: int = ROWS) -> onnx.ModelProto:
    """y = x @ Wᵀᵀ + bias, x [rows, K]: a MatMul with a constant weight, as exporters write a Linear."""
    n, k = wt.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["mm"], name="fc"), helper.make_node("Add", ["mm", "b"], ["y"])],
        "fc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, n])],
        [numpy_helper.from_array(np.ascontiguousarray(wt.T), "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def conv_model(w: np.ndarray, bias: np.ndarray, size: int, stride: int) -> onnx.ModelProto:
    cout, cin = w.shape[:2]
    out = (size + 2 - 3) // stride + 1
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], strides=[stride, stride], name="conv")],
        "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, out, out])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def plan(quick: bool) -> list[tuple[str, tuple, S.Structure]]:
    """(kind, sizes, structure) of every case: ("matmul", (K, N)) or ("conv", (Cin, Cout, size, stride))."""
    shapes = [(3072, 768)] if quick else [(768, 3072), (3072, 768)]
    densities = (0.5, 0.2, 0.1) if quick else (0.5, 0.3, 0.2, 0.1, 0.05)
    structures = [S.bsr(d) for d in densities]
    structures += [S.bsr(d, (4, 4)) for d in ((0.1,) if quick else (0.2, 0.1))]
    structures += [S.block_patterns(d) for d in ((0.125,) if quick else (0.25, 0.125))]
    structures += [S.circulant_blocks(b) for b in ((8, 32) if quick else (4, 8, 16, 32, 64))]
    cases = [("matmul", shape, s) for shape in shapes for s in structures]
    convs = [(256, 256, 28, 1)] if quick else [(128, 128, 56, 1), (256, 256, 28, 1), (512, 512, 14, 1),
                                               (64, 128, 56, 2), (128, 256, 28, 2), (256, 512, 14, 2)]
    cases += [("conv", sizes, S.pattern_conv(c)) for sizes in convs for c in ((0.72,) if quick else (0.5, 0.72))]
    return cases


def count(quick: bool) -> int:
    return len(plan(quick))


def cases(quick: bool, workdir: Path, db=None, log: Log = lambda _m: None) -> Iterator[E.Case]:
    """Each case built with every peer and its outputs computed (timing is the caller's)."""
    for kind, sizes, structure in plan(quick):
        yield (_matmul if kind == "matmul" else _conv)(sizes, structure, workdir, db, log)


def _matmul(sizes, structure: S.Structure, workdir: Path, db, log: Log) -> E.Case:
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="Sparse BSR tensor support is in beta")

    k, n = sizes
    rng = np.random.default_rng(0)
    wt = S.project(structure, rng.standard_normal((n, k)) / np.sqrt(k))
    bias = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((ROWS, k)).astype(np.float32)
    proto, feeds = matmul_model(wt, bias), {"x": x}
    case = E.Case("kernels", f"{k}->{n} {structure.label}", proto, feeds,
                  {"kind": "matmul", "shape": f"{ROWS}x{k}->{n}", "family": structure.family,
                   "setting": structure.setting, "ideal": structure.ideal, "flops": 2 * ROWS * k * n})
    _common(case, structure, 2 * ROWS * k * n, workdir, db, log)
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(bias)
    case.add(E.torch_engine("torch", lambda: torch.nn.functional.linear(tx, tw, tb)))
    if structure.family.startswith("bsr"):
        r, c = (int(v) for v in structure.family.split()[1].split("x"))
        if r == c:
            sparse = tw.to_sparse_bsr((r, c))
            case.add(E.torch_engine("torch BSR", lambda: torch.addmm(tb[:, None], sparse, tx.T).T))
        else:  # MKL takes square blocks only: 16x16 at the same density (other weights: timed, not checked)
            w16 = torch.from_numpy(S.project(S.bsr(structure.setting, (16, 16)), rng.standard_normal((n, k))))
            sparse = w16.to_sparse_bsr((16, 16))
            case.add(E.torch_engine("torch BSR", lambda: torch.addmm(tb[:, None], sparse, tx.T).T, same_weights=False))
    else:
        case.add(E.Engine("torch BSR", skipped="not a block-sparse structure"))
    return case


def _conv(sizes, structure: S.Structure, workdir: Path, db, log: Log) -> E.Case:
    import torch

    cin, cout, size, stride = sizes
    rng = np.random.default_rng(0)
    w = S.project(structure, rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin))
    bias = rng.standard_normal(cout).astype(np.float32)
    x = rng.standard_normal((1, cin, size, size)).astype(np.float32)
    out = (size + 2 - 3) // stride + 1
    flops = 2 * cout * cin * 9 * out * out
    name = f"{cin}x{size}x{size}->{cout}" + (f" s{stride}" if stride > 1 else "") + f" {structure.label}"
    case = E.Case("kernels", name, conv_model(w, bias, size, stride), {"x": x},
                  {"kind": "conv", "shape": f"{cin}x{size}x{size}->{cout}/{stride}", "family": structure.family,
                   "setting": structure.setting, "ideal": structure.ideal, "flops": flops})
    _common(case, structure, flops, workdir, db, log)
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(bias)
    case.add(E.torch_engine("torch", lambda: torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=1)))
    case.add(E.Engine("torch BSR", skipped="torch has no sparse conv"))
    return case


def _common(case: E.Case, structure: S.Structure, flops: float, workdir: Path, db, log: Log) -> None:
    case.add(E.onnx_runtime(case.proto, case.feeds))
    case.add(E.plain_tvm(case.proto, case.feeds, flops))
    folder = workdir / E.slug(case.name)
    case.add(E.gearshift("gearshift dense", case.proto, case.feeds, "dense", folder, db))
    case.add(E.gearshift("gearshift", case.proto, case.feeds, structure.spec, folder, db, log))
