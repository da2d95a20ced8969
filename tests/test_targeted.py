"""Targeted drug therapies (issue 12, item 3): hormone therapy and growth-signal inhibition
(kernels/receptor_blockade.py), apoptosis reactivation (kernels/apoptosis_reactivation.py)
and anti-metastatic therapy (kernels/antimetastatic.py): their plasma levels and dose
units, their effects on the passes they act through, bit-identity without exposure, and
their CUDA twins through the host harness."""
import math

import numpy as np
import pytest
from conftest import on, small_scenario_text, with_values
from test_cuda import CUDA_BACKENDS, add_lymphatics_and_new_vessels, assert_same_state, random_lattice

from engine.errors import ScenarioError
from engine.pharmacokinetics import (DRUG_TABLES, Drug, drug_of, plasma_schedule,
                                     steady_state_peak_trough, step_exposure)
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES
from engine.simulation import Simulation
from engine.state import allocate
from engine.therapy import deliveries
from kernels.apoptosis_reactivation import reactivated_apoptosis
from kernels.antimetastatic import blocked_intravasation, held_adhesion
from kernels.division import propose_division
from kernels.fate import decide_fate
from kernels.intravasation import intravasate
from kernels.lattice import (ADHESION, APOPTOSIS_RESISTANCE, CLOCK_FULL, EMPTY, LYMPH, PROLIFERATION,
                             RECEPTOR, TUMOR)
from kernels.migration import lose_adhesion
from kernels.philox import step_probability
from kernels.receptor_blockade import combined_exposure, receptor_blockade, receptor_factors

QUICKSTART = load_scenario("quickstart").text
LEVELS = np.arange(16)


def therapy(name, kind, dose_key, dose, start_h=1.0, count=1, interval_h=24.0):
    return (f'\n[[therapy]]\nname = "{name}"\nkind = "{kind}"\nstart_h = {start_h}\n'
            f"count = {count}\ninterval_h = {interval_h}\n{dose_key} = {dose}\n")


TAMOXIFEN = therapy("tam", "hormone_therapy", "dose_mg", 20.0, count=60)
TRASTUZUMAB = therapy("her", "growth_signal_inhibitor", "dose_mg_per_kg", 8.0, count=2,
                      interval_h=504.0)
VENETOCLAX = therapy("ven", "apoptosis_reactivator", "dose_mg", 400.0, count=10)
MIGRASTATIC = therapy("mig", "anti_metastatic", "dose_mg", 200.0, count=10)


def scenario(extra="", base=QUICKSTART):
    return parse_scenario(base + extra, "targeted.toml")


def count(lat, event):
    return int(np.asarray(lat.events)[EVENT_NAMES.index(event)].sum())


def binomial_ok(k, n, p, sigmas=4.0):
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1.0 - p)) + 1


# -- pharmacokinetics and dose units -------------------------------------------------------

def test_each_kind_reads_its_own_table_and_converts_its_dose_unit_to_mg():
    s = scenario(TAMOXIFEN + TRASTUZUMAB + VENETOCLAX + MIGRASTATIC)
    for kind, table in (("hormone_therapy", "hormone_therapy"),
                        ("growth_signal_inhibitor", "growth_signal_inhibitor"),
                        ("apoptosis_reactivator", "apoptosis_reactivator"),
                        ("anti_metastatic", "antimetastatic")):
        assert DRUG_TABLES[kind] == table
        drug = drug_of(s, kind)
        assert drug.half_life_h == s[f"{table}.half_life_h"]
        assert drug.volume_L == s[f"{table}.volume_L"]
    # mg: the dose as it is (no body mass in the table); mg/kg: × body mass
    assert drug_of(s, "hormone_therapy").body_mass_kg is None
    assert plasma_schedule(s, "hormone_therapy").boluses[0] == (1, 20.0 / 1400.0)
    assert plasma_schedule(s, "apoptosis_reactivator").boluses[0] == (1, 400.0 / 256.0)
    assert plasma_schedule(s, "growth_signal_inhibitor").boluses == ((1, 8.0 * 70.0 / 3.0),
                                                                      (505, 8.0 * 70.0 / 3.0))
    with pytest.raises(ValueError, match="mg/L"):
        Drug(10.0, 1.0, None, 1.0, dose_unit="mg/L").mg(1.0)


def test_long_kind_names_survive_the_therapy_record():
    """'growth_signal_inhibitor' (23 characters) is kept whole in the record, so its
    plasma schedule finds its doses."""
    s = scenario(TRASTUZUMAB)
    assert deliveries(s)["kind"][0] == b"growth_signal_inhibitor"
    assert build_rules(s).growth_signal_inhibitor_exposure[1] > 0.98


def test_tamoxifen_daily_reaches_the_labelled_steady_state():
    """20 mg daily: about 4 weeks to steady state, at the label's mean 122 ng/mL
    (range 71-183) — the apparent volume was chosen so; E about 0.86 there."""
    s = scenario(TAMOXIFEN)
    plasma = plasma_schedule(s, "hormone_therapy")
    drug = plasma.drug
    peak, trough = steady_state_peak_trough(20.0, 24.0, drug)
    assert 0.071 < trough < peak < 0.183
    assert (peak + trough) / 2 == pytest.approx(0.122, rel=0.05)
    day28 = plasma.concentration(1 + 27 * 24)
    assert day28 > 0.9 * peak                                     # near steady state in 4 weeks
    assert plasma.effect(1 + 27 * 24) == pytest.approx(day28 / (day28 + 0.02), rel=1e-15)
    assert 0.83 < plasma.effect(1 + 27 * 24) < 0.88


def test_venetoclax_and_trastuzumab_levels_and_effects():
    ven = plasma_schedule(scenario(VENETOCLAX), "apoptosis_reactivator")
    peak, trough = steady_state_peak_trough(400.0, 24.0, ven.drug)
    assert peak == pytest.approx(400.0 / 256.0 / (1.0 - 2.0 ** (-24.0 / 26.0)), rel=1e-12)
    assert ven.concentration(1 + 9 * 24) == pytest.approx(peak * (1 - 2.0 ** (-240 / 26.0)),
                                                          rel=1e-12)
    her = drug_of(scenario(TRASTUZUMAB), "growth_signal_inhibitor")
    _, trough = steady_state_peak_trough(6.0, 504.0, her)
    assert trough > 20.0                                          # above the efficacy trough
    assert trough / (trough + her.ec50_mg_per_L) > 0.98


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, key", [
    (TAMOXIFEN.replace("dose_mg = 20.0", "dose_mg = 100.0"), "therapy[0].dose_mg"),
    (TAMOXIFEN.replace("dose_mg = 20.0", "dose_mg = 0.0"), "therapy[0].dose_mg"),
    (TAMOXIFEN.replace("dose_mg = 20.0", "dose_mg = 5000.0"), "therapy[0].dose_mg"),
    (TAMOXIFEN.replace("dose_mg = 20.0\n", ""), "therapy[0].dose_mg"),
    (TAMOXIFEN.replace("dose_mg = 20.0", "dose_mg_per_kg = 1.0"), "therapy[0].dose_mg"),
    (TAMOXIFEN + "dose_mg_per_kg = 1.0\n", "therapy[0].dose_mg_per_kg"),
    (TRASTUZUMAB.replace("dose_mg_per_kg = 8.0", "dose_mg_per_kg = 20.0"),
     "therapy[0].dose_mg_per_kg"),
    (TRASTUZUMAB.replace("dose_mg_per_kg = 8.0\n", ""), "therapy[0].dose_mg_per_kg"),
    (VENETOCLAX.replace("dose_mg = 400.0", "dose_mg = 1000.0"), "therapy[0].dose_mg"),
    (VENETOCLAX.replace("dose_mg = 400.0\n", ""), "therapy[0].dose_mg"),
    (MIGRASTATIC.replace("dose_mg = 200.0", "dose_mg = -1.0"), "therapy[0].dose_mg"),
    (MIGRASTATIC + 'lattice = "lung"\n', "therapy[0]"),
])
def test_bad_dose_is_one_line_naming_the_key(text, key):
    with pytest.raises(ScenarioError) as err:
        scenario(text)
    message = str(err.value)
    assert key in message and "\n" not in message, message


def test_a_bad_pk_parameter_is_one_line_naming_it():
    for table, key in (("hormone_therapy", "volume_L"), ("apoptosis_reactivator", "half_life_h"),
                       ("antimetastatic", "ec50_mg_per_L")):
        section = QUICKSTART.partition(f"[{table}]")[2].partition("\n[")[0]
        line = next(x for x in section.splitlines() if x.startswith(f"{key} = "))
        bad = QUICKSTART.replace(section, section.replace(line, f"{key} = 0.0"))
        with pytest.raises(ScenarioError) as err:
            scenario(base=bad)
        assert f"{table}.{key}" in str(err.value) and "\n" not in str(err.value)


# -- hormone therapy and growth-signal inhibition --------------------------------------------

def test_receptor_factors_and_bliss_combination():
    assert receptor_factors(0.0).tobytes() == np.ones(16, np.float32).tobytes()
    f = receptor_factors(0.6)
    assert f.dtype == np.float32 and f[0] == np.float32(1.0)
    assert np.array_equal(f, (1.0 - 0.6 * LEVELS / 15.0).astype(np.float32))
    rules = build_rules(scenario(TAMOXIFEN + TRASTUZUMAB))
    e1 = step_exposure(rules, "hormone_therapy", 100)
    e2 = step_exposure(rules, "growth_signal_inhibitor", 100)
    assert 0 < e1 < 1 and 0 < e2 < 1
    assert combined_exposure(rules, 100) == 1.0 - (1.0 - e1) * (1.0 - e2)
    assert combined_exposure(rules, 100) > max(e1, e2)
    assert np.array_equal(receptor_blockade(rules, 100)["receptor_factor"],
                          receptor_factors(combined_exposure(rules, 100)))
    assert receptor_blockade(rules, 0) == {}                       # before the first dose


def cycling_lattice():
    """Tumour cells at every receptor level (x = level), proliferation level 8, full
    oxygen, clocks at 0 (none divides in one step), and functional cells on one plane."""
    from kernels.lattice import FUNCTIONAL
    lat = allocate("c", 0, "numba", (6, 16, 16))
    lat.kind[...] = TUMOR
    lat.kind[5] = FUNCTIONAL
    lat.organ[5] = 1
    lat.traits[PROLIFERATION] = 8
    lat.traits[RECEPTOR] = LEVELS[None, None, :]
    lat.oxygen[...] = 38.0
    return lat


def test_the_cycle_of_receptor_high_cells_slows_by_the_declared_factor():
    """One step of propose_division at E = 0.75: a tumour cell of receptor level l advances
    its clock by ⌊rate · (1 − E·l/15)⌋ (float32), level 0 exactly as untreated, level 15 by
    a quarter; functional cells are untouched."""
    rules = build_rules(scenario(TAMOXIFEN))
    e = 0.75
    treated = rules.replace(hormone_therapy_exposure=np.full(10, e))
    rules = rules.replace(hormone_therapy_exposure=np.zeros(10))       # untreated
    assert receptor_blockade(rules, 5) == {}
    plain, lat = cycling_lattice(), cycling_lattice()
    propose_division(plain, rules, 5)
    propose_division(lat, treated, 5)
    rate = rules.cycle_rate[0, 8]
    expected = np.floor(rate * receptor_factors(e)).astype(np.int64)   # float32 product
    assert np.array_equal(lat.clock[0, 0].astype(np.int64), expected)
    assert (lat.clock[:5] == lat.clock[0, 0][None, None, :]).all()
    assert lat.clock[0, 0, 0] == plain.clock[0, 0, 0] == int(rate)   # receptor-low: spared
    assert lat.clock[0, 0, 15] == int(rate * np.float32(0.25))
    ratio = lat.clock[0, 0].astype(float) / plain.clock[0, 0]
    assert np.allclose(ratio, 1.0 - e * LEVELS / 15.0, atol=2.0 / float(rate))
    assert np.array_equal(lat.clock[5], plain.clock[5])              # functional cells


def grow(text, hours):
    sim = Simulation(parse_scenario(text, "grow.toml"))
    births = 0
    for _ in range(hours):
        births += int(sim.step()["birth_tumor"])
    return sim, births


SATURATING = ("ec50_mg_per_L = 0.02 ", "ec50_mg_per_L = 1e-6 ")     # E ≈ 1 from the first dose


def test_receptor_negative_tumours_are_spared_bit_for_bit_and_positive_ones_slow_down():
    """A founder at receptor level 0 without mutation: the treated run equals the untreated
    one bit for bit (the factor at level 0 is exactly 1).  At level 15, E ≈ 1 stops its
    cycling: far fewer births."""
    base = with_values(small_scenario_text(24, seed_radius_um=100.0), duration_h=48.0,
                       mutation_probability=0.0).replace(*SATURATING)
    negative = base.replace("receptor_level = 8   ", "receptor_level = 0   ", 1)
    assert parse_scenario(negative, "n")["tumor.traits.receptor_level"] == 0
    a, births_a = grow(negative, 24)
    b, births_b = grow(negative + TAMOXIFEN, 24)
    assert births_a == births_b > 0
    for key in a.lattice.arrays:
        assert np.array_equal(a.lattice.arrays[key], b.lattice.arrays[key]), key
    positive = base.replace("receptor_level = 8   ", "receptor_level = 15  ", 1)
    _, untreated = grow(positive, 24)
    _, treated = grow(positive + TAMOXIFEN, 24)
    assert untreated > 100 and treated < untreated / 4


def test_sustained_hormone_therapy_selects_for_receptor_loss():
    """The receptor level is heritable: with mutation and turnover, 10 days of saturating
    hormone therapy lower the tumour's mean receptor level from the founder's 8, while the
    untreated tumour's only drifts.  To see selection within days the run is sped up
    (as in test_selection; the model is unchanged): an 8 h cycle, mutation probability
    0.2 per trait per division, apoptosis 0.03 /h for every cell (no resistance
    selection), no proliferation gain, no hypoxia, no detachment.  Under E ≈ 1 a cell of
    level l cycles at (1 − l/15)/8 h: at the founder level 0.058 /h against death
    0.03 /h, one level less is worth 0.008 /h more.  Measured (seeds 1, 2): treated mean
    7.13 and 7.33 with 4.7 and 3.4 times as many cells below the founder level as
    above; untreated 7.98, as many below as above."""
    text = with_values(small_scenario_text(24, seed_radius_um=160.0), duration_h=240.0,
                       enabled="false", apoptosis_per_h=0.03,
                       apoptosis_resistance_per_level=0.0, mutation_probability=0.2,
                       proliferation_gain_per_level=0.0, o2_vmax_mmHg_per_s=0.1,
                       detachment_per_h=0.0, cycle_time_h=8.0).replace(*SATURATING)
    out = {}
    for name, extra in (("untreated", ""), ("treated", TAMOXIFEN.replace("count = 60", "count = 10"))):
        sim, births = grow(text + extra, 240)
        kind = np.asarray(sim.lattice.kind)
        levels = np.asarray(sim.lattice.traits)[RECEPTOR][kind == TUMOR].astype(np.int64)
        out[name] = (float(levels.mean()), int((levels < 8).sum()), int((levels > 8).sum()))
        assert births > 10_000 and levels.size > 3000, name
    print(out)
    (treated, t_below, t_above), (untreated, u_below, u_above) = out["treated"], out["untreated"]
    assert treated <= 8.0 - 0.5 and treated <= untreated - 0.5
    assert t_below >= 3 * t_above
    assert abs(untreated - 8.0) <= 0.25 and 0.8 <= u_below / u_above <= 1.25


# -- apoptosis reactivation -------------------------------------------------------------------

def resistant_lattice():
    """Live, oxic tumour cells at every apoptosis-resistance level (z = level)."""
    lat = allocate("a", 0, "numba", (16, 40, 40))
    lat.kind[...] = TUMOR
    lat.traits[APOPTOSIS_RESISTANCE] = LEVELS[:, None, None]
    lat.oxygen[...] = 38.0
    return lat


def test_reactivation_raises_apoptosis_of_resistant_cells_as_declared():
    """decide_fate at E = 0.8 with k_apo = 0.05 /h, r = 0.06: a cell of level l dies with
    P = 1 − exp(−k_apo (1 − r l (1 − E)) Δt); the counts per level match that (4 σ), level 0
    dies exactly as untreated, and level 15 about eight times as often as untreated."""
    text = with_values(QUICKSTART, apoptosis_per_h=0.05)
    rules = build_rules(scenario(VENETOCLAX, base=text))
    e, steps = 0.8, 3
    treated = rules.replace(apoptosis_reactivator_exposure=np.full(10, e))
    rules = rules.replace(apoptosis_reactivator_exposure=np.zeros(10))   # untreated
    assert reactivated_apoptosis(rules, 2) == {}
    deaths = {}
    for name, r in (("plain", rules), ("treated", treated)):
        lat = resistant_lattice()
        for step in range(1, steps + 1):
            decide_fate(lat, r, step)
        deaths[name] = 1600 - (lat.kind == TUMOR).sum(axis=(1, 2))
        deaths[name + "_where"] = lat.kind[0].copy()
    survive = lambda m: math.exp(-0.05 * m * steps)
    for level in range(16):
        m_plain, m_treated = 1 - 0.06 * level, 1 - 0.06 * level * (1 - e)
        assert binomial_ok(deaths["plain"][level], 1600, 1 - survive(m_plain)), level
        assert binomial_ok(deaths["treated"][level], 1600, 1 - survive(m_treated)), level
    assert np.array_equal(deaths["plain_where"], deaths["treated_where"])     # level 0
    assert deaths["treated"][15] > 5 * deaths["plain"][15]


# -- anti-metastatic therapy -----------------------------------------------------------------

def test_anti_metastatic_exposure_lowers_detachment_as_declared():
    """lose_adhesion at E = 0.6 with k0 = 0.1 /h: adherent tumour cells at adhesion level 0
    detach with P = 1 − exp(−k0 (1 − E) Δt) instead of 1 − exp(−k0 Δt)."""
    text = with_values(QUICKSTART, detachment_per_h=0.1)
    rules = build_rules(scenario(MIGRASTATIC, base=text))
    e = 0.6
    treated = rules.replace(antimetastatic_exposure=np.full(10, e))
    rules = rules.replace(antimetastatic_exposure=np.zeros(10))          # untreated
    assert held_adhesion(rules, 3) == {}
    counts = {}
    for name, r in (("plain", rules), ("treated", treated)):
        lat = allocate("d", 0, "numba", (16, 32, 32))
        lat.kind[...] = TUMOR
        lat.traits[ADHESION] = 0
        lat.oxygen[...] = 38.0
        lose_adhesion(lat, r, 3)
        counts[name] = count(lat, "detached")
    n = 16 * 32 * 32
    assert binomial_ok(counts["plain"], n, step_probability(0.1, 1.0))
    assert binomial_ok(counts["treated"], n, step_probability(0.1 * (1 - e), 1.0))
    assert counts["treated"] < 0.6 * counts["plain"]


def test_anti_metastatic_exposure_lowers_intravasation_as_declared():
    """Motile tumour cells on a checkerboard with lymphatics (every face a lymphatic, no
    clone mate to carry them): entry P = 1 − exp(−k_l (1 − E) Δt) at E = 0.6."""
    rules = build_rules(scenario(MIGRASTATIC))
    e = 0.6
    treated = rules.replace(antimetastatic_exposure=np.full(10, e))
    rules = rules.replace(antimetastatic_exposure=np.zeros(10))          # untreated
    assert blocked_intravasation(rules, 7) == {}
    k_l = rules.antimetastatic_entry_rates[4]                        # lymph only
    assert k_l == 0.05
    counts = {}
    for name, r in (("plain", rules), ("treated", treated)):
        lat = allocate("i", 0, "numba", (16, 32, 32))
        z, y, x = np.indices(lat.shape)
        cell = (z + y + x) % 2 == 0
        lat.kind[...] = np.where(cell, TUMOR, LYMPH)
        lat.motile[...] = cell
        lat.lineage[...] = 1
        intravasate(lat, r, 7)
        counts[name] = count(lat, "intravasated_lymph")
        assert count(lat, "intravasated_blood") == 0
    n = 16 * 32 * 32 // 2
    assert binomial_ok(counts["plain"], n, step_probability(k_l, 1.0))
    assert binomial_ok(counts["treated"], n, step_probability(k_l * (1 - e), 1.0))
    assert counts["treated"] < 0.6 * counts["plain"]
    assert "intravasation_thr" in blocked_intravasation(treated, 7)


# -- untreated runs are unchanged ------------------------------------------------------------

def test_every_override_is_empty_without_exposure_and_a_late_therapy_changes_nothing():
    late = "".join(t.replace("start_h = 1.0", "start_h = 5000.0")
                   for t in (TAMOXIFEN, TRASTUZUMAB, VENETOCLAX, MIGRASTATIC))
    plain = Simulation(load_scenario("quickstart"))
    treated = Simulation(scenario(late))
    for step in (0, 1, 100, 239):
        for override in (receptor_blockade, reactivated_apoptosis, held_adhesion,
                         blocked_intravasation):
            assert override(treated.rules, step) == {}
    for _ in range(6):
        assert plain.step().tobytes() == treated.step().tobytes()
    for key in plain.lattice.arrays:
        assert np.array_equal(plain.lattice.arrays[key], treated.lattice.arrays[key]), key


# -- the CUDA twins ------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_treated_passes_are_bit_identical_on_the_cuda_twins(backend, seed):
    """Division with receptor factors ≠ 1, fate with reactivated thresholds, detachment and
    intravasation with anti-metastatic thresholds, on random states: Numba and CUDA C agree."""
    rules = build_rules(load_scenario("quickstart"))
    step = 200 + seed
    r = rules.replace(key=(seed * 104729, seed),
                      hormone_therapy_exposure=np.full(step + 1, 0.7),
                      growth_signal_inhibitor_exposure=np.full(step + 1, 0.3),
                      apoptosis_reactivator_exposure=np.full(step + 1, 0.9),
                      reactivation_apoptosis_per_h=0.2,
                      antimetastatic_exposure=np.full(step + 1, 0.5),
                      antimetastatic_detach_rates=np.full((2, 16), 0.3),
                      antimetastatic_entry_rates=np.where(rules.antimetastatic_entry_rates > 0,
                                                          1.0, 0.0))
    factor = receptor_blockade(r, step)["receptor_factor"]
    assert factor[15] == np.float32(1.0 - 0.79) and (factor[1:] < 1).all()
    reference = random_lattice((9, 10, 11), seed, z0=seed)
    add_lymphatics_and_new_vessels(reference, seed)
    twin = on(backend, reference)
    for process in (decide_fate, lose_adhesion, intravasate, propose_division):
        process(reference, r, step)
        process(twin, r, step)
        assert_same_state(reference, twin, process.name)
    for event in ("apoptosis_tumor", "detached", "intravasated_lymph"):
        assert count(reference, event) > 0, event
    assert (reference.intent != 0).any()


def test_a_per_step_table_goes_to_the_device_through_upload_and_outputs_do_not():
    """On a CUDA backend a host table handed over for a `const` pointer (the per-step
    overrides above) is uploaded for the launch; a buffer the kernel writes (tile flags)
    is passed as it is (no GPU needed: a stand-in upload records what it is given)."""
    from kernels.division import _propose_division
    rules = build_rules(load_scenario("quickstart"))
    lat = cycling_lattice()
    uploaded = []

    def upload(a):
        uploaded.append(a)
        return a
    factor, flags = receptor_factors(0.5), np.zeros((1, 2, 2), np.uint8)
    args = _propose_division.bind(lat, rules, 1, {"receptor_factor": factor, "tile_flags": flags},
                                  lambda t: t, upload)
    assert len(uploaded) == 1 and uploaded[0] is factor
    assert any(a is flags for a in args) and any(a is factor for a in args)
