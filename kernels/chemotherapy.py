"""Chemotherapy: a cytotoxic drug carried by the blood, diffusing into tissue and killing
the cells that cycle while it is there.

A `[[therapy]]` of kind "chemotherapy" gives doses `dose_mg_per_m2` on the schedule of
`engine.therapy`.  The drug modelled is paclitaxel, 175 mg/m² infused over 3 h every 21
days (label; breast and ovarian cancer), a mitotic poison: it kills cells that pass
mitosis while exposed, so non-cycling cells are spared (Skipper–Schabel–Wilcox log-kill of
the sensitive, cycling fraction; Norton & Simon: kill proportional to the growth rate).

1. Plasma.  C_p(t) from `engine.pharmacokinetics` (one compartment, constant-rate
   infusion over `infusion_h`, then first-order elimination), the same on every lattice.
   The two passes below run only at steps where the plasma effect
   E_p = C_p/(C_p + EC50) is at least `min_effect` (a Condition in engine/schedule.py):
   an untreated run never runs them and is bit-identical to a run without this process.

2. Drug field (`relax_drug`, the generic solver of `kernels/field.py`).  The interstitial
   concentration c (mg/L, array `drug`) is quasi-steady (diffusion across 100 µm takes
   about a minute): each active step solves

       0 = D ∇²c − (λ_decay + λ_cell [cell]) c,     c = C_p(t) on perfused vessel voxels,

   warm-started from the last active step, with zero flux through the lattice faces.
   Live and dormant cells bind and take the drug up (λ_cell; paclitaxel binds
   microtubules and accumulates in cells), every voxel loses it at λ_decay.  Around a
   vessel c falls off over the penetration length ℓ = √(D / (λ_decay + λ_cell)).

3. Kill (`kill_cycling_cells`, stream `chemo_kill` 19).  A TUMOR or FUNCTIONAL cell dies
   in a step with

       P = 1 − exp(−k · E(c) · g · (1 − r · level) · Δt),     E(c) = c / (c + EC50),

   c its voxel's drug concentration, level its CHEMO_RESISTANCE trait (functional cells
   hold 0), r `resistance_per_level`, and g its relative cycling rate this step: the clock
   advance `propose_division` gives it (the cycle rate of its cell type and proliferation
   level times the oxygen ramp, truncated to whole clock units), divided by the nominal
   advance of a tumour cell (proliferation level 8, full oxygen).  A cell cycling at the
   tumour's nominal rate has g = 1, a cell of a faster clone more.  Spared (g = 0): a
   hypoxic cell below the proliferation threshold, a motile cell (go or grow: its clock
   is held), a dormant cell (DORMANT is not live: it does not cycle), and a tumour cell
   waiting with a full clock for room to divide (contact-inhibited: arrested, its
   advance saturates at 0).  Functional cells die by the same rule with their organ's
   cycle rate: breast (1000 h) has g ≈ 0.024, muscle (5000 h) 0.005, bone marrow (100 h)
   0.24, brain (10⁷ h) 0 — toxicity falls on proliferating organs.  For them the clock's
   saturation is not counted (their advance is taken from a clock of 0): the tissue
   model holds every functional cell at a full clock until a vacancy of its organ opens,
   a device for homeostatic renewal, and the organ's cycle time stands for how fast its
   cells proliferate (approx.: every cell of an organ is treated as cycling at its
   organ's rate, so the organs' cycle times set their sensitivity).  A killed cell dies
   by apoptosis (mitotic catastrophe ending in apoptosis): the voxel becomes EMPTY, its
   arrays are cleared (`clear_cell`) and a functional cell's voxel is marked `vacancy` =
   1, for its organ to refill, as in `fate`.  Events `chemo_killed_tumor`,
   `chemo_killed_functional`.

   No exp in the kernel.  The kernel forms, in float32 and in this order,
   h = (E(c) · m[level]) · a (m = 1 − r·level from a table, a the integer clock advance)
   and the bin q = ⌊h · s⌋ (clamped to N − 1), s = (N − 1) / a_max with a_max the
   largest advance any cell can make in a step; the host tabulates in float64, for every
   bin i, the uint32 threshold of P_i = 1 − exp(−i · ΔH), ΔH = k Δt / (a_nom · s) the
   hazard of one bin (a_nom the nominal advance), N = CHEMO_BINS = 65536.  Binning error:
   the hazard is rounded down to a bin edge, by less than ΔH (quickstart: ΔH = 1.4e-6 per
   step, against 0.07 for a tumour cell at full effect), so P is low by less than ΔH: a
   relative error below 1/q, 0.002 % for a nominally cycling tumour cell at full effect,
   0.09 % for a breast cell and 0.4 % for a muscle cell at full effect, growing as 1/E
   at low concentrations; a hazard below one bin (a kill chance below 1.4e-6 per step)
   is 0.

Parameters (`[chemotherapy]`; paclitaxel):

* `half_life_h` = 1.59 h and `volume_L` = 48.1 L: a one-compartment fit to the label's
  175 mg/m² 3-h infusion, C_max 3650 ng/mL and AUC 15 007 ng·h/mL (Taxol label, Table 1;
  CL = D/AUC = 11.7 L/h/m²): k from C_max = (D/(T·CL))(1 − e^(−kT)), V = CL/k · BSA.
  The measured decline is multi-phasic (terminal half-life 13–52 h, V_ss 227–688 L/m²);
  the fit keeps the peak and the area, not the slow low-level tail (approx.);
* `body_surface_m2` = 1.8 m²: the reference adult (ICRP Publication 23);
* `infusion_h` = 3 h: the label's 3-h infusion;
* `ec50_mg_per_L` = 0.0427 mg/L = 0.05 µmol/L (M = 853.9 g/mol): the time above 0.05 µM
  predicts paclitaxel's marrow toxicity (Gianni et al. 1995, J Clin Oncol 13:180); in
  vitro IC50 2.5–7.5 nM at 24 h (Liebmann et al. 1993, Br J Cancer 68:1104), with 89–98 %
  of plasma drug protein-bound (label), so half-maximal kill near 0.05 µM total (approx.);
* `kill_per_h` = 0.07 /h (approx., a calibration): a cell cycling at the nominal rate
  under full effect dies at 0.07 /h, so one 175 mg/m² dose (E ≳ 0.5 for about 13 h) kills
  about 60 % of the nominally cycling cells it reaches — a fraction, not a number, of the
  sensitive cells per dose (log-kill);
* `resistance_per_level` = 0.06 (approx.): level 15 keeps 10 % of the kill, about the
  10-fold resistance of multidrug-resistant (P-glycoprotein) lines;
* `diffusion_um2_per_s` = 110 µm²/s: D = 1.778e-4 · MW^-0.75 cm²/s in tumour tissue
  (Swabb, Wei & Gullino 1974, Cancer Res 34:2814) at MW 854;
* `cell_uptake_per_min` = 1.4 /min (approx.): binding and uptake that give a penetration
  length of about 70 µm, concentrations falling several-fold within 100 µm of vessels, as
  measured for anticancer drugs in tumours (doxorubicin: Primeau et al. 2005, Clin Cancer
  Res 11:8782; paclitaxel in histocultures: Kuh et al. 1999, J Pharmacol Exp Ther 290:871);
* `decay_per_min` = 0.00727 /min: the plasma elimination rate ln 2 / 1.59 h (approx.:
  interstitial drug cleared like plasma drug);
* `min_effect` = 1e-3: below it the passes do not run; the kill left out is at most
  k · E · t½ / ln 2 ≈ 1.6e-4 of the nominally cycling cells per dose;
* solver: `tolerance_mg_per_L`, `max_sweeps`, `sor_omega`.

Rule constants (`chemotherapy_rules`): `chemo_plasma` (the `PlasmaSchedule`),
`chemo_min_plasma_mg_per_L` (C_p at E_p = min_effect), the field's tables and settings,
`chemo_ec50`, `chemo_resistance`, `chemo_scale`, `chemo_kill_thr`, `chemo_bins`.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from engine.pharmacokinetics import plasma_schedule

from .division import NEUTRAL_LEVEL, advance_cycle, division_rules
from .field import FIRST_ORDER, Field, diffusion_coefficient, relax_field
from .lattice import (CHEMO_RESISTANCE, CLOCK_FULL, DORMANT, EMPTY, FUNCTIONAL, N_KINDS,
                      PROLIFERATION, TRAIT_LEVELS, TUMOR, clear_cell, global_index, table_row)
from .philox import probability_threshold, voxel_draw
from .process import Array, Param, Process, float32_of, nonnegative, positive
from .twin import kernel

KIND = "chemotherapy"
CHEMO_BINS = 65536                 # hazard bins of the kill table

CHEMOTHERAPY = Process(
    "chemotherapy", "chemotherapy.cu",
    arrays={"drug": Array(np.float32, "interstitial chemotherapy drug, mg/L (as of the last "
                                      "step the drug was active)")},
    params={"chemotherapy": {
        "half_life_h": positive(
            1.59, "h", "(approx.) paclitaxel one-compartment fit to the label's 175 mg/m² 3-h "
                       "infusion: Cmax 3650 ng/mL, AUC 15007 ng·h/mL (terminal phase 13-52 h "
                       "carries little of the area); bound: a guard", hi=1e5),
        "volume_L": positive(
            48.1, "L", "(approx.) the same fit: CL = D/AUC = 11.7 L/h/m², V = CL/k = 26.7 L/m² "
                       "× 1.8 m²; bound: a guard", hi=1e5),
        "body_surface_m2": positive(
            1.8, "m²", "reference adult (ICRP Publication 23); bound: a guard", hi=10.0),
        "infusion_h": nonnegative(
            3.0, "h", "paclitaxel 175 mg/m² over 3 h (label); 0: a bolus; bound: a week",
            hi=168.0),
        "ec50_mg_per_L": positive(
            0.0427, "mg/L", "(approx.) 0.05 µmol/L: time above it predicts paclitaxel toxicity "
                            "(Gianni 1995); in vitro IC50 2.5-7.5 nM (Liebmann 1993), 89-98 % "
                            "protein-bound (label); bound: a guard", hi=1e6),
        "kill_per_h": Param(
            "float", 0.07, lo=0.0, hi=100.0, unit="1/h",
            source="(approx., calibration) kill rate of a cell cycling at the tumour's nominal "
                   "rate at full effect: one 175 mg/m² dose kills ~60 % of such cells "
                   "(log-kill, Skipper-Schabel-Wilcox); bound: a guard"),
        "resistance_per_level": Param(
            "float", 0.06, lo=0.0, hi=1.0 / 15, unit="per level",
            source="(approx.) kill × (1 − r·level): level 15 keeps 10 %, the ~10-fold "
                   "resistance of multidrug-resistant lines; bound: level 15 fully resistant"),
        "diffusion_um2_per_s": Param(
            "float", 110.0, lo=1e-3, hi=1e5, unit="µm²/s",
            source="D = 1.778e-4 MW^-0.75 cm²/s in tumour tissue (Swabb, Wei & Gullino 1974) "
                   "at MW 854; bounds: a guard"),
        "cell_uptake_per_min": nonnegative(
            1.4, "1/min", "(approx.) binding and uptake by cells: penetration length ~70 µm, "
                          "as measured for drugs in tumours (Primeau 2005; Kuh 1999); bound: "
                          "a guard", hi=1e3),
        "decay_per_min": nonnegative(
            0.00727, "1/min", "(approx.) interstitial drug cleared like plasma drug, ln 2 / "
                              "1.59 h; bound: a guard", hi=1e3),
        "min_effect": Param(
            "float", 1e-3, lo=0.0, hi=0.5, lo_open=True, unit="-",
            source="plasma effect E below which the drug field and kill are not computed "
                   "(kill left out ≤ k E t½/ln 2 per dose); bound: half-maximal effect"),
        "tolerance_mg_per_L": positive(1e-5, "mg/L", "largest correction of the last sweep "
                                                     "(0.02 % of EC50)", hi=10.0),
        "max_sweeps": Param("int", 300, lo=1, hi=10**6, unit="sweeps per step"),
        "sor_omega": Param("float", 1.6, lo=0.0, hi=2.0, lo_open=True, hi_open=True,
                           unit="-", source="red-black SOR factor"),
    }},
    events=("chemo_killed_tumor", "chemo_killed_functional"),
    streams={"chemo_kill": 19})          # word 0: killed or not
CHEMO_KILLED_TUMOR, CHEMO_KILLED_FUNCTIONAL = range(2)
STREAM_CHEMO_KILL = CHEMOTHERAPY.streams["chemo_kill"]


def effect_threshold_concentration(ec50: float, effect: float) -> float:
    """C at which E = C / (C + EC50) equals `effect` (float64)."""
    return ec50 * effect / (1.0 - effect)


def kill_probability(kill_per_h: float, e: float, g: float, multiplier: float,
                     step_h: float) -> float:
    """P = 1 − exp(−k E g m Δt) (float64)."""
    return -math.expm1(-kill_per_h * e * g * multiplier * step_h)


@CHEMOTHERAPY.rules_from
def chemotherapy_rules(scenario) -> dict:
    """The plasma schedule and its activity threshold; the drug field's coefficients
    (chemo_coeff [kind]) and solver settings; the kill's tables (see the module)."""
    c = scenario.values["chemotherapy"]
    dt, h = float(scenario["time.step_h"]), float(scenario["lattice.voxel_um"])
    plasma = plasma_schedule(scenario, KIND)
    d = c["diffusion_um2_per_s"] * 3600.0                               # µm²/h
    loss = np.full(N_KINDS, c["decay_per_min"] * 60.0)
    for cell in (TUMOR, FUNCTIONAL, DORMANT):
        loss[cell] += c["cell_uptake_per_min"] * 60.0
    # the kill: hazard bins of the clock advance (division's cycle_rate, as float32)
    rate = division_rules(scenario)["cycle_rate"]
    nominal = max(1, int(rate[0, NEUTRAL_LEVEL]))            # advance of a nominal tumour cell
    largest = max(1, min(CLOCK_FULL, int(rate.max())))      # the most any cell can advance
    scale = float32_of((CHEMO_BINS - 1) / largest)
    bin_hazard = c["kill_per_h"] * dt / (nominal * float(scale))
    p = -np.expm1(-np.arange(CHEMO_BINS, dtype=np.float64) * bin_hazard)
    multiplier = np.maximum(1.0 - c["resistance_per_level"] * np.arange(TRAIT_LEVELS), 0.0)
    return {
        "chemo_plasma": plasma,
        "chemo_min_plasma_mg_per_L": effect_threshold_concentration(
            c["ec50_mg_per_L"], c["min_effect"]),
        "chemo_coeff": np.array([diffusion_coefficient(lam, h, d) for lam in loss],
                                dtype=np.float32),
        "chemo_omega": float32_of(c["sor_omega"]),
        "chemo_tolerance": float(np.float32(c["tolerance_mg_per_L"])),
        "chemo_max_sweeps": int(c["max_sweeps"]),
        "chemo_ec50": float32_of(c["ec50_mg_per_L"]),
        "chemo_resistance": float32_of(multiplier),
        "chemo_nominal_advance": nominal,
        "chemo_bin_hazard": bin_hazard,
        "chemo_scale": scale,
        "chemo_kill_thr": np.array([probability_threshold(x) for x in p], dtype=np.uint32),
        "chemo_bins": np.int32(CHEMO_BINS),
    }


def plasma_at(rules, step: int) -> float:
    """C_p at `step` (mg/L, float64), the same on every lattice."""
    return rules.chemo_plasma.concentration(int(step))


def chemo_active(rules, step: int) -> bool:
    """Whether the drug acts at `step`: a dose given, and E_p ≥ min_effect."""
    return bool(rules.chemo_plasma.boluses) and \
        plasma_at(rules, step) >= rules.chemo_min_plasma_mg_per_L


def drug_field(rules, step: int) -> Field:
    """The drug as a `Field` at `step`: perfused vessels held at this step's C_p."""
    return Field("drug", array="drug", units="mg/L", coeff=rules.chemo_coeff,
                 uptake=FIRST_ORDER, vessel_value=float32_of(plasma_at(rules, step)),
                 omega=rules.chemo_omega, tolerance=rules.chemo_tolerance,
                 max_sweeps=rules.chemo_max_sweeps)


@kernel(reads=("drug", "kind", "perfused"), writes=("drug",), process=CHEMOTHERAPY)
def relax_drug(lattice, rules, step):
    """Relax the drug field, c = C_p(t) on perfused vessels, cells binding it; returns (sweeps, residual_mg_per_L)."""
    return relax_field(lattice, drug_field(rules, step))


@CHEMOTHERAPY.entry("kill_cycling_cells")
@numba.njit(parallel=True, cache=True)
def _kill_cycling_cells(kind, organ, traits, clock, hypoxia, lineage, motile, vacancy, oxygen,
                        drug, cycle_rate, o2_prolif_threshold, o2_prolif_inv_span,
                        chemo_ec50, chemo_resistance, chemo_scale, chemo_kill_thr, chemo_bins,
                        step, events, nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    zero = np.float32(0.0)
    top = np.float32(chemo_bins - 1)
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                if (k != TUMOR and k != FUNCTIONAL) or motile[z, y, x] != 0:
                    continue                # no cell, a dormant one, or a motile one: no cycling
                c = drug[z, y, x]
                if not c > zero:
                    continue
                rate = cycle_rate[table_row(k, organ[z, y, x]), traits[PROLIFERATION, z, y, x]]
                # a tumour cell's own clock (full: arrested); a functional cell's from 0
                old = np.int64(clock[z, y, x]) if k == TUMOR else np.int64(0)
                advance = advance_cycle(old, rate, oxygen[z, y, x], o2_prolif_threshold,
                                        o2_prolif_inv_span) - old
                if advance <= 0:
                    continue                # not cycling: hypoxic, or waiting with a full clock
                e = c / (c + chemo_ec50)
                hazard = (e * chemo_resistance[traits[CHEMO_RESISTANCE, z, y, x]]) \
                    * np.float32(advance)
                q = hazard * chemo_scale
                b = chemo_bins - 1 if q >= top else np.int64(q)
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_CHEMO_KILL, lattice_id, k0, k1)[0]
                if word < chemo_kill_thr[b]:
                    kind[z, y, x] = EMPTY
                    clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                    if k == TUMOR:
                        events[CHEMO_KILLED_TUMOR, z] += 1
                    else:
                        vacancy[z, y, x] = 1
                        events[CHEMO_KILLED_FUNCTIONAL, z] += 1


@kernel(reads=("kind", "organ", "motile", "drug", "clock", "oxygen", "traits.proliferation",
               "traits.chemo_resistance"), writes=(), process=CHEMOTHERAPY)
def kill_cycling_cells(lattice, rules, step):
    """Cycling cells die with P = 1 − exp(−k E(c) g (1 − r·level) Δt), g their cycling rate over a nominal tumour cell's; dormant, hypoxic and arrested cells are spared."""
    _kill_cycling_cells(lattice, rules, step)
