"""Immune surveillance and escape: cytotoxic T cells and NK cells on the lattice.

Immune cells occupy a voxel each (kinds T_CELL and NK_CELL, `kernels.lattice`).  They
are not live tissue cells: they neither cycle nor divide, the fate pass leaves them
alone, and the oxygen field treats their voxel like matrix (approx.: a lymphocyte of
about 7 µm has about 1/20 of the volume of a 20 µm voxel and a low resting respiration,
so its uptake is neglected).  Tumour daughters, displaced organ cells, tumour movers and
sprouts never enter their voxels: an immune cell is an obstacle, like a dormant cell.

S = `immune.status` is the patient's immune status, a multiplier on recruitment and on
the rate at which immune cells engage their targets (1 competent, e.g. 0.3
immunosuppressed, 0 none); the run's summary reports it.  Every probability below is
1 − exp(−k Δt) of a rate k, turned into a uint32 threshold on the host (float64); a
kernel compares Philox words with it.

1. Chemokine (`relax_chemokine`, a `Field`; CXCL9/10-like, ng/mL).  Each step, where
   immunity is on,

       0 = D ∇²c − λ c + S_tumour [tumour cell] + S_debris [necrotic debris],

   tumour cells secreting in proportion to the founder's antigen level,
   S_tumour = s_t · (antigen level / 15) (inflammation follows antigenicity; the field
   solver's sources are per kind, so the founder's level stands for the tumour's),
   necrotic debris secreting s_n (a damage signal).

2. Recruitment (`recruit_immune_cells`, propose → resolve → apply, stream
   `immune_recruit`).  A perfused blood vessel with an empty face neighbour releases an
   immune cell into one of them (word 2 picks it) when word 0 < t(P),

       P = 1 − exp(−(k_T + k_NK) · S · f(c) · Δt),   f(c) = c / (c + K),

   c the chemokine at the vessel (clamped at 0).  The host tabulates P over RECRUIT_BINS
   bins of f (bin ⌊256 f⌋, P at the bin's lower edge, so no chemokine recruits nothing);
   the kernel computes f in float32 (one division).  Each empty voxel keeps the vessel
   with the highest (word 1, global index) aimed at it; the recruit is an NK cell when
   that vessel's word 3 < t(k_NK / (k_T + k_NK)), else a T cell.  It arrives free (no contact, no kills).
   Under dendritic-cell vaccination k_T is raised to k_T (1 + g·P) and both tables are
   handed over per step (`kernels/immunotherapy.py`, `recruitment_tables`).

3. Killing (`kill_tumour_cells`, stream `immune_engage`, `immune_death`), three
   entries per step:

   a. `end_contacts` — a tumour cell dies (apoptosis: empty voxel, its arrays cleared)
      when a face neighbour immune cell ends a lethal contact with it this step (busy =
      1, target direction pointing here, lethal bit); the first such neighbour in
      direction order −x, +x, −y, +y, −z, +z is the killer (`hop_claim`, a work array
      of `migration` free between passes, remembers its direction): events
      `killed_by_t_cell` / `killed_by_nk_cell`.
   b. `advance_contacts` — every engaged immune cell counts its contact down.  At its
      end (busy = 1) it is credited with the kill if it was the killer, and becomes
      exhausted when its kills reach its capacity or the contact was an exhausting one
      (event `immune_exhausted`).  A contact whose target is gone (killed by another,
      died, moved) ends without a kill.  Then every immune cell dies with its death
      rate (word 0 of `immune_death`): event `immune_died`.
   c. `engage` — a free, non-exhausted immune cell beside tumour cells picks one
      uniformly (word 2) and engages it when word 0 < t(P_engage):

          T cell:  P = 1 − exp(−k_e · S · (a / 15) · Δt)            (antigen a: recognition)
          NK cell: P = 1 − exp(−k_e · S · ((15 − a) / 15) · m · Δt)  (missing self),

      m = `nk_cell.solitary_factor` for a target with no tumour or dormant face
      neighbour (a single cell, as freshly arrived or detached cells are), else 1.
      At engagement the contact's outcome is drawn: lethal when word 1 < t(P_kill),

          T cell:  P_kill = p_k · (1 − i · (q / 15) · (1 − b)),     NK cell: P_kill = p_k,

      q the target's CHECKPOINT (PD-L1-like) level, i the checkpoint's kill inhibition,
      b the checkpoint blockade (0; under checkpoint-blockade therapy its plasma exposure
      E, the tables handed to `engage` per step: `checkpoint_rules`,
      `kernels/immunotherapy.py`); and, for T cells, exhausting when word 3 < t(e · (q / 15) ·
      (1 − b)).  The cell is then busy for the contact time (⌈contact_h / Δt⌉ steps)
      and does not move.  So a T cell among antigen-high targets kills
      P_kill / (n + (1 − P)/P) cells per step, n the contact steps.

4. Migration (`move_immune_cells`, stream `immune_move`, propose → resolve → apply as
   in `kernels.migration`).  Free immune cells (exhausted ones too) hop p = v Δt / h
   times per step in ⌈p_max⌉ sub-steps (a T cell at 5 µm/min: 15 hops of 20 µm per
   1 h step; a lattice walk of 15 uncorrelated 20 µm hops an hour has the motility
   coefficient h² p / (6 Δt) ≈ 17 µm²/min of a cell moving at 5 µm/min with a
   persistence time of about 2 min, v² P / 3), into empty matrix or past organ cells of
   the organ it is in (which swap places with them; none leaves its organ), weighted
   1 + χ · max(0, c(site) − c(here)): a walk biased up the chemokine gradient.  Everything an immune cell carries (contact state,
   kills) moves with it.

Events: recruited_t_cell, recruited_nk_cell, killed_by_t_cell, killed_by_nk_cell,
immune_exhausted, immune_died, immune_migrated.  Streams 21–25 (25: NK surveillance of
arrivals in site lattices, drawn on the host by `engine.body`).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .claims import pick_direction, strongest_claimant
from .field import FIRST_ORDER, Field, diffusion_coefficient, field_pass
from .lattice import (ANTIGEN, CHECKPOINT, DORMANT, EMPTY, FUNCTIONAL, N_KINDS, NECROTIC, NK_CELL,
                      T_CELL, TRAIT_LEVELS, TUMOR, VESSEL, clear_cell, global_index, is_immune,
                      neighbour, opposite)
from .philox import probability_threshold, rate_threshold, step_probability, voxel_draw
from .process import Array, Param, Process, float32_of, nonnegative, positive, steps_of
from .twin import kernel

MAX_IMMUNE_SUBSTEPS = 16          # hops an immune cell may take per step
RECRUIT_BINS = 256                # bins of f(c) = c / (c + K) for the recruitment threshold
TARGET_BITS = 7                   # immune_state bits 0-2: direction of the engaged target
LETHAL = 8                        # bit 3: the contact ends in a kill
EXHAUSTING = 16                   # bit 4: the contact exhausts the T cell
EXHAUSTED = 32                    # bit 5: exhausted, kills no more
T_ROW, NK_ROW = 0, 1              # rows of the per-type tables

RATE_GUARD = "; bound: a guard (certain within seconds)"


def _cell_params(*, recruitment, speed, speed_source, death, engagement, engagement_source,
                 contact, contact_source, capacity, capacity_source, extra):
    return {
        "recruitment_per_h": nonnegative(
            recruitment, "1/h", "(approx., a guess) release per perfused vessel voxel with an "
            "empty neighbour at saturating chemokine, × immune.status" + RATE_GUARD, hi=1e3),
        "speed_um_per_min": Param("float", speed, lo=0.0, hi=20.0, unit="µm/min",
                                  source=speed_source + "; bound: the fastest lymphocytes"),
        "death_per_h": nonnegative(death, "1/h", "(approx.) effector lifespan in tissue of "
                                   "days: mean 1/rate" + RATE_GUARD, hi=1e3),
        "engagement_per_h": nonnegative(engagement, "1/h", engagement_source + RATE_GUARD,
                                        hi=1e3),
        "contact_h": Param("float", contact, lo=0.0, lo_open=True, hi=240.0, unit="h",
                           source=contact_source + "; at least one step; bound: 10 days"),
        "kill_probability": Param("float", 1.0, lo=0.0, hi=1.0, unit="per contact",
                                  source="(approx.) a completed contact kills: the contact "
                                         "time is the time per kill"),
        "kill_capacity": Param("int", capacity, lo=1, hi=254, unit="kills",
                               source=capacity_source),
        **extra,
    }


IMMUNE = Process(
    "immune", "immune.cu",
    arrays={
        "chemokine": Array(np.float32, "chemokine (CXCL9/10-like), ng/mL"),
        "immune_state": Array(np.uint8, "immune cell: engaged target direction (bits 0–2), "
                                        "lethal (3), exhausting (4), exhausted (5)"),
        "immune_busy": Array(np.uint8, "immune cell: steps left of its contact (0: free)"),
        "immune_kills": Array(np.uint8, "immune cell: kills so far"),
    },
    params={
        "immune": {
            "enabled": Param("bool", False, unit="switch",
                             source="immune cells on the lattice and NK surveillance of "
                                    "arrivals; false: none"),
            "status": Param("float", 1.0, lo=0.0, hi=10.0, unit="-",
                            source="the patient's immune status: multiplier on recruitment "
                                   "and killing (1 competent, e.g. 0.3 immunosuppressed; "
                                   "approx.); bound: a guard"),
            "chemokine_half_saturation_ng_per_mL": positive(
                0.5, "ng/mL", "(approx.) recruitment f(c) = c/(c + K): half-maximal at a "
                "fraction of the chemokine level inside the tumour; bound: a guard", hi=1e6),
            "chemotaxis_mL_per_ng": nonnegative(
                5.0, "mL/ng", "(approx.) a hop's weight 1 + χ · (chemokine rise to it)", hi=1e6),
        },
        "immune.t_cell": _cell_params(
            recruitment=0.02, speed=5.0,
            speed_source="CTLs in tumours move several µm/min in intravital imaging "
                         "(Boissonnas et al. 2007; Mrass et al. 2006) (approx.)",
            death=0.01, engagement=1.0,
            engagement_source="(approx.) an adjacent target presenting full antigen is "
                              "engaged within about an hour; × antigen level / 15",
            contact=6.0, contact_source="about 6 h of contact per kill in tumours "
                                        "(Breart et al. 2008); 4 kills per day within the "
                                        "2–16 per CTL per day of Halle et al. 2016",
            capacity=10, capacity_source="(approx.) serial killing of about ten targets before "
                                         "exhaustion",
            extra={
                "checkpoint_kill_inhibition": Param(
                    "float", 0.8, lo=0.0, hi=1.0, unit="-",
                    source="(approx.) kill probability × (1 − i · checkpoint level/15 · "
                           "(1 − blockade)): PD-L1 on the target inhibits the CTL"),
                "checkpoint_exhaustion_per_contact": Param(
                    "float", 0.2, lo=0.0, hi=1.0, unit="per contact",
                    source="(approx.) chance that a contact with a checkpoint level-15 target "
                           "exhausts the CTL, × level/15 · (1 − blockade)"),
            }),
        "immune.nk_cell": _cell_params(
            recruitment=0.005, speed=4.0,
            speed_source="NK cells move a few µm/min in tissue in intravital imaging (approx.)",
            death=0.01, engagement=1.0,
            engagement_source="(approx.) an adjacent target with no antigen presentation "
                              "(missing self) is engaged within about an hour; × (15 − "
                              "antigen level) / 15",
            contact=1.0, contact_source="(approx.) NK cells kill within an hour of contact",
            capacity=4, capacity_source="(approx.) NK serial killing of a few targets",
            extra={
                "solitary_factor": Param(
                    "float", 3.0, lo=1.0, hi=100.0, unit="-",
                    source="(approx.) NK cells act fastest on single cells (freshly arrived, "
                           "detached): engagement × factor for a target without tumour "
                           "neighbours"),
                "arrival_kill_probability": Param(
                    "float", 0.5, lo=0.0, hi=1.0, unit="per arrival",
                    source="about half of arrested tumour cells killed by NK cells within "
                           "4 h of arrival (Ichise et al. 2022, eLife 11:e76269); "
                           "× immune.status"),
            }),
        "chemokine": {
            "diffusion_um2_per_s": Param(
                "float", 16.7, lo=1e-3, hi=1e5, unit="µm²/s",
                source="PhysiCell cancer-immune model: immunostimulatory factor 1000 µm²/min "
                       "(approx.); lower bound: a guard"),
            "decay_per_min": nonnegative(0.016, "1/min",
                                         "PhysiCell cancer-immune model: decay 0.016 /min, "
                                         "half-life about 43 min (approx.)" + RATE_GUARD,
                                         hi=1e3),
            "tumor_secretion_ng_per_mL_per_h": nonnegative(
                1.0, "ng/mL/h", "(approx.) at antigen level 15; × founder antigen level / 15: "
                "about 1 ng/mL inside a tumour; bound: a guard", hi=1e6),
            "necrotic_secretion_ng_per_mL_per_h": nonnegative(
                2.0, "ng/mL/h", "(approx.) damage signal of necrotic debris; bound: a guard",
                hi=1e6),
            "tolerance_ng_per_mL": positive(1e-4, "ng/mL", "largest correction of the last "
                                            "sweep", hi=10.0),
            "max_sweeps": Param("int", 400, lo=1, hi=10**6, unit="sweeps per step"),
            "sor_omega": Param("float", 1.8, lo=0.0, hi=2.0, lo_open=True, hi_open=True,
                               unit="-", source="red-black SOR factor"),
        },
    },
    events=("recruited_t_cell", "recruited_nk_cell", "killed_by_t_cell", "killed_by_nk_cell",
            "immune_exhausted", "immune_died", "immune_migrated"),
    streams={"immune_recruit": 21,   # w0 release, w1 claim priority, w2 site, w3 T or NK
             "immune_engage": 22,    # w0 engage, w1 lethal, w2 target, w3 exhausting
             "immune_death": 23,     # w0 death
             "immune_move": 24,      # w0 hop, w1 claim priority, w2 direction
             "nk_arrival": 25})      # host: NK kill of an arrival (engine.body)
(RECRUITED_T_CELL, RECRUITED_NK_CELL, KILLED_BY_T_CELL, KILLED_BY_NK_CELL, IMMUNE_EXHAUSTED,
 IMMUNE_DIED, IMMUNE_MIGRATED) = range(7)
STREAM_IMMUNE_RECRUIT = IMMUNE.streams["immune_recruit"]
STREAM_IMMUNE_ENGAGE = IMMUNE.streams["immune_engage"]
STREAM_IMMUNE_DEATH = IMMUNE.streams["immune_death"]
STREAM_IMMUNE_MOVE = IMMUNE.streams["immune_move"]
STREAM_NK_ARRIVAL = IMMUNE.streams["nk_arrival"]

CELLS = ("t_cell", "nk_cell")


def hops_per_step(scenario, cell) -> float:
    """p = v Δt / h: mean hops per step of a free immune cell of type `cell`."""
    return (scenario[f"immune.{cell}.speed_um_per_min"] * 60.0 * scenario["time.step_h"]
            / scenario["lattice.voxel_um"])


@IMMUNE.checks
def few_enough_hops(scenario):
    """With immunity enabled, a step holds at most MAX_IMMUNE_SUBSTEPS hop sub-steps, and
    a contact at most 255 steps (`immune_busy` is one byte)."""
    out = []
    if not scenario["immune.enabled"]:
        return out
    for cell in CELLS:
        key = f"immune.{cell}.contact_h"
        steps = scenario[key] / scenario["time.step_h"]
        if steps > 255:
            out.append((key, f"{key} = {scenario[key]:g} h is {steps:.4g} steps of time.step_h = "
                             f"{scenario['time.step_h']:g} h; at most 255: shorten the contact "
                             "or lengthen the step"))
    for cell in CELLS:
        p = hops_per_step(scenario, cell)
        if p > MAX_IMMUNE_SUBSTEPS:
            key = f"immune.{cell}.speed_um_per_min"
            out.append((key, f"{key} = {scenario[key]:g} µm/min is {p:.3g} hops per step of "
                             f"time.step_h = {scenario['time.step_h']:g} h across "
                             f"lattice.voxel_um = {scenario['lattice.voxel_um']:g} µm; at most "
                             f"{MAX_IMMUNE_SUBSTEPS}: lower the speed or the step"))
    return out


def contact_outcomes(t_kill, inhibition, exhaustion, nk_kill, blockade: float):
    """(lethal_thr, exhaust_thr) [type, checkpoint level] (uint32) at blockade b from the
    T cell's kill probability p_k, checkpoint kill inhibition i and exhaustion e and the NK
    cell's kill probability: t(p_k · (1 − i · q/15 · (1 − b))) and t(e · q/15 · (1 − b))
    (NK: t(p_k) and 0).  The one formula of `checkpoint_rules` and of checkpoint
    blockade (`kernels/immunotherapy.py`)."""
    b = float(blockade)
    if not 0.0 <= b <= 1.0:
        raise ValueError(f"checkpoint blockade {b!r} is not within 0..1")
    q = np.arange(TRAIT_LEVELS) / (TRAIT_LEVELS - 1.0)
    lethal = np.array([t_kill * (1.0 - inhibition * q * (1.0 - b)),
                       np.full(TRAIT_LEVELS, nk_kill)])
    exhaust = np.array([exhaustion * q * (1.0 - b), np.zeros(TRAIT_LEVELS)])
    as_thr = np.vectorize(probability_threshold, otypes=[np.uint32])
    return as_thr(lethal), as_thr(exhaust)


def checkpoint_rules(scenario, blockade: float) -> dict:
    """The contact outcome tables for checkpoint blockade b (0..1): lethal_thr [type,
    checkpoint level] = t(p_k · (1 − i · q/15 · (1 − b))) (NK: t(p_k)), exhaust_thr
    [type, level] = t(e · q/15 · (1 − b)) (NK: 0), and `checkpoint_blockade` itself.
    Checkpoint blockade therapy (`kernels/immunotherapy.py`) hands the first two to
    `engage` at each step with b = E > 0."""
    t = scenario.values["immune.t_cell"]
    nk = scenario.values["immune.nk_cell"]
    lethal, exhaust = contact_outcomes(t["kill_probability"], t["checkpoint_kill_inhibition"],
                                       t["checkpoint_exhaustion_per_contact"],
                                       nk["kill_probability"], blockade)
    return {"lethal_thr": lethal, "exhaust_thr": exhaust, "checkpoint_blockade": float(blockade)}


def engagement_rates(scenario) -> np.ndarray:
    """k [type, solitary 0/1, antigen level] in 1/h (× immune.status)."""
    s = scenario["immune.status"]
    a = np.arange(TRAIT_LEVELS) / (TRAIT_LEVELS - 1.0)
    t = scenario.values["immune.t_cell"]
    nk = scenario.values["immune.nk_cell"]
    out = np.zeros((2, 2, TRAIT_LEVELS))
    for solitary in (0, 1):
        out[T_ROW, solitary] = t["engagement_per_h"] * s * a
        m = nk["solitary_factor"] if solitary else 1.0
        out[NK_ROW, solitary] = nk["engagement_per_h"] * s * (1.0 - a) * m
    return out


def recruitment_probability(scenario) -> np.ndarray:
    """P of a release per step for each bin of f(c) = c / (c + K) (lower bin edges)."""
    k = (scenario["immune.t_cell.recruitment_per_h"] + scenario["immune.nk_cell.recruitment_per_h"])
    return release_probability(k, scenario["immune.status"], scenario["time.step_h"])


def release_probability(k, status, step_h) -> np.ndarray:
    """P = 1 − exp(−k · S · f · Δt) per bin of f (lower bin edges), k = k_T + k_NK."""
    f = np.arange(RECRUIT_BINS) / RECRUIT_BINS
    return step_probability(k * status * f, step_h)


def recruitment_tables(k_t, k_nk, status, step_h) -> tuple:
    """(recruit_thr [f bin] uint32, nk_share_thr uint32) for T and NK recruitment rates
    k_t and k_nk (1/h): the release threshold of the total rate and the NK share
    k_nk / (k_t + k_nk).  The immune rules and dendritic-cell vaccination
    (`kernels/immunotherapy.py`, k_t raised by priming) use this one code."""
    share = k_nk / (k_t + k_nk) if k_t + k_nk > 0 else 0.0
    thr = np.array([probability_threshold(x) for x in
                    release_probability(k_t + k_nk, status, step_h)], dtype=np.uint32)
    return thr, np.uint32(probability_threshold(share))


@IMMUNE.rules_from
def immune_rules(scenario) -> dict:
    """immune_enabled; recruit_thr [f bin], nk_share_thr; engage_thr [type, solitary,
    antigen level]; lethal_thr, exhaust_thr [type, checkpoint level] (blockade 0);
    contact steps and kill capacities; immune_death_thr [type]; hop sub-steps and
    immune_hop_thr [type]; chemotaxis; the chemokine field; nk_arrival_thr."""
    dt = scenario["time.step_h"]
    t = scenario.values["immune.t_cell"]
    nk = scenario.values["immune.nk_cell"]
    recruit_thr, nk_share_thr = recruitment_tables(t["recruitment_per_h"],
                                                   nk["recruitment_per_h"],
                                                   scenario["immune.status"], dt)
    p = [hops_per_step(scenario, cell) for cell in CELLS]
    n = max(1, math.ceil(max(p) - 1e-12))
    h = scenario["lattice.voxel_um"]
    d = scenario["chemokine.diffusion_um2_per_s"] * 3600.0            # µm²/h
    lam = scenario["chemokine.decay_per_min"] * 60.0
    source = np.zeros(N_KINDS)
    antigen = scenario["tumor.traits.antigen_level"] / (TRAIT_LEVELS - 1.0)
    source[TUMOR] = scenario["chemokine.tumor_secretion_ng_per_mL_per_h"] * antigen * h * h / d
    source[NECROTIC] = scenario["chemokine.necrotic_secretion_ng_per_mL_per_h"] * h * h / d
    arrival = nk["arrival_kill_probability"] * scenario["immune.status"]
    return {
        "immune_enabled": bool(scenario["immune.enabled"]),
        "immune_status": float(scenario["immune.status"]),
        "recruit_thr": recruit_thr,
        "chemokine_half_saturation": float32_of(
            scenario["immune.chemokine_half_saturation_ng_per_mL"]),
        "nk_share_thr": nk_share_thr,
        "engage_thr": rate_threshold(engagement_rates(scenario), dt).astype(np.uint32),
        **checkpoint_rules(scenario, 0.0),
        "t_contact_steps": steps_of(t["contact_h"], dt, hi=255),
        "nk_contact_steps": steps_of(nk["contact_h"], dt, hi=255),
        "t_kill_capacity": int(t["kill_capacity"]),
        "nk_kill_capacity": int(nk["kill_capacity"]),
        "immune_death_thr": rate_threshold(np.array([t["death_per_h"], nk["death_per_h"]]),
                                           dt).astype(np.uint32),
        "immune_hop_substeps": int(n),
        "immune_hop_thr": np.array([probability_threshold(min(x / n, 1.0)) for x in p],
                                   dtype=np.uint32),
        "chemotaxis": float32_of(scenario["immune.chemotaxis_mL_per_ng"]),
        "chemokine_coeff": np.array([diffusion_coefficient(lam, h, d)] * N_KINDS,
                                    dtype=np.float32),
        "chemokine_source": float32_of(source),
        "chemokine_omega": float32_of(scenario["chemokine.sor_omega"]),
        "chemokine_tolerance": float(np.float32(scenario["chemokine.tolerance_ng_per_mL"])),
        "chemokine_max_sweeps": int(scenario["chemokine.max_sweeps"]),
        "nk_arrival_thr": probability_threshold(min(arrival, 1.0)),
    }


# -- 1. the chemokine field ---------------------------------------------------------------

@field_pass(IMMUNE, reads=("chemokine", "kind"), writes=("chemokine",))
def relax_chemokine(rules) -> Field:
    """Relax the chemokine field (secreted by tumour cells × antigen and by debris) to quasi-steady state."""
    return Field("chemokine", array="chemokine", units="ng/mL", coeff=rules.chemokine_coeff,
                 uptake=FIRST_ORDER, source=rules.chemokine_source,
                 omega=rules.chemokine_omega, tolerance=rules.chemokine_tolerance,
                 max_sweeps=rules.chemokine_max_sweeps)


# -- 2. recruitment -----------------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def recruit_bin(c, half):
    """⌊256 · c / (c + K)⌋ in float32 (c clamped at 0), at most RECRUIT_BINS − 1."""
    c = max(c, np.float32(0.0))
    u = c / (c + half)
    b = np.int64(u * np.float32(256.0))
    return min(b, RECRUIT_BINS - 1)


@IMMUNE.entry("propose_recruitment")
@numba.njit(parallel=True, cache=True)
def _propose_recruitment(kind, perfused, chemokine, hop, recruit_thr,
                         chemokine_half_saturation, step,
                         nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop[z, y, x] = 0
                if kind[z, y, x] != VESSEL or perfused[z, y, x] == 0:
                    continue
                mask = 0
                for d in range(1, 7):
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if inside and kind[zz, yy, xx] == EMPTY:
                        mask |= 1 << (d - 1)
                if mask == 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                draw = voxel_draw(g, step, STREAM_IMMUNE_RECRUIT, lattice_id, k0, k1)
                b = recruit_bin(chemokine[z, y, x], chemokine_half_saturation)
                if draw[0] < recruit_thr[b]:
                    hop[z, y, x] = pick_direction(mask, draw[2])


@IMMUNE.entry("settle_recruitment")
@numba.njit(parallel=True, cache=True)
def _settle_recruitment(kind, hop, hop_claim, step,
                        nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop_claim[z, y, x] = 0
                if kind[z, y, x] == EMPTY:
                    hop_claim[z, y, x] = strongest_claimant(
                        hop, 0, z, y, x, nz, ny, nx, step, STREAM_IMMUNE_RECRUIT, z0,
                        ny_global, nx_global, lattice_id, k0, k1)


@IMMUNE.entry("place_recruits")
@numba.njit(parallel=True, cache=True)
def _place_recruits(kind, vacancy, immune_state, immune_busy, immune_kills, hop_claim,
                    nk_share_thr, step, events,
                    nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                d = hop_claim[z, y, x]
                if d == 0:
                    continue
                vz, vy, vx, _ = neighbour(z, y, x, d, nz, ny, nx)
                g = global_index(vz, vy, vx, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_IMMUNE_RECRUIT, lattice_id, k0, k1)[3]
                nk = word < nk_share_thr
                kind[z, y, x] = NK_CELL if nk else T_CELL
                vacancy[z, y, x] = 0
                immune_state[z, y, x] = 0
                immune_busy[z, y, x] = 0
                immune_kills[z, y, x] = 0
                events[RECRUITED_NK_CELL if nk else RECRUITED_T_CELL, z] += 1


@kernel(reads=("kind", "perfused", "chemokine", "hop", "hop_claim"),
        writes=("hop", "hop_claim"), process=IMMUNE)
def recruit_immune_cells(lattice, rules, step):
    """Perfused vessels release T or NK cells into an empty neighbour with P = 1 − exp(−(k_T(1 + g·P_vac) + k_NK)·S·c/(c + K)·Δt) (P_vac: dendritic-cell vaccine priming, 0 untreated)."""
    from .immunotherapy import primed_recruitment       # no vaccine priming: no overrides
    primed = primed_recruitment(rules, step)     # recruit_thr, nk_share_thr (each entry
    _propose_recruitment(lattice, rules, step, **primed)      # takes the one it declares)
    _settle_recruitment(lattice, rules, step)
    _place_recruits(lattice, rules, step, **primed)


# -- 3. killing ---------------------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def ends_lethal_contact(kind, immune_state, immune_busy, zz, yy, xx, back):
    """Whether the immune cell at (zz, yy, xx) ends a lethal contact with the voxel in
    direction `back` from it this step."""
    return (is_immune(kind[zz, yy, xx]) and immune_busy[zz, yy, xx] == 1
            and (immune_state[zz, yy, xx] & TARGET_BITS) == back
            and (immune_state[zz, yy, xx] & LETHAL) != 0)


@IMMUNE.entry("end_contacts")
@numba.njit(parallel=True, cache=True)
def _end_contacts(kind, traits, clock, hypoxia, lineage, motile, immune_state, immune_busy,
                  hop_claim, events, nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop_claim[z, y, x] = 0
                if kind[z, y, x] != TUMOR:
                    continue
                for d in range(1, 7):
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if inside and ends_lethal_contact(kind, immune_state, immune_busy, zz, yy, xx,
                                                      opposite(d)):
                        killer = kind[zz, yy, xx]
                        kind[z, y, x] = EMPTY
                        clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                        hop_claim[z, y, x] = d
                        events[KILLED_BY_NK_CELL if killer == NK_CELL else KILLED_BY_T_CELL, z] += 1
                        break


@IMMUNE.entry("advance_contacts")
@numba.njit(parallel=True, cache=True)
def _advance_contacts(kind, immune_state, immune_busy, immune_kills, hop_claim,
                      immune_death_thr, t_kill_capacity, nk_kill_capacity, step, events,
                      nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                if not is_immune(k):
                    continue
                busy = immune_busy[z, y, x]
                state = immune_state[z, y, x]
                if busy > 0:
                    d = state & TARGET_BITS
                    tz, ty, tx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if busy == 1:
                        kills = np.int64(immune_kills[z, y, x])
                        if inside and hop_claim[tz, ty, tx] == opposite(d):
                            kills = min(kills + 1, 255)
                        immune_kills[z, y, x] = kills
                        capacity = nk_kill_capacity if k == NK_CELL else t_kill_capacity
                        exhausted = (state & EXHAUSTED) != 0
                        if not exhausted and ((state & EXHAUSTING) != 0 or kills >= capacity):
                            exhausted = True
                            events[IMMUNE_EXHAUSTED, z] += 1
                        immune_state[z, y, x] = EXHAUSTED if exhausted else 0
                        immune_busy[z, y, x] = 0
                    elif inside and kind[tz, ty, tx] == TUMOR:
                        immune_busy[z, y, x] = busy - 1
                    else:                                    # the target is gone
                        immune_state[z, y, x] = state & EXHAUSTED
                        immune_busy[z, y, x] = 0
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_IMMUNE_DEATH, lattice_id, k0, k1)[0]
                if word < immune_death_thr[1 if k == NK_CELL else 0]:
                    kind[z, y, x] = EMPTY
                    immune_state[z, y, x] = 0
                    immune_busy[z, y, x] = 0
                    immune_kills[z, y, x] = 0
                    events[IMMUNE_DIED, z] += 1


@numba.njit(inline="always", cache=True)
def is_solitary(kind, z, y, x, nz, ny, nx):
    """A tumour cell with no tumour or dormant face neighbour."""
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if inside and (kind[zz, yy, xx] == TUMOR or kind[zz, yy, xx] == DORMANT):
            return False
    return True


@IMMUNE.entry("engage")
@numba.njit(parallel=True, cache=True)
def _engage(kind, traits, immune_state, immune_busy, engage_thr, lethal_thr, exhaust_thr,
            t_contact_steps, nk_contact_steps, step,
            nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                if (not is_immune(k) or immune_busy[z, y, x] != 0
                        or (immune_state[z, y, x] & EXHAUSTED) != 0):
                    continue
                mask = 0
                for d in range(1, 7):
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if inside and kind[zz, yy, xx] == TUMOR:
                        mask |= 1 << (d - 1)
                if mask == 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                draw = voxel_draw(g, step, STREAM_IMMUNE_ENGAGE, lattice_id, k0, k1)
                d = pick_direction(mask, draw[2])
                tz, ty, tx, _ = neighbour(z, y, x, d, nz, ny, nx)
                row = 1 if k == NK_CELL else 0
                solitary = 1 if is_solitary(kind, tz, ty, tx, nz, ny, nx) else 0
                if draw[0] < engage_thr[row, solitary, traits[ANTIGEN, tz, ty, tx]]:
                    q = traits[CHECKPOINT, tz, ty, tx]
                    state = d
                    if draw[1] < lethal_thr[row, q]:
                        state |= LETHAL
                    if draw[3] < exhaust_thr[row, q]:
                        state |= EXHAUSTING
                    immune_state[z, y, x] = state
                    immune_busy[z, y, x] = nk_contact_steps if row == 1 else t_contact_steps


@kernel(reads=("kind", "traits.antigen", "traits.checkpoint", "immune_state", "immune_busy",
               "immune_kills", "hop_claim"),
        writes=("immune_state", "immune_busy", "hop_claim"), process=IMMUNE)
def kill_tumour_cells(lattice, rules, step):
    """Immune cells end contacts (a lethal one kills its tumour target), count them down, die at their rate, and engage adjacent tumour cells (T: antigen, NK: missing self; checkpoint inhibition × (1 − E) under checkpoint blockade E)."""
    _end_contacts(lattice, rules, step)
    _advance_contacts(lattice, rules, step)
    from .immunotherapy import blocked_checkpoints      # no blockade: no overrides
    _engage(lattice, rules, step, **blocked_checkpoints(rules, step))


# -- 4. migration -------------------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def immune_hop_weight(kind, organ, chemokine, z, y, x, d, nz, ny, nx, bias):
    """0 where an immune cell may not go (only empty matrix, or an organ cell of the
    organ it is in, so no organ cell leaves its organ), else
    1 + bias · max(0, c(site) − c(here))."""
    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
    if not inside:
        return np.float32(0.0)
    k = kind[zz, yy, xx]
    if k != EMPTY and (k != FUNCTIONAL or organ[zz, yy, xx] != organ[z, y, x]):
        return np.float32(0.0)
    rise = chemokine[zz, yy, xx] - chemokine[z, y, x]
    rise = max(rise, np.float32(0.0))
    return np.float32(1.0) + bias * rise


@numba.njit(inline="always", cache=True)
def choose_immune_hop(kind, organ, chemokine, z, y, x, nz, ny, nx, bias, word):
    """Direction 1..6 with probability weight / Σ weights (float32, summed in direction
    order; u = (word >> 8) · 2⁻²⁴ · Σ); 0 if no site is open."""
    total = np.float32(0.0)
    last = 0
    for d in range(1, 7):
        w = immune_hop_weight(kind, organ, chemokine, z, y, x, d, nz, ny, nx, bias)
        if w > np.float32(0.0):
            total = total + w
            last = d
    if last == 0:
        return 0
    u = np.float32(word >> np.uint32(8)) * np.float32(5.9604644775390625e-08) * total
    acc = np.float32(0.0)
    for d in range(1, 7):
        w = immune_hop_weight(kind, organ, chemokine, z, y, x, d, nz, ny, nx, bias)
        if w > np.float32(0.0):
            acc = acc + w
            if u < acc:
                return d
    return last


@IMMUNE.entry("propose_immune_hop")
@numba.njit(parallel=True, cache=True)
def _propose_immune_hop(kind, organ, chemokine, immune_busy, hop, immune_hop_thr, chemotaxis,
                        tick, nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop[z, y, x] = 0
                k = kind[z, y, x]
                if not is_immune(k) or immune_busy[z, y, x] != 0:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                draw = voxel_draw(g, tick, STREAM_IMMUNE_MOVE, lattice_id, k0, k1)
                if draw[0] < immune_hop_thr[1 if k == NK_CELL else 0]:
                    hop[z, y, x] = choose_immune_hop(kind, organ, chemokine, z, y, x, nz, ny, nx,
                                                            chemotaxis, draw[2])


@IMMUNE.entry("settle_immune_hops")
@numba.njit(parallel=True, cache=True)
def _settle_immune_hops(kind, hop, hop_claim, tick,
                        nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                hop_claim[z, y, x] = 0
                k = kind[z, y, x]
                if k == EMPTY or k == FUNCTIONAL:
                    hop_claim[z, y, x] = strongest_claimant(
                        hop, 0, z, y, x, nz, ny, nx, tick, STREAM_IMMUNE_MOVE, z0,
                        ny_global, nx_global, lattice_id, k0, k1)


@numba.njit(inline="always", cache=True)
def swap(a, z, y, x, sz, sy, sx):
    v = a[z, y, x]
    a[z, y, x] = a[sz, sy, sx]
    a[sz, sy, sx] = v


@IMMUNE.entry("make_immune_hops")
@numba.njit(parallel=True, cache=True)
def _make_immune_hops(kind, traits, clock, hypoxia, lineage, motile, vacancy, immune_state,
                      immune_busy, immune_kills, hop_claim, events,
                      nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                d = hop_claim[z, y, x]
                if d == 0:
                    continue
                sz, sy, sx, _ = neighbour(z, y, x, d, nz, ny, nx)
                swap(kind, z, y, x, sz, sy, sx)
                for t in range(traits.shape[0]):
                    v = traits[t, z, y, x]
                    traits[t, z, y, x] = traits[t, sz, sy, sx]
                    traits[t, sz, sy, sx] = v
                swap(clock, z, y, x, sz, sy, sx)
                swap(hypoxia, z, y, x, sz, sy, sx)
                swap(lineage, z, y, x, sz, sy, sx)
                swap(motile, z, y, x, sz, sy, sx)
                swap(immune_state, z, y, x, sz, sy, sx)
                swap(immune_busy, z, y, x, sz, sy, sx)
                swap(immune_kills, z, y, x, sz, sy, sx)
                vacancy[z, y, x] = 0
                vacancy[sz, sy, sx] = 0
                events[IMMUNE_MIGRATED, z] += 1


def substep_tick(step, j, n) -> np.uint32:
    """The Philox step word of sub-step j of n: step · n + j, modulo 2³²."""
    return np.uint32((int(step) * n + j) % 2**32)


@kernel(reads=("kind", "organ", "chemokine", "immune_busy", "hop", "hop_claim"),
        writes=("hop", "hop_claim"), process=IMMUNE)
def move_immune_cells(lattice, rules, step):
    """Free immune cells hop v·Δt/h times per step into matrix or past organ cells, weighted 1 + χ·(chemokine rise)."""
    n = rules.immune_hop_substeps
    for j in range(n):
        tick = substep_tick(step, j, n)
        _propose_immune_hop(lattice, rules, step, tick=tick)
        _settle_immune_hops(lattice, rules, step, tick=tick)
        _make_immune_hops(lattice, rules, step)
