"""GPU schedule rules (OpenCL for Mali and Adreno), in the style of TVM's dlight: one class per rule,
`apply` returning None when the function is not its kind; `default_rules(target)` is tried in order.

gearshift's own rule comes first where a mobile GPU needs something dlight's generic rules do not
give it (docs/design/gpu.md): `MaliMatmul`, dlight's Matmul with Mali's choices (no local-memory
staging: Mali's local memory is ordinary cached global memory; float4 loads; 8x8 work-groups).
Then TVM's dlight GPU rules: Matmul (its own Adreno configuration on Adreno), GEMV, Reduction,
GeneralReduction (softmax, layer norm), Transpose and Fallback. Both Matmul rules take dense
convolutions too, as implicit GEMMs (dlight re-indexes conv2d's loops into a matmul). TVM's Adreno texture-memory rules
(`dlight.adreno`) are not used: they need the Adreno layout pipeline (NCHW4c in image memory),
which gearshift's buffer-based kernels and the OpenCL checks here do not go through.
"""

from __future__ import annotations

from tvm.s_tir import dlight

from gearshift.schedules.gpu.matmul import MaliMatmul


def is_mali(target) -> bool:
    return "mali" in target.keys


def default_rules(target) -> list:
    matmul = [MaliMatmul()] if is_mali(target) else [dlight.gpu.Matmul()]
    return [*matmul, dlight.gpu.GEMV(), dlight.gpu.Reduction(), dlight.gpu.GeneralReduction(),
            dlight.gpu.Transpose(), dlight.gpu.Fallback()]


__all__ = ["MaliMatmul", "default_rules", "is_mali"]
