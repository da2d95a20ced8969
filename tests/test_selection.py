"""Selection of apoptosis evasion (issue 12, item 1).

Tumour cells carry a heritable `apoptosis_resistance` level (0..15): their apoptosis
rate is tumor.apoptosis_per_h × (1 − r·level) (kernels/fate.py), and at each division
every trait of the daughter steps one level down or up with probability p/2 each
(kernels/division.py), so mutation alone is unbiased.  Under a constant killing
pressure a more resistant cell leaves more descendants, and the mean level of the
tumour must rise; without the pressure, or without mutation, it must not.

The experiment: the quickstart shrunk to 24³ voxels, a founder nodule of about 2 700
cells (seed radius 160 µm) at resistance level 4, run for 20 cell cycles (480 h).
Everything but apoptosis is kept neutral: angiogenesis off, tumour oxygen uptake
0.1 mmHg/s (every tumour cell sits at about 37 mmHg: no hypoxia, no necrosis, full
cycling speed), no detachment (a motile cell would not divide), and proliferation
gain 0 (so no sweep of a fast-dividing clone drags resistance levels along).

The pressure, tumor.apoptosis_per_h = 0.035: a level-0 cell lives 1/0.035 = 29 h on
average, about one 24 h cycle; at the founder level 4 the death rate is
0.035·0.76 = 0.0266 /h, so a founder cell survives its cycle with probability
exp(−0.0266·24) = 0.53 and its lineage grows by 2·0.53 = 1.06 a cycle: the tumour
persists, close to critical, and turns over about once a cycle.  Each level of
resistance is worth about 5 % of offspring per cycle at that point (level 5: 1.11,
level 3: 1.00).

The response to selection is the mutational variance times the selection gradient:
with the model's default mutation probability (0.01 per trait per division) the
variance after g cycles is about 0.01·g, and in 20 cycles the mean rises by only
about 0.05 levels, while genetic drift in a 2 700-cell tumour moves it by about
±0.03 (the spread of the final mean over seeds 1–5: pressure 4.052 ± 0.034, neutral
turnover 4.006 ± 0.023).  The spread of levels over cells (sd/√n ≈ 0.006) does not
measure that drift: cells share ancestors, so it understates the true standard error
several-fold.  The fast test therefore raises the mutation supply of the scenario
(mutation_probability = 0.2; the model and its defaults are unchanged) so that 20
cycles show selection clearly (seeds 1–3: +0.85 to +1.06 levels under pressure,
+0.04 to +0.07 with the same turnover but no selection, −0.03 to +0.05 at the normal
apoptosis rate).  At the default probability the signal needs about 40 cycles
(960 h, 25 s or more a run): seed 1 +0.30, seed 2 +0.15 levels under pressure; no
test here asserts that, as the neutral spread at 40 cycles was not measured.

Controls:
* neutral turnover: the same death rate for every level as the founder's under
  pressure (0.035·0.76 /h, resistance per level 0): the same demography and number
  of divisions, so the same mutations and drift, but no selection;
* no pressure: the normal tumour apoptosis rate (0.00319 /h, the quickstart's);
* no mutation: the pressure with mutation probability 0: every tumour cell stays at
  the founder level for the whole run (the rise is selection of new variants, not a
  bias of mutation or of the kernels).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from conftest import small_scenario_text, with_values
from engine.scenario import parse_scenario
from engine.simulation import Simulation
from kernels.lattice import APOPTOSIS_RESISTANCE, TUMOR

FOUNDER_LEVEL = 4                  # the quickstart's tumor.traits.apoptosis_resistance_level
CYCLE_H = 24                       # the quickstart's tumor.cycle_time_h
RESISTANCE_PER_LEVEL = 0.06        # the model's default (apoptosis rate × (1 − 0.06·level))
PRESSURE_PER_H = 0.035             # killing pressure: level 0 lives about one cycle
NORMAL_PER_H = 0.00319             # the quickstart's (PhysiCell) tumour apoptosis rate
# The same death rate as a founder cell under pressure, for every level: no selection.
NEUTRAL_PER_H = PRESSURE_PER_H * (1.0 - RESISTANCE_PER_LEVEL * FOUNDER_LEVEL)
FAST_MUTATION = 0.2                # accelerated mutation supply (the default is 0.01)
EDGE, SEED_RADIUS_UM, SEED = 24, 160.0, 1


@dataclass(frozen=True)
class Outcome:
    levels: np.ndarray             # final apoptosis-resistance level of every tumour cell
    founders: int                  # tumour cells at step 0
    births: int                    # tumour divisions over the run
    mean_population: float         # tumour cells, averaged over the daily censuses
    levels_seen: frozenset         # every level any tumour cell held at a daily census

    @property
    def n(self) -> int:
        return int(self.levels.size)

    @property
    def mean(self) -> float:
        return float(self.levels.mean())

    @property
    def rise(self) -> float:
        return self.mean - FOUNDER_LEVEL

    @property
    def cell_se(self) -> float:
        """sd/√n over cells: understates the error of the mean (cells share ancestors)."""
        return float(self.levels.std(ddof=1) / np.sqrt(self.n))

    @property
    def above(self) -> int:
        return int((self.levels > FOUNDER_LEVEL).sum())

    @property
    def below(self) -> int:
        return int((self.levels < FOUNDER_LEVEL).sum())

    @property
    def cycles_of_turnover(self) -> float:
        return self.births / self.mean_population

    def line(self, name: str) -> str:
        return (f"{name}: n {self.founders} -> {self.n}, {self.births} divisions "
                f"({self.cycles_of_turnover:.1f} turnovers), mean level {self.mean:.3f} "
                f"(rise {self.rise:+.3f}, cell sd/sqrt(n) {self.cell_se:.4f}), "
                f"above/below founder {self.above}/{self.below}")


@functools.lru_cache(maxsize=None)
def evolve(apoptosis_per_h: float, resistance_per_level: float, mutation: float,
           cycles: int, seed: int = SEED) -> Outcome:
    """Run the selection scenario; the tumour's resistance levels at the end."""
    hours = cycles * CYCLE_H
    text = with_values(small_scenario_text(EDGE, seed_radius_um=SEED_RADIUS_UM),
                       seed=seed, duration_h=float(hours), enabled="false",
                       apoptosis_per_h=apoptosis_per_h,
                       apoptosis_resistance_per_level=resistance_per_level,
                       mutation_probability=mutation, proliferation_gain_per_level=0.0,
                       o2_vmax_mmHg_per_s=0.1, detachment_per_h=0.0)
    scenario = parse_scenario(text, "selection.toml")
    assert scenario["tumor.apoptosis_per_h"] == apoptosis_per_h          # the edits took
    assert scenario["tumor.traits.mutation_probability"] == mutation
    assert scenario["tumor.traits.apoptosis_resistance_level"] == FOUNDER_LEVEL
    assert scenario["angiogenesis.enabled"] is False
    sim = Simulation(scenario)

    def tumour_levels():
        kind = sim.arch.to_host(sim.lattice.kind)
        return sim.arch.to_host(sim.lattice.traits)[APOPTOSIS_RESISTANCE][kind == TUMOR]

    founders = int(sim.initial["tumor"])
    births, population, seen = 0, [founders], set(np.unique(tumour_levels()).tolist())
    for hour in range(1, hours + 1):
        row = sim.step()
        births += int(row["birth_tumor"])
        assert row["necrotic"] == 0 and row["hypoxic_tumor"] == 0     # apoptosis alone
        if hour % CYCLE_H == 0:
            population.append(int(row["tumor"]))
            seen.update(np.unique(tumour_levels()).tolist())
    return Outcome(tumour_levels().astype(np.float64), founders, births,
                   float(np.mean(population)), frozenset(seen))


def test_apoptosis_resistance_rises_under_killing_pressure():
    """20 cycles under pressure: the tumour persists, turns over many times, and its
    mean resistance rises by at least half a level (many times the cell-level
    standard error, and twice as many cells above the founder level as below)."""
    out = evolve(PRESSURE_PER_H, RESISTANCE_PER_LEVEL, FAST_MUTATION, 20)
    print(out.line("pressure"))
    assert out.n >= out.founders / 2                 # the tumour survives the pressure
    assert out.cycles_of_turnover >= 8               # generations of selection, not one
    assert out.rise >= 0.5
    assert out.rise >= 10 * out.cell_se
    assert out.above >= 2 * out.below


def test_without_selection_the_mean_level_only_drifts():
    """The same 20 cycles with the same turnover but no selection (every level dies
    at the founder's rate), and at the normal apoptosis rate: the mean stays within a
    quarter level of the founder's, far below the rise under pressure."""
    pressure = evolve(PRESSURE_PER_H, RESISTANCE_PER_LEVEL, FAST_MUTATION, 20)
    neutral = evolve(NEUTRAL_PER_H, 0.0, FAST_MUTATION, 20)
    normal = evolve(NORMAL_PER_H, RESISTANCE_PER_LEVEL, FAST_MUTATION, 20)
    for name, out in (("neutral turnover", neutral), ("normal apoptosis", normal)):
        print(out.line(name))
        assert out.births >= 0.5 * pressure.births   # mutation had as much to work on
        assert out.above + out.below >= 1000         # variants arose, they were not kept
        assert abs(out.rise) <= 0.25
        assert abs(out.rise) <= pressure.rise / 3


def test_without_mutation_every_cell_keeps_the_founder_level():
    """The same pressure with mutation probability 0: the tumour persists and every
    tumour cell holds the founder level at every daily census (no rise comes from
    anything but selection of new variants)."""
    out = evolve(PRESSURE_PER_H, RESISTANCE_PER_LEVEL, 0.0, 20)
    print(out.line("pressure, no mutation"))
    assert out.n >= out.founders / 4 and out.births >= out.founders
    assert out.levels_seen == {FOUNDER_LEVEL}

