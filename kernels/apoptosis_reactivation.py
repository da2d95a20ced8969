"""Apoptosis reactivation: a BH3 mimetic lowers the apoptosis resistance of tumour cells.

A `[[therapy]]` of kind "apoptosis_reactivator" gives oral doses `dose_mg` of a
venetoclax-like BH3 mimetic: it binds BCL-2 and frees the pro-apoptotic proteins that
resistant cells keep sequestered (Souers et al. 2013, Nat Med 19:202).  Each dose is
taken as a bolus (approx.: absorption over 5–8 h is ignored, so the model's peak is
higher and earlier than the label's) into the plasma model of `engine.pharmacokinetics`,
with exposure E = C/(C + EC50).

Mechanism: apoptosis resistance (trait APOPTOSIS_RESISTANCE, level l = 0..15) scales a
tumour cell's apoptosis rate by m(l) = 1 − r·l (`kernels/fate.py`, r =
`tumor.traits.apoptosis_resistance_per_level`).  Under exposure E the resistance is
lowered to

    m(l) = max(1 − r · l · (1 − E), 0),      P = 1 − exp(−k_apo · m(l) · Δt),

so a cell at level 0 is unchanged and a fully resistant one regains up to its
resistance-free rate at E = 1.  The tumour row of fate's `apoptosis_thr` is recomputed on
the host in float64 once per step (`resistance_multiplier`, the one formula fate uses
too) and handed to `decide_fate` as a keyword override; E = 0 hands nothing over, so an
untreated run is bit-identical to one without this process.  No kernel changes.
Functional cells keep their rates (approx.: BH3 mimetics also kill normal
BCL-2-dependent cells, lymphocytes and neutrophil precursors: neutropenia is venetoclax's
main toxicity, label; the model's organs are epithelia).  Resistance stays heritable, so
selection under the drug still favours whatever resistance the drug leaves.

Parameters (`[apoptosis_reactivator]`, venetoclax, Venclexta label):

* `half_life_h` = 26 h: terminal elimination half-life about 26 h (label);
* `volume_L` = 256 L: apparent volume of distribution at steady state 256–321 L
  (label; the lower end).  With 400 mg daily as boluses the model's steady state runs
  from 1.7 to 3.3 mg/L (label: Cmax 2.1 ± 1.1 mg/L; mean over the day, AUC/24, 1.4 mg/L),
  i.e. the bolus model overstates exposure about twofold (approx.);
* `ec50_mg_per_L` = 1 mg/L (approx., a guess): the unbound fraction in plasma is below
  0.01 (label), so 1 mg/L total (1.15 µM at 868 g/mol) leaves at most ~10 nM free, the
  low-nanomolar range in which venetoclax kills BCL-2-dependent cells (Souers et al.
  2013).  At the label's Cmax E ≈ 0.68.

Rule constants (`reactivation_rules`): `apoptosis_reactivator_exposure`,
`apoptosis_reactivator_plasma` (`engine.pharmacokinetics.exposure_rules`) and the
tumour's rate and resistance step (`reactivation_apoptosis_per_h`,
`reactivation_resistance_per_level`, float64).
"""
from __future__ import annotations

from engine.pharmacokinetics import exposure_rules, step_exposure

from .fate import resistance_multiplier
from .philox import rate_threshold
from .process import Process, positive

KIND = "apoptosis_reactivator"
TUMOUR_ROW = 0          # row 0 of fate's apoptosis_thr is the tumour's

APOPTOSIS_REACTIVATOR = Process(
    "apoptosis_reactivator",
    params={"apoptosis_reactivator": {
        "half_life_h": positive(
            26.0, "h", "venetoclax terminal half-life about 26 h (label); bound: a guard",
            hi=1e5),
        "volume_L": positive(
            256.0, "L", "venetoclax apparent volume at steady state 256-321 L (label); "
                        "bound: a guard", hi=1e6),
        "ec50_mg_per_L": positive(
            1.0, "mg/L", "(approx., a guess) unbound fraction < 0.01 (label): 1 mg/L total "
                         "leaves <~10 nM free, where BCL-2-dependent cells die (Souers "
                         "2013); bound: a guard", hi=1e6),
    }})


@APOPTOSIS_REACTIVATOR.rules_from
def reactivation_rules(scenario) -> dict:
    """apoptosis_reactivator_exposure (E per step, float64), apoptosis_reactivator_plasma,
    and the tumour's apoptosis rate and resistance step (float64) that fate's table is made
    of."""
    return {**exposure_rules(scenario, KIND),
            "reactivation_apoptosis_per_h": float(scenario["tumor.apoptosis_per_h"]),
            "reactivation_resistance_per_level":
                float(scenario["tumor.traits.apoptosis_resistance_per_level"])}


def reactivated_thresholds(rules, e: float):
    """Fate's apoptosis_thr with the tumour row at exposure E:
    threshold(1 − exp(−k_apo · max(1 − r·l·(1 − E), 0) · Δt)) per level l (uint32)."""
    table = rules.apoptosis_thr.copy()
    rates = rules.reactivation_apoptosis_per_h * resistance_multiplier(
        rules.reactivation_resistance_per_level, e)
    table[TUMOUR_ROW] = rate_threshold(rates, rules.step_h)
    return table


def reactivated_apoptosis(rules, step: int) -> dict:
    """Keyword overrides for `decide_fate` at `step`: apoptosis_thr with the tumour's
    resistance lowered by E; empty where E = 0 (fate's table as it is)."""
    e = step_exposure(rules, KIND, step)
    if not e > 0.0:
        return {}
    return {"apoptosis_thr": reactivated_thresholds(rules, e)}
