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
# within a few dozen steps.
HYPOXIC = edited(small_scenario_text(32, seed_radius_um=140.0),
                 ("capillary_spacing_um = 140.0", "capillary_spacing_um = 600.0"),
                 ("o2_uptake_per_min = 10.0                  # uptake rate 10 /min (PhysiCell); "
                  "first_order only\no2_vmax_mmHg_per_s = 8.44",
                  "o2_uptake_per_min = 100.0\no2_vmax_mmHg_per_s = 84.4"),
                 ("necrosis_delay_h = 12.0", "necrosis_delay_h = 4.0"),
                 ("apoptosis_per_h = 0.00319", "apoptosis_per_h = 0.02"))


@pytest.fixture(scope="module")
def history():
    sim = Simulation(parse_scenario(HYPOXIC, "hypoxic.toml"))
    rows = [sim.initial] + [sim.step() for _ in range(40)]
    return np.array(rows)


def test_scenario_exercises_every_event(history):
    for event in ("birth_tumor", "birth_functional", "apoptosis_tumor", "apoptosis_functional",
                  "necrosis_tumor", "compression_functional", "displaced_functional"):
        assert history[event][1:].sum() > 0, event


def test_tumour_births_minus_deaths_is_the_change(history):
    h = history
    change = np.diff(h["tumor"])
    assert np.array_equal(change, (h["birth_tumor"] - h["apoptosis_tumor"] - h["necrosis_tumor"])[1:])


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
