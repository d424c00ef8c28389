"""Compile-time tables inside TIR kernels.

A pattern's entry positions must be constants in the generated code (no index load, no branch). The
kernels loop over patterns and entries with unrolled loops and read positions from `lookup`: a chain
of Selects over the loop variables, which folds to a single constant once unrolling has fixed them.
"""

from __future__ import annotations

from tvm import tirx


def lookup(table: list[list[int]], row, col) -> tirx.PrimExpr:
    """table[row][col] as an int32 expression of the (unrolled) loop variables row and col."""
    def along(values: list[int]):
        e = tirx.IntImm("int32", values[-1])
        for i in range(len(values) - 2, -1, -1):
            e = tirx.Select(col == i, tirx.IntImm("int32", values[i]), e)
        return e

    e = along(table[-1])
    for i in range(len(table) - 2, -1, -1):
        e = tirx.Select(row == i, along(table[i]), e)
    return e
