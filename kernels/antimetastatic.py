"""Anti-metastatic therapy: a migrastatic drug lowers adhesion loss and vessel invasion.

A `[[therapy]]` of kind "anti_metastatic" gives oral doses `dose_mg` of a migrastatic
agent: a drug that blocks cell motility and invasion instead of killing cells
(Gandalovičová et al. 2017, Trends Cancer 3:391; for example inhibitors of fascin, ROCK
or the actin cytoskeleton; none is approved, so every value below is approx.).  Each
dose is taken as a bolus into the plasma model of `engine.pharmacokinetics`, with
exposure E = C/(C + EC50).  At a step with exposure E:

* adhesion loss (`lose_adhesion`, `kernels/migration.py`): an adherent tumour cell
  detaches at k0 · (1 − level/15) · (1 + f_hyp if hypoxic) · (1 − E), i.e.
  detach_thr = threshold(1 − exp(−k (1 − E) Δt)) per [normoxic/hypoxic, adhesion level];
* intravasation (`intravasate`, `kernels/intravasation.py`): a motile cell beside a
  vessel enters it at max(k_b, k_l) · (1 − E), i.e. intravasation_thr =
  threshold(1 − exp(−k (1 − E) Δt)) per vessel set; the choice between blood and lymph
  (a ratio of rates) is unchanged.

Both tables are recomputed on the host in float64 once per step from the rates their
processes are made of (`migration.detachment_rates`, `intravasation.entry_rates`) and
handed to the passes as keyword overrides; E = 0 hands nothing over, so an untreated run
is bit-identical to one without this process.  Re-adhesion, hopping and colonisation are
left as they are (approx.: migrastatics act on the machinery of motility, which would
slow hopping too; the model keeps one lever per step of the cascade it names).

Parameters (`[antimetastatic]`, all approx.: a generic oral small molecule, no label):

* `half_life_h` = 12 h (approx.): once-daily oral small molecules typically have
  half-lives of 10–40 h; 12 h makes the daily trough a quarter of the peak;
* `volume_L` = 100 L (approx.): moderate tissue distribution, about 1.4 L/kg;
* `ec50_mg_per_L` = 0.5 mg/L (approx., a guess): 200 mg daily then runs from 0.67 to
  2.7 mg/L at steady state, E from 0.57 to 0.84: a partial block, as expected of a drug
  against motility (cells have redundant modes of migration).

Rule constants (`antimetastatic_rules`): `antimetastatic_exposure`,
`antimetastatic_plasma` (`engine.pharmacokinetics.exposure_rules`), and the rates
`antimetastatic_detach_rates` (1/h, float64 [2, 16]) and
`antimetastatic_entry_rates` (1/h, float64 [vessel set]).
"""
from __future__ import annotations

from engine.pharmacokinetics import exposure_rules, step_exposure

from .intravasation import entry_rates
from .migration import detachment_rates
from .philox import rate_threshold
from .process import Process, positive

KIND = "anti_metastatic"

ANTI_METASTATIC = Process(
    "anti_metastatic",
    params={"antimetastatic": {
        "half_life_h": positive(
            12.0, "h", "(approx.) experimental migrastatic, no label: once-daily oral small "
                       "molecules have half-lives of 10-40 h; bound: a guard", hi=1e5),
        "volume_L": positive(
            100.0, "L", "(approx.) moderate tissue distribution, about 1.4 L/kg; "
                        "bound: a guard", hi=1e6),
        "ec50_mg_per_L": positive(
            0.5, "mg/L", "(approx., a guess) 200 mg daily gives E 0.57-0.84 at steady state: "
                         "a partial block of motility; bound: a guard", hi=1e6),
    }})


@ANTI_METASTATIC.rules_from
def antimetastatic_rules(scenario) -> dict:
    """antimetastatic_exposure (E per step, float64), antimetastatic_plasma, and the
    detachment and vessel-entry rates (1/h, float64) the passes' thresholds are made of."""
    return {**exposure_rules(scenario, KIND),
            "antimetastatic_detach_rates": detachment_rates(scenario),
            "antimetastatic_entry_rates": entry_rates(scenario)}


def held_adhesion(rules, step: int) -> dict:
    """Keyword overrides for `lose_adhesion` at `step`: detach_thr from the detachment
    rates × (1 − E); empty where E = 0."""
    e = step_exposure(rules, KIND, step)
    if not e > 0.0:
        return {}
    return {"detach_thr": rate_threshold(rules.antimetastatic_detach_rates * (1.0 - e),
                                         rules.step_h)}


def blocked_intravasation(rules, step: int) -> dict:
    """Keyword overrides for the vessel-entry choice of `intravasate` at `step`:
    intravasation_thr from the entry rates × (1 − E); empty where E = 0."""
    e = step_exposure(rules, KIND, step)
    if not e > 0.0:
        return {}
    return {"intravasation_thr": rate_threshold(rules.antimetastatic_entry_rates * (1.0 - e),
                                                rules.step_h)}
