"""Division: cells progress through their cycle and place daughters in free space.

Three passes, each a pure per-voxel gather (propose → resolve → apply):

1. `propose_division` — every live cell advances its cycle clock by

       Δclock = 65536 · Δt / T_cycle(type, proliferation level) · f(pO2),
       f(pO2) = clamp((pO2 − p_threshold) / (p_saturation − p_threshold), 0, 1),

   (the host tabulates 65536 Δt / T_cycle per type and level in float32; the
   product is truncated to an integer).  A tumour cell's rate is further multiplied
   by `receptor_factor[level]` of its RECEPTOR trait level (float32): exactly 1.0
   without therapy, 1 − E · level/15 under hormone therapy or growth-signal inhibition
   at exposure E (`kernels/receptor_blockade.py`, handed over per step).  A cell whose clock is full picks one
   face neighbour uniformly among those that can take a daughter: for a tumour
   cell an empty voxel or a functional cell (which it will displace); for a
   functional cell a vacancy of its own organ (homeostatic renewal: normal
   tissue only replaces the cells it loses).  A cell with no such
   neighbour stays ready (contact inhibition) and tries again next step.
   A motile tumour cell (`motile` = 1, see `migration`) neither cycles nor
   divides (go-or-grow): its clock holds until it adheres again.

2. `settle_division_claims` — each candidate voxel keeps, among the cells that
   chose it, the one with the highest (Philox priority word, global index).

3. `place_daughters` — a winning target becomes the parent's daughter (same
   kind and lineage, clock 0; a tumour daughter's traits each move one level up
   or down with the scenario's mutation probability: traits 0–3 read words 0–3 of
   stream `mutation`, traits 4–6 words 0–2 of stream `mutation_more`), the parent restarts its
   cycle.  A functional cell claimed by a tumour daughter is displaced (see
   `displacement`): if it found room it has already moved aside, otherwise it
   dies of compression.  A functional cell that is itself displaced this step
   forfeits its own division.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .claims import pick_direction, strongest_claimant
from .lattice import (CLOCK_FULL, CLOCK_UNITS_PER_CYCLE, EMPTY, ESCAPE_SHIFT, FUNCTIONAL, LOW3,
                      N_TRAITS, PROLIFERATION, RECEPTOR, TRAIT_LEVELS, TUMOR, global_index,
                      is_live, neighbour, opposite, table_row)
from .philox import probability_threshold, voxel_draw
from .process import Array, Param, Process, float32_of, nonnegative
from .tiles import active_tiles, layer_tiles, mark_tiles_near, tile_box, tiles_along
from .twin import kernel

NEUTRAL_LEVEL = 8  # proliferation level at which a cell divides at its nominal rate

def _cycle_time(default, source):
    """A cell-cycle time: no animal cell cycles faster than embryonic cleavage (about
    30 min); 10**7 h (over a millennium) stands for quiescent cells."""
    return Param("float", default, lo=0.5, hi=1e7, unit="h",
                 source=source + "; bounds: embryonic cleavage 0.5 h, quiescent 1e7 h")


DIVISION = Process(
    "division", "division.cu",
    arrays={"clock": Array(np.uint16, "live cell: cell-cycle progress in 2⁻¹⁶ cycles"),
            "intent": Array(np.uint8, "work: a cell's chosen daughter site (bits 0–2) and "
                                      "escape site (bits 3–5)", work=True),
            "claim": Array(np.uint8, "work: winning daughter source (bits 0–2), escaping cell "
                                     "(3–5)", work=True)},
    params={
        "cells": {
            "o2_proliferation_threshold_mmHg": nonnegative(
                5.0, "mmHg", "PhysiCell proliferation threshold; bound: 1 atm", hi=760.0),
            "o2_proliferation_saturation_mmHg": Param(
                "float", 38.0, lo=0.01, hi=760.0, unit="mmHg",
                source="cycle times are quoted at physioxia (about 38 mmHg); bounds: a guard "
                       "(0.01 mmHg) and 1 atm"),
        },
        "tumor": {"cycle_time_h": _cycle_time(
            24.0, "human tumour cell cycle 1-5 days (cell-kinetics reviews)")},
        "tumor.traits": {
            "mutation_probability": Param("float", 0.01, lo=0.0, hi=0.5,
                                          unit="per trait per division",
                                          source="(approx.) modelling choice"),
            "proliferation_gain_per_level": Param(
                "float", 0.05, lo=0.0, hi=0.125, unit="per level",
                source="division rate × (1 + gain·(level − 8))"),
        },
        "organs": {"cycle_time_h": _cycle_time(
            1000.0, "normal epithelium: much slower or quiescent")},
    },
    events=("birth_tumor", "birth_functional", "compression_functional"),
                   streams={"division": 2,      # word 0: daughter site, word 1: claim priority
                            "mutation": 4,      # words 0..3: traits 0..3
                            "mutation_more": 18})   # words 0..2: traits 4..6
BIRTH_TUMOR, BIRTH_FUNCTIONAL, COMPRESSION_FUNCTIONAL = range(3)
STREAM_DIVISION, STREAM_MUTATION = DIVISION.streams["division"], DIVISION.streams["mutation"]
STREAM_MUTATION_MORE = DIVISION.streams["mutation_more"]
WORDS_PER_DRAW = 4


@DIVISION.rules_from
def division_rules(scenario) -> dict:
    """cycle_rate (float32 [row, proliferation level]: clock units per step at full
    oxygen; row 0 tumour, 1.. organs), receptor_factor (float32 [receptor level]: the
    tumour's cycle-rate factor, all exactly 1 without receptor blockade), the oxygen ramp
    of the cycle, and the mutation thresholds (a trait steps down or up with half the
    mutation probability each)."""
    dt, traits = scenario["time.step_h"], scenario.values["tumor.traits"]
    gain = traits["proliferation_gain_per_level"]
    multiplier = np.maximum(1.0 + gain * (np.arange(TRAIT_LEVELS) - NEUTRAL_LEVEL), 0.0)
    rows = [CLOCK_UNITS_PER_CYCLE * dt / scenario["tumor.cycle_time_h"] * multiplier]
    rows += [np.full(TRAIT_LEVELS, CLOCK_UNITS_PER_CYCLE * dt / o["cycle_time_h"])
             for o in scenario.organs]
    lo = scenario["cells.o2_proliferation_threshold_mmHg"]
    hi = scenario["cells.o2_proliferation_saturation_mmHg"]
    half = probability_threshold(traits["mutation_probability"] / 2.0)
    return {"cycle_rate": float32_of(np.array(rows)),
            "receptor_factor": np.ones(TRAIT_LEVELS, dtype=np.float32),
            "o2_prolif_threshold": float32_of(lo),
            "o2_prolif_inv_span": float32_of(1.0 / (hi - lo)),
            "mutation_down_thr": np.full(N_TRAITS, half, dtype=np.uint32),
            "mutation_up_thr": np.full(N_TRAITS, half, dtype=np.uint32)}


@numba.njit(inline="always", cache=True)
def can_take_daughter(parent_kind, parent_organ, site_kind, site_organ, site_vacancy):
    """Tumour daughters take empty matrix or push functional cells aside;
    functional daughters only refill vacancies of their own organ (renewal)."""
    if parent_kind == TUMOR:
        return site_kind == EMPTY or site_kind == FUNCTIONAL
    return site_kind == EMPTY and site_organ == parent_organ and site_vacancy != 0


@numba.njit(inline="always", cache=True)
def advance_cycle(clock, rate, oxygen, o2_threshold, o2_inv_span):
    """New clock after one step: clock + ⌊rate · f(pO2)⌋, saturating at FULL."""
    f = (oxygen - o2_threshold) * o2_inv_span
    f = min(max(f, np.float32(0.0)), np.float32(1.0))
    return min(np.int64(clock) + np.int64(rate * f), CLOCK_FULL)


@DIVISION.entry("propose_division")
@numba.njit(parallel=True, cache=True)
def _propose_division(kind, organ, traits, clock, motile, vacancy, oxygen, intent, cycle_rate,
                      receptor_factor, o2_prolif_threshold,
                      o2_prolif_inv_span, step, tile_flags,
                      nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                intent[z, y, x] = 0
                k = kind[z, y, x]
                if not is_live(k) or motile[z, y, x] != 0:
                    continue                    # no cell, or a motile one (go or grow)
                o = organ[z, y, x]
                rate = cycle_rate[table_row(k, o), traits[PROLIFERATION, z, y, x]]
                if k == TUMOR:                  # receptor blockade: × 1.0f untreated
                    rate = rate * receptor_factor[traits[RECEPTOR, z, y, x]]
                c = advance_cycle(clock[z, y, x], rate, oxygen[z, y, x], o2_prolif_threshold,
                                  o2_prolif_inv_span)
                clock[z, y, x] = c
                if c < CLOCK_FULL:
                    continue
                mask = 0
                for d in range(1, 7):
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if not inside:
                        continue
                    if can_take_daughter(k, o, kind[zz, yy, xx], organ[zz, yy, xx],
                                         vacancy[zz, yy, xx]):
                        mask |= 1 << (d - 1)
                if mask == 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_DIVISION, lattice_id, k0, k1)[0]
                intent[z, y, x] = pick_direction(mask, word)
                mark_tiles_near(tile_flags, z, y, x, nz, ny, nx)


@numba.njit(inline="always", cache=True)
def settle_division_claim(kind, intent, claim, step, z, y, x, nz, ny, nx, z0, ny_global,
                          nx_global, lattice_id, k0, k1):
    """An empty or functional voxel keeps the strongest proposer aimed at it."""
    claim[z, y, x] = 0
    k = kind[z, y, x]
    if k == EMPTY or k == FUNCTIONAL:
        claim[z, y, x] = strongest_claimant(intent, 0, z, y, x, nz, ny, nx, step,
                                            STREAM_DIVISION, z0, ny_global, nx_global,
                                            lattice_id, k0, k1)


@DIVISION.entry("settle_division_claims", over="tiles")
@numba.njit(parallel=True, cache=True)
def _settle_division_claims(kind, intent, claim, step, tiles, n_tiles,
                           nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for layer in prange(tiles_along(nz)):       # a layer's planes are this thread's alone
        first, last = layer_tiles(tiles, n_tiles, layer, ny, nx)
        for t in range(first, last):
            za, zb, ya, yb, xa, xb = tile_box(tiles[t], nz, ny, nx)
            for z in range(za, zb):
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        settle_division_claim(kind, intent, claim, step, z, y, x, nz, ny, nx, z0,
                                              ny_global, nx_global, lattice_id, k0, k1)


@numba.njit(inline="always", cache=True)
def inherit_traits(traits, z, y, x, pz, py, px, mutate, draws, more, down_thr, up_thr):
    """Copy the parent's trait levels; if `mutate`, each level steps down when its
    word is below down_thr, up when below down_thr + up_thr (clipped to 0..15).
    Trait t < 4 reads word t of `draws` (stream mutation), t ≥ 4 word t − 4 of `more`
    (stream mutation_more)."""
    for t in range(N_TRAITS):
        level = np.int64(traits[t, pz, py, px])
        if mutate:
            w = draws[t] if t < WORDS_PER_DRAW else more[t - WORDS_PER_DRAW]
            if w < down_thr[t]:
                level = max(level - 1, 0)
            elif w < down_thr[t] + up_thr[t]:
                level = min(level + 1, TRAIT_LEVELS - 1)
        traits[t, z, y, x] = level


@numba.njit(inline="always", cache=True)
def place_daughter(kind, traits, clock, hypoxia, lineage, vacancy, intent, claim, mutation_down_thr,
                   mutation_up_thr, step, events, z, y, x, nz, ny, nx, z0, ny_global, nx_global,
                   lattice_id, k0, k1):
    """A won site becomes the parent's daughter; a parent whose daughter was placed
    restarts its cycle."""
    d = claim[z, y, x] & LOW3
    if d == 0:
        own = intent[z, y, x] & LOW3
        if own != 0 and is_live(kind[z, y, x]):
            tz, ty, tx, _ = neighbour(z, y, x, own, nz, ny, nx)
            if (claim[tz, ty, tx] & LOW3) == opposite(own):
                clock[z, y, x] = 0          # parent starts a new cycle
        return
    pz, py, px, _ = neighbour(z, y, x, d, nz, ny, nx)
    if (claim[pz, py, px] & LOW3) != 0:
        return                              # displaced parent forfeits
    if kind[z, y, x] == FUNCTIONAL:
        e = (intent[z, y, x] >> ESCAPE_SHIFT) & LOW3
        escaped = False
        if e != 0:
            ez, ey, ex, _ = neighbour(z, y, x, e, nz, ny, nx)
            escaped = ((claim[ez, ey, ex] >> ESCAPE_SHIFT) & LOW3) == opposite(e)
        if not escaped:
            events[COMPRESSION_FUNCTIONAL, z] += 1
    pk = kind[pz, py, px]
    tumour = pk == TUMOR
    g = global_index(z, y, x, z0, ny_global, nx_global)
    draws = voxel_draw(g, step, STREAM_MUTATION, lattice_id, k0, k1)
    more = voxel_draw(g, step, STREAM_MUTATION_MORE, lattice_id, k0, k1)
    inherit_traits(traits, z, y, x, pz, py, px, tumour, draws, more, mutation_down_thr,
                   mutation_up_thr)
    kind[z, y, x] = pk
    lineage[z, y, x] = lineage[pz, py, px]
    clock[z, y, x] = 0
    hypoxia[z, y, x] = 0
    vacancy[z, y, x] = 0
    events[BIRTH_TUMOR if tumour else BIRTH_FUNCTIONAL, z] += 1


@DIVISION.entry("place_daughters", over="tiles")
@numba.njit(parallel=True, cache=True)
def _place_daughters(kind, traits, clock, hypoxia, lineage, vacancy, intent, claim,
                     mutation_down_thr, mutation_up_thr, step, events, tiles, n_tiles,
                     nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for layer in prange(tiles_along(nz)):       # a layer's planes are this thread's alone
        first, last = layer_tiles(tiles, n_tiles, layer, ny, nx)
        for t in range(first, last):
            za, zb, ya, yb, xa, xb = tile_box(tiles[t], nz, ny, nx)
            for z in range(za, zb):
                for y in range(ya, yb):
                    for x in range(xa, xb):
                        place_daughter(kind, traits, clock, hypoxia, lineage, vacancy, intent,
                                       claim, mutation_down_thr, mutation_up_thr, step, events,
                                       z, y, x, nz, ny, nx, z0, ny_global, nx_global,
                                       lattice_id, k0, k1)


@kernel(reads=("kind", "organ", "traits.proliferation", "traits.receptor", "clock", "motile",
               "oxygen"),
        writes=("clock", "intent"), process=DIVISION)
def propose_division(lattice, rules, step):
    """Advance every adherent cell's cycle (a tumour cell's rate × (1 − E·receptor/15) under receptor blockade E); ready cells choose a daughter site (motile cells do not divide)."""
    from .receptor_blockade import receptor_blockade     # E = 0: no overrides
    tiles = active_tiles(lattice)
    _propose_division(lattice, rules, step, tile_flags=tiles.flags,
                      **receptor_blockade(rules, step))
    tiles.refresh()


@kernel(reads=("kind", "intent"), writes=("claim",), process=DIVISION)
def settle_division_claims(lattice, rules, step):
    """Each contested site keeps the proposer with the highest (priority, index)."""
    _settle_division_claims(lattice, rules, step, **active_tiles(lattice).args())


@kernel(reads=("claim", "intent"), writes=(), process=DIVISION)
def place_daughters(lattice, rules, step):
    """Daughters occupy the sites they won; parents restart their cycle."""
    _place_daughters(lattice, rules, step, **active_tiles(lattice).args())
