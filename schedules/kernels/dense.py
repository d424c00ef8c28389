"""Dense matmul against a weight packed into column panels: Wp[N/cols, K, cols].

Packing puts the `cols` columns a register block needs for one k next to each other, so the inner
loop reads the weight as one contiguous stream (field notes: this layout plus an 8x48 register
block reached ONNX Runtime's speed). Packing runs once, at compile time (the pass that emits these
calls leaves it on the weights, and `LiftTransformParams` moves it out of the model).
N that is not a multiple of `cols` is padded with zero columns in the packed weight; the kernel then
computes the padded width and a second stage keeps the first N columns.
"""

from __future__ import annotations

from tvm import te

DENSE_BLOCK = "gs_dense"  # the schedule rules find the kernel's reduction by this name


def pack_weight(w: te.Tensor, cols: int) -> te.Tensor:
    """[K, N] -> [ceil(N/cols), K, cols], zero-padded."""
    k_len, n_len = w.shape
    panels = (int(n_len) + cols - 1) // cols
    return te.compute((panels, k_len, cols),
                      lambda p, k, c: te.if_then_else(p * cols + c < n_len, w[k, p * cols + c], te.const(0, w.dtype)),
                      name="gs_pack_weight")


def packed_dense(x: te.Tensor, wp: te.Tensor, n_len: int) -> te.Tensor:
    """x[..., M, K] @ W[K, N] with W given packed as wp; returns [..., M, N]."""
    panels, k_len, cols = (int(d) for d in wp.shape)
    k = te.reduce_axis((0, k_len), name="k")
    lead = [int(d) for d in x.shape[:-1]]
    padded = te.compute((*lead, panels * cols),
                        lambda *i: te.sum(x[(*i[:-1], k)] * wp[i[-1] // cols, k, i[-1] % cols], axis=k),
                        name=DENSE_BLOCK)
    if panels * cols == n_len:
        return padded
    return te.compute((*lead, n_len), lambda *i: padded[i], name="gs_dense_crop")
