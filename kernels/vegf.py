"""VEGF: the angiogenic signal of hypoxic tissue, relaxed to quasi-steady state every step.

VEGF (ng/mL) diffuses and decays within minutes, so each step solves

    0 = D_V ∇²c − (λ_decay + λ_uptake [endothelium]) c + S(kind) [live cell with pO2 < p_hypoxic],

hypoxic tumour and functional cells secreting at their own rates, endothelial cells
(blood vessels, perfused or not) binding and internalising it, with the shared
red-black SOR of `relaxation` to the scenario's tolerance in ng/mL.  It runs right
after oxygen, so secretion follows this step's hypoxia.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .cuda import slab_args
from .lattice import is_live
from .relaxation import neighbour_sum, over_relax, relax_until
from .twin import kernel


@numba.njit(inline="always", cache=True)
def vegf_source(k, oxygen, source, hypoxic_mmHg):
    """s_i = h² S(kind) / D where a live cell is hypoxic, else 0."""
    return source[k] if is_live(k) and oxygen < hypoxic_mmHg else np.float32(0.0)


@numba.njit(parallel=True, cache=True)
def _relax_vegf_colour_numba(c, kind, oxygen, coeff, source, hypoxic_mmHg, omega, colour, z0,
                             plane_max):
    nz, ny, nx = c.shape
    for z in prange(nz):
        worst = np.float32(0.0)
        for y in range(ny):
            for x in range((colour + z0 + z + y) & 1, nx, 2):
                k = kind[z, y, x]
                target = coeff[k] * (neighbour_sum(c, z, y, x, nz, ny, nx)
                                     + vegf_source(k, oxygen[z, y, x], source, hypoxic_mmHg))
                worst = max(worst, over_relax(c, z, y, x, target, omega))
        plane_max[z] = worst


@kernel(reads=("vegf", "kind", "oxygen"), writes=("vegf",))
def relax_vegf(lattice, rules, step):
    """Relax the VEGF field to quasi-steady state; returns (sweeps, residual_ng_per_mL)."""


@relax_vegf.on("numba")
def _relax_vegf_numba(lattice, rules, step):
    def sweep():
        worst = np.float32(0.0)
        for colour in (0, 1):
            _relax_vegf_colour_numba(lattice.vegf, lattice.kind, lattice.oxygen, rules.vegf_coeff,
                                     rules.vegf_source, rules.hypoxic_mmHg, rules.vegf_omega,
                                     colour, lattice.z0, lattice.plane_max)
            worst = max(worst, lattice.plane_max.max())
        return worst
    return relax_until(sweep, rules.vegf_tolerance, rules.vegf_max_sweeps)


@relax_vegf.cuda
def _relax_vegf_cuda(launch, lattice, rules, step):
    residual_bits = launch.zeros(1, np.uint32)
    coeff, source = launch.table(rules.vegf_coeff), launch.table(rules.vegf_source)

    def sweep():
        residual_bits[...] = 0
        for colour in (0, 1):
            launch.launch("vegf.cu", "relax_vegf_colour", lattice.voxels,
                          (lattice.vegf, lattice.kind, lattice.oxygen, coeff, source,
                           rules.hypoxic_mmHg, rules.vegf_omega, np.int32(colour), residual_bits,
                           *slab_args(lattice, rules)))
        return launch.to_host(residual_bits).view(np.float32)[0]
    return relax_until(sweep, rules.vegf_tolerance, rules.vegf_max_sweeps)
