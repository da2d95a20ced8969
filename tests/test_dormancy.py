"""Dormant tumour cells (kernels/dormancy.py) and local metastasis founders (lose_adhesion)."""
import math

import numba
import numpy as np
import pytest
from conftest import on, with_values
from test_cuda import CUDA_BACKENDS, assert_same_state, host, random_lattice

from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES, FIELD_PASSES, PASSES
from engine.state import allocate
from kernels.dormancy import leave_probabilities, wake_dormant
from kernels.fate import decide_fate
from kernels.lattice import (ADHESION, CLOCK_FULL, COLONY_LINEAGE_BASE, DORMANT, EMPTY,
                             FUNCTIONAL, KIND_NAMES, N_KINDS, FOUNDING_BASE, TUMOR)
from kernels.migration import lose_adhesion, migrate
from kernels.philox import probability_threshold

QUICKSTART = load_scenario("quickstart").text
CELL = ("kind", "traits", "clock", "hypoxia", "lineage", "motile")


def event(lat, name):
    return int(host(lat)["events"][EVENT_NAMES.index(name)].sum())


def scenario_with(**values):
    """The quickstart with some `key = value` lines replaced."""
    return parse_scenario(with_values(QUICKSTART, **values), "dormancy-test")


def binomial_ok(k, n, p, sigmas=4.0):
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_the_kind_is_declared_once_with_its_name():
    assert DORMANT == 8 and KIND_NAMES[DORMANT] == "dormant" and N_KINDS == 11
    assert KIND_NAMES[:8] == ("empty", "functional", "tumor", "necrotic", "vessel",
                              "lymph_vessel", "sprout", "tip")       # old codes unchanged
    assert COLONY_LINEAGE_BASE == 1024 and FOUNDING_BASE == 65536 - 1024


# -- a dormant cell: no division, no migration, no death in the fate pass --------------------

def test_dormant_cells_do_not_divide():
    """Ready dormant cells in oxygenated matrix stay as they are; ready tumour cells beside
    them (the control) divide."""
    rules = build_rules(load_scenario("quickstart"))
    lat = allocate("t", 0, "numba", (16, 16, 16))
    lat.oxygen[...] = 38.0
    sites = np.argwhere(np.indices(lat.shape).sum(axis=0) % 4 == 0)
    sites = sites[(sites > 0).all(axis=1) & (sites < 15).all(axis=1)]
    dormant = np.arange(len(sites)) % 2 == 0
    lat.kind[tuple(sites.T)] = np.where(dormant, DORMANT, TUMOR)
    lat.clock[tuple(sites.T)] = CLOCK_FULL
    lat.lineage[tuple(sites.T)] = np.arange(1, len(sites) + 1)
    division = [p for p in PASSES if p.process is not None
                and p.process.name in ("division", "displacement")]
    for step in range(1, 4):
        for p in division:
            p(lat, rules, step)
    assert (lat.kind == DORMANT).sum() == dormant.sum()
    assert (lat.kind[tuple(sites[dormant].T)] == DORMANT).all()
    assert (lat.clock[tuple(sites[dormant].T)] == CLOCK_FULL).all()   # the clock holds
    births = np.bincount(lat.lineage[lat.kind == TUMOR], minlength=len(sites) + 1)[1:]
    assert (births[dormant] == 0).all() and births[~dormant].mean() > 1.5
    assert event(lat, "birth_tumor") > 0


def test_dormant_cells_neither_detach_nor_move_and_block_movers():
    """With detachment and re-adhesion certain and hops likely: dormant cells never become
    motile or move; a motile tumour cell walled in by dormant cells stays put."""
    r = build_rules(load_scenario("quickstart"))
    rules = r.replace(detach_thr=np.full_like(r.detach_thr, 2**32 - 1),
                      hop_substeps=2, hop_thr=np.uint32(2**32 - 1))
    lat = allocate("t", 0, "numba", (3, 3, 3))
    lat.oxygen[...] = 20.0
    lat.kind[...] = DORMANT
    lat.kind[1, 1, 1] = TUMOR
    lat.motile[1, 1, 1] = 1
    lat.traits[ADHESION] = 0
    for step in range(1, 11):
        migrate(lat, rules, step)
    assert lat.kind[1, 1, 1] == TUMOR and (lat.kind == DORMANT).sum() == 26
    assert event(lat, "migrated") == 0
    lat.motile[1, 1, 1] = 0
    lose_adhesion(lat, rules, 11)
    assert lat.motile[1, 1, 1] == 1 and lat.motile.sum() == 1      # only the tumour cell
    lat.kind[0, 1, 1] = EMPTY                                     # open one face
    for step in range(12, 22):
        migrate(lat, rules, step)
    assert event(lat, "migrated") > 0 and (lat.kind == DORMANT).sum() == 25
    assert not lat.motile[lat.kind == DORMANT].any()


def test_dormant_cells_survive_huge_apoptosis_rates_and_anoxia():
    """Apoptosis at the bound (1000 /h: certain death within a step) kills every tumour
    and functional cell; the dormant cells, even anoxic, all survive, unchanged."""
    s = scenario_with(apoptosis_per_h=1000.0)                        # tumour: the bound
    rules = build_rules(s)
    assert (rules.apoptosis_thr[0] >= 2**32 - 2).all()
    rules = rules.replace(apoptosis_thr=np.full_like(rules.apoptosis_thr, 2**32 - 1))  # organs
    lat = allocate("t", 0, "numba", (12, 12, 12))
    rng = np.random.default_rng(4)
    lat.kind[...] = rng.choice([TUMOR, FUNCTIONAL, DORMANT], size=lat.shape)
    lat.organ[...] = 1
    lat.traits[...] = rng.integers(0, 16, size=lat.traits.shape)
    lat.lineage[...] = rng.integers(1, 9, size=lat.shape)
    lat.oxygen[...] = np.where(rng.random(lat.shape) < 0.5, 0.0, 38.0).astype(np.float32)
    dormant = lat.kind == DORMANT
    before = {k: np.array(lat.arrays[k]) for k in CELL}
    for step in range(1, 30):                                       # past the necrosis delay
        decide_fate(lat, rules, step)
    assert not np.isin(lat.kind, (TUMOR, FUNCTIONAL)).any()
    assert event(lat, "apoptosis_tumor") > 0 and event(lat, "apoptosis_functional") > 0
    for k in CELL:
        a, b = lat.arrays[k], before[k]
        assert np.array_equal(a[..., dormant], b[..., dormant]), k


def test_dormant_cells_take_up_oxygen_like_matrix():
    """(approx.) A quiescent cell respires far less than a cycling one: the oxygen field
    gives a dormant voxel the background decay only, for both uptake kinetics."""
    for kinetics in ("first_order", "michaelis_menten"):
        rules = build_rules(scenario_with(uptake=f'"{kinetics}"'))
        assert np.array_equal(rules.o2_coeff[DORMANT], rules.o2_coeff[EMPTY])
        if kinetics == "michaelis_menten":
            assert (rules.o2_uptake.vmax[DORMANT] == 0).all()
            assert (rules.o2_uptake.vmax[TUMOR] > 0).all()
        else:
            assert (rules.o2_coeff[TUMOR] < rules.o2_coeff[EMPTY]).all()


def test_no_pass_overwrites_or_changes_a_dormant_cell():
    """Random states with every kind (dormant cells among them), every other pass made
    eager (births, hops, sprouts, lysis): each dormant cell stays,
    with everything it carries, and the census counts them in their own row."""
    from kernels.census import take_census
    r = build_rules(load_scenario("quickstart"))
    rules = r.replace(detach_thr=np.full_like(r.detach_thr, 2**29), readhere_thr=np.uint32(2**30),
                      hop_substeps=2, hop_thr=np.uint32(2**31), oxygen_bias=np.float32(0.25),
                      sprout_vegf=np.float32(0.5), sprout_thr=np.uint32(2**31),
                      branch_p=np.float32(0.5), lysis_thr=np.uint32(2**31), o2_max_sweeps=10)
    for seed in (1, 2):
        lat = random_lattice((10, 11, 12), seed)
        dormant = lat.kind == DORMANT
        assert dormant.sum() > 20
        before = {k: np.array(lat.arrays[k]) for k in CELL}
        for step in range(1, 4):
            for p in PASSES:
                if p is not wake_dormant:
                    p(lat, rules, step)
        for k in CELL:
            assert np.array_equal(lat.arrays[k][..., dormant], before[k][..., dormant]), k
        assert (lat.kind == DORMANT).sum() == dormant.sum()
        assert event(lat, "birth_tumor") > 0 and event(lat, "migrated") > 0
        by_kind_organ = take_census(lat, rules, 4)[0]
        assert by_kind_organ.shape[0] == N_KINDS
        assert by_kind_organ[DORMANT].sum() == dormant.sum()


# -- waking and dying --------------------------------------------------------------------------

def test_thresholds_are_the_competing_risk_probabilities():
    s = scenario_with(wake_per_h=0.05, death_per_h=0.1)
    rules = build_rules(s)
    kw, kd, dt = 0.05, 0.1, s["time.step_h"]
    leave = 1.0 - math.exp(-(kw + kd) * dt)
    assert rules.wake_thr == probability_threshold(kw / (kw + kd) * leave)
    assert rules.wake_or_death_thr == probability_threshold(leave)
    assert leave_probabilities(kw, kd, dt) == pytest.approx((kw / 0.15 * leave, kd / 0.15 * leave),
                                                            rel=1e-15)
    none = build_rules(scenario_with(wake_per_h=0.0, death_per_h=0.0))
    assert none.wake_thr == 0 and none.wake_or_death_thr == 0
    only_death = build_rules(scenario_with(wake_per_h=0.0, death_per_h=0.1))
    assert only_death.wake_thr == 0 and only_death.wake_or_death_thr == probability_threshold(
        1.0 - math.exp(-0.1 * dt))
    sure = build_rules(scenario_with(wake_per_h=1000.0, death_per_h=1000.0))
    assert sure.wake_or_death_thr == 2**32 - 1 and abs(int(sure.wake_thr) - 2**31) <= 1


def dormant_block(shape, seed):
    lat = allocate("t", 0, "numba", shape)
    rng = np.random.default_rng(seed)
    lat.kind[...] = DORMANT
    lat.organ[...] = 1
    lat.traits[...] = rng.integers(0, 16, size=lat.traits.shape)
    lat.lineage[...] = rng.integers(1, 60000, size=shape)
    lat.clock[...] = rng.integers(1, CLOCK_FULL, size=shape)
    lat.hypoxia[...] = rng.integers(0, 5, size=shape)
    return lat


def test_wake_and_death_fractions_match_the_competing_risks():
    """32³ dormant cells, k_w = 0.05 /h, k_d = 0.1 /h, one step: the woken and the dead
    counts are within 4 binomial σ of P_wake, P_die; woken cells are tumour cells with
    clock 0 that keep their traits and lineage; dead ones are matrix with every cell
    array cleared; the events count both."""
    s = scenario_with(wake_per_h=0.05, death_per_h=0.1)
    rules = build_rules(s)
    p_wake, p_die = leave_probabilities(0.05, 0.1, s["time.step_h"])
    lat = dormant_block((32, 32, 32), 1)
    before = {k: np.array(lat.arrays[k]) for k in CELL}
    wake_dormant(lat, rules, 17)
    n = 32 ** 3
    woke, died = lat.kind == TUMOR, lat.kind == EMPTY
    assert binomial_ok(int(woke.sum()), n, p_wake) and binomial_ok(int(died.sum()), n, p_die)
    assert ((lat.kind == DORMANT) | woke | died).all()
    assert event(lat, "woke") == woke.sum() and event(lat, "dormant_died") == died.sum()
    assert (lat.clock[woke] == 0).all() and not lat.motile[woke].any()
    for k in ("traits", "lineage", "hypoxia"):
        assert np.array_equal(lat.arrays[k][..., woke], before[k][..., woke]), k
    for k in ("traits", "clock", "hypoxia", "lineage", "motile"):
        assert not lat.arrays[k][..., died].any(), k
    stay = lat.kind == DORMANT
    for k in CELL:
        assert np.array_equal(lat.arrays[k][..., stay], before[k][..., stay]), k


def test_dormant_count_is_conserved():
    """Over many steps: dormant before = dormant after + woke + died, step by step."""
    rules = build_rules(scenario_with(wake_per_h=0.02, death_per_h=0.03))
    lat = dormant_block((12, 12, 12), 2)
    lat.kind[::3] = EMPTY                                          # some matrix
    dormant = int((lat.kind == DORMANT).sum())
    for step in range(1, 25):
        lat.events[...] = 0
        wake_dormant(lat, rules, step)
        after = int((lat.kind == DORMANT).sum())
        assert dormant == after + event(lat, "woke") + event(lat, "dormant_died")
        assert int((lat.kind == TUMOR).sum()) >= event(lat, "woke")
        dormant = after
    assert 0 < dormant < 0.6 * 12 ** 3 * 2 / 3


# -- local metastasis founders -------------------------------------------------------------

def test_a_primary_clone_settling_in_the_neighbouring_organ_founds_a_new_clone():
    """Motile cells that re-adhere (re-adhesion made certain) get FOUNDING_BASE + clone in organs
    2 and 3 if their lineage is a primary clone's (< 1024); in organ 1 (the lattice's own)
    and 0 (none) they keep it, and so do colony lineages (≥ 1024) and waiting founders."""
    r = build_rules(load_scenario("quickstart"))
    rules = r.replace(readhere_thr=np.uint32(2**32 - 1))
    organs = np.array([0, 1, 2, 3])
    lineages = np.array([0, 1, 5, 1023, 1024, 2000, FOUNDING_BASE + 3], dtype=np.uint16)
    lat = allocate("t", 0, "numba", (len(organs), len(lineages), 2))
    lat.kind[...] = TUMOR
    lat.motile[..., 0] = 1                                         # x = 1: adherent cells
    lat.organ[...] = organs[:, None, None]
    lat.lineage[...] = lineages[None, :, None]
    lat.traits[ADHESION] = 15                                      # adherent ones stay
    lat.oxygen[...] = 38.0
    lose_adhesion(lat, rules, 3)
    assert not lat.motile.any() and event(lat, "readhered") == lat.voxels // 2
    founders = (organs[:, None] >= 2) & (lineages[None, :] < COLONY_LINEAGE_BASE)
    expected = np.where(founders, FOUNDING_BASE + lineages[None, :], lineages[None, :])
    assert np.array_equal(lat.lineage[..., 0], expected)
    assert np.array_equal(lat.lineage[..., 1], np.broadcast_to(lineages, expected.shape))
    assert event(lat, "settled_abroad") == founders.sum() == 8


def test_settled_abroad_is_counted_in_the_migration_events_after_the_old_ones():
    from kernels.migration import MIGRATION
    assert MIGRATION.events == ("detached", "readhered", "migrated", "settled_abroad")


# -- the CUDA twins ------------------------------------------------------------------------

def eager(rules):
    return rules.replace(detach_thr=np.full_like(rules.detach_thr, 2**29),
                         readhere_thr=np.uint32(2**30), wake_thr=np.uint32(2**30),
                         wake_or_death_thr=np.uint32(2**31))


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_cuda_twins_match_numba_bit_for_bit(backend, seed):
    rules = eager(build_rules(load_scenario("quickstart"))).replace(key=(seed * 31, seed))
    reference = random_lattice((9, 10, 11), seed, z0=seed)
    reference.lineage[reference.kind == TUMOR] += np.uint16(1022)   # both sides of 1024
    twin = on(backend, reference)
    for step in (5, 6, 7):
        for p in (wake_dormant, lose_adhesion):
            p(reference, rules, step)
            p(twin, rules, step)
            assert_same_state(reference, twin, f"{p.name}, step {step}")
    for name in ("woke", "dormant_died", "settled_abroad", "readhered", "detached"):
        assert event(reference, name) > 0, name


def test_thread_count_does_not_change_the_results():
    rules = eager(build_rules(load_scenario("quickstart")))
    states = []
    threads = numba.get_num_threads()
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            lat = random_lattice((9, 10, 11), 4)
            for step in (1, 2):
                wake_dormant(lat, rules, step)
                lose_adhesion(lat, rules, step)
            states.append(host(lat))
    finally:
        numba.set_num_threads(threads)
    for key in states[0]:
        assert np.array_equal(states[0][key], states[-1][key]), key


def test_field_passes_leave_dormant_cells_alone():
    """Sanity: the field passes only write their fields."""
    rules = build_rules(load_scenario("quickstart")).replace(o2_max_sweeps=5)
    lat = random_lattice((8, 8, 8), 6)
    before = {k: np.array(lat.arrays[k]) for k in CELL}
    for relax in FIELD_PASSES:
        relax(lat, rules, 1)
    for k in CELL:
        assert np.array_equal(lat.arrays[k], before[k]), k
