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

from .lattice import VESSEL
from .process import Array, Process
from .twin import kernel

PERFUSION = Process("perfusion", "perfusion.cu", arrays={
    "perfused": Array(np.uint8, "1 where a blood vessel carries blood")})
AXES = (0, 1, 2)


@PERFUSION.entry("seed_perfusion")
@numba.njit(parallel=True, cache=True)
def _seed_perfusion(kind, perfused, nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                face = z == 0 or y == 0 or x == 0 or z == nz - 1 or y == ny - 1 or x == nx - 1
                perfused[z, y, x] = 1 if kind[z, y, x] == VESSEL and face else 0


@numba.njit(inline="always", cache=True)
def flood_along(kind, mark, z, y, x, dz, dy, dx, length, source_kind, target_kind, value):
    """Forward then backward scan of one line: a voxel of kind `source_kind` whose
    predecessor carries `value` in `mark` becomes `target_kind` marked `value`.
    True if any did."""
    grew = False
    for t in range(1, length):
        a, b, c = z + t * dz, y + t * dy, x + t * dx
        if (kind[a, b, c] == source_kind and mark[a, b, c] != value
                and mark[a - dz, b - dy, c - dx] == value):
            kind[a, b, c] = target_kind
            mark[a, b, c] = value
            grew = True
    for t in range(length - 2, -1, -1):
        a, b, c = z + t * dz, y + t * dy, x + t * dx
        if (kind[a, b, c] == source_kind and mark[a, b, c] != value
                and mark[a + dz, b + dy, c + dx] == value):
            kind[a, b, c] = target_kind
            mark[a, b, c] = value
            grew = True
    return grew


@PERFUSION.entry("flood_lines", over="lines")
@numba.njit(parallel=True, cache=True)
def _flood_lines(kind, mark, axis, source_kind, target_kind, value, changed,
                 nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    if axis == 0:
        for y in prange(ny):
            for x in range(nx):
                if flood_along(kind, mark, 0, y, x, 1, 0, 0, nz, source_kind, target_kind, value):
                    changed[0] = 1                 # every writer stores the same 1
    else:
        for z in prange(nz):
            for other in range(nx if axis == 1 else ny):
                if axis == 1:
                    grew = flood_along(kind, mark, z, 0, other, 0, 1, 0, ny, source_kind,
                                       target_kind, value)
                else:
                    grew = flood_along(kind, mark, z, other, 0, 0, 0, 1, nx, source_kind,
                                       target_kind, value)
                if grew:
                    changed[0] = 1


def flood(lattice, rules, mark, source_kind, target_kind, value) -> int:
    """Repeat line scans along z, y and x until nothing changes: every voxel of kind
    `source_kind` joined through such voxels to one marked `value` (in the array
    `mark`) becomes `target_kind` marked `value`.  The result is a connected component, the
    same in any scan order.  On an MPI slab a scan along z runs through every plane the
    slab holds, so the flooded arrays are refreshed on all of them, guard plane
    included, before the first round and after every scan (they hold no directions);
    the rounds run until no slab changes, giving the component of the whole lattice
    (the rounds may differ).  Returns the rounds."""
    from engine.backend import architecture
    from engine.domain import GUARD, HALO
    arch = architecture(lattice.backend)
    changed = arch.to_device(np.zeros(1, dtype=np.uint32))
    rounds = 0
    flooded = [name for name, a in lattice.arrays.items() if a is mark] + ["kind"]
    deep = HALO + GUARD              # a scan along z reaches through every plane a slab holds
    lattice.domain.exchange(lattice, flooded, deep)
    while True:
        rounds += 1
        changed[...] = 0
        for axis in AXES:
            _flood_lines(lattice, rules, 0, mark=mark, axis=np.int32(axis),
                         source_kind=np.uint8(source_kind), target_kind=np.uint8(target_kind),
                         value=np.uint8(value), changed=changed,
                         lines=lattice.voxels // lattice.shape[axis])
            lattice.domain.exchange(lattice, flooded, deep)
        if not lattice.domain.any(arch.to_host(changed)[0]):    # on every slab of it
            return rounds


@kernel(reads=("kind", "perfused"), writes=("perfused",), process=PERFUSION)
def spread_perfusion(lattice, rules, step):
    """Mark the blood vessels connected to the lattice faces as perfused; returns the rounds."""
    _seed_perfusion(lattice, rules, step)
    return flood(lattice, rules, lattice.perfused, VESSEL, VESSEL, 1)
