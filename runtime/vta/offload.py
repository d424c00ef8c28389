"""Layers offloaded to the simulated accelerator, as an artifact stores them and a Session runs them.

A model compiled for `vta-sim` is an ordinary host library in which every offloaded linear layer is
a call to the packed function `gearshift.vta.layer(x, index, out)`. That function, registered here,
quantises x with the layer's calibrated scale, runs the layer's instruction stream in the
simulator (bit-exact, with the cycle model) and dequantises the int8 result per output channel.
The layers of the session running the call are found through a thread-local `active` set; each
call's Stats are kept for the report (`gearshift run` prints cycles per layer and in total).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gearshift.errors import ArtifactError
from gearshift.runtime.vta import isa
from gearshift.runtime.vta.config import VtaConfig, config_from_json
from gearshift.runtime.vta.program import Program
from gearshift.runtime.vta.simulator import Stats

FUNCTION = "gearshift.vta.layer"
TENSORS, META = "vta/layers.safetensors", "vta/layers.json"


@dataclass
class VtaLayer:
    name: str
    program: Program
    x_scale: float
    out_scale: np.ndarray  # float64 [N]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, Stats]:
        x_q = np.clip(np.rint(np.asarray(x, np.float64) / self.x_scale), -127, 127).astype(np.int8)
        y_q, stats = self.program.run(x_q)
        return (y_q.astype(np.float64) * self.out_scale).astype(np.float32), stats


@dataclass
class VtaLayers:
    config: VtaConfig
    layers: list[VtaLayer]

    def save(self, root: Path) -> list[str]:
        """Write the layers under `root` (an artifact's temporary directory); the files written."""
        from safetensors.numpy import save_file

        (root / "vta").mkdir(exist_ok=True)
        tensors, meta = {}, []
        for i, layer in enumerate(self.layers):
            p = layer.program
            tensors[f"{i}.insns"] = np.frombuffer(isa.to_bytes(p.insns, self.config), np.uint8)
            tensors[f"{i}.dram"] = p.dram
            tensors[f"{i}.out_scale"] = np.asarray(layer.out_scale, np.float64)
            meta.append({"name": layer.name, "m": p.m, "k": p.k, "n": p.n, "x_scale": layer.x_scale,
                         "regions": p.regions, "gemm_blocks": p.gemm_blocks, "tiles": p.tiles})
        save_file(tensors, str(root / TENSORS))
        (root / META).write_text(json.dumps({"config": self.config.to_json(), "layers": meta}, indent=1) + "\n")
        return [TENSORS, META]


def load_layers(root: Path) -> VtaLayers:
    """The offloaded layers of an artifact (whose files `open_artifact` has verified)."""
    from safetensors.numpy import load_file

    try:
        meta = json.loads((root / META).read_text())
        tensors = load_file(str(root / TENSORS))
        config = config_from_json(meta["config"])
        layers = []
        for i, m in enumerate(meta["layers"]):
            program = Program(config, isa.from_bytes(tensors[f"{i}.insns"].tobytes(), config), tensors[f"{i}.dram"],
                              {k: int(v) for k, v in m["regions"].items()}, int(m["m"]), int(m["k"]), int(m["n"]),
                              int(m["gemm_blocks"]), m.get("tiles", {}))
            layers.append(VtaLayer(m["name"], program, float(m["x_scale"]), tensors[f"{i}.out_scale"]))
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ArtifactError(f"{root}: the accelerator's layers cannot be read ({err})") from None
    return VtaLayers(config, layers)


class _Active(threading.local):
    layers: VtaLayers | None = None
    stats: dict | None = None


active = _Active()


def register() -> None:
    """Make `gearshift.vta.layer` callable from TVM's VM (once per process)."""
    import tvm

    if tvm.get_global_func(FUNCTION, allow_missing=True) is not None:
        return

    def layer(x, index, out):
        if active.layers is None:
            raise RuntimeError("gearshift.vta.layer called outside a vta-sim Session")
        i = int(index)
        y, stats = active.layers.layers[i].run(x.numpy())
        out.copyfrom(y)
        active.stats[i] = stats

    tvm.register_global_func(FUNCTION, layer)


def report(layers: VtaLayers, stats: dict) -> dict:
    """Cycles per layer and in total for the last inference, at the configuration's clock."""
    c = layers.config
    rows = [{"layer": layer.name, **stats[i].as_dict(c)} for i, layer in enumerate(layers.layers) if i in stats]
    total = sum(r["cycles"] for r in rows)
    gemm = sum(r["gemm_cycles"] for r in rows)
    return {"note": "simulated accelerator: cycles from the cycle model, not measured", "clock_mhz": c.clock_mhz,
            "layers": rows, "total_cycles": total, "total_microseconds": round(total / c.clock_mhz, 1),
            "utilisation": round(gemm / total, 4) if total else 0.0}
