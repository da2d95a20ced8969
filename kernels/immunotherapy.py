"""Immunotherapies: checkpoint blockade, dendritic-cell vaccination, adoptive T-cell transfer.

All three act on the immune cells of `kernels/immune.py` and so only where immunity is on
(`immune.enabled`; a scenario that gives one with immunity off is refused, naming
`therapy[i].kind`).  All three reach every lattice of the body (none names a lattice or
region).  Each is scheduled by `[[therapy]]` entries (`engine.therapy`; the one schedule,
protocol decisions included, is `engine.therapy.deliveries`).

1. Checkpoint blockade (kind "checkpoint_blockade", `dose_mg` per intravenous dose; an
   anti-PD-1 antibody modelled on pembrolizumab, 200 mg every 3 weeks, label).  Each dose
   is a bolus into the one-compartment plasma model of `engine.pharmacokinetics`, with
   E = C/(C + EC50) from `exposure_rules`/`step_exposure` (the one place for E at a
   step).  The blockade level of the T-cell contact rules is b = E:

       P_kill = p_k (1 − i · q/15 · (1 − b)),    P_exhaust = e · q/15 · (1 − b)

   (q the target's checkpoint level; `kernels.immune.checkpoint_rules`).  At every step
   with E > 0 the host recomputes `lethal_thr` and `exhaust_thr` from those formulas
   (`contact_outcomes`, the code `checkpoint_rules` uses) and hands them to the `engage`
   entry of `kill_tumour_cells` as keyword overrides; E = 0 hands nothing over, so an
   untreated run is bit-identical to one without this process.  No kernel changes.
   Parameters (`[checkpoint_blockade]`, Keytruda label, clinical pharmacology):
   `half_life_h` 528 h (terminal half-life 22 days), `volume_L` 6.0 L (volume at steady
   state 6.0 L; the one-compartment model uses it as its only volume, approx.),
   `ec50_mg_per_L` 1 mg/L (approx., a guess: peripheral PD-1 target engagement is
   near-complete from 1 mg/kg every 3 weeks on, Patnaik et al. 2015, Clin Cancer Res
   21:4286, whose troughs are a few mg/L).  200 mg gives a peak of 33 mg/L (E 0.97) and a
   trough after 3 weeks of 17 mg/L (E 0.94): near-complete blockade throughout.

2. Dendritic-cell vaccination (kind "dc_vaccine", `dose_million_cells` per infusion;
   sipuleucel-T-like: three infusions about two weeks apart, each at least 50 million
   activated antigen-presenting cells, label).  A phenomenological model of priming
   (approx.): each infusion k at time t_k primes tumour-specific T cells, and the primed
   response decays with time constant τ, so the priming level is

       P(t) = Σ_{t_k ≤ t} (D_k / D_ref) · exp(−(t − t_k) / τ),

   D_ref the reference dose.  It raises the T-cell recruitment rate to
   k_T (1 + g · P(t)); NK recruitment is unchanged.  The host recomputes recruitment's
   `recruit_thr` (release probability per chemokine bin, with the total rate
   k_T (1 + gP) + k_NK) and `nk_share_thr` (the NK share k_NK / (k_T (1 + gP) + k_NK))
   each step with P > 0 (`kernels.immune.recruitment_tables`, the code the immune rules
   use) and hands them to `recruit_immune_cells` as overrides; P = 0 hands nothing over.
   Parameters (`[dc_vaccine]`): `priming_decay_h` τ = 168 h (approx.: 90–95 % of
   effector CD8 T cells die in the 1–3 weeks of contraction after the peak of a primary
   response, Kaech & Wherry 2007, Immunity 27:393: τ of about a week), `recruitment_gain`
   g = 1 (approx., a guess: a full reference dose doubles T-cell recruitment at its
   peak), `reference_dose_million_cells` D_ref = 50 (the label's minimum of 50 million
   activated CD54+ cells per sipuleucel-T infusion).

3. Adoptive T-cell transfer (kind "adoptive_t_cells", `dose_million_cells` per infusion;
   TIL-like: lifileucel 7.5–72 × 10⁹ viable cells, label; TIL trials about 10¹⁰).  The
   infused cells spread through the blood over the body; each lattice receives the share
   of its volume in the body, times a homing factor:

       N̄ = D · 10⁶ · h · V_lattice / V_body,

   rounded stochastically (⌊N̄⌋, plus one when word 0 of Philox stream
   `adoptive_count`, counter (0, step, stream, lattice id), is below t(N̄ − ⌊N̄⌋)).  The
   N cells are placed as fresh T cells (no contact, no kills, not exhausted) on empty
   voxels with a perfused blood vessel as face neighbour, as recruited T cells arrive:
   every such voxel draws a priority, word 0 of stream `adoptive_place` (counter: its
   global index, step, stream, lattice id), and the N with the highest (priority,
   index) receive a cell (a uniform sample without replacement; deterministic; the same
   on every backend, since it is drawn on the host).  Cells for which there is no such
   voxel are counted as `infused_t_cell_no_room`; the placed ones as `infused_t_cell`.
   The pass (`infuse_t_cells`) runs after recruitment, at delivery steps only.  From then
   on they are T cells like any other (migration, killing, exhaustion, death).
   Parameters (`[adoptive_t_cells]`): `body_volume_L` 70 L (the reference adult of 70 kg,
   ICRP Publication 89, at about 1 kg/L), `homing_factor` h = 1 (approx.: labelled-TIL
   imaging shows most infused cells first in lung, liver and spleen and a gradual
   accumulation in tumour deposits, Fisher et al. 1989, J Clin Oncol 7:250; the lattice
   receives its volume share, no enrichment assumed).  A 96³ lattice of 20 µm voxels is
   7.1 µL, so 10¹⁰ cells place about 1 010 T cells on it.

Events: infused_t_cell, infused_t_cell_no_room.  Streams 28 (adoptive_place) and 29
(adoptive_count), both drawn on the host.
"""
from __future__ import annotations

import math

import numpy as np

from engine.pharmacokinetics import exposure_rules, step_exposure

from .immune import contact_outcomes, recruitment_tables
from .lattice import EMPTY, T_CELL, VESSEL
from .philox import probability_threshold, voxel_draw_numpy
from .process import Param, Process, positive
from .twin import kernel

BLOCKADE, VACCINE, ADOPTIVE = "checkpoint_blockade", "dc_vaccine", "adoptive_t_cells"
KINDS = (BLOCKADE, VACCINE, ADOPTIVE)
UM3_PER_L = 1e15

IMMUNOTHERAPY = Process(
    "immunotherapy",
    params={
        "checkpoint_blockade": {
            "half_life_h": positive(
                528.0, "h", "pembrolizumab terminal half-life 22 days (label); bound: a guard",
                hi=1e5),
            "volume_L": positive(
                6.0, "L", "pembrolizumab volume at steady state 6.0 L (label; the one "
                          "compartment's volume, approx.); bound: a guard", hi=1e6),
            "ec50_mg_per_L": positive(
                1.0, "mg/L", "(approx., a guess) PD-1 target engagement near-complete from "
                             "1 mg/kg every 3 weeks (Patnaik et al. 2015), troughs of a few "
                             "mg/L; bound: a guard", hi=1e6),
        },
        "dc_vaccine": {
            "priming_decay_h": positive(
                168.0, "h", "(approx.) decay time of the primed effector response: 90-95 % "
                            "of effector CD8 T cells die within 1-3 weeks of the peak "
                            "(Kaech & Wherry 2007); bound: a guard", hi=1e5),
            "recruitment_gain": Param(
                "float", 1.0, lo=0.0, hi=100.0, unit="per reference dose",
                source="(approx., a guess) T-cell recruitment × (1 + g·P): a full reference "
                       "dose doubles it at its peak; bound: a guard"),
            "reference_dose_million_cells": positive(
                50.0, "million cells", "sipuleucel-T: at least 50 million activated CD54+ "
                                       "cells per infusion (label); bound: a guard", hi=1e6),
        },
        "adoptive_t_cells": {
            "body_volume_L": positive(
                70.0, "L", "reference adult 70 kg (ICRP Publication 89) at about 1 kg/L "
                           "(approx.); bound: a guard", hi=1e4),
            "homing_factor": Param(
                "float", 1.0, lo=0.0, hi=1e4, unit="-",
                source="(approx.) infused cells reaching a lattice per its volume share of "
                       "the body: 1, no enrichment (labelled TIL go first to lung, liver, "
                       "spleen, then slowly to tumour; Fisher et al. 1989); bound: a guard"),
        },
    },
    events=("infused_t_cell", "infused_t_cell_no_room"),
    streams={"adoptive_place": 28,     # host: w0 priority of a candidate voxel
             "adoptive_count": 29})    # host: w0 stochastic rounding of the share
INFUSED_T_CELL, INFUSED_T_CELL_NO_ROOM = range(2)
STREAM_ADOPTIVE_PLACE = IMMUNOTHERAPY.streams["adoptive_place"]
STREAM_ADOPTIVE_COUNT = IMMUNOTHERAPY.streams["adoptive_count"]


def immunotherapy_kinds(scenario) -> list[tuple[int, str]]:
    """(index, kind) of the scenario's immunotherapy entries."""
    return [(i, t["kind"]) for i, t in enumerate(scenario.therapies) if t["kind"] in KINDS]


@IMMUNOTHERAPY.checks
def need_immunity(scenario):
    """An immunotherapy acts on the lattice's immune cells: refused where immunity is off."""
    if scenario["immune.enabled"]:
        return []
    return [(f"therapy[{i}].kind",
             f"therapy[{i}].kind = \"{kind}\" acts on T cells, but immune.enabled = false: "
             "switch immunity on (e.g. scenario immune_quickstart) or remove the therapy")
            for i, kind in immunotherapy_kinds(scenario)][:1]


def lattice_volume_L(scenario) -> float:
    """The lattice's volume (L)."""
    return float(np.prod(scenario.shape)) * scenario["lattice.voxel_um"] ** 3 / UM3_PER_L


@IMMUNOTHERAPY.rules_from
def immunotherapy_rules(scenario) -> dict:
    """checkpoint_blockade_exposure / _plasma (E per step); checkpoint_parameters (the
    contact-outcome parameters); vaccine_doses ((step, D_k / D_ref), ...),
    vaccine_decay_h, vaccine_gain, vaccine_recruitment (k_T, k_NK, status);
    adoptive_infusions {step: million cells}, adoptive_steps, adoptive_share (cells
    placed on this lattice per cell infused)."""
    record = deliveries_of(scenario)
    t = scenario.values["immune.t_cell"]
    nk = scenario.values["immune.nk_cell"]
    vaccine = scenario.values["dc_vaccine"]
    adoptive = scenario.values["adoptive_t_cells"]
    doses = tuple((int(r["step"]), float(r["dose"]) / vaccine["reference_dose_million_cells"])
                  for r in record if r["kind"] == VACCINE.encode())
    infusions: dict[int, float] = {}
    for r in record:
        if r["kind"] == ADOPTIVE.encode():
            infusions[int(r["step"])] = infusions.get(int(r["step"]), 0.0) + float(r["dose"])
    return {**exposure_rules(scenario, BLOCKADE),
            "checkpoint_parameters": (float(t["kill_probability"]),
                                      float(t["checkpoint_kill_inhibition"]),
                                      float(t["checkpoint_exhaustion_per_contact"]),
                                      float(nk["kill_probability"])),
            "vaccine_doses": tuple(sorted(doses)),
            "vaccine_decay_h": float(vaccine["priming_decay_h"]),
            "vaccine_gain": float(vaccine["recruitment_gain"]),
            "vaccine_recruitment": (float(t["recruitment_per_h"]), float(nk["recruitment_per_h"]),
                                    float(scenario["immune.status"])),
            "adoptive_infusions": infusions,
            "adoptive_steps": frozenset(infusions),
            "adoptive_share": (adoptive["homing_factor"] * lattice_volume_L(scenario)
                               / adoptive["body_volume_L"])}


def deliveries_of(scenario):
    from engine.therapy import deliveries
    return deliveries(scenario)


# -- 1. checkpoint blockade ------------------------------------------------------------------

def blockade_at(rules, step: int) -> float:
    """b = E of the checkpoint-blockade antibody at `step` (0 without it)."""
    return step_exposure(rules, BLOCKADE, step)


def blocked_checkpoints(rules, step: int) -> dict:
    """Keyword overrides for `engage` at `step`: lethal_thr and exhaust_thr at blockade
    b = E (`checkpoint_rules`' formulas); empty where E = 0."""
    b = blockade_at(rules, step)
    if not b > 0.0:
        return {}
    lethal, exhaust = contact_outcomes(*rules.checkpoint_parameters, b)
    return {"lethal_thr": lethal, "exhaust_thr": exhaust}


# -- 2. dendritic-cell vaccination -----------------------------------------------------------

def priming(rules, step: int) -> float:
    """P = Σ_{s_k ≤ step} (D_k / D_ref) exp(−(step − s_k) Δt / τ) (float64)."""
    p = 0.0
    for at, weight in rules.vaccine_doses:
        if at <= step:
            p += weight * math.exp(-(step - at) * rules.step_h / rules.vaccine_decay_h)
    return p


def primed_recruitment(rules, step: int) -> dict:
    """Keyword overrides for recruitment at `step`: recruit_thr and nk_share_thr with the
    T-cell rate × (1 + g·P); empty where g·P = 0."""
    factor = rules.vaccine_gain * priming(rules, step)
    if not factor > 0.0:
        return {}
    k_t, k_nk, status = rules.vaccine_recruitment
    recruit, share = recruitment_tables(k_t * (1.0 + factor), k_nk, status, rules.step_h)
    return {"recruit_thr": recruit, "nk_share_thr": share}


# -- 3. adoptive T-cell transfer ---------------------------------------------------------------

def infused_count(rules, step: int, lattice_id: int) -> int:
    """N for this lattice at `step`: ⌊N̄⌋ plus one with probability N̄ − ⌊N̄⌋ (Philox
    stream adoptive_count, counter (0, step, stream, lattice id))."""
    dose = rules.adoptive_infusions.get(int(step), 0.0)
    mean = dose * 1e6 * rules.adoptive_share
    whole = math.floor(mean)
    word = voxel_draw_numpy(0, step, STREAM_ADOPTIVE_COUNT, lattice_id, rules.key)[0]
    return int(whole + (int(word) < probability_threshold(mean - whole)))


def beside_perfused_vessels(kind: np.ndarray, perfused: np.ndarray) -> np.ndarray:
    """Mask of empty voxels with a perfused blood vessel as face neighbour."""
    vessel = (kind == VESSEL) & (perfused != 0)
    near = np.zeros_like(vessel)
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        near[tuple(lo)] |= vessel[tuple(hi)]
        near[tuple(hi)] |= vessel[tuple(lo)]
    return near & (kind == EMPTY)


def placement(kind, perfused, n: int, step: int, lattice, key) -> np.ndarray:
    """Flat indices of the n candidate voxels with the highest (priority word, global
    index): host NumPy arrays in, sorted indices out (fewer if there is no room)."""
    candidates = np.flatnonzero(beside_perfused_vessels(kind, perfused).reshape(-1))
    if n <= 0 or not len(candidates):
        return candidates[:0]
    g = candidates.astype(np.uint64)                  # the whole lattice: global indices
    words = voxel_draw_numpy(g, step, STREAM_ADOPTIVE_PLACE, lattice.lattice_id, key)[0]
    order = np.lexsort((candidates, words))[::-1]          # highest word first, then index
    return np.sort(candidates[order[:n]])


def _xp(array):
    if isinstance(array, np.ndarray):
        return np
    import cupy
    return cupy


def _host(array) -> np.ndarray:
    return array if isinstance(array, np.ndarray) else _xp(array).asnumpy(array)


@kernel(reads=("kind", "perfused"), writes=(), process=IMMUNOTHERAPY)
def infuse_t_cells(lattice, rules, step):
    """Adoptive transfer: the lattice's share N of an infusion's T cells (volume share × homing) placed on empty voxels beside perfused vessels, chosen by Philox priority."""
    n = infused_count(rules, step, lattice.lattice_id)
    domain = lattice.domain                  # the whole lattice's candidates, on every slab
    chosen = placement(domain.gather(_host(lattice.kind)), domain.gather(_host(lattice.perfused)),
                       n, step, lattice, rules.key)
    plane = lattice.ny * lattice.nx
    here = chosen[(chosen >= lattice.z0 * plane) & (chosen < (lattice.z0 + lattice.nz) * plane)]
    xp = _xp(lattice.kind)
    at = xp.asarray(here - lattice.z0 * plane)             # held voxels: owned and halo
    for name, value in (("kind", T_CELL), ("vacancy", 0), ("immune_state", 0),
                        ("immune_busy", 0), ("immune_kills", 0)):
        lattice.arrays[name].reshape(-1)[at] = value
    per_plane = np.bincount(here // plane - lattice.z0, minlength=lattice.nz)
    owned = np.zeros(lattice.nz, dtype=np.int64)            # counted on owned planes only
    owned[domain.interior] = per_plane[domain.interior]
    rows = lattice.event_rows(IMMUNOTHERAPY)
    events = lattice.events
    events[rows.start + INFUSED_T_CELL] += xp.asarray(owned)
    if domain.owns(0):
        events[rows.start + INFUSED_T_CELL_NO_ROOM, 0] += n - len(chosen)

