"""Keep torch's exporters working where torchvision is installed but its C ops cannot load.

The torchvision wheels on PyPI link the CUDA build of torch; next to the CPU wheel gearshift pins,
their C extension fails to load, and `import torchvision` then fails while registering fake kernels
for two of those ops (`operator torchvision::nms does not exist`). transformers imports torchvision
lazily during `torch.export`, so every dynamo export of a HuggingFace model failed with it. Defining
the two op schemas (no kernel: nothing in an exported model calls them) lets the import go through;
where the extension does load, nothing is touched.
"""

from __future__ import annotations

import glob
import importlib.util
import os

_libraries: list = []  # the torch.library.Library objects must outlive the import
_done: list[bool] = []


def make_torchvision_importable() -> None:
    if _done:
        return
    _done.append(True)
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import torch

    extension = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    try:
        if extension:
            torch.ops.load_library(extension[0])
            return
    except OSError:
        pass
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        try:
            torch._C._dispatch_find_schema_or_throw(f"torchvision::{op}", "")
        except RuntimeError:
            library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _libraries.append(library)
