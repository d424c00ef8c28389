"""Direct conv2d (NCHW) against a weight packed into output-channel panels: Wp[CO/cols, CI, KH, KW, cols].

The convolution is computed as a matmul whose rows are output pixels (m = oh * OW + ow) and whose
columns are output channels, the same register block as the dense kernel: `cols` output channels
(vectorised) x a few pixels (broadcast loads of the input), summed over (ci, kh, kw). Pixels are
flattened so that any image width splits into whole register blocks (14 x 14 = 196 = 49 x 4).
The input is zero-padded once, up front; output channels not a multiple of `cols` are padded in the
packed weight and cropped away by the last stage, which also restores the [N, CO, OH, OW] shape.
Packing runs at compile time, like the dense kernel's.
"""

from __future__ import annotations

from tvm import te

CONV_BLOCK = "gs_conv2d"


def pack_conv_weight(w: te.Tensor, cols: int) -> te.Tensor:
    """[CO, CI, KH, KW] -> [ceil(CO/cols), CI, KH, KW, cols], zero-padded."""
    co_len, ci_len, kh_len, kw_len = (int(d) for d in w.shape)
    panels = (co_len + cols - 1) // cols
    return te.compute((panels, ci_len, kh_len, kw_len, cols),
                      lambda p, c, h, v, o: te.if_then_else(p * cols + o < co_len, w[p * cols + o, c, h, v],
                                                            te.const(0, w.dtype)),
                      name="gs_pack_conv_weight")


def packed_conv2d(x: te.Tensor, wp: te.Tensor, co_len: int, strides: tuple[int, int],
                  padding: tuple[int, int, int, int]) -> te.Tensor:
    """conv2d(x[N, CI, H, W], W[CO, CI, KH, KW]) with W given packed as wp; returns [N, CO, OH, OW]."""
    n_len, ci_len, h_len, w_len = (int(d) for d in x.shape)
    panels, _, kh_len, kw_len, cols = (int(d) for d in wp.shape)
    top, left, bottom, right = padding
    sh, sw = strides
    oh_len = (h_len + top + bottom - kh_len) // sh + 1
    ow_len = (w_len + left + right - kw_len) // sw + 1
    if any(padding):
        xp = te.compute((n_len, ci_len, h_len + top + bottom, w_len + left + right),
                        lambda n, c, h, v: te.if_then_else(
                            te.all(h >= top, h < h_len + top, v >= left, v < w_len + left),
                            x[n, c, h - top, v - left], te.const(0, x.dtype)), name="gs_conv2d_pad")
    else:
        xp = x
    ci = te.reduce_axis((0, ci_len), name="ci")
    kh = te.reduce_axis((0, kh_len), name="kh")
    kw = te.reduce_axis((0, kw_len), name="kw")
    flat = te.compute(
        (n_len, panels * cols, oh_len * ow_len),
        lambda n, co, m: te.sum(xp[n, ci, (m // ow_len) * sh + kh, (m % ow_len) * sw + kw]
                                * wp[co // cols, ci, kh, kw, co % cols], axis=[ci, kh, kw]),
        name=CONV_BLOCK)
    return te.compute((n_len, co_len, oh_len, ow_len), lambda n, co, h, v: flat[n, co, h * ow_len + v],
                      name="gs_conv2d_unflatten")
