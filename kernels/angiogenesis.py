"""Sprouting angiogenesis, in the spirit of Anderson & Chaplain (1998).

Three passes each step, after division:

1. `propose_sprouting` — every endothelial voxel that may act chooses a target face
   neighbour (a free voxel: empty matrix, a functional cell or necrotic debris):
   * a tip cell at least `anastomosis_min_age` old that touches endothelium other
     than its own trail (the stalk it came from) anastomoses instead of moving;
   * otherwise it moves with probability p = speed·Δt/h;
   * a perfused vessel voxel with VEGF c ≥ the sprouting threshold and no sprout
     beside it sprouts a new tip with probability rate·Δt;
   * a stalk voxel older than the branching age and with no tip beside it
     branches with probability rate·Δt·min(1, c / c_branch).
   The direction is drawn with weights (face neighbour j of voxel i)

       w_j = w0 + χ(c_i) · max(0, c_j − c_i) + ρ [j is matrix],   χ(c) = χ0 / (1 + c / c_sat),

   random motility w0, chemotaxis up the VEGF gradient saturating with
   concentration, and haptotaxis along the matrix.
2. `grow_sprouts` — a free voxel chosen by several becomes a tip of the one with the
   highest (Philox priority, global index); a moving tip leaves a stalk voxel behind
   (new vessel length); a functional cell in the way dies, debris is cleared; an
   anastomosing tip becomes a lumenised vessel.
3. `lumenise` — every stalk joined through stalks to a tip that anastomosed this
   step gets a lumen (becomes a vessel).  `spread_perfusion` then lets blood in: a
   sprout carries blood exactly from the step it joins the network.

Tips and stalks keep in `sprout_age` the age of their sprout (steps) and in `trail`
the direction back along it; proposals go in the work array `sprout_intent`, and new
lumen (a fused tip, then the stalks joined to it) in the work array `lumen` until
perfusion is recomputed.

Under anti-angiogenic therapy (kernels/antiangiogenic.py) the sprouting and branching
rates are scaled by (1 − E), E the fraction of VEGF signalling the drug blocks this step.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .claims import strongest_claimant
from .lattice import (EMPTY, FUNCTIONAL, NECROTIC, SPROUT, TIP, VESSEL, global_index,
                      is_endothelium, neighbour, opposite)
from .perfusion import flood
from .philox import rate_threshold, step_probability, voxel_draw
from .process import Array, Param, Process, float32_of, nonnegative, steps_of
from .twin import kernel

ANGIOGENESIS = Process(
    "angiogenesis", "angiogenesis.cu",
    arrays={"sprout_age": Array(np.uint16, "tip or stalk: steps since its sprout began"),
            "trail": Array(np.uint8, "tip or stalk: direction back along its sprout"),
            "sprout_intent": Array(np.uint8, "work: a sprout's proposal (direction, new-tip bit, "
                                             "or fuse)", work=True),
            "lumen": Array(np.uint8, "work: new lumen this step (fused tips, then their stalks)",
                           work=True)},
    params={"angiogenesis": {
        "enabled": Param("bool", True, unit="switch",
                         source="false: no sprouting (experiments, therapy)"),
        "sprout_vegf_threshold_ng_per_mL": nonnegative(
            0.2, "ng/mL", "(approx.) tip-cell activation threshold; bound: a guard far above "
            "any tissue VEGF (~1 ng/mL)", hi=1e6),
        "sprout_rate_per_h": nonnegative(
            0.005, "1/h", "(approx.) per activated perfused vessel voxel", hi=1e3),
        "tip_speed_um_per_h": nonnegative(
            20.0, "µm/h", "(approx.) endothelial tip migration 10-50 µm/h; bound: a guard "
            "(1 cm/h)", hi=1e4),
        "random_motility_weight": nonnegative(
            1.0, "-", "Anderson & Chaplain 1998: random motility D; bound: a guard keeping "
            "float32 weight sums finite", hi=1e6),
        "chemotaxis_mL_per_ng": nonnegative(
            200.0, "mL/ng", "(approx.) χ0: bias per ng/mL of VEGF rise; bound: a guard keeping "
            "float32 weight sums finite", hi=1e6),
        "chemotaxis_saturation_ng_per_mL": Param(
            "float", 2.0, lo=1e-6, hi=1e6, unit="ng/mL",
            source="χ(c) = χ0/(1 + c/c_sat), Anderson & Chaplain α; bounds: a guard "
                   "(1/c_sat is a float32)"),
        "haptotaxis_weight": nonnegative(
            0.5, "-", "(approx.) ρ: preference for matrix voxels; bound: a guard keeping "
            "float32 weight sums finite", hi=1e6),
        "branch_age_h": nonnegative(
            18.0, "h", "(approx.) sprouts branch once this old (Anderson & Chaplain); "
            "bound: a guard (11 years: never)", hi=1e5),
        "branch_rate_per_h": nonnegative(
            0.005, "1/h", "(approx.) per stalk voxel at saturating VEGF", hi=1e3),
        "branch_vegf_saturation_ng_per_mL": Param(
            "float", 2.0, lo=1e-6, hi=1e6, unit="ng/mL",
            source="(approx.) branching rises with VEGF up to this; bounds: a guard "
                   "(its inverse is a float32)"),
        "anastomosis_min_age_h": nonnegative(
            3.0, "h", "(approx.) a sprout must leave its parent first; bound: a guard "
            "(11 years: never)", hi=1e5),
    }},
    events=("tip_sprouted", "stalk_laid", "anastomosis", "debris_cleared",
            "functional_cleared_by_sprout"),
    streams={"sprout": 7})    # word 0: act, 1: claim priority, 2: direction
TIP_SPROUTED, STALK_LAID, ANASTOMOSIS, DEBRIS_CLEARED, FUNCTIONAL_CLEARED_BY_SPROUT = range(5)
STREAM_SPROUT = ANGIOGENESIS.streams["sprout"]


AGE_NEVER = 65536     # a sprout age (steps) the uint16 sprout_age never reaches


@ANGIOGENESIS.rules_from
def angiogenesis_rules(scenario) -> dict:
    """Per-step probabilities (float64 on the host, as uint32 thresholds or float32) and
    float32 weights; ages in whole steps (sprout_age saturates at 65535, so an age
    beyond it saturates at 65536: never reached)."""
    a = scenario.values["angiogenesis"]
    h, dt = scenario["lattice.voxel_um"], scenario["time.step_h"]
    return {
        "angiogenesis_enabled": bool(a["enabled"]),
        "sprout_vegf": float32_of(a["sprout_vegf_threshold_ng_per_mL"]),
        "sprout_thr": rate_threshold(a["sprout_rate_per_h"], dt),
        "move_p": float32_of(min(1.0, a["tip_speed_um_per_h"] * dt / h)),
        "chi0": float32_of(a["chemotaxis_mL_per_ng"]),
        "inv_csat": float32_of(1.0 / a["chemotaxis_saturation_ng_per_mL"]),
        "base": float32_of(a["random_motility_weight"]),
        "haptotaxis": float32_of(a["haptotaxis_weight"]),
        "branch_age": np.int64(steps_of(a["branch_age_h"], dt, lo=0, hi=AGE_NEVER)),
        "branch_p": float32_of(step_probability(a["branch_rate_per_h"], dt)),
        "inv_cbranch": float32_of(1.0 / a["branch_vegf_saturation_ng_per_mL"]),
        "anastomosis_age": np.int64(steps_of(a["anastomosis_min_age_h"], dt, lo=0, hi=AGE_NEVER)),
    }

ANASTOMOSE = 7      # intent of a tip that fuses (not a direction)
NEW_TIP = 8         # sprout_intent bit: the target becomes a new tip (sprouting or branching)
U24 = np.float32(1.0 / 16777216.0)


@numba.njit(inline="always", cache=True)
def uniform(word):
    """A float32 in [0, 1) from the top 24 bits of a Philox word."""
    return np.float32(np.uint64(word) >> np.uint64(8)) * U24


@numba.njit(inline="always", cache=True)
def is_free(k):
    """What a sprout can grow into: matrix, a functional cell, necrotic debris."""
    return k == EMPTY or k == FUNCTIONAL or k == NECROTIC


@numba.njit(inline="always", cache=True)
def weight(c_here, c_there, chi, target_kind, base, haptotaxis):
    """w = w0 + χ max(0, c_j − c_i) + ρ [matrix], summed in this order."""
    w = base + chi * max(c_there - c_here, np.float32(0.0))
    return w + (haptotaxis if target_kind == EMPTY else np.float32(0.0))


@numba.njit(inline="always", cache=True)
def choose_target(kind, vegf, z, y, x, nz, ny, nx, word, chi0, inv_csat, base, haptotaxis):
    """Direction (1..6) drawn with the weights above among free neighbours; 0 if none."""
    c_here = vegf[z, y, x]
    chi = chi0 / (np.float32(1.0) + c_here * inv_csat)
    total = np.float32(0.0)
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if inside and is_free(kind[zz, yy, xx]):
            total = total + weight(c_here, vegf[zz, yy, xx], chi, kind[zz, yy, xx], base,
                                   haptotaxis)
    if total == np.float32(0.0):
        return 0
    pick = uniform(word) * total
    running = np.float32(0.0)
    last = 0
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if inside and is_free(kind[zz, yy, xx]):
            running = running + weight(c_here, vegf[zz, yy, xx], chi, kind[zz, yy, xx], base,
                                       haptotaxis)
            last = d
            if pick < running:
                return d
    return last


ANY_ENDOTHELIUM, TIP_OR_STALK, TIP_ONLY = 0, 1, 2


@numba.njit(inline="always", cache=True)
def touches(kind, z, y, x, nz, ny, nx, what, skip):
    """Whether a face neighbour other than direction `skip` is `what`: any
    endothelium, a tip or stalk, or a tip."""
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if not inside or d == skip:
            continue
        k = kind[zz, yy, xx]
        if k == TIP or (what == TIP_OR_STALK and k == SPROUT) or (
                what == ANY_ENDOTHELIUM and is_endothelium(k)):
            return True
    return False


@ANGIOGENESIS.entry("propose_sprouting")
@numba.njit(parallel=True, cache=True)
def _propose_sprouting(kind, perfused, vegf, sprout_age, trail, sprout_intent, sprout_vegf, sprout_thr,
                       move_p, chi0, inv_csat, base, haptotaxis, branch_age, branch_p,
                       inv_cbranch, anastomosis_age, step,
                       nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                sprout_intent[z, y, x] = 0
                k = kind[z, y, x]
                if k != TIP and k != SPROUT and k != VESSEL:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                w = voxel_draw(g, step, STREAM_SPROUT, lattice_id, k0, k1)
                act = False
                new_tip = 0
                if k == TIP:
                    if (sprout_age[z, y, x] >= anastomosis_age
                            and touches(kind, z, y, x, nz, ny, nx, ANY_ENDOTHELIUM,
                                        trail[z, y, x])):
                        sprout_intent[z, y, x] = ANASTOMOSE
                        continue
                    act = uniform(w[0]) < move_p
                elif k == VESSEL:
                    act = (perfused[z, y, x] == 1 and vegf[z, y, x] >= sprout_vegf
                           and w[0] < sprout_thr
                           and not touches(kind, z, y, x, nz, ny, nx, TIP_OR_STALK, 0))
                    new_tip = NEW_TIP
                else:
                    level = min(vegf[z, y, x] * inv_cbranch, np.float32(1.0))
                    act = (sprout_age[z, y, x] >= branch_age and uniform(w[0]) < branch_p * level
                           and not touches(kind, z, y, x, nz, ny, nx, TIP_ONLY, 0))
                    new_tip = NEW_TIP
                if act:
                    d = choose_target(kind, vegf, z, y, x, nz, ny, nx, w[2], chi0, inv_csat,
                                      base, haptotaxis)
                    if d != 0:
                        sprout_intent[z, y, x] = d | new_tip


@ANGIOGENESIS.entry("grow_sprouts")
@numba.njit(parallel=True, cache=True)
def _grow_sprouts(kind, perfused, lumen, sprout_age, trail, clock, hypoxia, vacancy, traits,
                  lineage, sprout_intent, step, events,
                  nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                lumen[z, y, x] = 0
                k = kind[z, y, x]
                if is_free(k):
                    w = strongest_claimant(sprout_intent, 0, z, y, x, nz, ny, nx, step, STREAM_SPROUT,
                                           z0, ny_global, nx_global, lattice_id, k0, k1)
                    if w == 0:
                        continue
                    uz, uy, ux, _ = neighbour(z, y, x, w, nz, ny, nx)
                    if k == FUNCTIONAL:
                        events[FUNCTIONAL_CLEARED_BY_SPROUT, z] += 1
                    elif k == NECROTIC:
                        events[DEBRIS_CLEARED, z] += 1
                    new_tip = (sprout_intent[uz, uy, ux] & NEW_TIP) != 0
                    if new_tip:
                        events[TIP_SPROUTED, z] += 1
                    kind[z, y, x] = TIP
                    sprout_age[z, y, x] = 0 if new_tip else min(
                        np.int64(sprout_age[uz, uy, ux]) + 1, 65535)
                    trail[z, y, x] = w
                    for t in range(traits.shape[0]):          # the cell or vacancy it replaced
                        traits[t, z, y, x] = 0
                    lineage[z, y, x] = 0
                    clock[z, y, x] = 0
                    hypoxia[z, y, x] = 0
                    vacancy[z, y, x] = 0
                    perfused[z, y, x] = 0
                elif k == TIP:
                    d = sprout_intent[z, y, x] & 7
                    if d == ANASTOMOSE:
                        kind[z, y, x] = VESSEL
                        lumen[z, y, x] = 1
                        trail[z, y, x] = 0
                        events[ANASTOMOSIS, z] += 1
                        continue
                    moved = False
                    if d != 0 and (sprout_intent[z, y, x] & NEW_TIP) == 0:
                        tz, ty, tx, _ = neighbour(z, y, x, d, nz, ny, nx)
                        moved = strongest_claimant(sprout_intent, 0, tz, ty, tx, nz, ny, nx, step,
                                                   STREAM_SPROUT, z0, ny_global, nx_global, lattice_id,
                                                   k0, k1) == opposite(d)
                    if moved:
                        kind[z, y, x] = SPROUT          # the stalk keeps the sprout's age
                        events[STALK_LAID, z] += 1
                    else:
                        sprout_age[z, y, x] = min(np.int64(sprout_age[z, y, x]) + 1, 65535)
                elif k == SPROUT:
                    sprout_age[z, y, x] = min(np.int64(sprout_age[z, y, x]) + 1, 65535)


@kernel(reads=("kind", "perfused", "vegf", "sprout_age", "trail"), writes=("sprout_intent",),
        process=ANGIOGENESIS)
def propose_sprouting(lattice, rules, step):
    """Tips choose to anastomose or move; vessels sprout; old stalks branch (at rates × (1 − E) under anti-VEGF exposure E)."""
    from .antiangiogenic import blocked_angiogenesis    # E = 0: no overrides
    _propose_sprouting(lattice, rules, step, **blocked_angiogenesis(rules, step))


@kernel(reads=("kind", "sprout_intent", "sprout_age"), writes=("kind", "sprout_age", "lumen"),
        process=ANGIOGENESIS)
def grow_sprouts(lattice, rules, step):
    """Tips take the voxels they won, leave stalks behind, or fuse."""
    _grow_sprouts(lattice, rules, step)


@kernel(reads=("kind", "perfused"), writes=("kind", "perfused"))
def lumenise(lattice, rules, step):
    """Stalks joined through stalks to new lumen become vessels; returns the rounds."""
    return flood(lattice, rules, lattice.lumen, SPROUT, VESSEL, 1)
