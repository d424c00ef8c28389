"""Pattern math, numpy only: 3x3 kernel patterns (PatDNN) and patterns of dense-layer blocks (RT3).

A pattern keeps 4 of a 3x3 kernel's 9 entries, the centre always among them (56 candidates). A
layer uses a small library of K patterns: every kernel takes the library pattern that keeps most of
its L2 energy. Connectivity pruning then removes whole kernels (the weakest by norm after the
pattern mask). With 4-of-9 patterns and 72 % of the kernels removed, a layer keeps 0.28 x 4/9 = 12 %
of its weights (PatDNN's VGG-16 rate).

Shared by the training side (`gearshift.frontend.patterns.PatternPruner`), the compiler's passes
and the kernels' packing, so that all three project weights the same way.
"""

from __future__ import annotations

import itertools

import numpy as np


def candidates() -> np.ndarray:
    """The 56 4-of-9 masks that keep the centre, [56, 3, 3] bool, in a fixed order."""
    cells = [c for c in range(9) if c != 4]
    masks = np.zeros((56, 9), bool)
    for i, kept in enumerate(itertools.combinations(cells, 3)):
        masks[i, [4, *kept]] = True
    return masks.reshape(56, 3, 3)


def _energy(units: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Kept L2 energy of every unit (kernel or block, flattened: [A, B, S]) under every mask [P, S]: [A, B, P]."""
    return np.einsum("abs,ps->abp", units.astype(np.float64) ** 2, masks.astype(np.float64))


def _kernels(w: np.ndarray) -> np.ndarray:
    return w.reshape(*w.shape[:2], 9)


def library(w: np.ndarray, k: int) -> np.ndarray:
    """The k candidate patterns that fit most kernels of w [O, I, 3, 3] best (ties: candidate order)."""
    every = candidates()
    energy = _energy(_kernels(w), every.reshape(len(every), 9))
    best = energy.argmax(axis=2)[energy.max(axis=2) > 0]  # all-zero kernels vote for no pattern
    counts = np.bincount(best, minlength=len(every))
    order = sorted(range(len(every)), key=lambda p: (-counts[p], p))
    return every[sorted(order[:k])]


def _fits(units: np.ndarray, masks: np.ndarray) -> np.ndarray:
    support = units[:, :, None, :] != 0
    return ~(support & ~masks[None, None]).any(axis=3)


def fits(w: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each kernel's nonzeros lie inside each mask: [O, I, len(masks)] bool (a zero kernel fits all)."""
    return _fits(_kernels(w), masks.reshape(len(masks), 9))


def assign(w: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each kernel's pattern: the index into `masks` keeping most of its energy, [O, I]."""
    return _energy(_kernels(w), masks.reshape(len(masks), 9)).argmax(axis=2)


def _project(units: np.ndarray, masks: np.ndarray, removed: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not 0.0 <= removed < 1.0:
        raise ValueError(f"connectivity (fraction of kernels or blocks removed) must be in [0, 1), got {removed}")
    ids = _energy(units, masks).argmax(axis=2)
    out = units * masks[ids]
    norms = np.sqrt((out.astype(np.float64) ** 2).sum(axis=2))
    keep = int(round(norms.size * (1.0 - removed)))
    kept = np.zeros(norms.size, bool)
    kept[np.argsort(-norms, axis=None, kind="stable")[:keep]] = True
    kept = kept.reshape(norms.shape)
    return (out * kept[:, :, None]).astype(units.dtype), ids, kept


def project(w: np.ndarray, masks: np.ndarray, connectivity: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest weight (in L2, greedily) with every kernel in a library pattern and the
    `connectivity` fraction of kernels removed. Returns (weight, pattern ids [O, I], kept [O, I])."""
    out, ids, kept = _project(_kernels(w), masks.reshape(len(masks), 9), connectivity)
    return out.reshape(w.shape), ids, kept


# -- block patterns for dense layers (RT3) -------------------------------------------------------
# Wᵀ [N outputs, K inputs] is cut into r x c blocks (r outputs x c inputs, as for BSR); a pattern is
# a mask over a block keeping `entries` of its r*c weights. Candidates are too many to enumerate
# (12,870 masks keep 8 of 16), so the library is found by Lloyd iterations: each block takes the mask
# keeping most of its energy, each mask becomes the top entries of its blocks' summed energy.

def _blocks(wt: np.ndarray, r: int, c: int) -> np.ndarray:
    n, k = wt.shape
    if n % r or k % c:
        raise ValueError(f"weight [N={n}, K={k}] does not divide into {r}x{c} blocks")
    return wt.reshape(n // r, r, k // c, c).transpose(0, 2, 1, 3).reshape(n // r, k // c, r * c)


def _unblocks(units: np.ndarray, r: int, c: int) -> np.ndarray:
    br, bc, _ = units.shape
    return units.reshape(br, bc, r, c).transpose(0, 2, 1, 3).reshape(br * r, bc * c)


def _top(energy: np.ndarray, entries: int) -> np.ndarray:
    """Masks keeping the `entries` largest of each row of `energy` [..., S] (ties: lowest index)."""
    order = np.argsort(-energy, axis=-1, kind="stable")[..., :entries]
    masks = np.zeros(energy.shape, bool)
    np.put_along_axis(masks, order, True, axis=-1)
    return masks


def block_library(wt: np.ndarray, r: int, c: int, entries: int, k: int, iterations: int = 10) -> np.ndarray:
    """k masks [k, r, c] over the r x c blocks of Wᵀ, each keeping `entries` weights, chosen to keep
    most energy: started from the most frequent best masks, refined by Lloyd iterations."""
    if not 1 <= entries <= r * c:
        raise ValueError(f"a {r}x{c} block pattern keeps between 1 and {r * c} entries, got {entries}")
    units = _blocks(wt, r, c).reshape(-1, r * c).astype(np.float64) ** 2
    return _library(units, entries, k, iterations).reshape(-1, r, c)


def column_library(wt: np.ndarray, r: int, c: int, entries: int, k: int, iterations: int = 10) -> np.ndarray:
    """As `block_library`, but every mask keeps whole block columns (`entries` / r of the c): the
    patterns a kernel vectorised along a block's r outputs runs, one vector per kept column."""
    if entries % r or not 1 <= entries // r <= c:
        raise ValueError(f"a {r}x{c} column pattern keeps a whole number of its {c} columns of {r}, got {entries} entries")
    columns = (_blocks(wt, r, c).reshape(-1, r, c).astype(np.float64) ** 2).sum(axis=1)  # energy per block column
    kept = _library(columns, entries // r, k, iterations)
    return np.repeat(kept[:, None, :], r, axis=1)


def dense_library(wt: np.ndarray, r: int, c: int, entries: int, k: int) -> np.ndarray:
    """The pattern library of a dense layer: column patterns for tall blocks (r >= 8 keeping whole
    columns, e.g. 16x4 keeping 32: they run on the BSR kernel along the outputs, 0.94-1.19x the time
    of BSR 16x1 at equal density here), any masks otherwise (e.g. 4x4 keeping 8, which keeps more of
    the weights' energy: 1.5-2.3x BSR 16x1's time)."""
    if r >= COLUMN_ROWS and entries % r == 0:
        return column_library(wt, r, c, entries, k)
    return block_library(wt, r, c, entries, k)


COLUMN_ROWS = 8  # blocks at least this tall take column patterns (one AVX2/NEON-pair vector per column)


def _library(units: np.ndarray, entries: int, k: int, iterations: int) -> np.ndarray:
    """k masks [k, S] over units [U, S] of energy, each keeping `entries`, by the Lloyd iterations above."""
    size = units.shape[1]
    units = units[units.sum(axis=1) > 0]  # all-zero blocks vote for no pattern
    if not len(units):
        units = np.ones((1, size))
    best, counts = np.unique(_top(units, entries), axis=0, return_counts=True)
    masks = best[np.argsort(-counts, kind="stable")[:k]]
    for extra in _top(np.random.default_rng(0).random((4 * k, size)), entries):  # too few distinct: add others
        if len(masks) < k and not (masks == extra).all(axis=1).any():
            masks = np.vstack([masks, extra])
    for _ in range(iterations):
        ids = (units @ masks.T).argmax(axis=1)
        sums = np.stack([units[ids == p].sum(axis=0) if (ids == p).any() else masks[p] * 1.0 for p in range(len(masks))])
        new = _top(sums, entries)
        if (new == masks).all():
            break
        masks = new
    return masks[np.lexsort(masks.T[::-1])]  # a canonical order, so equal libraries compare equal


def block_fits(wt: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether each r x c block's nonzeros lie inside each mask: [N/r, K/c, len(masks)] bool."""
    p, r, c = masks.shape
    return _fits(_blocks(wt, r, c), masks.reshape(p, r * c))


def block_project(wt: np.ndarray, masks: np.ndarray, removed: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The nearest Wᵀ (greedily, in L2) with every r x c block in a library pattern and the `removed`
    fraction of blocks zeroed (block pruning). Returns (Wᵀ, pattern ids, kept), per block."""
    p, r, c = masks.shape
    out, ids, kept = _project(_blocks(wt, r, c), masks.reshape(p, r * c), removed)
    return _unblocks(out, r, c), ids, kept


def block_patterns_of(wt: np.ndarray, r: int, c: int, most: int = 16) -> np.ndarray | None:
    """The block patterns Wᵀ already has: the distinct supports of its nonzero r x c blocks, if they
    are at most `most`, all keep the same number of weights, and leave some of the block out."""
    n, k = wt.shape
    support = (wt.reshape(n // r, r, k // c, c).transpose(0, 2, 1, 3).reshape(-1, r * c) != 0)
    support = support[support.any(axis=1)]
    if not len(support):
        return None
    masks = np.unique(support, axis=0)
    sizes = set(masks.sum(axis=1).tolist())
    if len(masks) > most or len(sizes) != 1 or sizes == {r * c}:
        return None
    return masks.reshape(len(masks), r, c)
