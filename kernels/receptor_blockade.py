"""Hormone therapy and growth-signal inhibition: receptor blockade slows receptor-driven cycling.

Two drug kinds act on one heritable trait, RECEPTOR (levels 0–15, `kernels/lattice.py`):
how strongly a tumour cell's proliferation depends on a hormone or growth-factor receptor
(oestrogen receptor, HER2).  A `[[therapy]]` of kind

* "hormone_therapy" gives oral doses `dose_mg` of a tamoxifen-like anti-oestrogen, each
  taken as a bolus (absorption over ~5 h is ignored, approx.: it overstates the first
  hours' peak, which daily dosing with a 6-day half-life smooths out);
* "growth_signal_inhibitor" gives intravenous doses `dose_mg_per_kg` of a
  trastuzumab-like anti-HER2 antibody;

each with the plasma model of `engine.pharmacokinetics` (one compartment, first-order
elimination) and the exposure E = C/(C + EC50).  Two such drugs together act by Bliss
independence (Bliss 1939, Ann Appl Biol 26:585: independent blockade of one pathway):

    E = 1 − (1 − E_hormone)(1 − E_growth)

and a tumour cell of receptor level l cycles at

    rate × (1 − E · l/15)

(`receptor_factor[l]`, float32, computed on the host in float64 once per step and handed
to `propose_division` as a keyword override of division's rule table, which is exactly
1.0f for every level: E = 0 hands nothing over, so an untreated run is bit-identical to
one without this process).  A cell at level 0 does not depend on the receptor and is
spared; a cell at level 15 stops cycling at E = 1.  The receptor level is heritable and
mutates like every trait (`kernels/division.py`), so sustained therapy selects for
receptor loss (endocrine resistance by loss of ER expression, Osborne & Schiff 2011,
Annu Rev Med 62:233; approx.: the model has no ligand-independent activation).
Functional cells are untouched (approx.: normal ER+ breast epithelium and HER2+
cardiomyocytes also respond, but the model's organs cycle by their own rate only).

Parameters (`[hormone_therapy]`, tamoxifen, Nolvadex/Soltamox label):

* `half_life_h` = 144 h: terminal half-life 5–7 days (label; the middle, 6 days);
* `volume_L` = 1400 L: apparent volume V/F (approx.): chosen so that 20 mg daily reaches
  the label's mean steady-state plasma level of 122 ng/mL (range 71–183) in about four
  weeks; tamoxifen's volume is large (tens of L/kg) because it is lipophilic and
  tissue-bound;
* `ec50_mg_per_L` = 0.02 mg/L (approx., a guess): 1 and 5 mg daily lowered tumour Ki-67
  about as much as 20 mg (Decensi et al. 2003, J Natl Cancer Inst 95:779), so the
  half-maximal level lies well below the 20 mg steady state; E ≈ 0.86 there.

Parameters (`[growth_signal_inhibitor]`, trastuzumab, Herceptin label):

* `half_life_h` = 684 h: terminal half-life about 28.5 days (label population PK);
* `volume_L` = 3 L: central volume about 3 L (label population PK, approx.);
* `body_mass_kg` = 70 kg: the reference adult (ICRP Publication 89);
* `ec50_mg_per_L` = 2 mg/L (approx., a guess): the labelled regimens (4 mg/kg then 2 mg/kg
  weekly; 8 mg/kg then 6 mg/kg every 3 weeks) were designed to keep troughs above about
  20 mg/L, the level effective in xenografts (Leyland-Jones et al. 2003, J Clin Oncol
  21:3965), so the effect is near its maximum there: E(20 mg/L) ≈ 0.91.
  The one-compartment model with the terminal half-life overstates troughs (6 mg/kg every
  3 weeks: model steady-state trough ~210 mg/L against a mean of about 47 mg/L observed,
  label population PK): E ≈ 0.99 against 0.96, a small difference because both lie on
  the flat part of the Emax curve.

Rule constants (`receptor_blockade_rules`): `hormone_therapy_exposure`,
`hormone_therapy_plasma`, `growth_signal_inhibitor_exposure` and
`growth_signal_inhibitor_plasma` (`engine.pharmacokinetics.exposure_rules`).
"""
from __future__ import annotations

import numpy as np

from engine.pharmacokinetics import exposure_rules, step_exposure

from .lattice import TRAIT_LEVELS
from .process import Process, float32_of, positive

HORMONE, GROWTH = "hormone_therapy", "growth_signal_inhibitor"

HORMONE_THERAPY = Process(
    "hormone_therapy",
    params={"hormone_therapy": {
        "half_life_h": positive(
            144.0, "h", "tamoxifen terminal half-life 5-7 days (label); bound: a guard",
            hi=1e5),
        "volume_L": positive(
            1400.0, "L", "(approx.) tamoxifen apparent volume V/F: 20 mg daily reaches the "
                         "label's mean steady state 122 ng/mL; bound: a guard", hi=1e6),
        "ec50_mg_per_L": positive(
            0.02, "mg/L", "(approx., a guess) 1-5 mg daily lowers Ki-67 about as much as 20 mg "
                          "(Decensi 2003): half-maximal well below the 20 mg steady state "
                          "0.12 mg/L; bound: a guard", hi=1e6),
    }})

GROWTH_SIGNAL_INHIBITOR = Process(
    "growth_signal_inhibitor",
    params={"growth_signal_inhibitor": {
        "half_life_h": positive(
            684.0, "h", "trastuzumab terminal half-life about 28.5 days (label population PK); "
                        "bound: a guard", hi=1e5),
        "volume_L": positive(
            3.0, "L", "trastuzumab central volume about 3 L (label population PK, approx.); "
                      "bound: a guard", hi=1e3),
        "body_mass_kg": positive(
            70.0, "kg", "reference adult (ICRP Publication 89); bound: a guard", hi=1e3),
        "ec50_mg_per_L": positive(
            2.0, "mg/L", "(approx., a guess) regimens keep troughs above ~20 mg/L, the "
                         "level effective in xenografts (label regimens; Leyland-Jones 2003): "
                         "E(20 mg/L) = 0.91; bound: a guard",
            hi=1e6),
    }})


@HORMONE_THERAPY.rules_from
def hormone_rules(scenario) -> dict:
    """hormone_therapy_exposure (E per step, float64) and hormone_therapy_plasma."""
    return exposure_rules(scenario, HORMONE)


@GROWTH_SIGNAL_INHIBITOR.rules_from
def growth_signal_rules(scenario) -> dict:
    """growth_signal_inhibitor_exposure (E per step, float64) and
    growth_signal_inhibitor_plasma."""
    return exposure_rules(scenario, GROWTH)


def combined_exposure(rules, step: int) -> float:
    """E = 1 − (1 − E_hormone)(1 − E_growth) at `step` (Bliss independence, float64)."""
    return 1.0 - (1.0 - step_exposure(rules, HORMONE, step)) * \
        (1.0 - step_exposure(rules, GROWTH, step))


def receptor_factors(e: float) -> np.ndarray:
    """The cycle-rate factor 1 − E · l/15 per receptor level l = 0..15 (float32 from float64)."""
    return float32_of(1.0 - e * np.arange(TRAIT_LEVELS) / (TRAIT_LEVELS - 1.0))


def receptor_blockade(rules, step: int) -> dict:
    """Keyword overrides for `propose_division` at `step`: receptor_factor under exposure E;
    empty where E = 0 (division's table of 1.0f as it is)."""
    e = combined_exposure(rules, step)
    if not e > 0.0:
        return {}
    return {"receptor_factor": receptor_factors(e)}
