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
from numba import prange

from .claims import pick_direction, strongest_claimant
from .lattice import EMPTY, ESCAPE_SHIFT, FUNCTIONAL, LOW3, global_index, neighbour
from .philox import voxel_draw
from .process import Process
from .tiles import active_tiles, layer_tiles, tile_box, tiles_along
from .twin import kernel

DISPLACEMENT = Process("displacement", "displacement.cu", events=("displaced_functional",),
                       streams={"escape": 3})     # word 0: escape site, word 1: claim priority
DISPLACED_FUNCTIONAL = 0
STREAM_ESCAPE = DISPLACEMENT.streams["escape"]


@numba.njit(inline="always", cache=True)
def is_escape_site(kind, organ, claim, zz, yy, xx, own_organ):
    """Empty matrix of the same organ that no daughter claimed this step."""
    return (kind[zz, yy, xx] == EMPTY and organ[zz, yy, xx] == own_organ
            and (claim[zz, yy, xx] & LOW3) == 0)


@numba.njit(inline="always", cache=True)
def choose_escape_at(kind, organ, intent, claim, step, z, y, x, nz, ny, nx, z0, ny_global,
                     nx_global, lattice_id, k0, k1):
    """A claimed functional cell picks a free neighbour of its organ (intent bits 3..5)."""
    if kind[z, y, x] != FUNCTIONAL or (claim[z, y, x] & LOW3) == 0:
        return
    o = organ[z, y, x]
    mask = 0
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if inside and is_escape_site(kind, organ, claim, zz, yy, xx, o):
            mask |= 1 << (d - 1)
    if mask == 0:
        return
    g = global_index(z, y, x, z0, ny_global, nx_global)
    word = voxel_draw(g, step, STREAM_ESCAPE, lattice_id, k0, k1)[0]
    intent[z, y, x] = intent[z, y, x] | (pick_direction(mask, word) << ESCAPE_SHIFT)


@DISPLACEMENT.entry("choose_escape", over="tiles")
@numba.njit(parallel=True, cache=True)
def _choose_escape(kind, organ, intent, claim, step, tiles, n_tiles,
                   nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for layer in prange(tiles_along(nz)):       # a layer's planes are this thread's alone
        first, last = layer_tiles(tiles, n_tiles, layer, ny, nx)
        for t in range(first, last):
            za, zb, ya, yb, xa, xb = tile_box(tiles[t], nz, ny, nx)
            for z in range(za, zb):
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        choose_escape_at(kind, organ, intent, claim, step, z, y, x, nz, ny, nx,
                                         z0, ny_global, nx_global, lattice_id, k0, k1)


@DISPLACEMENT.entry("settle_escape_claims", over="tiles")
@numba.njit(parallel=True, cache=True)
def _settle_escape_claims(kind, intent, claim, step, tiles, n_tiles,
                          nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for layer in prange(tiles_along(nz)):       # a layer's planes are this thread's alone
        first, last = layer_tiles(tiles, n_tiles, layer, ny, nx)
        for t in range(first, last):
            za, zb, ya, yb, xa, xb = tile_box(tiles[t], nz, ny, nx)
            for z in range(za, zb):
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        if kind[z, y, x] != EMPTY or (claim[z, y, x] & LOW3) != 0:
                            continue
                        best = strongest_claimant(intent, ESCAPE_SHIFT, z, y, x, nz, ny, nx,
                                                  step, STREAM_ESCAPE, z0, ny_global, nx_global,
                                                  lattice_id, k0, k1)
                        if best != 0:
                            claim[z, y, x] = claim[z, y, x] | (best << ESCAPE_SHIFT)


@numba.njit(inline="always", cache=True)
def move_cell(kind, traits, clock, hypoxia, lineage, vacancy, events, z, y, x, sz, sy, sx):
    """The whole cell at (sz, sy, sx) moves to (z, y, x), filling any vacancy there."""
    kind[z, y, x] = kind[sz, sy, sx]
    for t in range(traits.shape[0]):
        traits[t, z, y, x] = traits[t, sz, sy, sx]
    clock[z, y, x] = clock[sz, sy, sx]
    hypoxia[z, y, x] = hypoxia[sz, sy, sx]
    lineage[z, y, x] = lineage[sz, sy, sx]
    vacancy[z, y, x] = 0
    events[DISPLACED_FUNCTIONAL, z] += 1


@DISPLACEMENT.entry("move_displaced", over="tiles")
@numba.njit(parallel=True, cache=True)
def _move_displaced(kind, traits, clock, hypoxia, lineage, vacancy, claim, events, tiles, n_tiles,
                    nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for layer in prange(tiles_along(nz)):       # a layer's planes are this thread's alone
        first, last = layer_tiles(tiles, n_tiles, layer, ny, nx)
        for t in range(first, last):
            za, zb, ya, yb, xa, xb = tile_box(tiles[t], nz, ny, nx)
            for z in range(za, zb):
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        s = (claim[z, y, x] >> ESCAPE_SHIFT) & LOW3
                        if s != 0:
                            sz, sy, sx, _ = neighbour(z, y, x, s, nz, ny, nx)
                            move_cell(kind, traits, clock, hypoxia, lineage, vacancy, events,
                                      z, y, x, sz, sy, sx)


@kernel(reads=("kind", "claim"), writes=(), process=DISPLACEMENT)
def choose_escape(lattice, rules, step):
    """Functional cells about to be displaced pick a free neighbouring voxel."""
    _choose_escape(lattice, rules, step, **active_tiles(lattice).args())


@kernel(reads=("kind", "claim", "intent"), writes=(), process=DISPLACEMENT)
def settle_escape_claims(lattice, rules, step):
    """Each free voxel keeps the escaping cell with the highest (priority, index)."""
    _settle_escape_claims(lattice, rules, step, **active_tiles(lattice).args())


@kernel(reads=("claim",), writes=(), process=DISPLACEMENT)
def move_displaced(lattice, rules, step):
    """Displaced functional cells move into the escape sites they won."""
    _move_displaced(lattice, rules, step, **active_tiles(lattice).args())
