"""The register block of a target's matmul microkernel: vector lanes, rows and vectors per row.

The accumulators are rows x vectors vector registers; the B (weight) row of `vectors` loads and one
broadcast of A per row feed rows x vectors FMAs per k step. The block is chosen to fill most of the
register file while leaving room for the operands:
- AVX-512: 32 zmm: 8 x 3 = 24 accumulators (reached parity with ONNX Runtime on an AVX-512 machine);
  the direct conv takes 7 pixels (`for_conv`);
- AVX2: 16 ymm: 4 x 3 = 12 accumulators (measured here on Zen 3: 6 x 2 was equal, 8 x 1 1.5x slower);
- NEON: 32 q registers: 8 x 3 = 24 accumulators of 4 lanes; the direct conv takes 4 rows (`for_conv`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Microkernel:
    lanes: int  # fp32 elements per vector register
    rows: int  # rows of A (activations) per register block
    vectors: int  # vectors of B columns per register block
    conv_rows: int = 0  # output pixels per conv register block (0: `rows`); see `for_conv`

    @property
    def cols(self) -> int:
        """Columns of B per register block: the packed weight's panel width."""
        return self.lanes * self.vectors

    def for_conv(self) -> Microkernel:
        """The block the direct conv uses. On NEON the 3 x 3 taps share input values across rows (a
        pixel is one tap's input for three rows): LLVM keeps them in registers, which beside 8 rows
        of accumulators spilled q registers in the hot loop (read in its assembly: 6 and 7 rows spill too, 4 do not).
        On AVX-512, 7 pixels: the common image widths (224 down to 7) are multiples of 7, so every
        stage keeps the row form, and at 56 x 56 x 128 the 7-pixel block ran 1.2-1.4x faster than
        the 8-pixel one (the hot loop is the same apart from the row count)."""
        return replace(self, rows=self.conv_rows or self.rows, conv_rows=0)

    def conv_cols(self, channels: int) -> int:
        """Output channels per conv register block: the widest block (at most `cols`) that divides
        `channels`, so that no channel padding is computed; `cols` when none does."""
        for vectors in range(self.vectors, 0, -1):
            if channels % (vectors * self.lanes) == 0:
                return vectors * self.lanes
        return self.cols

    def rows_for(self, m: int) -> int:
        """The block's row count for a matrix of `m` rows: `rows` or the largest divisor of m below it,
        so that no row tail (and its predicate in the inner loop) is needed where avoidable."""
        return dividing_rows(m, self.rows) or min(self.rows, m)


def dividing_rows(m: int, rows: int) -> int | None:
    """`rows`, or the largest count above rows / 2 that divides `m` (7 for 28, 14 or 7 when rows is
    8); None when there is none."""
    return next((r for r in range(rows, 0, -1) if m % r == 0 and (r == rows or 2 * r > rows)), None)


def thread_parts(units: int, threads: int) -> int:
    """How many contiguous shares `units` (block rows, filters) split into for `threads` cores: the
    most, up to `threads`, that divide `units` evenly, so that every thread gets the same work."""
    return max(d for d in range(1, max(1, threads) + 1) if units % d == 0)


def microkernel(target) -> Microkernel:
    """The microkernel for a TVM LLVM target (x86 with or without AVX-512, or aarch64 NEON)."""
    from tvm.target import codegen

    triple = str(target.attrs.get("mtriple", "")) or codegen.llvm_get_system_triple()
    if triple.startswith(("aarch64", "arm")):
        return Microkernel(lanes=4, rows=8, vectors=3, conv_rows=4)
    if codegen.llvm_cpu_has_features("avx512f", target):
        return Microkernel(lanes=16, rows=8, vectors=3, conv_rows=7)
    if codegen.llvm_cpu_has_features("avx2", target) or codegen.llvm_cpu_has_features("avx", target):
        return Microkernel(lanes=8, rows=4, vectors=3)
    return Microkernel(lanes=4, rows=4, vectors=2)
