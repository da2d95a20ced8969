"""Plasma pharmacokinetics of the drug therapies: one compartment, intravenous boluses.

A drug therapy (`[[therapy]]` of a drug kind, `engine.therapy`) gives doses D_k (mg/kg
body mass, or mg) at the delivery steps s_k of the schedule (`engine.therapy.delivery_steps`),
i.e. at times t_k = s_k · Δt.  Each dose is an intravenous bolus that mixes at once into
a central (plasma) volume V and is eliminated by first-order kinetics with the terminal
half-life t½ (the one-compartment model with linear elimination; Rowland & Tozer,
Clinical Pharmacokinetics, ch. 3; Gibaldi & Perrier, Pharmacokinetics):

    C(t) = Σ_{t_k ≤ t}  (D_k · m / V) · exp(−ln 2 · (t − t_k) / t½)        (mg/L)

with m the body mass (kg) for a dose in mg/kg (m = 1 for a dose in mg).  A dose given at step s acts from step s on (C(t_k) is its
full peak).  Repeated equal doses D every τ hours accumulate towards the steady state
whose peak and trough are

    C_peak,ss = (D m / V) / (1 − 2^(−τ/t½)),     C_trough,ss = C_peak,ss · 2^(−τ/t½)

(the geometric series of the superposed boluses; Rowland & Tozer).  The effect on the
drug's target follows the Emax model with Emax = 1 and Hill coefficient 1 (Holford &
Sheiner 1981, Clin Pharmacokinet 6:429):

    E = C / (C + EC50),      E in [0, 1);  E = 0 exactly where C = 0.

Every quantity is a float64 computed on the host; kernels only ever see thresholds
derived from E (DESIGN.md §4: no exp in kernels).  The one-compartment model ignores the
distribution phase (for bevacizumab a few days, against a terminal half-life of about 20
days) and target-mediated clearance; both are documented approximations.

Doses in mg/kg become mg through the body mass m; doses in mg are given as they are
(`Drug.mg`: the one conversion rule, chosen by the dose unit of the drug's kind,
`engine.therapy.DOSE_UNITS`).  An oral dose is taken as a bolus too (absorption over a
few hours is ignored: this overstates the peak and understates the first hours' rise,
documented per drug).

The drug's parameters live in the scenario table its process declares (`DRUG_TABLES`:
the anti-angiogenic kind's in `[antiangiogenic]`, kernels/antiangiogenic.py; the
targeted kinds' in `[hormone_therapy]`, `[growth_signal_inhibitor]`,
`[apoptosis_reactivator]` and `[antimetastatic]`): `half_life_h`, `volume_L`,
`ec50_mg_per_L` and, for a drug dosed in mg/kg, `body_mass_kg`.

E at every step of a run comes from one place (`exposure_rules`, `step_exposure`): the
table of E at steps 0 .. the run's last step (or ten half-lives after the last dose,
whichever comes first) as the rule constant `<table>_exposure`, and the plasma schedule
as `<table>_plasma` for later steps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .therapy import DOSE_UNITS, THERAPY_KINDS, deliveries

# drug therapy kind -> the scenario table holding its pharmacokinetic parameters
DRUG_TABLES: dict[str, str] = {"anti_angiogenic": "antiangiogenic",
                               "hormone_therapy": "hormone_therapy",
                               "growth_signal_inhibitor": "growth_signal_inhibitor",
                               "apoptosis_reactivator": "apoptosis_reactivator",
                               "anti_metastatic": "antimetastatic"}
LN2 = math.log(2.0)
TABLE_HALF_LIVES = 10      # a table of E reaches this many half-lives past the last dose


@dataclass(frozen=True)
class Drug:
    """The pharmacokinetic and effect parameters of one drug."""

    half_life_h: float          # terminal elimination half-life t½
    volume_L: float             # central volume of distribution V
    body_mass_kg: float | None  # m: turns a dose in mg/kg into mg (None: dosed in mg)
    ec50_mg_per_L: float        # plasma concentration of half-maximal effect
    dose_unit: str = "mg/kg"    # the unit of its kind's dose (engine.therapy.DOSE_UNITS)

    def mg(self, dose: float) -> float:
        """A dose in the drug's dose unit as mg: × m for mg/kg, as it is for mg."""
        if self.dose_unit == "mg/kg":
            return float(dose) * self.body_mass_kg
        if self.dose_unit == "mg":
            return float(dose)
        raise ValueError(f"no conversion of a dose in {self.dose_unit!r} to mg")


@dataclass(frozen=True)
class PlasmaSchedule:
    """The boluses of one drug: (step, plasma increment D_k m / V in mg/L),
    in step order, with the drug and the step length; `concentration(step)` and
    `effect(step)` at any step, in float64."""

    drug: Drug
    step_h: float
    boluses: tuple[tuple[int, float], ...]

    def concentration(self, step: int) -> float:
        """C at `step` (mg/L): the sum over boluses given at or before it."""
        c = 0.0
        for at, amount in self.boluses:
            if at <= step:
                c += amount * math.exp(-LN2 * (step - at) * self.step_h / self.drug.half_life_h)
        return c

    def effect(self, step: int) -> float:
        """E = C / (C + EC50) at `step`."""
        return emax_effect(self.concentration(step), self.drug.ec50_mg_per_L)

    def effects(self, steps: int) -> np.ndarray:
        """E at steps 0 .. steps (float64)."""
        return np.array([self.effect(s) for s in range(steps + 1)], dtype=np.float64)


def emax_effect(concentration_mg_per_L: float, ec50_mg_per_L: float) -> float:
    """E = C / (C + EC50) (0 where C = 0)."""
    c = float(concentration_mg_per_L)
    return c / (c + float(ec50_mg_per_L)) if c > 0.0 else 0.0


def steady_state_peak_trough(dose: float, interval_h: float, drug: Drug) -> tuple[float, float]:
    """(C_peak,ss, C_trough,ss) of equal boluses of `dose` (the drug's dose unit) every
    `interval_h` (mg/L)."""
    rise = drug.mg(dose) / drug.volume_L
    keep = 2.0 ** (-interval_h / drug.half_life_h)
    peak = rise / (1.0 - keep)
    return peak, peak * keep


def drug_of(scenario, kind: str) -> Drug:
    """The parameters of drug `kind` from its scenario table."""
    table = DRUG_TABLES[kind]
    unit = DOSE_UNITS[THERAPY_KINDS[kind][0]]
    return Drug(half_life_h=float(scenario[f"{table}.half_life_h"]),
                volume_L=float(scenario[f"{table}.volume_L"]),
                body_mass_kg=float(scenario[f"{table}.body_mass_kg"]) if unit == "mg/kg" else None,
                ec50_mg_per_L=float(scenario[f"{table}.ec50_mg_per_L"]), dose_unit=unit)


def plasma_schedule(scenario, kind: str) -> PlasmaSchedule:
    """The boluses of every delivery of `kind` in the schedule (`engine.therapy.deliveries`,
    protocol decisions included): a drug reaches every lattice of the body through the
    plasma, so every lattice sees the same concentration."""
    drug = drug_of(scenario, kind)
    record = deliveries(scenario)
    given = record[record["kind"] == kind.encode()]
    boluses = [(int(row["step"]), drug.mg(row["dose"]) / drug.volume_L) for row in given]
    return PlasmaSchedule(drug, float(scenario["time.step_h"]), tuple(sorted(boluses)))


def exposure(scenario, kind: str, step: int) -> float:
    """E of the therapies of `kind` at `step` (0 without any), the same on every lattice."""
    return plasma_schedule(scenario, kind).effect(step)


def table_steps(scenario, plasma) -> int:
    """Steps a table of E covers: the run's steps, but no further than
    TABLE_HALF_LIVES half-lives after the last dose (a long run does not buy a long table;
    later steps are computed on the fly); 1 without any dose."""
    if not plasma.boluses:
        return 1
    run = max(1, int(round(scenario["time.duration_h"] / scenario["time.step_h"])))
    tail = math.ceil(TABLE_HALF_LIVES * plasma.drug.half_life_h / scenario["time.step_h"])
    return min(run, plasma.boluses[-1][0] + tail) + 1


def exposure_rules(scenario, kind: str) -> dict:
    """The rule constants of drug `kind`'s exposure: `<table>_exposure`, E at steps 0 ..
    table_steps − 1 (float64; the schedule is static between protocol decisions, which
    rebuild the rules), and `<table>_plasma`, the PlasmaSchedule for later steps."""
    table = DRUG_TABLES[kind]
    plasma = plasma_schedule(scenario, kind)
    return {f"{table}_exposure": plasma.effects(table_steps(scenario, plasma) - 1),
            f"{table}_plasma": plasma}


def step_exposure(rules, kind: str, step: int) -> float:
    """E of drug `kind` at `step` from the rule constants of `exposure_rules`: the
    precomputed table, or past its end the plasma schedule."""
    table = getattr(rules, f"{DRUG_TABLES[kind]}_exposure")
    step = int(step)
    if 0 <= step < len(table):
        return float(table[step])
    return getattr(rules, f"{DRUG_TABLES[kind]}_plasma").effect(step)
