"""Radiotherapy (kernels/radiation.py): linear–quadratic survival of a fraction, the oxygen
effect, the cell types' parameters, the fraction's region, the schedule, and the CUDA twin."""
import copy
import itertools
import math

import numba
import numpy as np
import pytest
from conftest import on, small_scenario_text
from test_cuda import needs_cxx

from engine.errors import ScenarioError
from engine.rules import build_rules
from engine.scenario import _cross_check, load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES, FRACTION_DUE, STEP
from engine.simulation import Simulation
from engine.state import allocate
from kernels.lattice import DORMANT, EMPTY, FUNCTIONAL, NECROTIC, TUMOR, VESSEL
from kernels.philox import voxel_draw_numpy
from engine.therapy import delivery_steps
from kernels.radiation import (radiation_checks, N_O2_BINS, O2_BIN_MMHG, STREAM_RADIATION,
                               irradiate)

ALPHA, RATIO = 0.3, 10.0                       # the tumour's defaults
OER, HALF = 3.0, 3.0
TUMOR_KILLED, FUNCTIONAL_KILLED, DORMANT_KILLED = (
    EVENT_NAMES.index(e) for e in ("irradiated_tumor_killed", "irradiated_functional_killed",
                                   "irradiated_dormant_killed"))


NAMES = itertools.count()


def therapy(dose_Gy, start_h=1.0, count=1, interval_h=24.0, region="lattice", **more):
    entry = dict(name=f"rt{next(NAMES)}", kind="radiotherapy", start_h=start_h, count=count, interval_h=interval_h,
                 dose_Gy=dose_Gy, region=region, center_um=None, radius_um=0.0,
                 box_from_um=[0.0, 0.0, 0.0], box_to_um=[0.0, 0.0, 0.0], lattice="primary", held=False, max_cumulative=None)
    entry.update(more)
    return entry


def scenario_with(therapies, **values):
    """The quickstart with a therapy list attached (entries as the [[therapy]] schema
    resolves them) and some values changed (`"radiotherapy.oer": 1.0`, `"organs[1].x": ...`)."""
    s = copy.deepcopy(load_scenario("quickstart"))
    for dotted, value in values.items():
        table, _, key = dotted.rpartition(".")
        if table.startswith("organs["):
            s.organs[int(table[7:-1])][key] = value
        else:
            s.values[table][key] = value
    s.therapies = list(therapies)
    return s


def rules_with(therapies, **values):
    return build_rules(scenario_with(therapies, **values))


def survival(dose_Gy, alpha=ALPHA, ratio=RATIO):
    return math.exp(-alpha * dose_Gy - alpha / ratio * dose_Gy ** 2)


def block(kind, shape=(32, 32, 32), oxygen=60.0, organ=1):
    lat = allocate("t", 0, "numba", shape)
    lat.kind[...] = kind
    lat.organ[...] = organ
    lat.oxygen[...] = np.float32(oxygen)
    lat.lineage[...] = 7
    lat.traits[...] = 9
    lat.clock[...] = 1000
    return lat


def assert_binomial(survivors, n, s, sigmas=4.0):
    sd = math.sqrt(n * s * (1.0 - s))
    assert abs(survivors - n * s) < sigmas * sd + 1e-9, (survivors, n * s, sd)


def expected_kills(lat, rules, step):
    """The kernel's rule in NumPy, from the table: which voxels a fraction kills."""
    f = rules.radiation_fractions[step]
    z, y, x = np.indices(lat.shape)
    gz = z + lat.z0
    inside = ((f.box[0] <= gz) & (gz < f.box[1]) & (f.box[2] <= y) & (y < f.box[3])
              & (f.box[4] <= x) & (x < f.box[5]))
    if f.sphere:
        half = np.float32(0.5)
        d = [(c.astype(np.float32) + half) - centre for c, centre in zip((gz, y, x), f.centre)]
        inside &= ((d[0] * d[0] + d[1] * d[1]) + d[2] * d[2]) <= f.r2
    cell = (lat.kind == TUMOR) | (lat.kind == FUNCTIONAL) | (lat.kind == DORMANT)
    q = lat.oxygen * rules.radiation_bins_per_mmHg
    b = np.clip(np.floor(np.maximum(q, 0)), 0, N_O2_BINS - 1).astype(np.int64)
    row = np.where(lat.kind == FUNCTIONAL, lat.organ, 0).astype(np.int64)
    gidx = (gz * lat.ny + y) * lat.nx + x
    word = voxel_draw_numpy(gidx.astype(np.uint64), step, STREAM_RADIATION, lat.lattice_id,
                            rules.key)[0]
    return inside & cell & (word < rules.radiation_kill_thr[f.dose_index, row, b])


# -- survival ---------------------------------------------------------------------------------

def test_fully_oxic_tumour_survives_by_the_linear_quadratic_curve():
    """oer = 1: no oxygen effect, D_eff = D; one fraction of 1, 2, 4, 8 Gy (steps 1-4)."""
    doses = (1.0, 2.0, 4.0, 8.0)
    rules = rules_with([therapy(d, start_h=i + 1.0) for i, d in enumerate(doses)],
                       **{"radiotherapy.oer": 1.0})
    assert rules.fraction_steps == {1, 2, 3, 4}
    for step, dose in enumerate(doses, start=1):
        lat = block(TUMOR)
        irradiate(lat, rules, step)
        alive = int((lat.kind == TUMOR).sum())
        assert_binomial(alive, lat.voxels, survival(dose))
        assert lat.events[TUMOR_KILLED].sum() == lat.voxels - alive          # every kill counted
        assert int((lat.kind == NECROTIC).sum()) == lat.voxels - alive


def test_oxygen_enhancement_anoxic_half_takes_dose_over_oer():
    rules = rules_with([therapy(2.0)])
    lat = block(TUMOR)
    lat.oxygen[:16] = 0.0                                   # anoxic half
    irradiate(lat, rules, 1)
    n = lat.voxels // 2
    anoxic, oxic = int((lat.kind[:16] == TUMOR).sum()), int((lat.kind[16:] == TUMOR).sum())
    d_oxic = 2.0 * (OER * 60.0 + HALF) / (OER * (60.0 + HALF))
    s_anoxic, s_oxic = survival(2.0 / OER), survival(d_oxic)
    assert_binomial(anoxic, n, s_anoxic)
    assert_binomial(oxic, n, s_oxic)
    # the ratio of surviving fractions: analytic value, within 4 propagated σ
    ratio, expected = anoxic / oxic, s_anoxic / s_oxic
    rel = math.sqrt((1 - s_anoxic) / (n * s_anoxic) + (1 - s_oxic) / (n * s_oxic))
    assert abs(ratio / expected - 1) < 4 * rel
    assert ratio > 1.5                                      # hypoxia protects


def test_at_the_half_maximal_po2_the_dose_factor_is_half_way():
    """p = K: D_eff = D (1 + 1/m)/2, half-way between anoxic D/m and oxic D."""
    rules = rules_with([therapy(4.0)])
    lat = block(TUMOR, oxygen=HALF)
    irradiate(lat, rules, 1)
    alive = int((lat.kind == TUMOR).sum())
    factor = (1 + 1 / OER) / 2
    assert_binomial(alive, lat.voxels, survival(4.0 * factor))
    for other in (1.0, 1 / OER):                            # not the oxic or anoxic value
        s = survival(4.0 * other)
        assert abs(alive - lat.voxels * s) > 10 * math.sqrt(lat.voxels * s * (1 - s))


def test_po2_bins_are_looked_up_at_their_lower_edge_and_clamped():
    rules = rules_with([therapy(2.0)])
    table = rules.radiation_kill_thr[0, 0]
    assert table.shape == (N_O2_BINS,) and N_O2_BINS * O2_BIN_MMHG > 100.0
    assert (np.diff(table.astype(np.int64)) >= 0).all()     # more oxygen, never less kill
    assert table[0] < table[-1]
    lat = block(TUMOR, shape=(8, 8, 8))
    lat.oxygen[0] = 0.2                                      # bin 0 (0 mmHg)
    lat.oxygen[1] = 2.99                                     # bin 11 (2.75 mmHg)
    lat.oxygen[2] = 500.0                                    # clamped: 100 mmHg
    lat.oxygen[3] = -1e-3                                    # below 0: bin 0
    expected = expected_kills(lat, rules, 1)
    irradiate(lat, rules, 1)
    assert np.array_equal(lat.kind == NECROTIC, expected)


def test_functional_cells_use_their_organs_parameters():
    """oer = 1; breast (organ 1) keeps its defaults (α 0.15, α/β 3), the muscle (organ 2) is
    made acutely responding (α 0.6, α/β 10)."""
    rules = rules_with([therapy(4.0)], **{"radiotherapy.oer": 1.0,
                                          "organs[1].radiation_alpha_per_Gy": 0.6,
                                          "organs[1].radiation_alpha_beta_Gy": 10.0})
    lat = block(FUNCTIONAL)
    lat.organ[16:] = 2
    irradiate(lat, rules, 1)
    n = lat.voxels // 2
    breast, muscle = int((lat.kind[:16] == FUNCTIONAL).sum()), int((lat.kind[16:] == FUNCTIONAL).sum())
    assert_binomial(breast, n, survival(4.0, 0.15, 3.0))
    assert_binomial(muscle, n, survival(4.0, 0.6, 10.0))
    assert lat.events[FUNCTIONAL_KILLED].sum() == 2 * n - breast - muscle
    assert lat.events[TUMOR_KILLED].sum() == 0
    assert (lat.vacancy == 0).all()                          # debris, not a vacancy (as necrosis)


def test_dormant_cells_die_with_the_tumours_parameters():
    rules = rules_with([therapy(4.0)], **{"radiotherapy.oer": 1.0})
    lat = block(DORMANT)
    irradiate(lat, rules, 1)
    alive = int((lat.kind == DORMANT).sum())
    assert_binomial(alive, lat.voxels, survival(4.0))
    assert lat.events[DORMANT_KILLED].sum() == lat.voxels - alive
    assert lat.events[TUMOR_KILLED].sum() == 0


def test_killed_cells_are_debris_keeping_their_clone_and_nothing_else_is_touched():
    rules = rules_with([therapy(8.0)])
    rng = np.random.default_rng(5)
    lat = block(TUMOR, shape=(12, 12, 12))
    lat.kind[...] = rng.choice([EMPTY, FUNCTIONAL, TUMOR, NECROTIC, VESSEL, DORMANT], size=lat.shape)
    lat.oxygen[...] = rng.uniform(0.0, 40.0, size=lat.shape).astype(np.float32)
    before = {k: np.array(a) for k, a in lat.arrays.items()}
    expected = expected_kills(lat, rules, 1)
    irradiate(lat, rules, 1)
    killed = (lat.kind == NECROTIC) & (before["kind"] != NECROTIC)
    assert np.array_equal(killed, expected) and killed.sum() > 100
    assert (lat.lineage[killed] == 7).all()
    assert (lat.traits[:, killed] == 0).all() and (lat.clock[killed] == 0).all()
    assert (lat.motile[killed] == 0).all() and (lat.hypoxia[killed] == 0).all()
    for key, a in before.items():                          # the rest is untouched
        if key not in ("events", "plane_max"):
            assert np.array_equal(np.asarray(lat.arrays[key])[..., ~killed], a[..., ~killed]), key
    events = lat.events.sum(axis=1)
    for kind, row in ((TUMOR, TUMOR_KILLED), (FUNCTIONAL, FUNCTIONAL_KILLED),
                      (DORMANT, DORMANT_KILLED)):
        assert events[row] == (killed & (before["kind"] == kind)).sum()
    assert events.sum() == killed.sum()


# -- region -----------------------------------------------------------------------------------

def test_cells_outside_a_sphere_are_untouched():
    h = 20.0
    rules = rules_with([therapy(8.0, region="sphere", center_um=[320.0, 320.0, 320.0],
                                radius_um=200.0)])
    default = rules_with([therapy(8.0, region="sphere", center_um=None, radius_um=200.0)])
    assert default.radiation_fractions[1].centre == (48.0, 48.0, 48.0)   # the 96³ lattice's centre
    lat = block(TUMOR, shape=(32, 32, 32))
    irradiate(lat, rules, 1)
    z, y, x = np.indices(lat.shape)
    r2 = ((z + 0.5) * h - 320.0) ** 2 + ((y + 0.5) * h - 320.0) ** 2 + ((x + 0.5) * h - 320.0) ** 2
    inside = r2 <= 200.0 ** 2
    killed = lat.kind == NECROTIC
    assert not killed[~inside].any()
    assert_binomial(int((lat.kind[inside] == TUMOR).sum()), int(inside.sum()),
                    survival(8.0 * (OER * 60 + HALF) / (OER * (60 + HALF))))


def test_cells_outside_a_box_are_untouched_and_a_slab_sees_global_z():
    rules = rules_with([therapy(8.0, region="box", box_from_um=[100.0, 0.0, 200.0],
                                box_to_um=[300.0, 640.0, 400.0])])
    f = rules.radiation_fractions[1]
    assert f.box == (5, 15, 0, 32, 10, 20)                   # voxel centres in [from, to]
    lat = block(TUMOR, shape=(32, 32, 32))
    irradiate(lat, rules, 1)
    killed = lat.kind == NECROTIC
    assert not killed[:5].any() and not killed[15:].any()
    assert not killed[:, :, :10].any() and not killed[:, :, 20:].any()
    assert killed[5:15, :, 10:20].mean() > 0.9
    # a slab whose global z starts at 10 (decomposed lattice): planes 0..4 are z 10..14
    slab = block(TUMOR, shape=(10, 32, 32))
    slab.z0 = 10
    irradiate(slab, rules, 1)
    assert np.array_equal(slab.kind == NECROTIC, killed[10:20])


# -- schedule ---------------------------------------------------------------------------------

def test_fraction_steps_from_start_count_and_interval():
    rules = rules_with([therapy(2.0, start_h=2.5, count=3, interval_h=24.0),
                        therapy(5.0, start_h=200.0, count=2, interval_h=48.0)])
    assert rules.fraction_steps == {3, 27, 51, 200, 248}     # 2.5 h rounds half up to step 3
    assert rules.radiation_fractions[27].dose_index == 0
    assert rules.radiation_fractions[248].dose_index == 1
    assert rules.radiation_kill_thr.shape == (2, 3, N_O2_BINS)
    first = dict(start_h=0.0, count=1, interval_h=1.0)
    assert delivery_steps(first, 1.0) == [1]                      # the first step a run takes
    assert delivery_steps(dict(first, start_h=0.74), 0.5) == [1]
    assert delivery_steps(dict(first, start_h=0.75), 0.5) == [2]
    half_hour = rules_with([therapy(2.0, start_h=1.0, count=2, interval_h=1.5)],
                           **{"time.step_h": 0.5})
    assert half_hour.fraction_steps == {2, 5}
    # a fraction for another lattice (a site) or another therapy is not this lattice's
    other = rules_with([therapy(2.0, lattice="bone_marrow"), dict(therapy(2.0), kind="anti_angiogenic", dose_mg_per_kg=5.0)])
    assert other.fraction_steps == frozenset() and other.radiation_fractions == {}
    assert not other.radiation_kill_thr.any()


def test_no_therapy_and_no_fraction_this_step_do_nothing():
    rules = build_rules(load_scenario("quickstart"))       # no `therapies` at all
    assert rules.fraction_steps == frozenset()
    lat = block(TUMOR, shape=(8, 8, 8))
    irradiate(lat, rules, 1)
    assert (lat.kind == TUMOR).all() and not lat.events.any()
    rules = rules_with([therapy(8.0, start_h=5.0)])
    for step in (1, 4, 6):
        irradiate(lat, rules, step)
    assert (lat.kind == TUMOR).all() and not lat.events.any()
    stage = next(s for s in STEP if s.run is irradiate)
    assert stage.when is FRACTION_DUE

    class Sim:
        pass
    sim = Sim()
    sim.rules = rules
    held = []
    for sim.step_index in range(1, 8):
        held.append(FRACTION_DUE.holds(sim))
    assert held == [False, False, False, False, True, False, False]


def test_a_simulation_irradiates_at_fraction_steps_only():
    s = parse_scenario(small_scenario_text(16, seed_radius_um=100.0), "small.toml")
    s.therapies = [therapy(6.0, start_h=2.0, count=2, interval_h=2.0)]
    sim = Simulation(s)
    rows = [sim.initial] + [sim.step() for _ in range(5)]
    killed = [int(r["irradiated_tumor_killed"]) for r in rows]
    assert killed[2] > 0 and killed[4] > 0
    assert killed[0] == killed[1] == killed[3] == killed[5] == 0
    h = np.array(rows)                                          # killed cells became debris
    made = (h["necrosis_tumor"] + h["necrosis_functional"] + h["irradiated_tumor_killed"]
            + h["irradiated_functional_killed"] + h["irradiated_dormant_killed"])
    removed = h["debris_cleared"] + h["debris_lysed"]
    assert np.array_equal(np.diff(h["necrotic"]), (made - removed)[1:])
    tumour_change = np.diff(h["tumor"])[1]                       # step 2
    assert tumour_change <= h["birth_tumor"][2] - h["irradiated_tumor_killed"][2]


def test_two_fractions_at_one_step_are_refused_naming_the_therapy():
    ok = scenario_with([therapy(2.0, start_h=24.0), therapy(2.0, start_h=48.0),
                        therapy(2.0, start_h=24.0, lattice="lung")])
    assert radiation_checks(ok) == []                         # another lattice may share a step
    clash = scenario_with([therapy(2.0, start_h=24.0, count=5), therapy(3.0, start_h=72.2)])
    with pytest.raises(ScenarioError, match=r"therapy\[1\]\.start_h") as err:
        _cross_check(clash)
    assert "\n" not in str(err.value) and "step 72" in str(err.value)
    same = scenario_with([therapy(2.0, start_h=24.0, count=3, interval_h=0.2)])
    with pytest.raises(ScenarioError, match=r"therapy\[0\]\.start_h"):
        _cross_check(same)


# -- twins and threads ------------------------------------------------------------------------

def random_cells(shape, seed):
    rng = np.random.default_rng(seed)
    lat = allocate("r", 0, "numba", shape)
    lat.kind[...] = rng.choice([EMPTY, FUNCTIONAL, TUMOR, NECROTIC, VESSEL, DORMANT], size=shape)
    lat.organ[...] = rng.integers(0, 3, size=shape)
    lat.traits[...] = rng.integers(0, 16, size=lat.traits.shape)
    lat.clock[...] = rng.integers(0, 65535, size=shape)
    lat.lineage[...] = rng.integers(0, 5, size=shape)
    lat.motile[...] = (lat.kind == TUMOR) & (rng.random(shape) < 0.2)
    lat.hypoxia[...] = rng.integers(0, 14, size=shape)
    lat.oxygen[...] = rng.uniform(-0.1, 120.0, size=shape).astype(np.float32)
    return lat


REGION_CASES = [dict(region="lattice"),
                dict(region="sphere", center_um=[90.0, 110.0, 95.0], radius_um=70.0),
                dict(region="box", box_from_um=[30.0, 10.0, 60.0], box_to_um=[150.0, 170.0, 200.0])]


@needs_cxx
@pytest.mark.parametrize("region", REGION_CASES, ids=lambda r: r["region"])
def test_cuda_twin_is_bit_identical(region):
    rules = rules_with([therapy(4.0, **region)])
    for seed in (1, 2):
        reference = random_cells((9, 10, 11), seed)
        reference.z0 = seed
        twin = on("cuda-host", reference)
        irradiate(reference, rules, 1)
        irradiate(twin, rules, 1)
        for key, a in reference.arrays.items():
            assert np.array_equal(a, twin.arrays[key]), f"{region['region']}: {key} differs"
        assert reference.events.sum() > 0


def test_threads_do_not_change_the_result():
    rules = rules_with([therapy(4.0, region="sphere", center_um=[100.0, 100.0, 100.0],
                                radius_um=120.0)])
    results = []
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            lat = random_cells((12, 11, 10), 3)
            irradiate(lat, rules, 1)
            results.append({k: np.array(a) for k, a in lat.arrays.items()})
    finally:
        numba.set_num_threads(threads)
    for key in results[0]:
        assert np.array_equal(results[0][key], results[-1][key]), key


def test_a_site_lattice_takes_its_own_fractions_and_its_organs_parameters():
    """breast_metastasis: a fraction for the bone-marrow block reaches only that lattice, and
    marrow (acutely responding: α 0.3 /Gy, α/β 10 Gy) dies like the tumour."""
    body = load_scenario("breast_metastasis")
    marrow = body.site([s["name"] for s in body.sites].index("bone_marrow"))
    for s in (body, marrow):
        s.therapies = [therapy(2.0, start_h=5.0, lattice="bone_marrow")]
    assert build_rules(body).fraction_steps == frozenset()
    rules = build_rules(marrow)
    assert marrow.lattice_name == "bone_marrow" and rules.fraction_steps == {5}
    table = rules.radiation_kill_thr[0]
    assert table.shape[0] == 2 and np.array_equal(table[0], table[1])
