"""Models in, and the training side.

- `load.py`: an ONNX file, an `onnx.ModelProto` or a torch module (exported) -> a cleaned ONNX model;
- `cleanup.py`: checker, opset upgrade, static shapes, constant folding, op support (named errors);
- `importer.py`: TVM's ONNX importer -> a Relax module with the weights as parameters;
- `inventory.py`: the weight layers of an ONNX model (`gearshift inspect`);
- `pruning.py`, `patterns.py`, `circulant.py`: the torch pruners (block, pattern, circulant), whose
  numpy math lives in `gearshift.compress`;
- `examples.py`: the bundled models (`make demo`, the tests).
"""
