"""Anti-angiogenic therapy: an anti-VEGF antibody blocks sprouting and prunes immature vessels.

A `[[therapy]]` of kind "anti_angiogenic" gives intravenous doses `dose_mg_per_kg` of an
anti-VEGF-A antibody (bevacizumab) on the schedule of `engine.therapy`.  The plasma
concentration C and the fraction of VEGF signalling blocked, the exposure

    E = C / (C + EC50)     (one-compartment boluses, `engine.pharmacokinetics`),

act in two ways (Jain 2005, Science 307:58, "normalisation" of the tumour vasculature):

* blocking VEGF signalling: at a step with exposure E, tip-cell activation on perfused
  vessels and branching of stalks happen at rates scaled by (1 − E):
  sprout_thr = threshold(1 − exp(−k_sprout (1 − E) Δt)) and
  branch_p = 1 − exp(−k_branch (1 − E) Δt) (`blocked_angiogenesis`; float64 on the host once
  per step and handed to `propose_sprouting` as keyword overrides of its rule constants).
  E = 0 hands nothing over, so an untreated run is bit-identical to one without this
  process.  The VEGF concentration itself (threshold, chemotaxis) is left as it is:
  the antibody blocks the receptor signal, not the gradient the model reads (approx.).
* pruning: `prune_immature_vessels` (stream `prune`, 17) — each immature endothelial
  voxel, a VESSEL lumenised from a sprout during the run (`sprout_age` > 0) or a SPROUT
  stalk or TIP, regresses to empty matrix with

      P = 1 − exp(−k_prune · E · Δt)

  per step (the threshold computed on the host, compared with word 0 of its Philox
  draw), counting `vessel_pruned`; mature vessels (`sprout_age` = 0, there before the run)
  are untouched.  Immature vessels lack pericyte cover and depend on VEGF for survival,
  so VEGF blockade prunes them within days (Benjamin et al. 1999, J Clin Invest 103:159;
  Inai et al. 2004, Am J Pathol 165:35: up to ~70 % of tumour capillaries gone within a
  week).  Perfusion is recomputed in a step where a vessel was pruned (engine/schedule.py).

Parameters (`[antiangiogenic]`):

* `half_life_h` = 480 h: bevacizumab terminal half-life about 20 days (label; 11–50 days);
* `volume_L` = 3 L: central volume about 2.7–3.3 L (label population PK, approx.);
* `body_mass_kg` = 70 kg: the reference adult (ICRP Publication 89);
* `ec50_mg_per_L` = 1 mg/L (approx., a guess): bevacizumab binds VEGF-A with Kd about
  1 nM (0.15 mg/L at 149 kDa); free plasma VEGF was suppressed at every dose from
  0.3 mg/kg (peak ≈ 7 mg/L; Gordon et al. 2001, J Clin Oncol 19:843), so half-maximal
  blockade lies below that; 1 mg/L allows several-fold for tissue penetration.  At
  clinical troughs (50–100 mg/L at 5–10 mg/kg every 2 weeks) E ≈ 0.98–0.99: VEGF-A is
  neutralised throughout treatment, as observed;
* `prune_per_h` = 0.007 /h: at E = 1, 1 − exp(−0.007 · 168) ≈ 70 % of immature vessels
  pruned within a week (Inai et al. 2004; Jain 2005; approx.).

Rule constants (`antiangiogenic_rules`): `antiangiogenic_exposure`, E at steps 0 .. the
run's last step or ten half-lives after the last dose, whichever comes first (float64;
the schedule is static), and `antiangiogenic_plasma`, the `PlasmaSchedule` that gives E
at any later step (`exposure_at`).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from engine.pharmacokinetics import exposure_rules, step_exposure

from .lattice import EMPTY, SPROUT, TIP, VESSEL, global_index
from .philox import probability_threshold, rate_threshold, step_probability, voxel_draw
from .process import Param, Process, float32_of, positive
from .twin import kernel

KIND = "anti_angiogenic"

ANTIANGIOGENIC = Process(
    "antiangiogenic", "antiangiogenic.cu",
    params={"antiangiogenic": {
        "half_life_h": positive(
            480.0, "h", "bevacizumab terminal half-life about 20 days (label; range 11-50 "
                        "days); bound: a guard", hi=1e5),
        "volume_L": positive(
            3.0, "L", "bevacizumab central volume about 2.7-3.3 L (label population PK, "
                      "approx.); bound: a guard", hi=1e3),
        "body_mass_kg": positive(
            70.0, "kg", "reference adult (ICRP Publication 89); bound: a guard", hi=1e3),
        "ec50_mg_per_L": positive(
            1.0, "mg/L", "(approx., a guess) half-maximal VEGF-A blockade: Kd about 1 nM "
                         "(0.15 mg/L); free VEGF suppressed from 0.3 mg/kg, peak ~7 mg/L "
                         "(Gordon 2001); clinical troughs 50-100 mg/L give E ~ 0.99; "
                         "bound: a guard", hi=1e6),
        "prune_per_h": Param(
            "float", 0.007, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) immature vessels pruned at full effect: ~70 % of tumour "
                   "capillaries regress within a week of VEGF blockade (Inai 2004; Jain "
                   "2005); bound: a guard"),
    }},
    events=("vessel_pruned",),
    streams={"prune": 17})          # word 0: pruned or not
VESSEL_PRUNED = 0
STREAM_PRUNE = ANTIANGIOGENIC.streams["prune"]


@ANTIANGIOGENIC.rules_from
def antiangiogenic_rules(scenario) -> dict:
    """antiangiogenic_exposure (E at steps 0 .. the run's steps, float64),
    antiangiogenic_plasma (the PlasmaSchedule, for later steps; both from
    `engine.pharmacokinetics.exposure_rules`), prune_per_h (float64) and the angiogenesis
    rates blocking scales: sprout_rate_per_h, branch_rate_per_h."""
    a = scenario.values["angiogenesis"]
    return {**exposure_rules(scenario, KIND),
            "prune_per_h": float(scenario["antiangiogenic.prune_per_h"]),
            "sprout_rate_per_h": float(a["sprout_rate_per_h"]),
            "branch_rate_per_h": float(a["branch_rate_per_h"])}


def exposure_at(rules, step: int) -> float:
    """E at `step`: the precomputed table, or past its end the plasma schedule."""
    return step_exposure(rules, KIND, step)


def blocked_angiogenesis(rules, step: int) -> dict:
    """Keyword overrides for `propose_sprouting` at `step`: sprouting and branching rates
    scaled by (1 − E); empty where E = 0 (the rule constants as they are)."""
    e = exposure_at(rules, step)
    if not e > 0.0:
        return {}
    return blocked_thresholds(rules, e)


def blocked_thresholds(rules, e: float) -> dict:
    """sprout_thr (uint32) and branch_p (float32) at exposure E, from the rates (float64)."""
    dt = rules.step_h
    return {"sprout_thr": np.uint32(rate_threshold(rules.sprout_rate_per_h * (1.0 - e), dt)),
            "branch_p": float32_of(step_probability(rules.branch_rate_per_h * (1.0 - e), dt))}


def prune_probability(prune_per_h: float, e: float, step_h: float) -> float:
    """P = 1 − exp(−k_prune E Δt) (float64)."""
    return -math.expm1(-prune_per_h * e * step_h)


def prune_threshold(rules, step: int) -> np.uint32:
    """The uint32 threshold of the pruning probability at `step`."""
    return np.uint32(probability_threshold(
        prune_probability(rules.prune_per_h, exposure_at(rules, step), rules.step_h)))


@ANTIANGIOGENIC.entry("prune_immature_vessels")
@numba.njit(parallel=True, cache=True)
def _prune_immature_vessels(kind, perfused, lumen, sprout_age, trail, vessel_threat, prune_thr,
                            step, events, nz, ny, nx, z0, ny_global, nx_global, lattice_id,
                            k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                if not (k == TIP or k == SPROUT or (k == VESSEL and sprout_age[z, y, x] > 0)):
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                if voxel_draw(g, step, STREAM_PRUNE, lattice_id, k0, k1)[0] < prune_thr:
                    kind[z, y, x] = EMPTY
                    perfused[z, y, x] = 0
                    lumen[z, y, x] = 0
                    sprout_age[z, y, x] = 0
                    trail[z, y, x] = 0
                    vessel_threat[z, y, x] = 0
                    events[VESSEL_PRUNED, z] += 1


@kernel(reads=("kind", "sprout_age"), writes=(), process=ANTIANGIOGENIC)
def prune_immature_vessels(lattice, rules, step):
    """Immature vessels (sprout_age > 0), stalks and tips regress with P = 1 − exp(−k_prune E Δt)."""
    _prune_immature_vessels(lattice, rules, step, prune_thr=prune_threshold(rules, step))
