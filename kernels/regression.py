"""Vessel regression: co-opted vessels inside dense tumour, and vessels without flow, die back.

A tumour grows around the vessels it meets (co-option: daughters never take a vessel
voxel).  A blood vessel voxel is threatened while at least `compressing_neighbours`
of its six face neighbours are tumour cells (compression), or while it carries no
blood; `clock` counts its consecutive threatened steps and resets otherwise.  After
`regression_delay_h` under threat the vessel regresses to empty matrix, which the
tumour can then fill.  Perfusion is recomputed in a step where a vessel regressed,
so flow downstream of a regressed segment stops too: large tumours end with a
hypoxic, necrotic core and a vascular rim.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .cuda import slab_args
from .lattice import EMPTY, TUMOR, VESSEL, VESSEL_REGRESSED, neighbour
from .twin import kernel


@numba.njit(inline="always", cache=True)
def tumour_neighbours(kind, z, y, x, nz, ny, nx):
    n = 0
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if inside and kind[zz, yy, xx] == TUMOR:
            n += 1
    return n


@numba.njit(parallel=True, cache=True)
def _regress_vessels_numba(kind, perfused, clock, compressing, delay, events):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != VESSEL:
                    continue
                threatened = (perfused[z, y, x] == 0
                              or tumour_neighbours(kind, z, y, x, nz, ny, nx) >= compressing)
                if not threatened:
                    clock[z, y, x] = 0
                    continue
                t = min(np.int64(clock[z, y, x]) + 1, 65535)
                if t >= delay:
                    kind[z, y, x] = EMPTY            # reading neighbours only ever asks
                    perfused[z, y, x] = 0            # "tumour?", which this never changes
                    clock[z, y, x] = 0
                    events[z, VESSEL_REGRESSED] += 1
                else:
                    clock[z, y, x] = t


@kernel(reads=("kind", "perfused", "clock"), writes=("clock",))
def regress_vessels(lattice, rules, step):
    """Compressed or unperfused vessels regress after a delay."""


@regress_vessels.on("numba")
def _regress_vessels(lattice, rules, step):
    _regress_vessels_numba(lattice.kind, lattice.perfused, lattice.clock,
                           rules.regression_compressing, rules.regression_steps, lattice.events)


@regress_vessels.cuda
def _regress_vessels_cuda(launch, lattice, rules, step):
    launch.launch("regression.cu", "regress_vessels", lattice.voxels,
                  (lattice.kind, lattice.perfused, lattice.clock,
                   np.int32(rules.regression_compressing), np.int32(rules.regression_steps),
                   lattice.events, *slab_args(lattice, rules)))
