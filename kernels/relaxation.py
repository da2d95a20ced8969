"""Quasi-steady relaxation shared by every diffusing field (oxygen, VEGF).

A field f obeys 0 = D ∇²f − λ_i f + S_i; on the 7-point stencil with voxel edge h

    f_i = a_i (Σ_{6 neighbours} f_j + s_i),   a_i = 1 / (6 + λ_i h² / D),  s_i = S_i h² / D,

with zero-flux lattice faces (a neighbour beyond a face mirrors f_i).  Red-black
successive over-relaxation, f_i ← f_i + ω (a_i (Σ f_j + s_i) − f_i), updates the
voxels with (x + y + z_global) even, then odd, so each update is a gather; the six
neighbours are summed in the fixed order −x, +x, −y, +y, −z, +z.  Sweeps stop when
the largest correction of a sweep is at most the field's tolerance, or at the sweep
limit.  `a` and `s` are computed on the host in float64 and rounded to float32.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", cache=True)
def neighbour_sum(f, z, y, x, nz, ny, nx):
    """Σ of the six face neighbours in the order −x, +x, −y, +y, −z, +z; a neighbour
    beyond a lattice face mirrors the voxel itself (zero flux)."""
    c = f[z, y, x]
    s = f[z, y, x - 1] if x > 0 else c
    s = s + (f[z, y, x + 1] if x < nx - 1 else c)
    s = s + (f[z, y - 1, x] if y > 0 else c)
    s = s + (f[z, y + 1, x] if y < ny - 1 else c)
    s = s + (f[z - 1, y, x] if z > 0 else c)
    s = s + (f[z + 1, y, x] if z < nz - 1 else c)
    return s


@numba.njit(inline="always", cache=True)
def over_relax(f, z, y, x, target, omega):
    """f ← f + ω (target − f); returns |target − f| (the correction)."""
    old = f[z, y, x]
    correction = target - old
    f[z, y, x] = old + omega * correction
    return abs(correction)


def relax_until(sweep, tolerance, max_sweeps):
    """Call `sweep()` (both colours; returns its largest correction) until the largest
    correction is at most `tolerance` or `max_sweeps` is reached: (sweeps, residual)."""
    residual = np.float32(np.inf)
    sweeps = 0
    while sweeps < max_sweeps and not residual <= tolerance:
        residual = sweep()
        sweeps += 1
    return sweeps, float(residual)
