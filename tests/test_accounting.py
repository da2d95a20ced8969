"""Cell accounting: every step, births − deaths = change of the count, per kind."""
import numpy as np
import pytest

from conftest import small_scenario_text
from engine.scenario import parse_scenario
from engine.simulation import Simulation
from kernels.lattice import KIND_NAMES


def edited(text, *edits):
    """`text` with each (old, new) applied; each `old` must occur exactly once."""
    for old, new in edits:
        assert text.count(old) == 1, f"expected exactly one {old!r} in the scenario text"
        text = text.replace(old, new)
    return text


# A poorly vascularised, hungry tumour (ten times the tumour's oxygen uptake, in either
# kinetics): necrosis, apoptosis, division, displacement and compression all happen
# within a few dozen steps; motile cells that reach a vessel enter it within about an hour.
HYPOXIC = edited(small_scenario_text(32, seed_radius_um=140.0),
                 ("capillary_spacing_um = 140.0", "capillary_spacing_um = 600.0"),
                 ("o2_uptake_per_min = 10.0                  # uptake rate 10 /min (PhysiCell); "
                  "first_order only\no2_vmax_mmHg_per_s = 8.44",
                  "o2_uptake_per_min = 100.0\no2_vmax_mmHg_per_s = 84.4"),
                 ("necrosis_delay_h = 12.0", "necrosis_delay_h = 4.0"),
                 ("apoptosis_per_h = 0.00319", "apoptosis_per_h = 0.02"),
                 ("mature_blood_per_h = 0.02", "mature_blood_per_h = 1.0"),
                 ("lymph_per_h = 0.05", "lymph_per_h = 1.0"))


@pytest.fixture(scope="module")
def history():
    sim = Simulation(parse_scenario(HYPOXIC, "hypoxic.toml"))
    rows = [sim.initial] + [sim.step() for _ in range(40)]
    return np.array(rows)


def test_scenario_exercises_every_event(history):
    for event in ("birth_tumor", "birth_functional", "apoptosis_tumor", "apoptosis_functional",
                  "necrosis_tumor", "compression_functional", "displaced_functional",
                  "intravasated_blood"):
        assert history[event][1:].sum() > 0, event


def test_tumour_births_minus_deaths_and_departures_is_the_change(history):
    """Tumour cells are born, die, or leave the lattice through a vessel wall."""
    h = history
    change = np.diff(h["tumor"])
    left = h["intravasated_blood"] + h["intravasated_lymph"]
    assert np.array_equal(change, (h["birth_tumor"] - h["apoptosis_tumor"] - h["necrosis_tumor"]
                                   - left)[1:])


def test_functional_births_minus_deaths_is_the_change(history):
    h = history
    deaths = (h["apoptosis_functional"] + h["necrosis_functional"] + h["compression_functional"]
              + h["functional_cleared_by_sprout"])
    assert np.array_equal(np.diff(h["functional"]), (h["birth_functional"] - deaths)[1:])


def test_necrotic_debris_accumulates_deaths_and_voxels_are_conserved(history):
    h = history
    made = h["necrosis_tumor"] + h["necrosis_functional"]
    removed = h["debris_cleared"] + h["debris_lysed"]      # by sprouts, by lysis
    assert np.array_equal(np.diff(h["necrotic"]), (made - removed)[1:])
    total = sum(h[k] for k in KIND_NAMES)
    assert (total == 32 ** 3).all()


def test_endothelium_grows_by_new_tips_and_stalks(history):
    """A new tip or a tip moving on takes one free voxel; anastomosis and lumenisation
    only turn endothelium into endothelium."""
    h = history
    endothelium = h["vessel"] + h["sprout"] + h["tip"]
    grown = h["tip_sprouted"] + h["stalk_laid"] - h["vessel_regressed"]
    assert np.array_equal(np.diff(endothelium), grown[1:])
    assert h["tip_sprouted"].sum() > 0 and h["stalk_laid"].sum() > 0


def test_every_change_of_what_the_fields_read_is_counted_as_an_event():
    """The field solves are skipped in a step after which no event was counted
    (engine.schedule.TISSUE_CHANGED): so no pass may change a field's input (kind,
    organ, perfused) without counting an event."""
    from engine.schedule import EVENT_NAMES, FIELD_PASSES
    inputs = sorted({a for relax in FIELD_PASSES for a in relax.reads} - {"oxygen", "vegf"})
    sim = Simulation(parse_scenario(HYPOXIC, "hypoxic.toml"))
    for _ in range(25):
        before = {a: np.array(sim.lattice.arrays[a]) for a in inputs}
        row = sim.step()
        changed = [a for a in inputs if not np.array_equal(before[a], sim.lattice.arrays[a])]
        events = sum(int(row[e]) for e in EVENT_NAMES)
        assert not changed or events > 0, changed


def test_fields_are_not_solved_again_while_nothing_changes():
    """Quiescent tissue (no division, death or sprouting): after the first solve the
    fields are already at steady state, so every step skips them (0 sweeps) and the
    state stays exactly as it was."""
    text = edited(small_scenario_text(24, seed_radius_um=20.0),
                  ("enabled = true", "enabled = false"),
                  ("cycle_time_h = 24.0", "cycle_time_h = 1e5"),
                  ("cycle_time_h = 1000.0", "cycle_time_h = 1e5"),
                  ("cycle_time_h = 5000.0", "cycle_time_h = 1e5"),
                  ("apoptosis_per_h = 0.00319", "apoptosis_per_h = 0.0"),
                  ("apoptosis_per_h = 0.0005", "apoptosis_per_h = 0.0"),
                  ("apoptosis_per_h = 0.0001", "apoptosis_per_h = 0.0"))
    sim = Simulation(parse_scenario(text, "quiescent.toml"))
    start = {a: np.array(v) for a, v in sim.lattice.arrays.items()}
    rows = [sim.step() for _ in range(5)]
    assert all(r["o2_sweeps"] == 0 and r["vegf_sweeps"] == 0 for r in rows)
    for name in ("kind", "oxygen", "vegf", "perfused"):
        assert np.array_equal(start[name], sim.lattice.arrays[name]), name
