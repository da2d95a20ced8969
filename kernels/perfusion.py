"""Perfusion: blood flows in the vessels connected to the body's circulation.

A blood vessel voxel is perfused when a path of face-neighbouring blood vessel
voxels joins it to a lattice face, where the tissue block meets the rest of the
circulation.  The pass recomputes this from scratch: vessel voxels on the faces are
perfused; then scans along every lattice line in z, y and x (forward, then
backward) carry perfusion along runs of vessel voxels, repeated until a round
changes nothing.  The result is the connected component of the face vessels,
the same whatever order the scans run in, so a sprout is perfused exactly from
the step it joins the network, and a segment cut off from it is not.  Only
perfused vessels supply oxygen.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .cuda import slab_args
from .lattice import VESSEL
from .twin import kernel

AXES = (0, 1, 2)


@numba.njit(parallel=True, cache=True)
def _seed_numba(kind, perfused):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                face = z == 0 or y == 0 or x == 0 or z == nz - 1 or y == ny - 1 or x == nx - 1
                perfused[z, y, x] = 1 if kind[z, y, x] == VESSEL and face else 0


@numba.njit(inline="always", cache=True)
def carry_along(kind, perfused, z, y, x, dz, dy, dx, length):
    """Forward then backward scan of one line; True if a voxel became perfused."""
    grew = False
    for t in range(1, length):
        a, b, c = z + t * dz, y + t * dy, x + t * dx
        if kind[a, b, c] == VESSEL and perfused[a, b, c] == 0 and perfused[a - dz, b - dy, c - dx]:
            perfused[a, b, c] = 1
            grew = True
    for t in range(length - 2, -1, -1):
        a, b, c = z + t * dz, y + t * dy, x + t * dx
        if kind[a, b, c] == VESSEL and perfused[a, b, c] == 0 and perfused[a + dz, b + dy, c + dx]:
            perfused[a, b, c] = 1
            grew = True
    return grew


@numba.njit(parallel=True, cache=True)
def _perfuse_lines_numba(kind, perfused, axis, grew):
    nz, ny, nx = kind.shape
    if axis == 0:
        for y in prange(ny):
            g = False
            for x in range(nx):
                g |= carry_along(kind, perfused, 0, y, x, 1, 0, 0, nz)
            grew[y] = g
    else:
        for z in prange(nz):
            g = False
            for other in range(nx if axis == 1 else ny):
                if axis == 1:
                    g |= carry_along(kind, perfused, z, 0, other, 0, 1, 0, ny)
                else:
                    g |= carry_along(kind, perfused, z, other, 0, 0, 0, 1, nx)
            grew[z] = g


@kernel(reads=("kind", "perfused"), writes=("perfused",))
def spread_perfusion(lattice, rules, step):
    """Mark the blood vessels connected to the lattice faces as perfused; returns the rounds."""


@spread_perfusion.on("numba")
def _spread_perfusion(lattice, rules, step):
    _seed_numba(lattice.kind, lattice.perfused)
    grew = np.zeros(max(lattice.shape), dtype=np.bool_)
    rounds = 0
    while True:
        rounds += 1
        changed = False
        for axis in AXES:
            grew[:] = False
            _perfuse_lines_numba(lattice.kind, lattice.perfused, axis, grew)
            changed |= bool(grew.any())
        if not changed:
            return rounds


@spread_perfusion.cuda
def _spread_perfusion_cuda(launch, lattice, rules, step):
    slab = slab_args(lattice, rules)
    launch.launch("perfusion.cu", "seed_perfusion", lattice.voxels,
                  (lattice.kind, lattice.perfused, *slab))
    changed = launch.zeros(1, np.uint32)
    rounds = 0
    while True:
        rounds += 1
        changed[...] = 0
        for axis in AXES:
            lines = lattice.voxels // lattice.shape[axis]
            launch.launch("perfusion.cu", "perfuse_lines", lines,
                          (lattice.kind, lattice.perfused, np.int32(axis), changed, *slab))
        if not launch.to_host(changed)[0]:
            return rounds
