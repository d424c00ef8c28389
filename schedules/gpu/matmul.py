"""Matmul on Mali: dlight's GPU Matmul rule with the choices Arm's Mali guides make.

dlight's default configuration stages tiles of both operands in local memory, the right thing on
GPUs with a scratchpad (NVIDIA's shared memory, Adreno's local memory). Mali has none: local memory
is ordinary global memory behind the same caches, so staging costs a copy and a barrier for nothing.
This rule reads straight from global memory with float4 loads, 8x8 work-items per work-group, a 4x4
register tile per work-item. Adreno keeps dlight's own Adreno configuration (no staging either,
8-wide vectors, 32x4 work-groups).
"""

from __future__ import annotations

from tvm.s_tir.dlight.gpu import Matmul


class MaliMatmul(Matmul):
    def get_configs(self, target) -> Matmul.Config:
        return Matmul.Config(block_size_x=8, block_size_y=8, micro_size_x=4, micro_size_y=4, micro_size_k=4,
                             vector_size=4, unroll=16, use_shared=False, storage_align=False, inner_x=True)
