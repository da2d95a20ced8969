"""The propose → resolve primitive shared by every pass that moves or places a cell.

* A proposer collects the face neighbours it may use as a 6-bit mask (bit d−1 for
  direction d) and picks one uniformly with a Philox word: the k-th set bit,
  k = (word · popcount) >> 32.
* A contested voxel gathers the neighbours whose proposal (a direction stored in
  `intent` at bit offset `shift`) points at it, and keeps the one with the
  highest (Philox priority word 1 of the proposer's draw, global index).

No atomics: every voxel writes only its own byte, so the outcome does not depend on
the order in which threads run.
"""
from __future__ import annotations

import numba
import numpy as np

from .lattice import LOW3, global_index, neighbour, opposite
from .philox import choose, voxel_draw


@numba.njit(inline="always", cache=True)
def pick_direction(mask, word):
    """Direction (1..6) of the k-th set bit of `mask`, k drawn from `word`; 0 if none."""
    n = 0
    for d in range(1, 7):
        n += (mask >> (d - 1)) & 1
    if n == 0:
        return 0
    k = choose(word, n)
    for d in range(1, 7):
        if (mask >> (d - 1)) & 1:
            if k == 0:
                return d
            k -= 1
    return 0


@numba.njit(inline="always", cache=True)
def strongest_claimant(intent, shift, z, y, x, nz, ny, nx, step, stream, z0, ny_global,
                       nx_global, lattice_id, k0, k1):
    """Direction (1..6) of the winning proposer aimed at (z, y, x); 0 if none."""
    best = 0
    best_key = np.uint64(0)
    best_g = np.int64(-1)
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if not inside or ((intent[zz, yy, xx] >> shift) & LOW3) != opposite(d):
            continue
        g = global_index(zz, yy, xx, z0, ny_global, nx_global)
        key = voxel_draw(g, step, stream, lattice_id, k0, k1)[1]
        if best == 0 or key > best_key or (key == best_key and g > best_g):
            best, best_key, best_g = d, key, g
    return best
