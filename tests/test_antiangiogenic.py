"""Anti-angiogenic therapy: plasma pharmacokinetics (engine/pharmacokinetics.py), VEGF
blockade of sprouting and pruning of immature vessels (kernels/antiangiogenic.py)."""
import dataclasses
import math

import numpy as np
import pytest

from engine.errors import ScenarioError
from engine.pharmacokinetics import (Drug, PlasmaSchedule, drug_of, emax_effect, exposure,
                                     plasma_schedule, steady_state_peak_trough)
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES
from engine.simulation import Simulation
from engine.state import allocate
from engine.therapy import deliveries_at
from kernels.angiogenesis import _propose_sprouting, grow_sprouts, propose_sprouting
from kernels.antiangiogenic import (blocked_thresholds, exposure_at, prune_immature_vessels,
                                    prune_probability)
from kernels.cuda import compiler
from kernels.lattice import EMPTY, SPROUT, TIP, VESSEL
from kernels.perfusion import spread_perfusion
from kernels.vegf import relax_vegf

QUICKSTART = load_scenario("quickstart").text
PRUNED = EVENT_NAMES.index("vessel_pruned")
SPROUTED = EVENT_NAMES.index("tip_sprouted")
BEV = """
[[therapy]]
name = "bev"
kind = "anti_angiogenic"
start_h = 24.0
count = 3
interval_h = 336.0
dose_mg_per_kg = 10.0
"""


def scenario(extra=BEV, base=QUICKSTART):
    return parse_scenario(base + extra, "antiangiogenic.toml")


# -- pharmacokinetics -------------------------------------------------------------------

def test_a_single_dose_decays_with_the_half_life():
    s = scenario(BEV.replace("count = 3", "count = 1"))
    drug = drug_of(s, "anti_angiogenic")
    plasma = plasma_schedule(s, "anti_angiogenic")
    peak = 10.0 * 70.0 / 3.0                                   # D m / V, mg/L
    assert plasma.boluses == ((24, peak),)
    assert plasma.concentration(23) == 0.0 and exposure(s, "anti_angiogenic", 23) == 0.0
    assert plasma.concentration(24) == pytest.approx(peak, rel=1e-15)   # acts from its step
    for halves in (1, 2, 3):
        c = plasma.concentration(24 + int(halves * drug.half_life_h))
        assert c == pytest.approx(peak * 0.5 ** halves, rel=1e-12)
    assert plasma.concentration(24 + 100) == pytest.approx(peak * math.exp(-math.log(2) * 100 / 480))


def test_repeated_doses_accumulate_to_the_analytic_steady_state():
    drug = Drug(half_life_h=480.0, volume_L=3.0, body_mass_kg=70.0, ec50_mg_per_L=1.0)
    tau, n = 336, 30                                            # 10 mg/kg every 2 weeks
    rise = 10.0 * 70.0 / 3.0
    plasma = PlasmaSchedule(drug, 1.0, tuple((1 + k * tau, rise) for k in range(n)))
    keep = 0.5 ** (tau / 480.0)
    peak_ss, trough_ss = steady_state_peak_trough(10.0, tau, drug)
    for k in (0, 1, 4, n - 1):                                  # peak after dose k + 1
        assert plasma.concentration(1 + k * tau) == pytest.approx(
            peak_ss * (1.0 - keep ** (k + 1)), rel=1e-12)
    assert plasma.concentration(1 + (n - 1) * tau) == pytest.approx(peak_ss, rel=1e-4)
    assert plasma.concentration(1 + n * tau) == pytest.approx(trough_ss, rel=1e-4)
    assert plasma.concentration(1 + n * tau - 1) > trough_ss     # still falling
    assert emax_effect(trough_ss, drug.ec50_mg_per_L) > 0.99    # VEGF blocked at the trough


def test_effect_follows_the_emax_model():
    s = scenario()
    plasma = plasma_schedule(s, "anti_angiogenic")
    ec50 = s["antiangiogenic.ec50_mg_per_L"]
    for step in (24, 100, 400, 1000):
        c = plasma.concentration(step)
        assert plasma.effect(step) == pytest.approx(c / (c + ec50), rel=1e-15)
        assert 0.0 < plasma.effect(step) < 1.0
    assert emax_effect(ec50, ec50) == 0.5 and emax_effect(0.0, ec50) == 0.0
    rules = build_rules(s)                                      # the run's table agrees
    assert len(rules.antiangiogenic_exposure) == 241
    assert exposure_at(rules, 100) == plasma.effect(100)
    assert exposure_at(rules, 5000) == plasma.effect(5000)     # past the table: on the fly


def test_only_the_drugs_own_therapies_count_and_every_lattice_sees_them():
    s = scenario(BEV.replace('kind = "anti_angiogenic"', 'kind = "radiotherapy"')
                 .replace("dose_mg_per_kg = 10.0", "dose_Gy = 2.0"))
    assert exposure(s, "anti_angiogenic", 100) == 0.0
    assert build_rules(s).antiangiogenic_exposure.max() == 0.0
    treated = scenario()
    site = dataclasses.replace(treated, lattice_name="lung", lattice_id=3)   # the plasma is shared
    assert exposure(site, "anti_angiogenic", 100) == exposure(treated, "anti_angiogenic", 100) > 0


def test_a_drug_names_no_lattice_or_region():
    for extra in ('lattice = "lung"\n', 'region = "sphere"\nradius_um = 100.0\n'):
        with pytest.raises(ScenarioError, match=r"therapy\[0\]: kind \"anti_angiogenic\" is a drug that reaches every lattice"):
            scenario(BEV + extra)


# -- the schema -------------------------------------------------------------------------

def test_the_schema_accepts_the_kind_and_records_the_dose():
    s = scenario()
    assert s.therapies[0]["dose_mg_per_kg"] == 10.0
    record = deliveries_at(s, 24)
    assert len(record) == 1 and record["dose"][0] == 10.0 and record["dose_unit"][0] == b"mg/kg"


@pytest.mark.parametrize("text", [BEV.replace("dose_mg_per_kg = 10.0", "dose_mg_per_kg = 31.0"),
                                  BEV.replace("dose_mg_per_kg = 10.0", "dose_mg_per_kg = 0.0"),
                                  BEV.replace("dose_mg_per_kg = 10.0\n", "")])
def test_a_dose_out_of_range_is_one_line_naming_it(text):
    with pytest.raises(ScenarioError) as err:
        scenario(text)
    assert "therapy[0].dose_mg_per_kg" in str(err.value) and "\n" not in str(err.value)


# -- VEGF blockade ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def sprouting():
    """A perfused vessel along x under a hypoxic tumour block, as in test_angiogenesis,
    with VEGF relaxed once (the tissue is held fixed) and sprouting made frequent."""
    from test_angiogenesis import vessel_and_source
    text = (QUICKSTART.replace("tumor_secretion_ng_per_mL_per_h = 20.0",
                               "tumor_secretion_ng_per_mL_per_h = 50.0")
            .replace("sprout_rate_per_h = 0.002", "sprout_rate_per_h = 0.05"))
    rules = build_rules(parse_scenario(text, "blockade")).replace(
        vegf_tolerance=1e-5, vegf_max_sweeps=5000, sprout_vegf=np.float32(0.05))
    lat = vessel_and_source()
    spread_perfusion(lat, rules, 0)
    relax_vegf(lat, rules, 0)
    return rules, lat


def sprout_for(lat, rules, steps):
    for s in range(1, steps + 1):
        propose_sprouting(lat, rules, s)
        grow_sprouts(lat, rules, s)
    return lat


def copy_of(lat):
    copy = allocate(lat.name, lat.lattice_id, "numba", lat.shape)
    for key, a in lat.arrays.items():
        copy.arrays[key][...] = a
    return copy


def test_full_exposure_starts_no_sprouts_while_untreated_vessels_do(sprouting):
    rules, lat = sprouting
    untreated = sprout_for(copy_of(lat), rules, 30)
    assert untreated.events[SPROUTED].sum() > 0
    text = (QUICKSTART.replace("ec50_mg_per_L = 1.0 ", "ec50_mg_per_L = 1e-9 ")
            + BEV.replace("start_h = 24.0", "start_h = 0.0"))
    table = build_rules(parse_scenario(text, "full")).antiangiogenic_exposure
    assert table[0] == 0.0 and table[1] > 1.0 - 1e-11
    treated_rules = rules.replace(antiangiogenic_exposure=table)
    assert blocked_thresholds(treated_rules, table[1])["sprout_thr"] == 0
    treated = sprout_for(copy_of(lat), treated_rules, 30)
    assert treated.events[SPROUTED].sum() == 0
    assert not ((treated.kind == TIP) | (treated.kind == SPROUT)).any()


def test_zero_exposure_is_bit_identical_to_the_untreated_pass(sprouting):
    rules, lat = sprouting
    zero = blocked_thresholds(rules, 0.0)                       # the formula at E = 0 ...
    assert zero["sprout_thr"] == rules.sprout_thr and zero["branch_p"] == rules.branch_p
    a, b = copy_of(lat), copy_of(lat)
    for s in range(1, 21):
        propose_sprouting(a, rules, s)                          # ... and the pass itself
        grow_sprouts(a, rules, s)
        _propose_sprouting(b, rules, s, **zero)
        grow_sprouts(b, rules, s)
    for key in a.arrays:
        assert np.array_equal(a.arrays[key], b.arrays[key]), key
    assert a.events[SPROUTED].sum() > 0


def test_a_therapy_after_the_run_leaves_the_run_bit_identical():
    plain = Simulation(load_scenario("quickstart"))
    late = Simulation(scenario(BEV.replace("start_h = 24.0", "start_h = 5000.0")))
    assert late.rules.antiangiogenic_exposure.max() == 0.0
    for _ in range(12):
        assert plain.step().tobytes() == late.step().tobytes()
    for key in plain.lattice.arrays:
        assert np.array_equal(plain.lattice.arrays[key], late.lattice.arrays[key]), key


# -- pruning ----------------------------------------------------------------------------

def pruning_lattice():
    """Blocks of mature vessels (sprout_age 0), immature vessels (sprout_age > 0),
    stalks and tips."""
    lat = allocate("p", 0, "numba", (24, 24, 24))
    lat.kind[...] = EMPTY
    lat.kind[0:6] = VESSEL                                      # mature
    lat.kind[6:14] = VESSEL
    lat.sprout_age[6:14] = np.arange(1, 9)[:, None, None]       # immature
    lat.kind[14:18] = SPROUT
    lat.kind[18:20] = TIP                                        # sprout_age 0 too
    lat.sprout_age[14:18] = 5
    lat.perfused[0:14] = 1
    return lat


def test_immature_vessels_are_pruned_at_the_predicted_rate_and_mature_ones_are_not():
    rules = build_rules(load_scenario("quickstart"))
    e, k = 0.6, 0.1
    r = rules.replace(antiangiogenic_exposure=np.full(10, e), prune_per_h=k)
    p = prune_probability(k, e, rules.step_h)
    assert p == pytest.approx(1.0 - math.exp(-k * e * 1.0), rel=1e-15)
    lat = pruning_lattice()
    immature = (lat.kind == SPROUT) | (lat.kind == TIP) | ((lat.kind == VESSEL) & (lat.sprout_age > 0))
    mature = (lat.kind == VESSEL) & (lat.sprout_age == 0)
    alive = int(immature.sum())
    for step in range(1, 6):
        lat.events[...] = 0
        prune_immature_vessels(lat, r, step)
        pruned = int(lat.events[PRUNED].sum())
        mean, sd = alive * p, math.sqrt(alive * p * (1.0 - p))
        assert abs(pruned - mean) < 4 * sd, (step, pruned, mean, sd)
        alive -= pruned
        still = (lat.kind == SPROUT) | (lat.kind == TIP) | ((lat.kind == VESSEL) & (lat.sprout_age > 0))
        assert int(still.sum()) == alive
    assert (lat.kind[mature] == VESSEL).all() and (lat.perfused[mature] == 1).all()
    gone = immature & (lat.kind == EMPTY)
    assert (lat.perfused[gone] == 0).all() and (lat.sprout_age[gone] == 0).all()


def test_pruning_runs_in_the_step_and_perfusion_follows():
    """A treated quickstart: E > 0 from the first dose, vessels are pruned and perfusion is
    recomputed (no perfused voxel left that is not a vessel)."""
    text = QUICKSTART.replace("prune_per_h = 0.007 ", "prune_per_h = 0.5 ") + \
        BEV.replace("start_h = 24.0", "start_h = 1.0")
    sim = Simulation(parse_scenario(text, "treated"))
    pruned = 0
    for _ in range(30):
        row = sim.step()
        pruned += int(row["vessel_pruned"])
    assert pruned > 0
    kind, perfused = np.asarray(sim.lattice.kind), np.asarray(sim.lattice.perfused)
    assert not (perfused.astype(bool) & (kind != VESSEL)).any()


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the host harness")
@pytest.mark.parametrize("seed", [1, 2])
def test_pruning_is_bit_identical_through_the_cuda_host_harness(seed):
    from conftest import on
    from test_cuda import add_lymphatics_and_new_vessels, assert_same_state, random_lattice
    rules = build_rules(load_scenario("quickstart"))
    r = rules.replace(key=(seed * 31, seed), antiangiogenic_exposure=np.full(200, 0.7),
                      prune_per_h=0.5)
    reference = random_lattice((9, 10, 11), seed, z0=seed)
    add_lymphatics_and_new_vessels(reference, seed)
    twin = on("cuda-host", reference)
    for step in (100, 101):
        prune_immature_vessels(reference, r, step)
        prune_immature_vessels(twin, r, step)
        assert_same_state(reference, twin, f"prune_immature_vessels step {step}")
    assert reference.events[PRUNED].sum() > 0


def test_the_exposure_table_is_bounded_by_the_doses_not_the_run_length():
    """A long run (10⁶ h) does not buy a long table: without doses it has one entry, with
    doses it ends ten half-lives after the last; later steps are computed on the fly."""
    long = QUICKSTART.replace("duration_h = 240.0", "duration_h = 1e6")
    assert len(build_rules(scenario(extra="", base=long)).antiangiogenic_exposure) == 1
    rules = build_rules(scenario(base=long))
    last = 24 + 2 * 336
    assert len(rules.antiangiogenic_exposure) == last + 10 * 480 + 1
    assert exposure_at(rules, 10**7) == rules.antiangiogenic_plasma.effect(10**7)
