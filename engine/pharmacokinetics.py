"""Plasma pharmacokinetics of the drug therapies: one compartment, intravenous boluses
or constant-rate infusions.

A drug therapy (`[[therapy]]` of a drug kind, `engine.therapy`) gives doses D_k (mg, mg
per kg body mass or mg per m² body surface area: the kind's dose unit) at the delivery steps
s_k of the schedule (`engine.therapy.delivery_steps`), i.e. at times t_k = s_k · Δt.
Each dose mixes into a central (plasma) volume V and is eliminated by first-order
kinetics with the half-life t½, k = ln 2 / t½ (the one-compartment model with linear
elimination; Rowland & Tozer, Clinical Pharmacokinetics, ch. 3; Gibaldi & Perrier,
Pharmacokinetics).  With A_k = D_k · m / V the plasma rise of the whole dose (m the body
mass in kg for mg/kg doses, the body surface area in m² for mg/m² doses):

* a bolus (infusion_h = 0) mixes at once:

      C_k(τ) = A_k · exp(−k τ),                 τ = t − t_k ≥ 0;

* an infusion of duration T = infusion_h > 0 enters at the constant rate D_k m / T from
  t_k to t_k + T (zero-order input), so (Rowland & Tozer, ch. "Constant-rate regimens")

      C_k(τ) = (A_k / (k T)) · (1 − exp(−k τ)),                  0 ≤ τ ≤ T,
      C_k(τ) = (A_k / (k T)) · (1 − exp(−k T)) · exp(−k (τ − T)),  τ > T,

  which tends to the bolus as T → 0; its peak is at the end of the infusion, and its
  area ∫C dt = A_k / k = D_k m / CL (CL = k V) is the bolus's.

C(t) = Σ_{t_k ≤ t} C_k(t − t_k) (mg/L), the doses superposed (linear kinetics).  C is
sampled at the step's time t = s · Δt: a bolus given at step s acts from step s on (C(t_k)
is its full peak); an infusion starting at step s has C = 0 at step s and rises over the
following steps.  Repeated equal boluses D every τ hours accumulate towards the steady
state whose peak and trough are

    C_peak,ss = (D m / V) / (1 − 2^(−τ/t½)),     C_trough,ss = C_peak,ss · 2^(−τ/t½)

(the geometric series of the superposed boluses; Rowland & Tozer).  The effect on the
drug's target follows the Emax model with Emax = 1 and Hill coefficient 1 (Holford &
Sheiner 1981, Clin Pharmacokinet 6:429):

    E = C / (C + EC50),      E in [0, 1);  E = 0 exactly where C = 0.

Every quantity is a float64 computed on the host; kernels only ever see thresholds
derived from E, or (chemotherapy) C rounded to float32 as the drug field's value on
perfused vessels (DESIGN.md §4: no exp in kernels).  The one-compartment model ignores
the distribution phase (for bevacizumab a few days, against a terminal half-life of about
20 days; paclitaxel's fit keeps its peak and area, not its slow terminal tail) and
target-mediated clearance; both are documented approximations.

Doses in mg/kg become mg through the body mass, doses in mg/m² through the body surface
area, doses in mg are given as they are (`Drug.mg`: the one conversion rule, chosen by
the dose unit of the drug's kind, `engine.therapy.DOSE_UNITS`).

The drug's parameters live in the scenario table its process declares (`DRUG_TABLES`:
the anti-angiogenic kind's in `[antiangiogenic]`, kernels/antiangiogenic.py; the
chemotherapy kind's in `[chemotherapy]`, kernels/chemotherapy.py; the targeted kinds' in
`[hormone_therapy]`, `[growth_signal_inhibitor]`, `[apoptosis_reactivator]`,
`[antimetastatic]` and `[checkpoint_blockade]`, kernels/immunotherapy.py): `half_life_h`, `volume_L`, `ec50_mg_per_L`, the body size its dose
unit needs (`body_mass_kg` for mg/kg, `body_surface_m2` for mg/m²) and, for an infused
drug, `infusion_h`.

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
                               "chemotherapy": "chemotherapy",
                               "hormone_therapy": "hormone_therapy",
                               "growth_signal_inhibitor": "growth_signal_inhibitor",
                               "apoptosis_reactivator": "apoptosis_reactivator",
                               "anti_metastatic": "antimetastatic",
                               "checkpoint_blockade": "checkpoint_blockade"}
# dose unit -> the body size (a Drug field and its table's key) that turns a dose into mg
BODY_SIZE: dict[str, str] = {"mg/kg": "body_mass_kg", "mg/m2": "body_surface_m2"}
LN2 = math.log(2.0)
TABLE_HALF_LIVES = 10      # a table of E reaches this many half-lives past the last dose


@dataclass(frozen=True)
class Drug:
    """The pharmacokinetic and effect parameters of one drug."""

    half_life_h: float          # elimination half-life t½
    volume_L: float             # central volume of distribution V
    body_mass_kg: float | None  # m: turns a dose in mg/kg into mg (None: not dosed by mass)
    ec50_mg_per_L: float        # plasma concentration of half-maximal effect
    infusion_h: float = 0.0     # T: duration of a constant-rate infusion (0: bolus)
    body_surface_m2: float | None = None    # turns a dose in mg/m² into mg
    dose_unit: str = "mg/kg"    # the unit of its kind's dose (engine.therapy.DOSE_UNITS)

    def mg(self, dose: float) -> float:
        """A dose in the drug's dose unit as mg: × body mass for mg/kg, × body surface
        area for mg/m², as it is for mg."""
        if self.dose_unit == "mg":
            return float(dose)
        if self.dose_unit in BODY_SIZE:
            return float(dose) * getattr(self, BODY_SIZE[self.dose_unit])
        raise ValueError(f"no conversion of a dose in {self.dose_unit!r} to mg")

    def plasma_rise(self, dose: float) -> float:
        """A = D (in mg) / V: the plasma rise of a whole dose (mg/L)."""
        return self.mg(dose) / self.volume_L

    def concentration_after(self, amount: float, hours: float) -> float:
        """C_k(τ) of one dose of plasma rise `amount` (mg/L), τ = `hours` after it starts:
        a bolus, or a constant-rate infusion over infusion_h (float64)."""
        if hours < 0.0:
            return 0.0
        k = LN2 / self.half_life_h
        t = self.infusion_h
        if t <= 0.0:
            return amount * math.exp(-k * hours)
        plateau = amount / (k * t)              # A / (k T): the level an endless infusion nears
        if hours <= t:
            return plateau * -math.expm1(-k * hours)
        return plateau * -math.expm1(-k * t) * math.exp(-k * (hours - t))


@dataclass(frozen=True)
class PlasmaSchedule:
    """The doses of one drug: (step, plasma rise A_k = D_k m / V in mg/L), in step
    order (each a bolus or the start of an infusion, as the drug says), with the drug
    and the step length; `concentration(step)` and `effect(step)` at any step, in
    float64."""

    drug: Drug
    step_h: float
    boluses: tuple[tuple[int, float], ...]

    def concentration(self, step: int) -> float:
        """C at `step` (mg/L): the sum over boluses given at or before it."""
        c = 0.0
        for at, amount in self.boluses:
            if at <= step:
                c += self.drug.concentration_after(amount, (step - at) * self.step_h)
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
    rise = drug.plasma_rise(dose)
    keep = 2.0 ** (-interval_h / drug.half_life_h)
    peak = rise / (1.0 - keep)
    return peak, peak * keep


def drug_of(scenario, kind: str) -> Drug:
    """The parameters of drug `kind` from its scenario table."""
    values = scenario.values[DRUG_TABLES[kind]]
    unit = DOSE_UNITS[THERAPY_KINDS[kind][0]]
    sizes = {size: float(values[size]) if u == unit else None for u, size in BODY_SIZE.items()}
    return Drug(half_life_h=float(values["half_life_h"]), volume_L=float(values["volume_L"]),
                ec50_mg_per_L=float(values["ec50_mg_per_L"]),
                infusion_h=float(values.get("infusion_h", 0.0)), dose_unit=unit, **sizes)


def plasma_schedule(scenario, kind: str) -> PlasmaSchedule:
    """The boluses of every delivery of `kind` in the schedule (`engine.therapy.deliveries`,
    protocol decisions included): a drug reaches every lattice of the body through the
    plasma, so every lattice sees the same concentration."""
    drug = drug_of(scenario, kind)
    record = deliveries(scenario)
    given = record[record["kind"] == kind.encode()]
    boluses = [(int(row["step"]), drug.plasma_rise(float(row["dose"]))) for row in given]
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
