"""Displacement of functional tissue by the growing tumour.

The rule (chosen, documented in the README): a tumour daughter may claim a voxel
held by a functional (parenchymal) cell.  That cell is pushed one voxel aside
into an empty voxel of its own organ that no daughter has claimed this step; if
several displaced cells want the same empty voxel, the highest (Philox
priority word, global index) wins.  A displaced cell that finds no room dies of
compression (counted as `compression_functional`).  So the organ's functional
tissue is first compacted into its own matrix and then destroyed as the tumour
advances, and the functional fraction falls as the tumour grows.

Passes (each a per-voxel gather, between `settle_division_claims` and
`place_daughters`):

1. `choose_escape` — a claimed functional cell picks an escape site uniformly
   among its free face neighbours (bits 3..5 of its intent byte).
2. `settle_escape_claims` — each free voxel keeps the best escaping cell
   (bits 3..5 of its claim byte).
3. `move_displaced` — a won escape site receives the whole cell (kind, traits,
   clock, hypoxia, lineage); the voxel it left is overwritten by the daughter in
   `place_daughters`.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import (DISPLACED_FUNCTIONAL, EMPTY, ESCAPE_SHIFT, FUNCTIONAL, LOW3,
                      global_index, neighbour)
from .cuda import slab_args
from .claims import pick_direction, strongest_claimant
from .philox import STREAM_ESCAPE, voxel_draw
from .tiles import TILE_VOXELS, active_tiles
from .twin import kernel


@numba.njit(inline="always", cache=True)
def is_escape_site(kind, organ, claim, zz, yy, xx, own_organ):
    """Empty matrix of the same organ that no daughter claimed this step."""
    return (kind[zz, yy, xx] == EMPTY and organ[zz, yy, xx] == own_organ
            and (claim[zz, yy, xx] & LOW3) == 0)


@numba.njit(parallel=True, cache=True)
def _choose_escape_numba(kind, organ, intent, claim, step, z0, ny_global, nx_global,
                         lattice_id, k0, k1):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != FUNCTIONAL or (claim[z, y, x] & LOW3) == 0:
                    continue
                o = organ[z, y, x]
                mask = 0
                for d in range(1, 7):
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if inside and is_escape_site(kind, organ, claim, zz, yy, xx, o):
                        mask |= 1 << (d - 1)
                if mask == 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_ESCAPE, lattice_id, k0, k1)[0]
                intent[z, y, x] = intent[z, y, x] | (pick_direction(mask, word) << ESCAPE_SHIFT)


@numba.njit(parallel=True, cache=True)
def _settle_escape_claims_numba(kind, intent, claim, step, z0, ny_global, nx_global,
                                lattice_id, k0, k1):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != EMPTY or (claim[z, y, x] & LOW3) != 0:
                    continue
                best = strongest_claimant(intent, ESCAPE_SHIFT, z, y, x, nz, ny, nx, step,
                                          STREAM_ESCAPE, z0, ny_global, nx_global, lattice_id,
                                          k0, k1)
                if best != 0:
                    claim[z, y, x] = claim[z, y, x] | (best << ESCAPE_SHIFT)


@numba.njit(parallel=True, cache=True)
def _move_displaced_numba(kind, traits, clock, hypoxia, lineage, claim, events):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                s = (claim[z, y, x] >> ESCAPE_SHIFT) & LOW3
                if s == 0:
                    continue
                sz, sy, sx, _ = neighbour(z, y, x, s, nz, ny, nx)
                kind[z, y, x] = kind[sz, sy, sx]
                for t in range(traits.shape[0]):
                    traits[t, z, y, x] = traits[t, sz, sy, sx]
                clock[z, y, x] = clock[sz, sy, sx]
                hypoxia[z, y, x] = hypoxia[sz, sy, sx]
                lineage[z, y, x] = lineage[sz, sy, sx]
                events[z, DISPLACED_FUNCTIONAL] += 1


@kernel(reads=("kind", "claim"), writes=())
def choose_escape(lattice, rules, step):
    """Functional cells about to be displaced pick a free neighbouring voxel."""


@choose_escape.on("numba")
def _choose_escape(lattice, rules, step):
    _choose_escape_numba(lattice.kind, lattice.organ, lattice.intent, lattice.claim, step,
                         lattice.z0, lattice.ny, lattice.nx, lattice.lattice_id,
                         rules.key[0], rules.key[1])


@kernel(reads=("kind", "claim", "intent"), writes=())
def settle_escape_claims(lattice, rules, step):
    """Each free voxel keeps the escaping cell with the highest (priority, index)."""


@settle_escape_claims.on("numba")
def _settle_escape_claims(lattice, rules, step):
    _settle_escape_claims_numba(lattice.kind, lattice.intent, lattice.claim, step,
                                lattice.z0, lattice.ny, lattice.nx, lattice.lattice_id,
                                rules.key[0], rules.key[1])


@kernel(reads=("claim",), writes=())
def move_displaced(lattice, rules, step):
    """Displaced functional cells move into the escape sites they won."""


@move_displaced.on("numba")
def _move_displaced(lattice, rules, step):
    _move_displaced_numba(lattice.kind, lattice.traits, lattice.clock, lattice.hypoxia,
                          lattice.lineage, lattice.claim, lattice.events)


@choose_escape.cuda
def _choose_escape_cuda(launch, lattice, rules, step):
    tiles = active_tiles(launch, lattice)
    launch.launch("displacement.cu", "choose_escape", tiles.count * TILE_VOXELS,
                  (lattice.kind, lattice.organ, lattice.intent, lattice.claim, np.uint32(step),
                   *tiles.args(), *slab_args(lattice, rules)), block=TILE_VOXELS)


@settle_escape_claims.cuda
def _settle_escape_claims_cuda(launch, lattice, rules, step):
    tiles = active_tiles(launch, lattice)
    launch.launch("displacement.cu", "settle_escape_claims", tiles.count * TILE_VOXELS,
                  (lattice.kind, lattice.intent, lattice.claim, np.uint32(step), *tiles.args(),
                   *slab_args(lattice, rules)), block=TILE_VOXELS)


@move_displaced.cuda
def _move_displaced_cuda(launch, lattice, rules, step):
    tiles = active_tiles(launch, lattice)
    launch.launch("displacement.cu", "move_displaced", tiles.count * TILE_VOXELS,
                  (lattice.kind, lattice.traits, lattice.clock, lattice.hypoxia, lattice.lineage,
                   lattice.claim, lattice.events, *tiles.args(), *slab_args(lattice, rules)),
                  block=TILE_VOXELS)
