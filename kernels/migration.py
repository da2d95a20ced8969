"""Adhesion loss and migration: tumour cells detach from their neighbours and crawl.

Tumour cells carry fewer adhesion molecules than the tissue they came from (trait
ADHESION, levels 0–15; functional cells hold 15).  A cell that loses its anchorage
becomes motile (`motile` = 1): it stops cycling (go-or-grow: motile cells do not
divide, `division.propose_division` skips them) and crawls through the tissue until
it adheres again.

1. `lose_adhesion` — once per step, an adherent tumour cell detaches with

       P = 1 − exp(−k Δt),   k = k0 · (1 − level/15) · (1 + f_hyp  if pO2 < p_hyp),

   k0 = `migration.detachment_per_h` (a cell with no adhesion molecules left),
   f_hyp = `migration.hypoxic_emt_factor` (hypoxia drives the epithelial–mesenchymal
   transition through HIF-1α), p_hyp = `oxygen.hypoxic_mmHg`.  A cell at adhesion
   level 15 never detaches.  A motile cell adheres again with
   P = 1 − exp(−k_re Δt), k_re = `migration.readhesion_per_h`.  The host tabulates
   both as uint32 thresholds (detachment per [normoxic/hypoxic, adhesion level]);
   the cell compares word 0 of its Philox draw of stream `detach`.  Under anti-metastatic
   exposure E the detachment rates are × (1 − E) (thresholds handed over per step,
   `kernels/antimetastatic.py`).

   Local invasion: a motile cell that crosses the gap into the neighbouring organ and
   settles there founds a local metastasis.  A motile cell that re-adheres in a voxel
   whose organ label is ≥ 2 (a neighbouring organ on the primary lattice; label 1 is the
   lattice's own organ, 0 no organ) while its lineage is a primary clone
   c < COLONY_LINEAGE_BASE (1024) founds a new clone: lineage = FOUNDING_BASE + c, a
   founder (of clone c) waiting for the colony id the host assigns at the end of the
   step (event `settled_abroad`, `engine.body`).  A colony's cells (lineage ≥ 1024) keep
   theirs.  (A founder whose clock is full may divide later in the same step: its
   daughter carries the founder's mark too, and the host gives both one colony.)

2. `migrate` — a motile cell hops to a face neighbour p = v Δt / h times per step on
   average (v = `migration.speed_um_per_min`, h the voxel edge): the step is split
   into n = ⌈p⌉ sub-steps (at most MAX_SUBSTEPS), in each of which the cell hops with
   probability p/n.  So a free cell random-walks with diffusion coefficient
   D = p h² / (6 Δt).  Each sub-step is a full propose → resolve → apply:

   * propose: a motile cell that hops (word 0 < threshold) picks a face neighbour it
     may enter — empty matrix, or a functional cell, with which it swaps places
     (tumour cells squeeze between parenchymal cells); never a vessel, sprout,
     debris, a dormant cell or another tumour cell — with weight w = 1 + χ · max(0, pO2(site) − pO2(here))
     (aerotaxis toward oxygen, χ = `migration.oxygen_bias_per_mmHg`; χ = 0 is an
     unbiased walk), drawn with word 2;
   * resolve: each site keeps the proposer with the highest (Philox word 1, global
     index) (`kernels.claims`);
   * apply: the mover and the site exchange their cells — the mover's voxel becomes
     empty matrix, or receives the functional cell it swapped with.  Everything that
     belongs to a cell moves with it (kind, traits, clock, hypoxia, lineage, motile);
     the organ label and the fields stay with the voxel, and neither voxel is a
     vacancy afterwards.  A won site and its mover form a pair that no other pair
     touches (a site has one winner, a mover one site), so the site's thread alone
     writes both voxels of its pair: no voxel is written twice, none is read by
     another pair, and the outcome does not depend on thread order.

   The Philox counter's step word is the sub-step tick step · n + j (modulo 2³²: it
   repeats only after 2³²/n steps).  Counts per kind are unchanged by the motion.

Events: `detached`, `readhered`, `migrated` (hops), `settled_abroad` (founders).  Streams: `detach` (9), `migrate`
(10: word 0 hop, word 1 claim priority, word 2 direction).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .claims import strongest_claimant
from .lattice import (ADHESION, COLONY_LINEAGE_BASE, EMPTY, FOUNDING_BASE, FUNCTIONAL, OWN_ORGAN,
                      TRAIT_LEVELS, TUMOR, global_index, neighbour)
from .philox import probability_threshold, rate_threshold, voxel_draw
from .process import Array, Param, Process, float32_of
from .twin import kernel

MAX_SUBSTEPS = 16      # hops a cell may take per step (speed · step / voxel edge)

MIGRATION = Process(
    "migration", "migration.cu",
    arrays={"motile": Array(np.uint8, "tumour cell: 1 while detached and motile"),
            "hop": Array(np.uint8, "work: a mover's chosen hop direction (motile tumour or "
                                   "immune cell; a vessel's recruit site, kernels/immune.py)",
                         work=True),
            "hop_claim": Array(np.uint8, "work: direction of the mover (or recruit source, or "
                                         "killer) that won this site", work=True)},
    params={"migration": {
        "detachment_per_h": Param(
            "float", 0.01, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) modelling choice: a cell without adhesion molecules detaches "
                   "about every 4 days; × (1 − level/15); bound: a guard"),
        "hypoxic_emt_factor": Param(
            "float", 2.0, lo=0.0, hi=100.0, unit="-",
            source="(approx.) hypoxia drives EMT (HIF-1α): detachment × (1 + factor) below "
                   "oxygen.hypoxic_mmHg"),
        "readhesion_per_h": Param(
            "float", 0.1, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) motile episodes last hours: mean 10 h; bound: a guard"),
        "speed_um_per_min": Param(
            "float", 0.3, lo=0.0, hi=5.0, unit="µm/min",
            source="tumour cell migration in 3D tissue 0.1–1 µm/min, intravital imaging "
                   "reviews (approx.); bound: fast amoeboid motility, 5 µm/min"),
        "oxygen_bias_per_mmHg": Param(
            "float", 0.1, lo=0.0, hi=10.0, unit="1/mmHg",
            source="(approx.) modelling choice: aerotaxis, a site's weight "
                   "1 + bias · (pO2 rise to it)"),
    }},
    events=("detached", "readhered", "migrated", "settled_abroad"),
    streams={"detach": 9,       # word 0: detach or re-adhere
             "migrate": 10})    # word 0: hop, word 1: claim priority, word 2: direction
DETACHED, READHERED, MIGRATED, SETTLED_ABROAD = range(4)
STREAM_DETACH, STREAM_MIGRATE = MIGRATION.streams["detach"], MIGRATION.streams["migrate"]


def hops_per_step(scenario) -> float:
    """p = v Δt / h: mean hops per step of a free motile cell."""
    return (scenario["migration.speed_um_per_min"] * 60.0 * scenario["time.step_h"]
            / scenario["lattice.voxel_um"])


@MIGRATION.checks
def few_enough_hops(scenario):
    """A step holds at most MAX_SUBSTEPS hop sub-steps."""
    p = hops_per_step(scenario)
    if p <= MAX_SUBSTEPS:
        return []
    key = "migration.speed_um_per_min"
    return [(key, f"{key} = {scenario[key]:g} µm/min is {p:.3g} hops per step of "
                  f"time.step_h = {scenario['time.step_h']:g} h across lattice.voxel_um = "
                  f"{scenario['lattice.voxel_um']:g} µm; at most {MAX_SUBSTEPS}: lower the "
                  "speed or the step")]


def detachment_rates(scenario) -> np.ndarray:
    """k (1/h, float64 [normoxic 0 / hypoxic 1, adhesion level]) = k0 · (1 − level/15) ·
    (1 + f_hyp if hypoxic): the rates detach_thr is made of (anti-metastatic therapy
    scales them, `kernels/antimetastatic.py`)."""
    m = scenario.values["migration"]
    free = 1.0 - np.arange(TRAIT_LEVELS) / (TRAIT_LEVELS - 1.0)       # 1 − level/15
    return np.array([m["detachment_per_h"] * free * (1.0 + m["hypoxic_emt_factor"] * hypoxic)
                     for hypoxic in (0, 1)])


@MIGRATION.rules_from
def migration_rules(scenario) -> dict:
    """detach_thr (uint32 [normoxic 0 / hypoxic 1, adhesion level]), readhere_thr,
    hop_substeps n = ⌈p⌉ (at least 1), hop_thr (P of a hop per sub-step, p/n) and
    oxygen_bias (float32, 1/mmHg)."""
    dt, m = scenario["time.step_h"], scenario.values["migration"]
    p = hops_per_step(scenario)
    n = max(1, math.ceil(p - 1e-12))
    return {"detach_thr": rate_threshold(detachment_rates(scenario), dt),
            "readhere_thr": rate_threshold(m["readhesion_per_h"], dt),
            "hop_substeps": int(n),
            "hop_thr": np.uint32(probability_threshold(min(p / n, 1.0))),
            "oxygen_bias": float32_of(m["oxygen_bias_per_mmHg"])}


# -- 1. adhesion loss ---------------------------------------------------------------------

@MIGRATION.entry("lose_adhesion")
@numba.njit(parallel=True, cache=True)
def _lose_adhesion(kind, organ, traits, oxygen, motile, lineage, hypoxic_mmHg, detach_thr,
                   readhere_thr, step, events, nz, ny, nx, z0, ny_global, nx_global, lattice_id,
                   k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != TUMOR:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_DETACH, lattice_id, k0, k1)[0]
                if motile[z, y, x] != 0:
                    if word < readhere_thr:              # adheres again
                        motile[z, y, x] = 0
                        events[READHERED, z] += 1
                        if (organ[z, y, x] > OWN_ORGAN
                                and lineage[z, y, x] < COLONY_LINEAGE_BASE):
                            lineage[z, y, x] += FOUNDING_BASE     # founds a local metastasis
                            events[SETTLED_ABROAD, z] += 1
                    continue
                hypoxic = 1 if oxygen[z, y, x] < hypoxic_mmHg else 0
                if word < detach_thr[hypoxic, traits[ADHESION, z, y, x]]:
                    motile[z, y, x] = 1                  # detaches
                    events[DETACHED, z] += 1


# -- 2. migration: propose → resolve → apply ---------------------------------------------

@numba.njit(inline="always", cache=True)
def hop_weight(kind, oxygen, z, y, x, d, nz, ny, nx, bias):
    """Weight of a hop in direction d: 0 where the cell may not go (outside, a vessel,
    debris, another tumour cell), else 1 + bias · max(0, pO2(site) − pO2(here))."""
    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
    if not inside:
        return np.float32(0.0)
    k = kind[zz, yy, xx]
    if k != EMPTY and k != FUNCTIONAL:
        return np.float32(0.0)
    rise = oxygen[zz, yy, xx] - oxygen[z, y, x]
    rise = max(rise, np.float32(0.0))
    return np.float32(1.0) + bias * rise


@numba.njit(inline="always", cache=True)
def choose_hop(kind, oxygen, z, y, x, nz, ny, nx, bias, word):
    """Direction 1..6 drawn with probability weight/Σweights (float32, summed in
    direction order; u = (word >> 8) · 2⁻²⁴ · Σ); 0 if no site is open."""
    total = np.float32(0.0)
    last = 0
    for d in range(1, 7):
        w = hop_weight(kind, oxygen, z, y, x, d, nz, ny, nx, bias)
        if w > np.float32(0.0):
            total = total + w
            last = d
    if last == 0:
        return 0
    u = np.float32(word >> np.uint32(8)) * np.float32(5.9604644775390625e-08) * total
    acc = np.float32(0.0)
    for d in range(1, 7):
        w = hop_weight(kind, oxygen, z, y, x, d, nz, ny, nx, bias)
        if w > np.float32(0.0):
            acc = acc + w
            if u < acc:
                return d
    return last                                          # u rounded up to Σ


@MIGRATION.entry("propose_hop")
@numba.njit(parallel=True, cache=True)
def _propose_hop(kind, oxygen, motile, hop, hop_thr, oxygen_bias, tick,
                 nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop[z, y, x] = 0
                if kind[z, y, x] != TUMOR or motile[z, y, x] == 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                draw = voxel_draw(g, tick, STREAM_MIGRATE, lattice_id, k0, k1)
                if draw[0] < hop_thr:
                    hop[z, y, x] = choose_hop(kind, oxygen, z, y, x, nz, ny, nx, oxygen_bias,
                                              draw[2])


@MIGRATION.entry("settle_hops")
@numba.njit(parallel=True, cache=True)
def _settle_hops(kind, hop, hop_claim, tick, nz, ny, nx, z0, ny_global, nx_global, lattice_id,
                 k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop_claim[z, y, x] = 0
                k = kind[z, y, x]
                if k == EMPTY or k == FUNCTIONAL:
                    hop_claim[z, y, x] = strongest_claimant(
                        hop, 0, z, y, x, nz, ny, nx, tick, STREAM_MIGRATE, z0, ny_global,
                        nx_global, lattice_id, k0, k1)


@numba.njit(inline="always", cache=True)
def exchange_cells(kind, traits, clock, hypoxia, lineage, motile, vacancy, z, y, x, sz, sy, sx):
    """The cells at (z, y, x) and (sz, sy, sx) trade places, with all they carry."""
    k = kind[z, y, x]
    kind[z, y, x] = kind[sz, sy, sx]
    kind[sz, sy, sx] = k
    for t in range(traits.shape[0]):
        v = traits[t, z, y, x]
        traits[t, z, y, x] = traits[t, sz, sy, sx]
        traits[t, sz, sy, sx] = v
    c = clock[z, y, x]
    clock[z, y, x] = clock[sz, sy, sx]
    clock[sz, sy, sx] = c
    h = hypoxia[z, y, x]
    hypoxia[z, y, x] = hypoxia[sz, sy, sx]
    hypoxia[sz, sy, sx] = h
    n = lineage[z, y, x]
    lineage[z, y, x] = lineage[sz, sy, sx]
    lineage[sz, sy, sx] = n
    m = motile[z, y, x]
    motile[z, y, x] = motile[sz, sy, sx]
    motile[sz, sy, sx] = m
    vacancy[z, y, x] = 0
    vacancy[sz, sy, sx] = 0


@MIGRATION.entry("make_hops")
@numba.njit(parallel=True, cache=True)
def _make_hops(kind, traits, clock, hypoxia, lineage, motile, vacancy, hop_claim, events,
               nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                d = hop_claim[z, y, x]
                if d == 0:
                    continue
                sz, sy, sx, _ = neighbour(z, y, x, d, nz, ny, nx)
                exchange_cells(kind, traits, clock, hypoxia, lineage, motile, vacancy,
                               z, y, x, sz, sy, sx)
                events[MIGRATED, z] += 1


# -- the passes ---------------------------------------------------------------------------

@kernel(reads=("kind", "organ", "traits.adhesion", "oxygen", "motile"), writes=(),
        process=MIGRATION)
def lose_adhesion(lattice, rules, step):
    """Adherent tumour cells detach at k0·(1 − adhesion/15)·(1 + f if hypoxic) (× (1 − E) under anti-metastatic exposure E); motile cells re-adhere at k_re (in a neighbouring organ founding a local metastasis)."""
    from .antimetastatic import held_adhesion       # E = 0: no overrides
    _lose_adhesion(lattice, rules, step, **held_adhesion(rules, step))


def substep_tick(step, j, n) -> np.uint32:
    """The Philox step word of sub-step j of n: step · n + j, modulo 2³²."""
    return np.uint32((int(step) * n + j) % 2**32)


@kernel(reads=("kind", "oxygen", "motile", "hop", "hop_claim"), writes=("hop", "hop_claim"),
        process=MIGRATION)
def migrate(lattice, rules, step):
    """Motile tumour cells hop p = vΔt/h times per step (⌈p⌉ sub-steps) into empty matrix or past functional cells, weighted 1 + χ·(pO2 rise)."""
    n = rules.hop_substeps
    for j in range(n):
        tick = substep_tick(step, j, n)
        _propose_hop(lattice, rules, step, tick=tick)
        _settle_hops(lattice, rules, step, tick=tick)
        _make_hops(lattice, rules, step)
