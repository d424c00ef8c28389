"""Write the first corpus (fuzz/corpus/<target>/) from real files: a small ONNX model, a compiled
artifact, the bundled profiles and trace, a levels file, measurements, a tuning database record,
an .npz, a VTA configuration and instruction stream. Run once: `python -m gearshift.fuzz.seeds`."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np

CORPUS = Path(__file__).resolve().parent / "corpus"


def _put(target: str, name: str, data: bytes) -> None:
    (CORPUS / target).mkdir(parents=True, exist_ok=True)
    (CORPUS / target / name).write_bytes(data)


def main() -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import gearshift
    from gearshift.runtime.vta import isa
    from gearshift.runtime.vta.config import DEFAULT

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["r"]),
                               helper.make_node("Relu", ["r"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    _put("onnx_model", "seed-mlp.onnx", model.SerializeToString())
    wc = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "wc")
    wf = numpy_helper.from_array(rng.standard_normal((4 * 6 * 6, 5)).astype(np.float32), "wf")
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    conv = helper.make_graph([helper.make_node("Conv", ["x", "wc"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                              helper.make_node("Relu", ["c"], ["r"]),
                              helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
                              helper.make_node("Reshape", ["p", "shape"], ["f"]), helper.make_node("MatMul", ["f", "wf"], ["m"]),
                              helper.make_node("Softmax", ["m"], ["y"], axis=-1)], "cnn",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], [wc, wf, shape])
    _put("onnx_model", "seed-cnn.onnx",
         helper.make_model(conv, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString())
    _put("onnx_graph", "seed-0", bytes(range(16)))
    art = CORPUS / "artifact"
    if art.exists():
        shutil.rmtree(art)
    gearshift.compile(onnx.ModelProto.FromString(model.SerializeToString()), "host", art)
    _put("artifact_manifest", "manifest.json", (art / "manifest.json").read_bytes())
    _put("artifact_weights", "default.safetensors", (art / "levels/default.safetensors").read_bytes())
    root = Path(gearshift.__file__).resolve().parent
    for p in (root / "runtime/profiles").glob("*.json"):
        _put("profile", p.name, p.read_bytes())
    for p in (root / "runtime/traces").glob("*.csv"):
        _put("trace", p.name, p.read_bytes()[:2000])
    _put("levels_file", "levels.json", json.dumps({"form": "runtime", "levels": [
        {"name": "l50", "sparsity": "bsr:0.5:16x1"},
        {"name": "l85", "sparsity": "bsr:0.85:16x1", "layer_sparsity": ["attention=bsr:0.5:16x1"]}]}).encode())
    _put("measurements", "m.json", json.dumps({"l50": {"1497": 1.2, "2419": 0.8}, "l85": {"1497": 0.7}}).encode())
    _put("tuning_database", "records.jsonl", (json.dumps(
        {"kind": "bsr", "task": "fc1", "target": "x86-avx512", "knobs": {"rows": 8}, "ms": 0.12}) + "\n").encode())
    buf = io.BytesIO()
    np.savez(buf, x=rng.standard_normal((2, 8)).astype(np.float32), ids=np.arange(4))
    _put("npz_inputs", "in.npz", buf.getvalue())
    _put("vta_config", "default.json", json.dumps(DEFAULT.to_json()).encode())
    stream = [isa.Mem(isa.LOAD, isa.MEM_INP, 0, 0, 2, 3, 3, 1, 0, 1, 0), isa.Gemm(0, 4, 2, 1, 3, 0, 3, 0, 0, 0),
              isa.Alu(isa.ALU_SHR, 0, 2, imm=-3), isa.Finish()]
    _put("vta_stream", "stream.bin", isa.to_bytes(stream, DEFAULT))


if __name__ == "__main__":
    main()
