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
def flood_along(kind, mark, z, y, x, dz, dy, dx, length, source, target, value):
    """Forward then backward scan of one line: a voxel of kind `source` whose predecessor
    carries `value` in `mark` becomes kind `target` marked `value`.  True if any did."""
    grew = False
    for t in range(1, length):
        a, b, c = z + t * dz, y + t * dy, x + t * dx
        if (kind[a, b, c] == source and mark[a, b, c] != value
                and mark[a - dz, b - dy, c - dx] == value):
            kind[a, b, c] = target
            mark[a, b, c] = value
            grew = True
    for t in range(length - 2, -1, -1):
        a, b, c = z + t * dz, y + t * dy, x + t * dx
        if (kind[a, b, c] == source and mark[a, b, c] != value
                and mark[a + dz, b + dy, c + dx] == value):
            kind[a, b, c] = target
            mark[a, b, c] = value
            grew = True
    return grew


@numba.njit(parallel=True, cache=True)
def _flood_lines_numba(kind, mark, axis, source, target, value, grew):
    nz, ny, nx = kind.shape
    if axis == 0:
        for y in prange(ny):
            g = False
            for x in range(nx):
                g |= flood_along(kind, mark, 0, y, x, 1, 0, 0, nz, source, target, value)
            grew[y] = g
    else:
        for z in prange(nz):
            g = False
            for other in range(nx if axis == 1 else ny):
                if axis == 1:
                    g |= flood_along(kind, mark, z, 0, other, 0, 1, 0, ny, source, target, value)
                else:
                    g |= flood_along(kind, mark, z, other, 0, 0, 0, 1, nx, source, target, value)
            grew[z] = g


def flood(lattice, rules, launch, source, target, value) -> int:
    """Repeat line scans along z, y and x until nothing changes: every voxel of kind
    `source` joined through such voxels to one marked `value` (in `perfused`) becomes
    kind `target` marked `value`.  The result is a connected component, the same in
    any scan order.  `launch` is None on Numba, else the CUDA launcher.  Returns rounds."""
    if launch is None:
        grew = np.zeros(max(lattice.shape), dtype=np.bool_)
    else:
        changed = launch.zeros(1, np.uint32)
    rounds = 0
    while True:
        rounds += 1
        if launch is None:
            any_grew = False
            for axis in AXES:
                grew[:] = False
                _flood_lines_numba(lattice.kind, lattice.perfused, axis, source, target, value,
                                   grew)
                any_grew |= bool(grew.any())
        else:
            changed[...] = 0
            for axis in AXES:
                launch.launch("perfusion.cu", "flood_lines", lattice.voxels // lattice.shape[axis],
                              (lattice.kind, lattice.perfused, np.int32(axis), np.uint8(source),
                               np.uint8(target), np.uint8(value), changed,
                               *slab_args(lattice, rules)))
            any_grew = bool(launch.to_host(changed)[0])
        if not any_grew:
            return rounds


@kernel(reads=("kind", "perfused"), writes=("perfused",))
def spread_perfusion(lattice, rules, step):
    """Mark the blood vessels connected to the lattice faces as perfused; returns the rounds."""


@spread_perfusion.on("numba")
def _spread_perfusion(lattice, rules, step):
    _seed_numba(lattice.kind, lattice.perfused)
    return flood(lattice, rules, None, VESSEL, VESSEL, 1)


@spread_perfusion.cuda
def _spread_perfusion_cuda(launch, lattice, rules, step):
    launch.launch("perfusion.cu", "seed_perfusion", lattice.voxels,
                  (lattice.kind, lattice.perfused, *slab_args(lattice, rules)))
    return flood(lattice, rules, launch, VESSEL, VESSEL, 1)
