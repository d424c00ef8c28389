"""Block-circulant matmul y[M, N] = x[M, K] @ W + bias, Wᵀ made of b x b circulant blocks defined
by vectors[N/b, K/b, b] (see `gearshift.frontend.circulant`). Two paths:

FFT path (three kernels):
  1. the DFT of every b-long piece of x to its real spectrum. For real input, frequency f and b - f
     are conjugate, so b real numbers describe it; they are laid out as b/2 *pairs* q = 2p + c:
     pair p >= 1 holds (Re X_p, Im X_p); pair 0 holds (X_0, X_{b/2}), both real. It is x_pieces @
     D[b, b] regrouped by pair: `dft_pairs` (TIR, both at once, where b | K) or `dft` + `pairs` (TE).
  2. per pair p, the product with the weights' spectra: `complex_mac` (TIR, b >= 16: complex
     multiply-adds on compact weights, b reals per block) or `mac` (TE, a real GEMM [M, 2K/b] @
     [2K/b, 2N/b] on the 2 x 2 real form [[Re V, Im V], [-Im V, Re V]]; pair 0: [[V_0, 0], [0, V_{b/2}]]).
     Both computed at compile time. FLOPs: 2MKN/b, b/2 fewer than dense.
  3. `idft`: back to b outputs per block, y = yf @ E[b, b] (+ bias), the inverse transform written for
     the pair layout (weights 1/b, 2/b and the sines' signs folded into E).
  The TE kernels are GEMM-shaped, scheduled by the CPU Matmul rule like any dense layer. A DFT as a
  b x b matmul costs b MACs per value where an FFT costs log b, but at b <= 64 it is a small
  fraction of step 2 (1/8 of it at b = 16 for BERT's FFN) and vectorises like any GEMM.

Direct path (one kernel, for small b or few rows): y_i[r] = sum_j sum_u v_ij[u] * x_j[(r - u) mod b].
  With x's pieces stored twice in a row (xx = [x_j, x_j]), x_j[(r - u) mod b] = xx[b - u + r]: a
  contiguous vector load at a constant offset per u, so there is no gather and no index array.
  It does the dense layer's FLOPs but reads b times fewer weights (memory-bound layers, e.g. M = 1).
"""

from __future__ import annotations


import numpy as np
import tvm
from tvm import te
from tvm.script import tirx as T

from gearshift.schedules.cpu.microkernel import thread_parts

DFT_BLOCK, MAC_BLOCK, IDFT_BLOCK = "gs_circ_dft", "gs_circ_mac", "gs_circ_idft"


def dft_matrix(b: int) -> np.ndarray:
    """D[t, q]: xq[q] = sum_t x[t] D[t, q] in the pair layout (q = 2p + c)."""
    t = np.arange(b)[:, None]
    p = np.arange(b // 2)[None, :] if b > 1 else np.zeros((1, 1), int)
    d = np.zeros((b, b))
    d[:, 0::2] = np.cos(2 * np.pi * p * t / b)
    d[:, 1::2] = -np.sin(2 * np.pi * p * t / b)
    if b > 1:
        d[:, 1] = np.cos(np.pi * t[:, 0])  # pair 0's second value: the real X_{b/2}
    return d.astype(np.float32)


def idft_matrix(b: int) -> np.ndarray:
    """E[q, t]: y[t] = sum_q yq[q] E[q, t], inverting `dft_matrix`'s pair layout."""
    t = np.arange(b)[None, :]
    p = np.arange(b // 2)[:, None]
    e = np.zeros((b, b))
    e[0::2] = 2 * np.cos(2 * np.pi * p * t / b) / b
    e[1::2] = -2 * np.sin(2 * np.pi * p * t / b) / b
    e[0] = 1.0 / b
    if b > 1:
        e[1] = np.cos(np.pi * t[0]) / b
    return e.astype(np.float32)


def _pair_spectra(vectors: np.ndarray) -> np.ndarray:
    """[N/b, K/b, b] defining vectors -> float64 [b/2, 2, K/b, N/b]: per pair its two real matrices
    (pair p >= 1: Re and Im of V_p; pair 0: V_0 and V_{b/2}, both real), transposed to [J, I]."""
    nb, kb, b = vectors.shape
    spectrum = np.fft.fft(vectors.astype(np.float64), axis=2)  # [I, J, b]
    spectra = np.zeros((max(b // 2, 1), 2, kb, nb))
    for p in range(max(b // 2, 1)):
        if p == 0:
            spectra[0, 0], spectra[0, 1] = spectrum[:, :, 0].real.T, (spectrum[:, :, b // 2].real.T if b > 1 else 0.0)
        else:
            spectra[p, 0], spectra[p, 1] = spectrum[:, :, p].real.T, spectrum[:, :, p].imag.T
    return spectra


def compact_weights(vectors: np.ndarray) -> np.ndarray:
    """wc[b/2, 2, K/b, N/b] (`_pair_spectra` in float32): b reals per block, as small as the vectors."""
    return _pair_spectra(vectors).astype(np.float32)


def frequency_weights(vectors: np.ndarray) -> np.ndarray:
    """[N/b, K/b, b] defining vectors -> the per-pair GEMM weights wf[b/2, 2K/b, 2N/b] (see module doc).
    Rows (c_in, j), columns (c_out, i)."""
    spectra = _pair_spectra(vectors)
    pairs, _, kb, nb = spectra.shape
    wf = np.zeros((pairs, 2, kb, 2, nb))
    first, second = spectra[:, 0], spectra[:, 1]
    wf[0, 0, :, 0], wf[0, 1, :, 1] = first[0], second[0]  # pair 0: two real products, no cross terms
    wf[1:, 0, :, 0], wf[1:, 0, :, 1] = first[1:], second[1:]  # [[Re, Im], [-Im, Re]]
    wf[1:, 1, :, 0], wf[1:, 1, :, 1] = -second[1:], first[1:]
    return wf.reshape(pairs, 2 * kb, 2 * nb).astype(np.float32)


def pack_frequency_weights(wf: np.ndarray, cols: int) -> np.ndarray:
    """[P, K2, N2] -> [P, ceil(N2/cols), K2, cols], zero-padded: the dense kernel's column panels."""
    pairs, k2, n2 = wf.shape
    panels = -(-n2 // cols)
    out = np.zeros((pairs, k2, panels * cols), np.float32)
    out[:, :, :n2] = wf
    return np.ascontiguousarray(out.reshape(pairs, k2, panels, cols).transpose(0, 2, 1, 3))


# -- FFT path: three TE kernels ----------------------------------------------------------------
def dft(x: te.Tensor, d: te.Tensor) -> te.Tensor:
    """x[M, K] -> xq[M, K/b (rounded up), b]; x zero-padded to whole pieces."""
    m_len, k_len = (int(s) for s in x.shape)
    b = int(d.shape[0])
    kb = -(-k_len // b)
    t = te.reduce_axis((0, b), name="t")

    def piece(m, j, tt):
        if kb * b == k_len:
            return x[m, j * b + tt]
        return te.if_then_else(j * b + tt < k_len, x[m, te.min(j * b + tt, k_len - 1)], te.const(0.0, "float32"))

    return te.compute((m_len, kb, b), lambda m, j, q: te.sum(piece(m, j, t) * d[t, q], axis=t), name=DFT_BLOCK)


def pairs(xq: te.Tensor) -> te.Tensor:
    """xq[M, K/b, b] -> a[b/2, M, 2K/b]: pair p's real parts then imaginary parts, as rows of the
    pair's GEMM (a separate, injective kernel: index arithmetic inside the GEMM's loop cost 3x)."""
    m_len, kb, b = (int(s) for s in xq.shape)
    return te.compute((max(b // 2, 1), m_len, 2 * kb), lambda p, m, k: xq[m, k % kb, 2 * p + k // kb],
                      name="gs_circ_pairs")


def dft_pairs(m: int, k: int, b: int, lanes: int, threads: int = 1) -> tvm.tirx.PrimFunc:
    """`dft` and `pairs` in one TIR kernel, for b | K: (x[M, K], D[b, b]) -> a[b/2, M, 2K/b]. A
    register block is `group` pieces of one row x the b frequencies (x broadcast, D's rows as vectors);
    it is written to the pair layout straight from registers, so xq never reaches memory (the two
    TE kernels took 0.23 ms at K = 3072, half of it regrouping)."""
    if k % b:
        raise ValueError(f"dft_pairs: b {b} must divide K {k}")
    kb, pairs_len = k // b, max(b // 2, 1)
    group = max(1, (8 * lanes) // max(b, lanes))
    while kb % group:
        group -= 1

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), d: T.Buffer((b, b), "float32"),
               a: T.Buffer((pairs_len, m, 2 * kb), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for row in T.parallel(m):
            for jo in range(kb // group):
                acc = T.alloc_buffer((group, b), "float32", scope="local")
                for jj in T.unroll(group):
                    for q in T.vectorized(b):
                        acc[jj, q] = T.float32(0)
                for t in range(b):
                    for jj in T.unroll(group):
                        for q in T.vectorized(b):
                            acc[jj, q] = acc[jj, q] + x[row, (jo * group + jj) * b + t] * d[t, q]
                for q in T.unroll(b):
                    for jj in T.vectorized(group):
                        a[q // 2, row, (q % 2) * kb + jo * group + jj] = acc[jj, q]

    return kernel


DIRECT_STEP = 4  # taps of the direct kernel unrolled together (see `direct`)
COMPLEX_MIN_BLOCK = 16  # below it the GEMM form's wider register block wins (measured here at b = 8:
                        # 0.88 vs 1.09 ms; at b = 16 the compact form is 3-10 % faster and half the bytes)


def mac_form(m: int, n: int, b: int, lanes: int, budget: int) -> str:
    """"complex" (compact weights, `complex_mac`) or "gemm" (`mac` on the 2 x 2 real form)."""
    nb = -(-n // b)
    if b >= COMPLEX_MIN_BLOCK and complex_tile(m, nb, lanes, complex_budget(budget)) is not None:
        return "complex"
    return "gemm"


def complex_budget(budget: int) -> int:
    """Accumulators for `complex_mac` out of the dense microkernel's: two thirds (it also keeps two
    weight vectors per accumulator column and two broadcasts per row in registers: 12 spilled on AVX2)."""
    return budget * 2 // 3


def complex_tile(m: int, nb: int, lanes: int, budget: int) -> tuple[int, int] | None:
    """(rows, vectors) of `complex_mac`'s register block: 2 x rows x vectors accumulators within
    `budget` (rows | M, vectors x lanes | N/b), the fewest loads per FMA ((2 rows broadcasts + 2
    vectors weight loads) per 4 rows x vectors FMAs); None when N/b holds no whole vector."""
    tiles = [(r, v) for v in range(1, budget // 2 + 1) if nb % (v * lanes) == 0
             for r in range(1, budget // (2 * v) + 1) if m % r == 0]
    return min(tiles, key=lambda t: ((t[0] + t[1]) / (2 * t[0] * t[1]), -t[0] * t[1]), default=None)


def complex_mac(m: int, kb: int, nb: int, pairs: int, lanes: int, budget: int) -> tvm.tirx.PrimFunc:
    """(a[P, M, 2K/b], wc[P, 2, K/b, N/b]) -> yf[P, M, 2N/b]: the per-pair products with the compact
    weights, as complex multiply-adds (Yr += Xr Re - Xi Im, Yi += Xr Im + Xi Re; pair 0: two real
    products). Reads half the weight bytes of the 2 x 2 GEMM form, and its register block does 4 FMAs
    per pair of broadcasts and pair of weight vectors (the GEMM form: 3 vectors and 4 broadcasts per 12)."""
    rows, vectors = complex_tile(m, nb, lanes, budget)
    width = vectors * lanes
    panels = nb // width

    @T.prim_func(private=True)
    def kernel(a: T.Buffer((pairs, m, 2 * kb), "float32"), wc: T.Buffer((pairs, 2, kb, nb), "float32"),
               yf: T.Buffer((pairs, m, 2 * nb), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for task in T.parallel(pairs * panels):  # pairs inner: each thread's share holds every pair
                                                  # (pair 0 does half the work of the others)
            for mo in range(m // rows):
                acc = T.alloc_buffer((2, rows, vectors, lanes), "float32", scope="local")
                for c, r, v in T.grid(2, rows, vectors):
                    for e in T.vectorized(lanes):
                        acc[c, r, v, e] = T.float32(0)
                if task % pairs == 0:
                    for j in range(kb):
                        for c in T.unroll(2):
                            for r in T.unroll(rows):
                                for v in T.unroll(vectors):
                                    for e in T.vectorized(lanes):
                                        acc[c, r, v, e] = acc[c, r, v, e] + a[0, mo * rows + r, c * kb + j] * wc[
                                            0, c, j, task // pairs * width + v * lanes + e]
                else:
                    for j in range(kb):
                        for r in T.unroll(rows):
                            for v in T.unroll(vectors):
                                for e in T.vectorized(lanes):  # four statements: each one FMA
                                    acc[0, r, v, e] = acc[0, r, v, e] + a[task % pairs, mo * rows + r, j] * wc[
                                        task % pairs, 0, j, task // pairs * width + v * lanes + e]
                                    acc[0, r, v, e] = acc[0, r, v, e] - a[task % pairs, mo * rows + r, kb + j] * wc[
                                        task % pairs, 1, j, task // pairs * width + v * lanes + e]
                                    acc[1, r, v, e] = acc[1, r, v, e] + a[task % pairs, mo * rows + r, j] * wc[
                                        task % pairs, 1, j, task // pairs * width + v * lanes + e]
                                    acc[1, r, v, e] = acc[1, r, v, e] + a[task % pairs, mo * rows + r, kb + j] * wc[
                                        task % pairs, 0, j, task // pairs * width + v * lanes + e]
                for c, r, v in T.grid(2, rows, vectors):
                    for e in T.vectorized(lanes):
                        yf[task % pairs, mo * rows + r, c * nb + task // pairs * width + v * lanes + e] = acc[c, r, v, e]

    return kernel


def mac(a: te.Tensor, wp: te.Tensor, n2: int) -> te.Tensor:
    """Per pair p: yf[p, M, 2N/b] = a[p] @ wf[p] (wp: wf packed in column panels)."""
    pairs_len, m_len, k2 = (int(s) for s in a.shape)
    cols = int(wp.shape[3])
    k = te.reduce_axis((0, k2), name="k")
    padded = te.compute((pairs_len, m_len, int(wp.shape[1]) * cols),
                        lambda p, m, n: te.sum(a[p, m, k] * wp[p, n // cols, k, n % cols], axis=k), name=MAC_BLOCK)
    if int(wp.shape[1]) * cols == n2:
        return padded
    return te.compute((pairs_len, m_len, n2), lambda *i: padded[i], name="gs_circ_mac_crop")


def idft(yf: te.Tensor, e: te.Tensor, bias: te.Tensor) -> te.Tensor:
    """yf[P, M, 2N/b] -> y[M, N/b, b] + bias (zero past N; the caller reshapes and crops). The bias
    epilogue keeps the GEMM's shape: a reshaping epilogue computed per column tile writes outside its
    tile when the tile is narrower than b (it did on aarch64's 4-lane tiles: found under qemu)."""
    _, m_len, n2 = (int(s) for s in yf.shape)
    b, n_len = int(e.shape[0]), int(bias.shape[0])
    nb = n2 // 2
    q = te.reduce_axis((0, b), name="q")
    blocks = te.compute((m_len, nb, b), lambda m, i, t: te.sum(yf[q // 2, m, (q % 2) * nb + i] * e[q, t], axis=q),
                        name=IDFT_BLOCK)

    def biased(m, i, t):
        if nb * b == n_len:
            return blocks[m, i, t] + bias[i * b + t]
        return blocks[m, i, t] + te.if_then_else(i * b + t < n_len, bias[te.min(i * b + t, n_len - 1)],
                                                 te.const(0.0, "float32"))

    return te.compute((m_len, nb, b), biased, name="gs_circ_bias")


# -- direct path: one TIR kernel ---------------------------------------------------------------
def direct_rows(m: int, b: int, lanes: int, budget: int) -> int:
    """Activation rows of the direct kernel's register block: as many as `budget` accumulators hold
    with one output block (b // lanes vectors) a row, dividing m."""
    rows = max(1, min(m, budget // max(1, b // min(b, lanes))))
    while m % rows:
        rows -= 1
    return rows


def direct(m: int, k: int, n: int, b: int, lanes: int, budget: int, threads: int = 1) -> tvm.tirx.PrimFunc:
    """(x[M, K], vectors[N/b, K/b, b], bias[N]) -> y[M, N], for N and K multiples of b. Each register
    block holds `rows` activation rows x one output block (b outputs, vectorised); `budget`: the
    vector accumulators the target affords."""
    if n % b or k % b:
        raise ValueError(f"circulant direct kernel: b {b} must divide N {n} and K {k}")
    nb, kb = n // b, k // b
    rows = direct_rows(m, b, lanes, budget)
    parts = thread_parts(nb, threads)
    share = nb // parts
    step = DIRECT_STEP if b % DIRECT_STEP == 0 else b

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), v: T.Buffer((nb, kb, b), "float32"), bias: T.Buffer((n,), "float32"),
               y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        xx = T.alloc_buffer((m, kb, 2 * b), "float32")
        for mm in T.parallel(m):
            for j in range(kb):
                for h in T.unroll(2):
                    for t in T.vectorized(b):
                        xx[mm, j, h * b + t] = x[mm, j * b + t]
        for part in T.parallel(parts):
            for ii, mo in T.grid(share, m // rows):
                acc = T.alloc_buffer((rows, b), "float32", scope="local")
                for mi in T.unroll(rows):
                    for r in T.vectorized(b):
                        acc[mi, r] = bias[(part * share + ii) * b + r]
                for j in range(kb):
                    for uo in range(b // step):
                        for ui in T.unroll(step):
                            for mi in T.unroll(rows):
                                for r in T.vectorized(b):
                                    acc[mi, r] = acc[mi, r] + v[part * share + ii, j, uo * step + ui] * xx[
                                        mo * rows + mi, j, b - uo * step - ui + r]
                for mi in T.unroll(rows):
                    for r in T.vectorized(b):
                        y[mo * rows + mi, (part * share + ii) * b + r] = acc[mi, r]

    return kernel
