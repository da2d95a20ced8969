"""Oxygen: reaction-diffusion relaxed to quasi-steady state every step.

Oxygen equilibrates in seconds while cells act over hours, so each step solves

    0 = D ∇²p − λ(kind, organ) p,        p = p_vessel on perfused vessel voxels,

(an unperfused vessel carries no blood: it only lets oxygen diffuse, like matrix)

with zero-flux lattice faces.  On the 7-point stencil with voxel edge h this is

    p_i = a_i · Σ_{6 neighbours} p_j,    a_i = 1 / (6 + λ_i h² / D),

(a face neighbour outside the lattice mirrors p_i).  The coefficients a are
computed once on the host in float64 and rounded to float32.  The solver is
red-black successive over-relaxation, warm-started from the previous step:

    p_i ← p_i + ω (a_i Σ p_j − p_i),

red voxels ((x + y + z_global) even) first, then black, so every update is a
gather and the result does not depend on the thread count.  Sweeps stop when the
largest correction |a_i Σ p_j − p_i| of a sweep is at most the scenario's
tolerance (mmHg), or at `max_sweeps`.  The six neighbours are summed in the fixed
order −x, +x, −y, +y, −z, +z.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .cuda import slab_args
from .lattice import VESSEL
from .twin import kernel


@numba.njit(inline="always", cache=True)
def neighbour_sum(p, z, y, x, nz, ny, nx):
    """Σ of the six face neighbours in the fixed order −x, +x, −y, +y, −z, +z;
    a neighbour beyond a lattice face mirrors the voxel itself (zero flux)."""
    c = p[z, y, x]
    s = p[z, y, x - 1] if x > 0 else c
    s = s + (p[z, y, x + 1] if x < nx - 1 else c)
    s = s + (p[z, y - 1, x] if y > 0 else c)
    s = s + (p[z, y + 1, x] if y < ny - 1 else c)
    s = s + (p[z - 1, y, x] if z > 0 else c)
    s = s + (p[z + 1, y, x] if z < nz - 1 else c)
    return s


@numba.njit(parallel=True, cache=True)
def _relax_colour_numba(p, kind, organ, perfused, coeff, vessel_mmHg, omega, colour, z0,
                        plane_max):
    nz, ny, nx = p.shape
    for z in prange(nz):
        worst = np.float32(0.0)
        for y in range(ny):
            x_first = (colour + z0 + z + y) & 1
            for x in range(x_first, nx, 2):
                k = kind[z, y, x]
                if k == VESSEL and perfused[z, y, x]:
                    p[z, y, x] = vessel_mmHg
                    continue
                old = p[z, y, x]
                target = coeff[k, organ[z, y, x]] * neighbour_sum(p, z, y, x, nz, ny, nx)
                correction = target - old
                p[z, y, x] = old + omega * correction
                worst = max(worst, abs(correction))
        plane_max[z] = worst


@kernel(reads=("oxygen", "kind", "organ", "perfused"), writes=("oxygen",))
def relax_oxygen(lattice, rules, step):
    """Relax the oxygen field to quasi-steady state; returns (sweeps, residual_mmHg)."""


@relax_oxygen.on("numba")
def _relax_oxygen_numba(lattice, rules, step):
    residual = np.float32(np.inf)
    sweeps = 0
    while sweeps < rules.o2_max_sweeps and not residual <= rules.o2_tolerance_mmHg:
        worst = np.float32(0.0)
        for colour in (0, 1):
            _relax_colour_numba(lattice.oxygen, lattice.kind, lattice.organ, lattice.perfused,
                                rules.o2_coeff, rules.vessel_mmHg, rules.o2_omega, colour,
                                lattice.z0, lattice.plane_max)
            worst = max(worst, lattice.plane_max.max())
        residual = worst
        sweeps += 1
    return sweeps, float(residual)


@relax_oxygen.cuda
def _relax_oxygen_cuda(launch, lattice, rules, step):
    residual_bits = launch.zeros(1, np.uint32)
    coeff = launch.table(rules.o2_coeff)
    residual = np.float32(np.inf)
    sweeps = 0
    while sweeps < rules.o2_max_sweeps and not residual <= rules.o2_tolerance_mmHg:
        residual_bits[...] = 0
        for colour in (0, 1):
            launch.launch("oxygen.cu", "relax_colour", lattice.voxels,
                          (lattice.oxygen, lattice.kind, lattice.organ, lattice.perfused, coeff,
                           np.int32(rules.o2_coeff.shape[1]), rules.vessel_mmHg, rules.o2_omega,
                           np.int32(colour), residual_bits, *slab_args(lattice, rules)))
        residual = launch.to_host(residual_bits).view(np.float32)[0]
        sweeps += 1
    return sweeps, float(residual)
