"""gearshift: compile compressed neural networks for phones with Apache TVM.

Data flows one way:  model.onnx --frontend--> Relax IRModule --relay_passes--> rewritten module
--schedules--> built library --runtime--> artifact on the device. `driver.py` runs that sequence.

Imports go one way too, each layer using only the layers below it (tests/test_layers.py checks it):

    cli/                      the `gearshift` command
    driver.py, compiler.py,   the compile driver and the public compile API; levels (RT3), the level
      levels_compiler.py, ...   search, the code check, benchmark helpers
    frontend/                 ONNX and torch in, the training-side pruners
    relay_passes/             graph passes: dense -> block-sparse, pattern, circulant; dense packing
    schedules/                targets, CPU schedule rules, kernels, the lowering pipeline
    runtime/                  artifacts, Session, DVFS governor and measurements (runs on the device)
    compress/                 compression math in numpy (projection, detection, pattern libraries)
    errors.py, spec.py, version.py

The top-level names below are the public API; each lives in the subpackage that owns it.
"""

import os

# TVM's thread pool halves the core count (it assumes SMT siblings), which leaves half of a phone or
# of this 2-core machine idle. gearshift uses every core unless the user set TVM_NUM_THREADS.
os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))

from gearshift.errors import (  # noqa: E402
    ArtifactError,
    GearshiftError,
    GearshiftImportError,
    InputError,
    InputShapeError,
    TargetError,
    UnsupportedOpError,
)

from gearshift.version import __version__  # noqa: E402

# The compiler's names load on first use: a phone runs `gearshift.runtime` with only TVM's runtime,
# numpy and safetensors installed, and `import gearshift.runtime` imports this file first.
_LAZY = {
    "compile": "gearshift.compiler",
    "compile_model": "gearshift.compiler",
    "save": "gearshift.compiler",
    "load": "gearshift.frontend.load",
    "Session": "gearshift.runtime",
    "aligned_empty": "gearshift.runtime",
    "open_artifact": "gearshift.runtime",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gearshift' has no attribute {name!r}")


__all__ = [
    "ArtifactError",
    "GearshiftError",
    "GearshiftImportError",
    "InputError",
    "InputShapeError",
    "Session",
    "TargetError",
    "UnsupportedOpError",
    "__version__",
    "aligned_empty",
    "compile",
    "compile_model",
    "load",
    "open_artifact",
    "save",
]
