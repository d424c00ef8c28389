"""Direct conv2d (NCHW) against a weight packed into output-channel panels: Wp[CO/cols, CI, KH, KW, cols].

The convolution is computed as a matmul whose rows are output pixels and whose columns are output
channels, with the dense kernel's register block: `cols` output channels (vectorised) x `rows`
pixels of one image row (broadcast loads of the input), summed over (ci, kh, kw). When no count
near `rows` divides the output width (`dividing_rows`), pixels are flattened (m = oh * OW + ow) so that the image still splits
into whole register blocks (14 x 14 = 196 = 49 x 4), and a last stage restores [N, CO, OH, OW].
Where `rows` does not divide OH * OW either (7 x 7 = 49), the flat extent is rounded up to whole
blocks, the extra pixels recomputing the last one: a block with a tail predicate ran 8-10x slower
than ONNX Runtime (7x7x512, ResNet-18's last stage).
The input is zero-padded once, up front; output channels not a multiple of `cols` are padded in the
packed weight and cropped away at the end. Packing runs at compile time, like the dense kernel's.
"""

from __future__ import annotations

from tvm import te

from gearshift.schedules.cpu.microkernel import dividing_rows

CONV_BLOCK = "gs_conv2d"  # [N, CO, OH, OW]: register blocks along image rows
CONV_FLAT_BLOCK = "gs_conv2d_flat"  # [N, CO, OH * OW]: register blocks along flattened pixels


def pack_conv_weight(w: te.Tensor, cols: int) -> te.Tensor:
    """[CO, CI, KH, KW] -> [ceil(CO/cols), CI, KH, KW, cols], zero-padded."""
    co_len, ci_len, kh_len, kw_len = (int(d) for d in w.shape)
    panels = (co_len + cols - 1) // cols
    return te.compute((panels, ci_len, kh_len, kw_len, cols),
                      lambda p, c, h, v, o: te.if_then_else(p * cols + o < co_len, w[p * cols + o, c, h, v],
                                                            te.const(0, w.dtype)),
                      name="gs_pack_conv_weight")


def packed_conv2d(x: te.Tensor, wp: te.Tensor, co_len: int, strides: tuple[int, int],
                  padding: tuple[int, int, int, int], rows: int) -> te.Tensor:
    """conv2d(x[N, CI, H, W], W[CO, CI, KH, KW]) with W given packed as wp; returns [N, CO, OH, OW].
    `rows` is the register block's pixel count (it picks the row or the flattened form)."""
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

    def term(n, co, oh, ow):
        return xp[n, ci, oh * sh + kh, ow * sw + kw] * wp[co // cols, ci, kh, kw, co % cols]

    if dividing_rows(ow_len, rows):  # the rule's block (`Microkernel.rows_for`) divides the row
        out = te.compute((n_len, panels * cols, oh_len, ow_len),
                         lambda n, co, oh, ow: te.sum(term(n, co, oh, ow), axis=[ci, kh, kw]), name=CONV_BLOCK)
        if panels * cols == co_len:
            return out
        return te.compute((n_len, co_len, oh_len, ow_len), lambda *i: out[i], name="gs_conv2d_crop")
    m_len = oh_len * ow_len

    def pixel(m):  # the extra pixels of the last block recompute the last one
        return te.min(m, m_len - 1)

    flat = te.compute((n_len, panels * cols, -(-m_len // rows) * rows),  # whole blocks: no tail predicate
                      lambda n, co, m: te.sum(term(n, co, pixel(m) // ow_len, pixel(m) % ow_len), axis=[ci, kh, kw]),
                      name=CONV_FLAT_BLOCK)
    return te.compute((n_len, co_len, oh_len, ow_len), lambda n, co, h, v: flat[n, co, h * ow_len + v],
                      name="gs_conv2d_unflatten")
