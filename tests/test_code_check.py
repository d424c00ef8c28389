"""Every CPU schedule rule and sparse kernel, built for AVX2, AVX-512 and NEON whatever this machine
is, with its hot loop read from the assembly: full-width vector FMAs, the designed register block
in registers, no per-lane moves or gathers, no spills (see gearshift.codecheck)."""

from __future__ import annotations

import pytest

from gearshift.schedules.asm import hot_loop
from gearshift.codecheck import CASES, ISAS, problems, run


@pytest.mark.parametrize("isa", list(ISAS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hot_loop(case, isa):
    result = run(case, isa)
    assert result.ok, f"{case.name} on {isa}: {'; '.join(result.problems)}"


X86_TILE_IN_MEMORY = """
	.type	kernel,@function
kernel:
.LBB0_1:
	vmovss	(%rax), %xmm1
	vinsertps	$16, 4(%rax), %xmm1, %xmm1
	vfmadd231ps	(%rdx), %zmm2, %zmm1
	vextractps	$1, %xmm1, 4(%rax)
	vmovups	%zmm3, 64(%rsp)
	addq	$4, %rax
	cmpq	%rcx, %rax
	jne	.LBB0_1
	retq
"""

ARM_GOOD = """
	.type	kernel,%function
kernel:
.LBB0_1:
	ld1r	{ v2.4s }, [x1], #4
	ldp	q0, q1, [x0], #32
	fmla	v16.4s, v0.4s, v2.4s
	fmla	v17.4s, v1.4s, v2.4s
	subs	x2, x2, #1
	b.ne	.LBB0_1
	ret
"""


def test_reader_sees_a_tile_left_in_memory():
    """The checks can fail: a hand-written loop with the collapse's signature is refused."""
    loop = hot_loop(X86_TILE_IN_MEMORY)
    assert (loop.fmas, loop.lane_ops, loop.stack, loop.accumulators) == (1, 2, 1, 1)
    found = problems(loop, "avx512", 24)
    assert any("per-lane" in p for p in found) and any("accumulator" in p for p in found)
    assert any("expected 256" in p for p in problems(loop, "avx2", 1))


def test_reader_on_neon():
    loop = hot_loop(ARM_GOOD)
    assert (loop.fmas, loop.fma_bits, loop.accumulators, loop.loads, loop.stack) == (2, (128,), 2, 2, 0)
    assert problems(loop, "neon", 2) == []
