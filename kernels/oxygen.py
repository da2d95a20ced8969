"""Oxygen: reaction-diffusion relaxed to quasi-steady state every step.

Oxygen equilibrates in seconds while cells act over hours, so each step solves

    0 = D ∇²p − λ(kind, organ) p,        p = p_vessel on perfused vessel voxels,

(an unperfused vessel carries no blood: it only lets oxygen diffuse, like matrix)
with the shared red-black SOR of `relaxation` (no source term), warm-started from
the previous step, to the scenario's tolerance in mmHg.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .cuda import slab_args
from .lattice import VESSEL
from .relaxation import neighbour_sum, over_relax, relax_until
from .twin import kernel


@numba.njit(parallel=True, cache=True)
def _relax_colour_numba(p, kind, organ, perfused, coeff, vessel_mmHg, omega, colour, z0,
                        plane_max):
    nz, ny, nx = p.shape
    for z in prange(nz):
        worst = np.float32(0.0)
        for y in range(ny):
            for x in range((colour + z0 + z + y) & 1, nx, 2):
                k = kind[z, y, x]
                if k == VESSEL and perfused[z, y, x]:
                    p[z, y, x] = vessel_mmHg
                    continue
                target = coeff[k, organ[z, y, x]] * neighbour_sum(p, z, y, x, nz, ny, nx)
                worst = max(worst, over_relax(p, z, y, x, target, omega))
        plane_max[z] = worst


@kernel(reads=("oxygen", "kind", "organ", "perfused"), writes=("oxygen",))
def relax_oxygen(lattice, rules, step):
    """Relax the oxygen field to quasi-steady state; returns (sweeps, residual_mmHg)."""


@relax_oxygen.on("numba")
def _relax_oxygen_numba(lattice, rules, step):
    def sweep():
        worst = np.float32(0.0)
        for colour in (0, 1):
            _relax_colour_numba(lattice.oxygen, lattice.kind, lattice.organ, lattice.perfused,
                                rules.o2_coeff, rules.vessel_mmHg, rules.o2_omega, colour,
                                lattice.z0, lattice.plane_max)
            worst = max(worst, lattice.plane_max.max())
        return worst
    return relax_until(sweep, rules.o2_tolerance_mmHg, rules.o2_max_sweeps)


@relax_oxygen.cuda
def _relax_oxygen_cuda(launch, lattice, rules, step):
    residual_bits = launch.zeros(1, np.uint32)
    coeff = launch.table(rules.o2_coeff)

    def sweep():
        residual_bits[...] = 0
        for colour in (0, 1):
            launch.launch("oxygen.cu", "relax_colour", lattice.voxels,
                          (lattice.oxygen, lattice.kind, lattice.organ, lattice.perfused, coeff,
                           np.int32(rules.o2_coeff.shape[1]), rules.vessel_mmHg, rules.o2_omega,
                           np.int32(colour), residual_bits, *slab_args(lattice, rules)))
        return launch.to_host(residual_bits).view(np.float32)[0]
    return relax_until(sweep, rules.o2_tolerance_mmHg, rules.o2_max_sweeps)
