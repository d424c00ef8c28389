"""Block-sparse (BSR) matmul: y[M, N] = x[M, K] @ W[K, N] (+ bias), W stored by blocks of Wᵀ.

Wᵀ ([N outputs, K inputs]) is cut into r x c blocks (r outputs x c inputs); only nonzero blocks are
stored: `data[nnz, c, r]` (each block transposed, so a block's r outputs for one input are one
contiguous vector), `indices[nnz]` (block column) and `indptr[N/r + 1]` (CSR over block rows).

The kernels are written scheduled (TVM cannot schedule or tune loops whose bounds are data). Each
thread owns a contiguous range of block rows; per block row and per register block of activation
rows, the nonzero blocks are walked and multiplied into accumulators that stay in registers; the
bias is added on the way out. No per-element index load: one index per block. Two tilings:

- along the outputs (blocks with r a multiple of the vector width, e.g. 16x1): x[m, k] is broadcast
  and multiplied with the block's r outputs as whole vectors, for `rows` activation rows. The
  activation rows are taken in chunks small enough to stay in L2 (`chunk_tiles`: the random columns a
  block row reads then hit L2, not L3; 1.2-1.4x measured here at K = 768 and 3072), or one tile at a
  time where a tile fits L1 (its reads then hit L1; 1.2x more at K = 768, 90 % sparse). Rows left over
  when the tile height does not divide M go through a second, shorter tile. On AVX2, where a tile
  does not fit L1 and at most 1/8 of the blocks are kept (`uses_panels`), the threads split the tiles
  instead and read x through panels: each tile's rows transposed to [k, 8], so that a block's
  broadcasts read one cache line, not one per row (1.15-1.25x at 3072 -> 768, 90 % sparse).
- along the activations (narrow blocks: 4x4, 8x1, 1x16, ...): a vector holds `lanes` activation
  rows, so x is first transposed (in the kernel, by lanes x lanes squares: 0.02 ms for 128 x 768);
  each weight is broadcast and multiplied with `rows` activation rows for each of the r outputs.
  Vectorising a 4-wide block along its outputs would use half of an AVX2 register: measured here
  1.9x faster for 4x4 and 1.3x for 8x1 at 90 % sparsity.

Block patterns (RT3) are blocks storing only the entries their pattern keeps, one unrolled loop per
pattern with the kept positions as constants: any masks along the activations; along the outputs,
patterns that keep whole block columns (16x4 keeping 2 columns: 16x1 BSR's work per kept column
with one index per block, 0.94-1.12x its time here at equal density, kernel against kernel).

The structure arrays can be constants (the "baked" form) or runtime inputs with the same nnz (the
"runtime" form, which lets one executable run several pattern sets of equal size).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import tirx
from tvm.script import tirx as T

from gearshift.compress.patterns import block_fits
from gearshift.schedules.cpu.microkernel import Microkernel, thread_parts
from gearshift.schedules.kernels.epilogue import apply
from gearshift.schedules.kernels.tables import lookup


@dataclass(frozen=True)
class Tile:
    """The register block: vectorised `along` the block's "outputs" or the "activations", over
    `rows` activation rows (a multiple of `lanes` when along the activations). Along the outputs,
    `chunk` (register tiles per chunk of activation rows) and `panels` (read x through panels) are
    left to the rules (`chunk_tiles`, `uses_panels`) when 0 / None; a tuner sets them."""
    along: str
    rows: int
    lanes: int = 8
    chunk: int = 0
    panels: bool | None = None


def choose_tile(m: int, k: int, r: int, micro: Microkernel, density: float | None = None) -> Tile:
    """Along the outputs when a block row fills whole vectors twice over (16x1 on AVX2/NEON), or
    once with 16-lane vectors (16x1 on AVX-512: its 32 registers hold a tall tile of single-vector
    rows, the design of the hand-written kernel that reached 7.2-7.9x ONNX Runtime on an AVX-512
    machine, see the field notes; not measured here, where there is no AVX-512); otherwise along the
    activations where m and k divide into vectors (one-vector blocks with 16 registers: 8x1 on AVX2
    measured 1.3x faster along the activations). As many accumulators as the dense microkernel has
    (its rows x vectors). Along the outputs the row count need not divide m (a tail tile takes the
    rest): 6 rows x 2 vectors for 16x1 on AVX2 measured 1.2-1.3x faster than the 4 rows that divide
    128 (8 accumulators only just cover the FMA latency). Fewer rows where that keeps a tile's
    activations in L1 with at least MIN_ACCUMULATORS: on AVX-512 the 24-row tile of a 768-wide x
    (72 KB) reads L2 for most broadcasts, and 8 rows (24 KB) ran 0.23 ms against 0.29-0.34 ms at
    768 -> 3072, 90 % sparse, kernel against kernel. Only for one-vector block rows, where every FMA
    has its own broadcast (AVX2's and NEON's 16x1 tiles hold 2 and 4 vectors a row and fit L1 at
    K = 768 already; not measured at other shapes there). `density` (blocks kept, if known): above
    L1_TILE_DENSITY the weights, read once per tile, cost more than the broadcasts save (at 50 % the
    8-row tile measured 1.28x ORT against 1.40x for 24 rows; at 20 % 3.17x against 2.85x)."""
    budget, lanes = micro.rows * micro.vectors, micro.lanes
    if (r % lanes == 0 and (r >= 2 * lanes or lanes >= 16)) or m % lanes or k % lanes:
        per_row = max(1, math.ceil(r / lanes))
        rows = max(1, min(m, budget // per_row))
        in_l1 = L1_BUDGET // (4 * k)  # rows whose activations stay in L1 over a whole block row
        if per_row == 1 and (density is None or density <= L1_TILE_DENSITY):  # one broadcast per FMA
            if MIN_ACCUMULATORS <= in_l1 < rows:  # the tile's x stays in L1
                rows = in_l1
            elif in_l1 < MIN_ACCUMULATORS and density is not None and density <= PANEL_DENSITY:
                rows = min(rows, PANEL)  # x read through panels (`uses_panels`): one line a block
        return Tile("outputs", rows, lanes)
    vectors = max(1, budget // r)
    while m % (vectors * lanes):
        vectors -= 1
    return Tile("activations", vectors * lanes, lanes)


def bsr_matmul(m: int, k: int, n: int, r: int, c: int, nnz: int, tile: Tile, threads: int = 1,
               masks: np.ndarray | None = None, epilogue: tuple | None = None) -> tvm.tirx.PrimFunc:
    """The kernel for fixed sizes (r | n and c | k; along the activations `tile.rows` must divide m).
    It always takes a bias: a layer without one passes zeros (one add per output beats a second kernel to maintain).
    `threads`: the target's cores; each gets one contiguous share of the block rows (one parallel
    launch per call, and each thread reuses its activations over all its block rows), or of the
    register tiles where x goes through panels (`uses_panels`: each thread then packs only its rows).
    `masks` [P, r, c]: block patterns (`to_block_patterns`' arrays instead of `to_bsr`'s); each
    pattern's entry positions become constants in its own unrolled loop. Along the outputs a pattern
    must keep whole columns (`kept_columns`: a vector holds a column) and the row-major tiling runs it.
    `epilogue`: elementwise steps (`kernels/epilogue.py`, e.g. a ReLU) applied to each output after the bias."""
    if n % r or k % c:
        raise ValueError(f"bsr_matmul: r {r} must divide N {n} and c {c} divide K {k}")
    if tile.along == "activations" and (m % tile.rows or tile.rows % tile.lanes or k % tile.lanes):
        raise ValueError(f"bsr_matmul: along the activations, rows {tile.rows} must divide M {m} and lanes "
                         f"{tile.lanes} divide rows and K {k}")
    if masks is not None and (masks.shape[1:] != (r, c) or (tile.along == "outputs" and kept_columns(masks) is None)):
        raise ValueError(f"bsr_matmul: block patterns need {r}x{c} masks, keeping whole columns along the outputs")
    if tile.panels and not panels_fit(k, tile, masks):
        raise ValueError(f"bsr_matmul: panels need full blocks along the outputs, {PANEL} | K, at most {PANEL} rows "
                         f"and {PANEL} or {2 * PANEL} lanes; got {tile} at K {k}")
    block_rows, nnz = n // r, max(nnz, 1)
    parts = thread_parts(block_rows, threads)
    if tile.along == "outputs":
        cols = [list(range(c))] if masks is None else kept_columns(masks)
        if tile.panels or (tile.panels is None and masks is None and uses_panels(m, k, n, r, c, nnz, tile, threads)):
            return _along_outputs_panels(m, k, n, r, c, nnz, tile, threads, cols, epilogue)
        return _along_outputs(m, k, n, r, c, nnz, tile, parts, block_rows // parts, cols, epilogue)
    return _along_activations(m, k, n, r, c, nnz, tile, parts, block_rows // parts, masks, epilogue)


def _along_outputs(m, k, n, r, c, nnz, tile, parts, share, cols, epilogue):
    rows, block_rows = min(tile.rows, m), n // r
    tiles, tail = m // rows, m % rows  # `tail` rows left over, done by a second, smaller tile
    per_chunk = tile.chunk or chunk_tiles(m, k, rows)
    chunks = (tiles + per_chunk - 1) // per_chunk

    block_row_tile = block_row_macro(r, c, cols, epilogue)
    data_shape, ranges, kept = stored_shape(nnz, r, c, cols), block_rows * len(cols) + 1, len(cols[0])

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), data: T.Buffer(data_shape, "float32"),
               indices: T.Buffer((nnz,), "int32"), indptr: T.Buffer((ranges,), "int32"),
               b: T.Buffer((n,), "float32"), y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        blocks = T.decl_buffer((nnz, kept, r), "float32", data=data.data)  # [nnz, entries] of patterns, viewed by column
        for part in T.parallel(parts):
            for mc in range(chunks):
                for bri in range(share):
                    for mo in range(T.min(per_chunk, tiles - mc * per_chunk)):
                        block_row_tile(read_rows, x, 0, blocks, indices, indptr, b, y, part * share + bri,
                                       (mc * per_chunk + mo) * rows, rows, m)
            if tail > 0:
                for bri in range(share):
                    block_row_tile(read_rows, x, 0, blocks, indices, indptr, b, y, part * share + bri, tiles * rows,
                                   tail, m)

    return kernel


def block_row_macro(r: int, c: int, cols: list[list[int]], epilogue: tuple | None = None):
    """The walk of one block row for one register tile of `height` activation rows from `row0`, its
    accumulators in registers, the bias added on the way out; rows from `m` on are not stored. Its
    activation x[row0 + mi, col] is `read(source, row0 + mi, col, at, mi)`: `read_rows` (x itself) or
    `read_panel` (tile `at`'s panel). One walk for both tilings along the outputs. `cols`: per
    pattern, the block columns it keeps, constants in the pattern's unrolled loop (BSR: one pattern
    keeping all c; `indptr` then has one range per block row, else one per block row and pattern).
    `epilogue` is applied to each output after the bias."""
    npat, kept = len(cols), len(cols[0])

    def col(p, j):
        return lookup(cols, p, j)

    @T.macro
    def block_row_tile(read, source, at, data, indices, indptr, b, y, br, row0, height, m):
        acc = T.alloc_buffer((height, r), "float32", scope="local")
        for mi in T.unroll(height):
            for i in T.vectorized(r):
                acc[mi, i] = T.float32(0)
        for pat in T.unroll(npat):
            for p in range(indptr[br * npat + pat], indptr[br * npat + pat + 1]):
                for j in T.unroll(kept):
                    for mi in T.unroll(height):
                        for i in T.vectorized(r):
                            acc[mi, i] = acc[mi, i] + read(source, row0 + mi, indices[p] * c + col(pat, j), at,
                                                           mi) * data[p, j, i]
        for mi in T.unroll(height):
            if row0 + mi < m:
                for i in T.vectorized(r):
                    y[row0 + mi, br * r + i] = apply(epilogue, acc[mi, i] + b[br * r + i])

    return block_row_tile


def kept_columns(masks: np.ndarray) -> list[list[int]] | None:
    """Per pattern [r, c], the block columns it keeps, if every pattern keeps whole columns and all
    keep as many; else None. Along the outputs a vector holds a block column, so only such patterns
    vectorise there."""
    whole = masks.all(axis=1)
    if (masks.any(axis=1) != whole).any() or len(set(whole.sum(axis=1).tolist())) != 1 or not whole.any():
        return None
    return [np.flatnonzero(w).tolist() for w in whole]


def stored_shape(nnz: int, r: int, c: int, cols: list[list[int]]) -> tuple[int, ...]:
    """The data array's shape along the outputs: [nnz, c, r] for BSR, `to_block_patterns`' [nnz,
    entries] for patterns."""
    return (nnz, c, r) if cols == [list(range(c))] else (nnz, len(cols[0]) * r)


def read_rows(x, row, col, at, mi):  # x itself, row-major
    return x[row, col]


def read_panel(panel, row, col, at, mi):  # a tile's panel [tile, k, PANEL]: `at` is the tile, mi its row
    return panel[at, col, mi]


PANEL = 8  # activation rows a panel holds per input column: one AVX2 vector, and a tile's rows at most


def uses_panels(m: int, k: int, n: int, r: int, c: int, nnz: int, tile: Tile, threads: int) -> bool:
    """Whether the tiling along the outputs reads x through panels (`_along_outputs_panels`).

    Where a tile's rows do not fit L1, each block reads one x[m, k] per row from L2, and at low block
    density consecutive blocks of a block row are far apart in k, so each of the `rows` reads is a new
    cache line: about rows / (16 * density) lines a block for 16-float lines. A panel holds a tile's
    rows side by side per k (all in one line), so a block reads one line. Measured here at 3072->768
    (6 rows, AVX2), panels against the row-major tiling, kernel against kernel: 1.30x at 5 % block
    density, 1.15-1.25x at 10 %, 0.98x at 15 %, 0.81-0.85x at 20 %; 1.25x at 3072->3072 and 10 %.
    Hence: density at most 1/8. Threads share the tiles, so they must divide evenly enough (at most
    1/8 idle: 3 tiles on 2 threads measured 0.9x). AVX2 and AVX-512 (the panel's transposition is
    written for 8x8 squares of 8-lane vectors, which AVX-512 has too: there `choose_tile` takes 8
    rows of one 16-lane vector, 0.29 ms against 0.34-0.38 ms for 24 row-major rows at 3072 -> 768,
    10 % density); not on NEON, which keeps the row-major tiling."""
    tiles, parts = -(-m // min(tile.rows, m)), max(1, threads)
    idle = -(-tiles // parts) * parts - tiles
    density = nnz / ((n // r) * (k // c))
    return (panels_fit(k, tile, None) and tile.rows * k * 4 > L1_BUDGET and density <= PANEL_DENSITY
            and tiles >= parts and idle * 8 <= tiles)


def panels_fit(k: int, tile: Tile, masks: np.ndarray | None) -> bool:
    """Whether the panel tiling can run this tile at all (whatever it would cost)."""
    return (masks is None and tile.along == "outputs" and tile.lanes in (PANEL, 2 * PANEL) and tile.rows <= PANEL
            and k % PANEL == 0)


def _along_outputs_panels(m, k, n, r, c, nnz, tile, threads, cols, epilogue):
    """The tiling along the outputs with x read through panels: each thread owns a contiguous share
    of the register tiles (activation rows, not block rows, so that no two threads pack the same
    rows); per chunk of tiles it first transposes each tile's rows into a panel [k, PANEL] (8x8
    squares through registers: 0.04 ms for 128 x 3072 on this machine), then walks every block row
    for the chunk's tiles with the broadcasts read from the panels. Rows past m (the last tile) are
    copies of row m - 1 and are not stored."""
    rows, block_rows = tile.rows, n // r
    tiles = -(-m // rows)
    parts, tiles_each, per_chunk = panel_split(m, k, rows, threads)
    per_chunk = min(tile.chunk, tiles_each) if tile.chunk else per_chunk
    block_row_tile = block_row_macro(r, c, cols, epilogue)
    chunks = -(-tiles_each // per_chunk)

    def row(tile_index, a):  # the x row a panel takes for its row a: clamped into x
        return T.min(tile_index * rows + a, m - 1)

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), data: T.Buffer((nnz, c, r), "float32"),
               indices: T.Buffer((nnz,), "int32"), indptr: T.Buffer((block_rows + 1,), "int32"),
               b: T.Buffer((n,), "float32"), y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        for part in T.parallel(parts):
            panel = T.alloc_buffer((per_chunk, k, PANEL), "float32")
            for mc in range(chunks):
                for tl in range(T.max(0, T.min(T.min(per_chunk, tiles_each - mc * per_chunk),
                                               tiles - part * tiles_each - mc * per_chunk))):
                    for kb in range(k // PANEL):
                        square = T.alloc_buffer((PANEL, PANEL), "float32", scope="local")
                        for a in T.unroll(PANEL):
                            for e in T.vectorized(PANEL):
                                square[a, e] = T.if_then_else(
                                    a < rows, x[row(part * tiles_each + mc * per_chunk + tl, a), kb * PANEL + e],
                                    T.float32(0))
                        for e in T.unroll(PANEL):
                            panel[tl, kb * PANEL + e, T.ramp(0, 1, PANEL)] = transposed_column(square, e)
                for br in range(block_rows):
                    for tl in range(T.max(0, T.min(T.min(per_chunk, tiles_each - mc * per_chunk),
                                                   tiles - part * tiles_each - mc * per_chunk))):
                        block_row_tile(read_panel, panel, tl, data, indices, indptr, b, y, br,
                                       (part * tiles_each + mc * per_chunk + tl) * rows, rows, m)

    return kernel


def panel_split(m: int, k: int, rows: int, threads: int) -> tuple[int, int, int]:
    """(threads used, tiles per thread, tiles per chunk) of the panel tiling: a chunk's panels take
    at most L2_BUDGET, as the row-major chunks do."""
    tiles = -(-m // rows)
    parts = min(max(1, threads), tiles)
    each = -(-tiles // parts)
    return parts, each, max(1, min(each, L2_BUDGET // (k * PANEL * 4)))


def transposed_column(square: tirx.Buffer, e) -> tirx.PrimExpr:
    """Column e (an unrolled loop variable) of the 8 x 8 `square` as one 8-lane vector, through the
    shuffles of the classic AVX 8x8 transpose (unpack, shuffle, 128-bit permute: 3 shuffles a column,
    shared between columns once LLVM sees them all). A chain of Selects over e that folds to one
    expression once unrolling has fixed e; element-wise copies compiled to 48 scalar inserts (0.07 ms
    for 128 x 3072, against 0.04 ms this way)."""
    rows = [tirx.BufferLoad(square, [tirx.IntImm("int32", a), tirx.Ramp(0, 1, PANEL)]) for a in range(PANEL)]

    def shuffle(u, v, lanes):
        return tirx.Shuffle([u, v], [tirx.IntImm("int32", i) for i in lanes])

    def column(col: int) -> tirx.PrimExpr:
        pair, high = col % 4, col >= 4
        unpack = [0, 8, 1, 9, 4, 12, 5, 13] if pair < 2 else [2, 10, 3, 11, 6, 14, 7, 15]
        t = [shuffle(rows[2 * i], rows[2 * i + 1], unpack) for i in range(4)]
        pick = [0, 1, 8, 9, 4, 5, 12, 13] if pair % 2 == 0 else [2, 3, 10, 11, 6, 7, 14, 15]
        low_half, high_half = shuffle(t[0], t[1], pick), shuffle(t[2], t[3], pick)
        return shuffle(low_half, high_half, [4, 5, 6, 7, 12, 13, 14, 15] if high else [0, 1, 2, 3, 8, 9, 10, 11])

    result = column(PANEL - 1)
    for col in range(PANEL - 2, -1, -1):
        result = tirx.Select(e == col, column(col), result)
    return result


def _along_activations(m, k, n, r, c, nnz, tile, parts, share, masks=None, epilogue=None):
    rows, t, block_rows = tile.rows, tile.lanes, n // r
    taps = entry_positions(masks, r, c)
    npat, entries = len(taps), len(taps[0])
    data_shape = (nnz, c, r) if masks is None else (nnz, entries)

    def at(p, e, axis: int):  # entry e of pattern p: its input (axis 0) or output (axis 1) within the block
        return lookup([[pos[axis] for pos in pattern] for pattern in taps], p, e)

    @T.prim_func(private=True)
    def kernel(x: T.Buffer((m, k), "float32"), data: T.Buffer(data_shape, "float32"),
               indices: T.Buffer((nnz,), "int32"), offsets: T.Buffer((block_rows * npat + 1,), "int32"),
               b: T.Buffer((n,), "float32"), y: T.Buffer((m, n), "float32")):
        T.func_attr({"tirx.noalias": True, "tirx.is_scheduled": True})
        values = T.decl_buffer((nnz * entries,), "float32", data=data.data)
        xt = T.alloc_buffer((k, m), "float32")
        # Transposed by t x t squares through registers; each thread takes whole rows of x (reading
        # across rows of x per k would hit one L1 set when a row is a multiple of 4 KiB: 8x slower).
        for mb in T.parallel(m // t):
            for kb in range(k // t):
                square = T.alloc_buffer((t, t), "float32", scope="local")
                for a in T.unroll(t):
                    for e in T.vectorized(t):
                        square[a, e] = x[mb * t + a, kb * t + e]
                for e in T.unroll(t):
                    for a in T.vectorized(t):
                        xt[kb * t + e, mb * t + a] = square[a, e]
        for part in T.parallel(parts):
            for bri in range(share):
                for mo in range(m // rows):
                    acc = T.alloc_buffer((r, rows), "float32", scope="local")
                    for i in T.unroll(r):
                        for mi in T.vectorized(rows):
                            acc[i, mi] = T.float32(0)
                    for p in T.unroll(npat):
                        for q in range(offsets[(part * share + bri) * npat + p],
                                       offsets[(part * share + bri) * npat + p + 1]):
                            for e in T.unroll(entries):
                                for mi in T.vectorized(rows):
                                    acc[at(p, e, 1), mi] = acc[at(p, e, 1), mi] + (
                                        xt[indices[q] * c + at(p, e, 0), mo * rows + mi] * values[q * entries + e])
                    for mi in T.unroll(rows):
                        for i in T.unroll(r):
                            y[mo * rows + mi, (part * share + bri) * r + i] = apply(epilogue,
                                acc[i, mi] + b[(part * share + bri) * r + i])

    return kernel


def entry_positions(masks: np.ndarray | None, r: int, c: int) -> list[list[tuple[int, int]]]:
    """Per pattern, its kept entries as (input j, output i) within an r x c block, j-major: the order
    in which a pattern block's values are stored. No masks: one pattern keeping the whole block (BSR)."""
    if masks is None:
        return [[(j, i) for j in range(c) for i in range(r)]]
    taps = [[(j, i) for j in range(c) for i in range(r) if mask[i, j]] for mask in masks]
    if len({len(t) for t in taps}) != 1 or not taps[0]:
        raise ValueError("block patterns must all keep the same, nonzero number of entries")
    return taps


L1_TILE_DENSITY = 0.25  # see choose_tile
PANEL_DENSITY = 1 / 8  # see uses_panels
MIN_ACCUMULATORS = 8  # vector accumulators that cover the FMA latency (4 cycles x 2 pipes)
L1_BUDGET = 24 * 1024  # bytes of activations one register tile may take to stay in L1 (32 KiB here, 32-64 KiB on phones)
L2_BUDGET = 200 * 1024  # bytes of activations a chunk may take (half of a phone's or this machine's L2)


def chunk_tiles(m: int, k: int, rows: int) -> int:
    """Register tiles of `rows` activation rows per chunk (k floats a row). One, where a tile fits
    L1_BUDGET: its activations then stay in L1 over every block row, which measured 1.2x faster here
    at 90 % sparsity for K = 768 and 1024, and the same at 50-80 %. Otherwise as many as fit L2_BUDGET,
    at least one, at most all of m's whole tiles. The last chunk may hold fewer."""
    if rows * k * 4 <= L1_BUDGET:
        return 1
    return max(1, min(m // rows, L2_BUDGET // (rows * k * 4)))


def to_bsr(wt: np.ndarray, r: int, c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wᵀ [N, K] -> (data [nnz, c, r], indices [nnz], indptr [N/r + 1]); all-zero blocks dropped.

    A matrix without any nonzero block gets one explicit zero block, so that no array is empty."""
    n, k = wt.shape
    blocks = wt.reshape(n // r, r, k // c, c).transpose(0, 2, 3, 1)  # [block row, block col, c, r]
    nonzero = np.abs(blocks).sum(axis=(2, 3)) != 0
    if not nonzero.any():
        nonzero[0, 0] = True
    rows_idx, cols_idx = np.nonzero(nonzero)
    data = np.ascontiguousarray(blocks[rows_idx, cols_idx], dtype=np.float32)
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int32)
    return data, cols_idx.astype(np.int32), indptr


def to_block_patterns(wt: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wᵀ [N, K] whose r x c blocks each lie inside one of `masks` [P, r, c] -> (values [nnz, entries],
    indices [nnz] (block column), offsets [N/r * P + 1]): per block row, its blocks grouped by pattern
    (filter reordering: one unrolled code path per pattern), each block's kept entries only, in
    `entry_positions` order. All-zero blocks are dropped; a block that fits no mask is a ValueError."""
    npat, r, c = masks.shape
    n, k = wt.shape
    blocks = wt.reshape(n // r, r, k // c, c).transpose(0, 2, 1, 3)  # [block row, block col, r, c]
    fit = block_fits(wt, masks)
    nonzero = np.abs(blocks).sum(axis=(2, 3)) != 0
    if (nonzero & ~fit.any(axis=2)).any():
        br, bc = np.argwhere(nonzero & ~fit.any(axis=2))[0]
        raise ValueError(f"block ({br}, {bc}) of Wᵀ fits none of the {npat} patterns")
    if not nonzero.any():
        nonzero[0, 0] = True
    ids = fit.argmax(axis=2)
    rows_idx, cols_idx = np.nonzero(nonzero)
    pats = ids[rows_idx, cols_idx]
    order = np.lexsort((cols_idx, pats, rows_idx))
    rows_idx, cols_idx, pats = rows_idx[order], cols_idx[order], pats[order]
    taps = np.array(entry_positions(masks, r, c))  # [P, entries, (j, i)]
    values = blocks[rows_idx[:, None], cols_idx[:, None], taps[pats, :, 1], taps[pats, :, 0]]
    counts = np.zeros((n // r) * npat, np.int64)
    np.add.at(counts, rows_idx * npat + pats, 1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return np.ascontiguousarray(values, dtype=np.float32), cols_idx.astype(np.int32), offsets
