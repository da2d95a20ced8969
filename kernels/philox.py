"""Philox4x32-10 counter-based random numbers (Salmon et al. 2011, Random123).

Every random number in a kernel is a pure function of

    key     = (seed low 32 bits, seed high 32 bits)
    counter = (global voxel index low 32 bits, step, stream | lattice << 8,
               global voxel index high 32 bits)

so a voxel draws the same numbers whatever thread, block, rank or backend
computes it, and a restarted run draws what an uninterrupted one would.

Numba promotes uint32 arithmetic to 64 bits, so every word is held in a
uint64 and masked back to 32 bits after each add or multiply.  The CUDA twin
(`philox.cuh`) uses native uint32 with `__umulhi`.
"""
from __future__ import annotations

import math

import numba
import numpy as np

MASK32 = np.uint64(0xFFFFFFFF)
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_SHIFT32 = np.uint64(32)

# Stream ids are declared with the process that draws from them (kernels/process.py):
# one id per purpose, unique across processes, so no two processes share a draw.


@numba.njit(inline="always", cache=True)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Ten Philox rounds on a 4x32-bit counter with a 2x32-bit key.

    Each round: (c0, c1, c2, c3) <- (hi(M1*c2) ^ c1 ^ k0, lo(M1*c2),
    hi(M0*c0) ^ c3 ^ k1, lo(M0*c0)); then the key is bumped by the Weyl
    constants (W0, W1).  All arguments and results are uint64 holding 32 bits.
    """
    c0 = np.uint64(c0) & MASK32
    c1 = np.uint64(c1) & MASK32
    c2 = np.uint64(c2) & MASK32
    c3 = np.uint64(c3) & MASK32
    k0 = np.uint64(k0) & MASK32
    k1 = np.uint64(k1) & MASK32
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = (p1 >> _SHIFT32) ^ c1 ^ k0
        n2 = (p0 >> _SHIFT32) ^ c3 ^ k1
        c0 = n0 & MASK32
        c1 = p1 & MASK32
        c2 = n2 & MASK32
        c3 = p0 & MASK32
        k0 = (k0 + _W0) & MASK32
        k1 = (k1 + _W1) & MASK32
    return c0, c1, c2, c3


@numba.njit(inline="always", cache=True)
def voxel_draw(gidx, step, stream, lattice, k0, k1):
    """The four 32-bit words drawn by voxel `gidx` for `stream` at `step`."""
    g = np.uint64(gidx)
    c2 = np.uint64(stream) | (np.uint64(lattice) << np.uint64(8))
    return philox4x32(g & MASK32, np.uint64(step), c2, g >> _SHIFT32, k0, k1)


@numba.njit(inline="always", cache=True)
def choose(word, n):
    """Pick one of n options with a 32-bit word: (word * n) >> 32."""
    return np.int64((np.uint64(word) * np.uint64(n)) >> _SHIFT32)


def seed_key(seed: int) -> tuple[int, int]:
    """Split a 64-bit seed into the Philox key words (low, high)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed & 0xFFFFFFFF, seed >> 32


def probability_threshold(p: float) -> int:
    """uint32 threshold t with P(r < t) = p for uniform 32-bit r (float64 on host).

    p >= 1 saturates at 2**32 - 1 (probability 1 - 2**-32)."""
    p = float(p)
    if not p > 0.0:
        return 0
    return int(min(round(p * 4294967296.0), 4294967295))


_expm1 = np.vectorize(math.expm1, otypes=[np.float64])
_thresholds = np.vectorize(probability_threshold, otypes=[np.uint32])


def step_probability(rate_per_h, step_h):
    """P = 1 − exp(−k Δt): the chance that an event of constant rate k (1/h) happens
    within one step of Δt hours (float64, `math.expm1`, elementwise over arrays)."""
    p = -_expm1(-np.asarray(rate_per_h, dtype=np.float64) * step_h)
    return p[()] if p.ndim == 0 else p


def rate_threshold(rate_per_h, step_h):
    """`step_probability` as uint32 threshold(s) (`probability_threshold`, elementwise)."""
    t = _thresholds(step_probability(rate_per_h, step_h))
    return t[()] if t.ndim == 0 else t


def philox4x32_numpy(counter, key):
    """Vectorised host twin of `philox4x32` for arrays of counters.

    counter: 4 arrays (or scalars) of uint32 values; key: 2 ints.
    Returns four uint32 arrays.  Used to build initial tissue and in tests.
    """
    c = [np.asarray(x, dtype=np.uint64) & MASK32 for x in counter]
    c = np.broadcast_arrays(*c)
    c0, c1, c2, c3 = (x.copy() for x in c)
    k0 = np.uint64(key[0]) & MASK32
    k1 = np.uint64(key[1]) & MASK32
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        n0 = (p1 >> _SHIFT32) ^ c1 ^ k0
        n2 = (p0 >> _SHIFT32) ^ c3 ^ k1
        c0, c1, c2, c3 = n0 & MASK32, p1 & MASK32, n2 & MASK32, p0 & MASK32
        k0 = (k0 + _W0) & MASK32
        k1 = (k1 + _W1) & MASK32
    return tuple(x.astype(np.uint32) for x in (c0, c1, c2, c3))


def voxel_draw_numpy(gidx, step, stream, lattice, key):
    """Host twin of `voxel_draw` for an array of global voxel indices."""
    g = np.asarray(gidx, dtype=np.uint64)
    c2 = np.uint64(stream) | (np.uint64(lattice) << np.uint64(8))
    return philox4x32_numpy((g & MASK32, np.uint64(step), c2, g >> _SHIFT32), key)
