"""Chemotherapy (kernels/chemotherapy.py): plasma pharmacokinetics with an infusion
(engine/pharmacokinetics.py), the drug field from perfused vessels, the kill of cycling
cells (log-kill, Norton–Simon, resistance), its CUDA twin, and the schedule's checks."""
import dataclasses
import math

import numpy as np
import pytest
from conftest import on, small_scenario_text, with_values
from test_cuda import needs_cxx

from engine.errors import ScenarioError
from engine.pharmacokinetics import Drug, PlasmaSchedule, drug_of, plasma_schedule
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import CHEMO_ACTIVE, EVENT_NAMES, STEP
from engine.simulation import Simulation
from engine.state import allocate
from engine.therapy import deliveries_at
from kernels.chemotherapy import (CHEMO_BINS, chemo_active, kill_cycling_cells, kill_probability,
                                  plasma_at, relax_drug)
from kernels.lattice import (CHEMO_RESISTANCE, CLOCK_FULL, DORMANT, EMPTY, FUNCTIONAL,
                             PROLIFERATION, TUMOR, VESSEL)

QUICKSTART = load_scenario("quickstart").text
KILLED_TUMOR = EVENT_NAMES.index("chemo_killed_tumor")
KILLED_FUNCTIONAL = EVENT_NAMES.index("chemo_killed_functional")
PACLITAXEL = """
[[therapy]]
name = "paclitaxel"
kind = "chemotherapy"
start_h = 2.0
count = 2
interval_h = 504.0
dose_mg_per_m2 = 175.0
"""


def scenario(extra=PACLITAXEL, base=QUICKSTART, **values):
    return parse_scenario(with_values(base, **values) + extra, "chemo.toml")


# -- plasma pharmacokinetics with an infusion -------------------------------------------

def closed_form(amount, t_h, half_life_h, infusion_h):
    """C(t) of one dose of plasma rise `amount` infused at a constant rate over
    `infusion_h` (Rowland & Tozer), written out independently of the module."""
    k = math.log(2.0) / half_life_h
    if t_h < 0:
        return 0.0
    if infusion_h == 0:
        return amount * math.exp(-k * t_h)
    rate = amount / infusion_h                      # mg/L of plasma per hour entering
    if t_h <= infusion_h:
        return rate / k * (1.0 - math.exp(-k * t_h))
    return rate / k * (1.0 - math.exp(-k * infusion_h)) * math.exp(-k * (t_h - infusion_h))


def test_an_infusion_follows_the_closed_form_and_keeps_the_bolus_area():
    drug = Drug(half_life_h=2.0, volume_L=40.0, body_mass_kg=0.0, ec50_mg_per_L=0.05,
                infusion_h=3.0, body_surface_m2=1.8, dose_unit="mg/m2")
    amount = drug.plasma_rise(175.0)
    assert amount == pytest.approx(175.0 * 1.8 / 40.0, rel=1e-15)
    plasma = PlasmaSchedule(drug, 0.5, ((10, amount), (30, amount)))   # steps of 0.5 h
    for step in range(0, 60):
        expected = (closed_form(amount, (step - 10) * 0.5, 2.0, 3.0)
                    + closed_form(amount, (step - 30) * 0.5, 2.0, 3.0))
        assert plasma.concentration(step) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    assert plasma.concentration(10) == 0.0                   # the infusion starts at its step
    assert plasma.concentration(9) == 0.0
    peak = max(plasma.concentration(s) for s in range(10, 30))
    assert peak == plasma.concentration(16)                   # at the end of the 3 h infusion
    assert peak < amount                                       # below the bolus's peak
    # continuous at the end of the infusion, rising before it, falling after it
    end = drug.concentration_after(amount, 3.0)
    assert drug.concentration_after(amount, 3.0 - 1e-9) == pytest.approx(end, rel=1e-8)
    assert drug.concentration_after(amount, 3.0 + 1e-9) == pytest.approx(end, rel=1e-8)
    # the area under the curve is the bolus's, A / k (trapezoid on a fine grid)
    t = np.linspace(0.0, 80.0, 400_001)
    c = np.array([drug.concentration_after(amount, x) for x in t])
    area = float(np.sum((c[1:] + c[:-1]) / 2.0) * (t[1] - t[0]))
    assert area == pytest.approx(amount * 2.0 / math.log(2.0), rel=1e-6)
    # a bolus is the infusion's limit
    bolus = dataclasses.replace(drug, infusion_h=0.0)
    short = dataclasses.replace(drug, infusion_h=1e-6)
    for x in (0.5, 2.0, 7.0):
        assert bolus.concentration_after(amount, x) == pytest.approx(
            closed_form(amount, x, 2.0, 0.0), rel=1e-14)
        assert short.concentration_after(amount, x) == pytest.approx(
            bolus.concentration_after(amount, x), rel=1e-6)


def test_the_shipped_paclitaxel_reproduces_the_labels_peak_and_area():
    """175 mg/m² over 3 h: label Cmax 3650 ng/mL, AUC 15007 ng·h/mL."""
    s = scenario()
    drug = drug_of(s, "chemotherapy")
    assert drug.infusion_h == 3.0 and drug.body_surface_m2 == 1.8
    plasma = plasma_schedule(s, "chemotherapy")
    assert plasma.boluses[0][0] == 2 and plasma.boluses[1][0] == 2 + 504
    assert plasma.concentration(2) == 0.0
    assert plasma.concentration(5) == pytest.approx(3.65, rel=0.01)          # end of infusion
    assert max(plasma.concentration(s) for s in range(0, 100)) == plasma.concentration(5)
    amount = plasma.boluses[0][1]
    area = amount * drug.half_life_h / math.log(2.0)
    assert area == pytest.approx(15.007, rel=0.01)
    # one dose's effect integral gives the documented kill of nominally cycling cells
    e_hours = sum(plasma.effect(s) for s in range(0, 504))
    kill = 1.0 - math.exp(-s["chemotherapy.kill_per_h"] * e_hours)
    assert 0.55 < kill < 0.67


def test_the_drug_is_active_only_after_a_dose_and_until_its_effect_falls_below_the_cutoff():
    rules = build_rules(scenario())
    active = [s for s in range(0, 600) if chemo_active(rules, s)]
    first = [s for s in active if s < 504]
    assert first[0] == 3 and first == list(range(3, first[-1] + 1))      # contiguous
    ec50, cutoff = 0.0427, rules.chemo_min_plasma_mg_per_L
    assert cutoff / (cutoff + ec50) == pytest.approx(1e-3, rel=1e-12)
    assert plasma_at(rules, first[-1]) >= cutoff > plasma_at(rules, first[-1] + 1)
    assert 506 not in active and 507 in active                            # the second dose
    untreated = build_rules(load_scenario("quickstart"))
    assert not any(chemo_active(untreated, s) for s in range(50))


# -- the kill: log-kill, Norton–Simon, resistance, sparing ------------------------------

def rules_with(**values):
    return build_rules(scenario(**values))


def block(shape, kind=TUMOR, drug=0.1, oxygen=38.0, clock=0, prolif=8, level=0, organ=0):
    lat = allocate("c", 0, "numba", shape)
    lat.kind[...] = kind
    lat.organ[...] = organ
    lat.drug[...] = np.float32(drug)
    lat.oxygen[...] = np.float32(oxygen)
    lat.clock[...] = clock
    lat.traits[PROLIFERATION] = prolif
    lat.traits[CHEMO_RESISTANCE] = level
    return lat


def expected_p(rules, k, c, g, level, r=0.06):
    e = c / (c + 0.0427)
    return kill_probability(k, e, g, max(1.0 - r * level, 0.0), rules.step_h)


def assert_binomial(killed, n, p, where):
    mean, sd = n * p, math.sqrt(n * p * (1.0 - p))
    assert abs(killed - mean) < 4.5 * sd + 1, (where, killed, mean, sd)


def test_a_uniform_exposure_kills_the_same_fraction_of_cycling_cells_every_step():
    """Log-kill: each step kills the predicted fraction of the survivors."""
    k, c = 0.5, 0.0427                                  # E = 1/2
    rules = rules_with(kill_per_h=k)
    lat = block((16, 16, 16), drug=c)
    p = expected_p(rules, k, c, 1.0, 0)
    assert p == pytest.approx(1.0 - math.exp(-0.25), rel=1e-6)
    alive = 16 ** 3
    for step in range(1, 5):
        lat.events[...] = 0
        kill_cycling_cells(lat, rules, step)
        killed = int(lat.events[KILLED_TUMOR].sum())
        assert_binomial(killed, alive, p, step)
        alive -= killed
        assert int((lat.kind == TUMOR).sum()) == alive
    dead = lat.kind == EMPTY
    assert dead.any() and (lat.traits[:, dead] == 0).all() and (lat.clock[dead] == 0).all()
    assert (lat.vacancy[dead] == 0).all()               # a tumour cell leaves no vacancy


def test_cells_that_do_not_cycle_are_spared():
    """Hypoxic (below the proliferation threshold), dormant, motile and contact-inhibited
    (full clock) tumour cells are not killed; cycling cells beside them are."""
    rules = rules_with(kill_per_h=5.0)
    lat = block((10, 16, 16), drug=1.0)
    lat.oxygen[0:2] = np.float32(4.9)                   # below 5 mmHg: no cycling
    lat.kind[2:4] = DORMANT
    lat.motile[4:6] = 1
    lat.clock[6:8] = CLOCK_FULL                         # waiting for room to divide
    kill_cycling_cells(lat, rules, 7)
    assert (lat.kind[0:2] == TUMOR).all() and (lat.kind[2:4] == DORMANT).all()
    assert (lat.kind[4:8] == TUMOR).all()
    cycling = int((lat.kind[8:10] == EMPTY).sum())      # the control
    assert_binomial(cycling, 2 * 256, expected_p(rules, 5.0, 1.0, 1.0, 0), "control")
    lat.drug[...] = 0.0                                  # no drug, no kill
    before = lat.kind.copy()
    kill_cycling_cells(lat, rules, 8)
    assert np.array_equal(before, lat.kind)


def test_resistance_lowers_the_kill_as_declared():
    k, c = 0.8, 0.2
    rules = rules_with(kill_per_h=k)
    levels = (0, 5, 10, 15)
    lat = block((16, 16, 16), drug=c)
    for i, level in enumerate(levels):
        lat.traits[CHEMO_RESISTANCE, 4 * i:4 * i + 4] = level
    kill_cycling_cells(lat, rules, 3)
    fractions = []
    for i, level in enumerate(levels):
        killed = int((lat.kind[4 * i:4 * i + 4] == EMPTY).sum())
        assert_binomial(killed, 1024, expected_p(rules, k, c, 1.0, level), level)
        fractions.append(killed / 1024)
    assert fractions == sorted(fractions, reverse=True) and fractions[-1] < fractions[0] / 4


def test_faster_cycling_cells_are_killed_more_norton_simon():
    """g follows the proliferation level (rate × (1 + 0.05 (level − 8))) and the oxygen
    ramp of the cycle."""
    k, c = 0.5, 0.5
    rules = rules_with(kill_per_h=k)
    lat = block((20, 16, 16), drug=c)
    prolif = (4, 8, 12, 15)
    for i, level in enumerate(prolif):
        lat.traits[PROLIFERATION, 4 * i:4 * i + 4] = level
    lat.oxygen[16:20] = np.float32(5.0 + 33.0 / 2)       # half-way up the ramp: g = 1/2
    nominal = rules.chemo_nominal_advance
    fractions = []
    kill_cycling_cells(lat, rules, 5)
    for i, level in enumerate(prolif):
        g = int(rules.cycle_rate[0, level]) / nominal
        assert g == pytest.approx(1.0 + 0.05 * (level - 8), abs=1e-3)
        killed = int((lat.kind[4 * i:4 * i + 4] == EMPTY).sum())
        assert_binomial(killed, 1024, expected_p(rules, k, c, g, 0), level)
        fractions.append(killed / 1024)
    assert fractions == sorted(fractions) and fractions[-1] > 1.3 * fractions[0]
    half = int((lat.kind[16:20] == EMPTY).sum())
    g_half = int(np.float32(rules.cycle_rate[0, 8]) * np.float32(0.5)) / nominal
    assert_binomial(half, 1024, expected_p(rules, k, c, g_half, 0), "half oxygen")


def test_functional_cells_die_at_their_organs_cycling_rate_even_with_a_full_clock():
    """Breast (1000 h) against muscle (5000 h): toxicity follows proliferation."""
    k, c = 20.0, 1.0
    rules = rules_with(kill_per_h=k)
    lat = block((16, 16, 16), kind=FUNCTIONAL, drug=c, clock=CLOCK_FULL, organ=1)
    lat.organ[8:] = 2
    kill_cycling_cells(lat, rules, 9)
    nominal = rules.chemo_nominal_advance
    for organ, rows, cycle_h in ((1, slice(0, 8), 1000.0), (2, slice(8, 16), 5000.0)):
        g = int(rules.cycle_rate[organ, 0]) / nominal
        assert g == pytest.approx(24.0 / cycle_h, rel=0.02)
        killed = int((lat.kind[rows] == EMPTY).sum())
        assert_binomial(killed, 2048, expected_p(rules, k, c, g, 0), organ)
    gone = lat.kind == EMPTY
    assert (lat.vacancy[gone] == 1).all()                # the organ may refill it
    assert int(lat.events[KILLED_FUNCTIONAL].sum()) == int(gone.sum()) > 0
    assert int(lat.events[KILLED_TUMOR].sum()) == 0


def test_the_hazard_table_is_exact_at_bin_edges_and_rounds_down_by_less_than_a_bin():
    rules = rules_with(kill_per_h=0.07)
    thr, dh = rules.chemo_kill_thr, rules.chemo_bin_hazard
    assert thr.dtype == np.uint32 and len(thr) == CHEMO_BINS and thr[0] == 0
    assert np.all(np.diff(thr.astype(np.int64)) >= 0)
    for i in (1, 100, 1000, CHEMO_BINS - 1):
        assert thr[i] / 2.0 ** 32 == pytest.approx(-math.expm1(-i * dh), rel=1e-9, abs=2.0 ** -32)
    # a nominally cycling cell at full effect sits in bin ⌊a_nom · s⌋: the hazard k Δt
    q = rules.chemo_nominal_advance * float(rules.chemo_scale)
    assert (q - 1) * dh < 0.07 * rules.step_h <= (q + 1) * dh


# -- the drug field -------------------------------------------------------------------

def test_the_drug_falls_with_distance_from_a_perfused_vessel_as_the_discrete_solution():
    """A perfused vessel plane at x = 0 held at this step's plasma level, tumour cells
    beyond: c_x = C (ρ^x + ρ^(2M+1−x)) / (1 + ρ^(2M+1)), ρ + 1/ρ = 2 + λh²/D."""
    base = build_rules(scenario())
    drug = Drug(half_life_h=1.59, volume_L=48.1, body_mass_kg=0.0, ec50_mg_per_L=0.0427,
                infusion_h=0.0, body_surface_m2=1.8, dose_unit="mg/m2")
    rules = base.replace(chemo_plasma=PlasmaSchedule(drug, 1.0, ((4, 2.0),)),
                         chemo_tolerance=1e-6, chemo_max_sweeps=20000)
    lat = block((4, 4, 30), drug=0.0)
    lat.kind[:, :, 0] = VESSEL
    lat.perfused[:, :, 0] = 1
    sweeps, residual = relax_drug(lat, rules, 4)
    assert residual <= 1e-6 and 1 < sweeps < 20000
    profile = lat.drug[1, 2].astype(np.float64)
    assert profile[0] == np.float32(2.0)
    assert np.all(np.diff(profile) < 0)
    beta = 1.0 / float(rules.chemo_coeff[TUMOR]) - 4.0
    rho = (beta - math.sqrt(beta * beta - 4.0)) / 2.0
    m = 29
    x = np.arange(30)
    exact = 2.0 * (rho ** x + rho ** (2 * m + 1 - x)) / (1.0 + rho ** (2 * m + 1))
    assert np.allclose(profile, exact, rtol=1e-4, atol=5e-5)      # the stopping rule, float32
    assert np.allclose(profile[:8], exact[:8], rtol=1e-4, atol=0)
    ell = 20.0 / -math.log(rho)                        # penetration length, µm
    assert 60.0 < ell < 80.0
    assert profile[5] < 0.3 * profile[0]               # 100 µm into the tumour


def test_every_step_of_a_treated_run_holds_vessels_at_the_plasma_level():
    text = small_scenario_text(edge=20, seed_radius_um=80.0)
    sim = Simulation(parse_scenario(text + PACLITAXEL, "treated.toml"))
    for _ in range(6):
        sim.step()
        if chemo_active(sim.rules, sim.step_index):
            vessels = (sim.lattice.kind == VESSEL) & (sim.lattice.perfused == 1)
            assert (sim.lattice.drug[vessels] ==
                    np.float32(plasma_at(sim.rules, sim.step_index))).all()
            others = sim.lattice.drug[~vessels]
            assert others.max() <= sim.lattice.drug[vessels].max() and others.min() >= 0


# -- runs -----------------------------------------------------------------------------

def test_an_untreated_run_is_bit_identical_to_one_with_a_dose_after_its_end():
    text = small_scenario_text(edge=20, seed_radius_um=80.0)
    plain = Simulation(parse_scenario(text, "plain.toml"))
    late = Simulation(parse_scenario(text + PACLITAXEL.replace("start_h = 2.0", "start_h = 5000.0"),
                                     "late.toml"))
    assert CHEMO_ACTIVE in {stage.when for stage in STEP}
    for _ in range(10):
        assert plain.step().tobytes() == late.step().tobytes()
        assert not chemo_active(late.rules, late.step_index)
    for key in plain.lattice.arrays:
        assert np.array_equal(plain.lattice.arrays[key], late.lattice.arrays[key]), key
    assert not late.lattice.drug.any()


@pytest.fixture(scope="module")
def resistant_subclone_runs():
    """A small quickstart whose seed holds a fully resistant subclone (half the cells,
    level 15), untreated and with paclitaxel at step 2, 16 steps each."""
    text = small_scenario_text(edge=28, seed_radius_um=110.0).replace(
        "fraction = 0.0 ", "fraction = 0.5 ").replace(
        "chemo_resistance_level      = 0", "chemo_resistance_level = 15")
    runs = {}
    for name, extra in (("untreated", ""), ("treated", PACLITAXEL)):
        sim = Simulation(parse_scenario(text + extra, f"{name}.toml"))
        rows = [sim.step() for _ in range(16)]
        runs[name] = (sim, rows)
    return runs


def test_a_dose_kills_tumour_cells_and_harms_some_functional_cells(resistant_subclone_runs):
    untreated, treated = resistant_subclone_runs["untreated"], resistant_subclone_runs["treated"]
    killed = sum(int(r["chemo_killed_tumor"]) for r in treated[1])
    harmed = sum(int(r["chemo_killed_functional"]) for r in treated[1])
    assert sum(int(r["chemo_killed_tumor"]) for r in untreated[1]) == 0
    assert killed > 50
    assert treated[1][-1]["tumor"] < untreated[1][-1]["tumor"] - killed // 2
    functional = int(treated[1][0]["functional"])
    assert 0 < harmed < 0.05 * functional                 # quiescent breast barely suffers
    assert harmed / functional < killed / int(treated[1][0]["tumor"]) / 5


def test_the_resistant_subclone_is_enriched_by_treatment(resistant_subclone_runs):
    def resistant_share(sim):
        tumour = sim.lattice.kind == TUMOR
        return float((sim.lattice.traits[CHEMO_RESISTANCE][tumour] >= 14).mean())
    untreated = resistant_share(resistant_subclone_runs["untreated"][0])
    treated = resistant_share(resistant_subclone_runs["treated"][0])
    assert 0.4 < untreated < 0.6
    assert treated > untreated + 0.05


# -- the CUDA twin --------------------------------------------------------------------

@needs_cxx
@pytest.mark.parametrize("seed", [1, 2])
def test_the_kill_and_the_field_are_bit_identical_through_the_cuda_host_harness(seed):
    from test_cuda import add_lymphatics_and_new_vessels, assert_same_state, random_lattice
    base = build_rules(scenario())
    drug = drug_of(scenario(), "chemotherapy")
    thr = np.minimum(np.arange(CHEMO_BINS, dtype=np.uint64) * 2**15 + 2**26,
                     2**32 - 1).astype(np.uint32)
    rules = base.replace(key=(seed * 131, seed), chemo_kill_thr=thr,
                         chemo_plasma=PlasmaSchedule(drug, 1.0, ((95, 0.3 * seed),)))
    reference = random_lattice((9, 10, 11), seed, z0=seed)
    add_lymphatics_and_new_vessels(reference, seed)
    reference.drug[...] = np.random.default_rng(seed).uniform(0.0, 0.1, reference.shape)
    twin = on("cuda-host", reference)
    for step in (100, 101):
        assert relax_drug(reference, rules, step) == relax_drug(twin, rules, step)
        assert_same_state(reference, twin, f"relax_drug step {step}")
        kill_cycling_cells(reference, rules, step)
        kill_cycling_cells(twin, rules, step)
        assert_same_state(reference, twin, f"kill_cycling_cells step {step}")
    assert reference.events[KILLED_TUMOR].sum() > 0
    assert reference.events[KILLED_FUNCTIONAL].sum() > 0


# -- the schedule ---------------------------------------------------------------------

def test_the_schema_accepts_the_kind_and_records_the_dose():
    s = scenario()
    assert s.therapies[0]["dose_mg_per_m2"] == 175.0
    record = deliveries_at(s, 2)
    assert len(record) == 1 and record["dose"][0] == 175.0
    assert record["dose_unit"][0] == b"mg/m2" and record["kind"][0] == b"chemotherapy"


@pytest.mark.parametrize("change, key", [
    (lambda t: t.replace("dose_mg_per_m2 = 175.0", "dose_mg_per_m2 = 400.0"),
     "therapy[0].dose_mg_per_m2"),
    (lambda t: t.replace("dose_mg_per_m2 = 175.0", "dose_mg_per_m2 = 0.0"),
     "therapy[0].dose_mg_per_m2"),
    (lambda t: t.replace("dose_mg_per_m2 = 175.0\n", ""), "therapy[0].dose_mg_per_m2"),
    (lambda t: t.replace("dose_mg_per_m2 = 175.0", "dose_mg_per_kg = 5.0"),
     "therapy[0].dose_mg_per_m2"),
    (lambda t: t + 'lattice = "liver"\n', "therapy[0]"),
])
def test_bad_chemotherapy_is_one_line_naming_the_key(change, key):
    with pytest.raises(ScenarioError) as err:
        scenario(change(PACLITAXEL))
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("key, value", [("min_effect", "0.0"), ("infusion_h", "-1.0"),
                                        ("resistance_per_level", "0.1"), ("kill_per_h", "-0.1")])
def test_a_chemotherapy_parameter_out_of_range_is_one_line_naming_it(key, value):
    with pytest.raises(ScenarioError) as err:
        scenario(**{key: value})
    assert f"chemotherapy.{key}" in str(err.value) and "\n" not in str(err.value)


def test_the_census_accounts_for_every_cell_the_drug_kills(resistant_subclone_runs):
    """Tumour: births − deaths − departures − chemotherapy kills is the change; functional
    cells: births − deaths − chemotherapy kills."""
    rows = np.array(resistant_subclone_runs["treated"][1])
    tumour = (rows["birth_tumor"] - rows["apoptosis_tumor"] - rows["necrosis_tumor"]
              - rows["intravasated_blood"] - rows["intravasated_lymph"]
              - rows["chemo_killed_tumor"])
    assert np.array_equal(np.diff(rows["tumor"]), tumour[1:])
    functional = (rows["birth_functional"] - rows["apoptosis_functional"]
                  - rows["necrosis_functional"] - rows["compression_functional"]
                  - rows["functional_cleared_by_sprout"] - rows["chemo_killed_functional"])
    assert np.array_equal(np.diff(rows["functional"]), functional[1:])
    assert rows["chemo_killed_tumor"][1:].sum() > 0
    assert rows["chemo_killed_functional"][1:].sum() > 0


def test_every_lattice_of_a_body_sees_the_same_plasma():
    """A drug names no lattice: the sites' rules carry the primary's plasma schedule."""
    body = parse_scenario(load_scenario("breast_metastasis").text + PACLITAXEL, "body.toml")
    primary = build_rules(body)
    for i, site in enumerate(body.sites):
        rules = build_rules(body.site(i))
        assert rules.chemo_plasma.boluses == primary.chemo_plasma.boluses
        for step in (2, 3, 5, 20, 507):
            assert plasma_at(rules, step) == plasma_at(primary, step)
            assert chemo_active(rules, step) == chemo_active(primary, step)
