"""Division: cells progress through their cycle and place daughters in free space.

Three passes, each a pure per-voxel gather (propose → resolve → apply):

1. `propose_division` — every live cell advances its cycle clock by

       Δclock = 65536 · Δt / T_cycle(type, proliferation level) · f(pO2),
       f(pO2) = clamp((pO2 − p_threshold) / (p_saturation − p_threshold), 0, 1),

   (the host tabulates 65536 Δt / T_cycle per type and level in float32; the
   product is truncated to an integer).  A cell whose clock is full picks one
   face neighbour uniformly among those that can take a daughter: for a tumour
   cell an empty voxel or a functional cell (which it will displace); for a
   functional cell a vacancy of its own organ (homeostatic renewal: normal
   tissue only replaces the cells it loses).  A cell with no such
   neighbour stays ready (contact inhibition) and tries again next step.

2. `settle_division_claims` — each candidate voxel keeps, among the cells that
   chose it, the one with the highest (Philox priority word, global index).

3. `place_daughters` — a winning target becomes the parent's daughter (same
   kind and lineage, clock 0; a tumour daughter's traits each move one level up
   or down with the scenario's mutation probability), the parent restarts its
   cycle.  A functional cell claimed by a tumour daughter is displaced (see
   `displacement`): if it found room it has already moved aside, otherwise it
   dies of compression.  A functional cell that is itself displaced this step
   forfeits its own division.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import (BIRTH_FUNCTIONAL, BIRTH_TUMOR, CLOCK_FULL, COMPRESSION_FUNCTIONAL,
                      EMPTY, ESCAPE_SHIFT, FUNCTIONAL, LOW3, N_TRAITS, PROLIFERATION,
                      TRAIT_LEVELS, TUMOR, VACANCY, global_index, is_live, neighbour, opposite,
                      table_row)
from .cuda import slab_args
from .claims import pick_direction, strongest_claimant
from .philox import STREAM_DIVISION, STREAM_MUTATION, voxel_draw
from .tiles import TILE_VOXELS, active_tiles
from .twin import kernel


@numba.njit(inline="always", cache=True)
def can_take_daughter(parent_kind, parent_organ, site_kind, site_organ, site_clock):
    """Tumour daughters take empty matrix or push functional cells aside;
    functional daughters only refill vacancies of their own organ (renewal)."""
    if parent_kind == TUMOR:
        return site_kind == EMPTY or site_kind == FUNCTIONAL
    return site_kind == EMPTY and site_organ == parent_organ and site_clock == VACANCY


@numba.njit(inline="always", cache=True)
def advance_cycle(clock, rate, oxygen, o2_threshold, o2_inv_span):
    """New clock after one step: clock + ⌊rate · f(pO2)⌋, saturating at FULL."""
    f = (oxygen - o2_threshold) * o2_inv_span
    f = min(max(f, np.float32(0.0)), np.float32(1.0))
    return min(np.int64(clock) + np.int64(rate * f), CLOCK_FULL)


@numba.njit(parallel=True, cache=True)
def _propose_division_numba(kind, organ, traits, clock, oxygen, intent, cycle_rate,
                            o2_threshold, o2_inv_span, step, z0, ny_global, nx_global,
                            lattice_id, k0, k1):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                intent[z, y, x] = 0
                k = kind[z, y, x]
                if not is_live(k):
                    continue
                o = organ[z, y, x]
                rate = cycle_rate[table_row(k, o), traits[PROLIFERATION, z, y, x]]
                c = advance_cycle(clock[z, y, x], rate, oxygen[z, y, x], o2_threshold,
                                  o2_inv_span)
                clock[z, y, x] = c
                if c < CLOCK_FULL:
                    continue
                mask = 0
                for d in range(1, 7):
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if not inside:
                        continue
                    # a live neighbour's clock may be changing in this pass: read only empty ones
                    site = kind[zz, yy, xx]
                    site_clock = clock[zz, yy, xx] if site == EMPTY else 0
                    if can_take_daughter(k, o, site, organ[zz, yy, xx], site_clock):
                        mask |= 1 << (d - 1)
                if mask == 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_DIVISION, lattice_id, k0, k1)[0]
                intent[z, y, x] = pick_direction(mask, word)


@numba.njit(parallel=True, cache=True)
def _settle_division_claims_numba(kind, intent, claim, step, z0, ny_global, nx_global,
                                  lattice_id, k0, k1):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                claim[z, y, x] = 0
                k = kind[z, y, x]
                if k != EMPTY and k != FUNCTIONAL:
                    continue
                claim[z, y, x] = strongest_claimant(intent, 0, z, y, x, nz, ny, nx, step,
                                                    STREAM_DIVISION, z0, ny_global, nx_global,
                                                    lattice_id, k0, k1)


@numba.njit(inline="always", cache=True)
def inherit_traits(traits, z, y, x, pz, py, px, mutate, draws, down_thr, up_thr):
    """Copy the parent's trait levels; if `mutate`, each level steps down when its
    word is below down_thr, up when below down_thr + up_thr (clipped to 0..15)."""
    for t in range(N_TRAITS):
        level = np.int64(traits[t, pz, py, px])
        if mutate:
            w = draws[t]
            if w < down_thr[t]:
                level = max(level - 1, 0)
            elif w < down_thr[t] + up_thr[t]:
                level = min(level + 1, TRAIT_LEVELS - 1)
        traits[t, z, y, x] = level


@numba.njit(parallel=True, cache=True)
def _place_daughters_numba(kind, traits, clock, hypoxia, lineage, intent, claim,
                           mutation_down_thr, mutation_up_thr, step, z0, ny_global,
                           nx_global, lattice_id, k0, k1, events):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                d = claim[z, y, x] & LOW3
                if d == 0:
                    own = intent[z, y, x] & LOW3
                    if own != 0 and is_live(kind[z, y, x]):
                        tz, ty, tx, _ = neighbour(z, y, x, own, nz, ny, nx)
                        if (claim[tz, ty, tx] & LOW3) == opposite(own):
                            clock[z, y, x] = 0          # parent starts a new cycle
                    continue
                pz, py, px, _ = neighbour(z, y, x, d, nz, ny, nx)
                if (claim[pz, py, px] & LOW3) != 0:
                    continue                            # displaced parent forfeits
                if kind[z, y, x] == FUNCTIONAL:
                    e = (intent[z, y, x] >> ESCAPE_SHIFT) & LOW3
                    escaped = False
                    if e != 0:
                        ez, ey, ex, _ = neighbour(z, y, x, e, nz, ny, nx)
                        escaped = ((claim[ez, ey, ex] >> ESCAPE_SHIFT) & LOW3) == opposite(e)
                    if not escaped:
                        events[z, COMPRESSION_FUNCTIONAL] += 1
                pk = kind[pz, py, px]
                tumour = pk == TUMOR
                g = global_index(z, y, x, z0, ny_global, nx_global)
                draws = voxel_draw(g, step, STREAM_MUTATION, lattice_id, k0, k1)
                inherit_traits(traits, z, y, x, pz, py, px, tumour, draws,
                               mutation_down_thr, mutation_up_thr)
                kind[z, y, x] = pk
                lineage[z, y, x] = lineage[pz, py, px]
                clock[z, y, x] = 0
                hypoxia[z, y, x] = 0
                events[z, BIRTH_TUMOR if tumour else BIRTH_FUNCTIONAL] += 1


def _slab_args(lattice, rules):
    return (lattice.z0, lattice.ny, lattice.nx, lattice.lattice_id, rules.key[0], rules.key[1])


@kernel(reads=("kind", "organ", "traits.proliferation", "clock", "oxygen"),
        writes=("clock", "intent"))
def propose_division(lattice, rules, step):
    """Advance every cell's cycle; ready cells choose a daughter site."""


@propose_division.on("numba")
def _propose_division(lattice, rules, step):
    _propose_division_numba(lattice.kind, lattice.organ, lattice.traits, lattice.clock,
                            lattice.oxygen, lattice.intent, rules.cycle_rate,
                            rules.o2_prolif_threshold, rules.o2_prolif_inv_span, step,
                            *_slab_args(lattice, rules))


@kernel(reads=("kind", "intent"), writes=("claim",))
def settle_division_claims(lattice, rules, step):
    """Each contested site keeps the proposer with the highest (priority, index)."""


@settle_division_claims.on("numba")
def _settle_division_claims(lattice, rules, step):
    _settle_division_claims_numba(lattice.kind, lattice.intent, lattice.claim, step,
                                  *_slab_args(lattice, rules))


@kernel(reads=("claim", "intent"), writes=())
def place_daughters(lattice, rules, step):
    """Daughters occupy the sites they won; parents restart their cycle."""


@place_daughters.on("numba")
def _place_daughters(lattice, rules, step):
    _place_daughters_numba(lattice.kind, lattice.traits, lattice.clock, lattice.hypoxia,
                           lattice.lineage, lattice.intent, lattice.claim,
                           rules.mutation_down_thr, rules.mutation_up_thr, step,
                           *_slab_args(lattice, rules), lattice.events)


@propose_division.cuda
def _propose_division_cuda(launch, lattice, rules, step):
    tiles = active_tiles(launch, lattice)
    launch.launch("division.cu", "propose_division", lattice.voxels,
                  (lattice.kind, lattice.organ, lattice.traits, lattice.clock, lattice.oxygen,
                   lattice.intent, launch.table(rules.cycle_rate), rules.o2_prolif_threshold,
                   rules.o2_prolif_inv_span, np.uint32(step), tiles.flags,
                   *slab_args(lattice, rules)))
    tiles.refresh(launch)


@settle_division_claims.cuda
def _settle_division_claims_cuda(launch, lattice, rules, step):
    tiles = active_tiles(launch, lattice)
    launch.launch("division.cu", "settle_division_claims", tiles.count * TILE_VOXELS,
                  (lattice.kind, lattice.intent, lattice.claim, np.uint32(step), *tiles.args(),
                   *slab_args(lattice, rules)), block=TILE_VOXELS)


@place_daughters.cuda
def _place_daughters_cuda(launch, lattice, rules, step):
    tiles = active_tiles(launch, lattice)
    launch.launch("division.cu", "place_daughters", tiles.count * TILE_VOXELS,
                  (lattice.kind, lattice.traits, lattice.clock, lattice.hypoxia, lattice.lineage,
                   lattice.intent, lattice.claim, launch.table(rules.mutation_down_thr),
                   launch.table(rules.mutation_up_thr), np.uint32(step), lattice.events,
                   *tiles.args(), *slab_args(lattice, rules)), block=TILE_VOXELS)
