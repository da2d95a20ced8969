"""Vessel invasion (kernels/intravasation.py): who enters, how often, by which route, and
what leaves the lattice."""
import math

import numba
import numpy as np
import pytest
from conftest import on

from engine.backend import architecture
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES
from engine.state import allocate
from kernels.cuda import compiler
from kernels.intravasation import (BLOOD, DEPARTURE_DTYPE, LYMPHATIC, INTRAVASATION,
                                   intravasate, shedding_per_g_per_day)
from kernels.lattice import (EMPTY, FUNCTIONAL, LYMPH, NECROTIC, SPROUT, TIP, TUMOR, VESSEL)

BLOOD_EVENT, LYMPH_EVENT = (EVENT_NAMES.index(e) for e in ("intravasated_blood",
                                                            "intravasated_lymph"))
QUICKSTART = load_scenario("quickstart").text
CERTAIN = 1e3            # 1/h: P = 1 − exp(−1000) rounds to certainty
needs_cxx = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the host harness")


def rules_with(**values):
    """Rules of the quickstart with some [intravasation] values replaced."""
    text = QUICKSTART
    for key, value in values.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old, f"{key} = {value}", 1)
    return build_rules(parse_scenario(text, "intravasation-test"))


def binomial_ok(k, n, p, sigmas=4.0):
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def place_cell(lat, at, lineage=1, motile=1, traits=(8, 4, 4, 0, 8, 0, 8)):
    lat.kind[at] = TUMOR
    lat.motile[at] = motile
    lat.lineage[at] = lineage
    lat.traits[(slice(None),) + at] = traits
    lat.clock[at] = 1234
    lat.hypoxia[at] = 2


def place_vessel(lat, at, kind=VESSEL, perfused=1, sprout_age=0):
    lat.kind[at] = kind
    lat.perfused[at] = perfused if kind == VESSEL else 0
    lat.sprout_age[at] = sprout_age


def isolated_cells(shape, vessel=VESSEL, perfused=1, sprout_age=0, motile=1):
    """Tumour cells at (even z, even y, x ≡ 0 mod 3), each with one vessel voxel at +x and
    no other cell or vessel at its faces; every cell its own lineage."""
    lat = allocate("t", 0, "numba", shape)
    zs, ys, xs = np.meshgrid(np.arange(0, shape[0], 2), np.arange(0, shape[1], 2),
                             np.arange(0, shape[2] - 1, 3), indexing="ij")
    cells = tuple(a.ravel() for a in (zs, ys, xs))
    lat.kind[cells] = TUMOR
    lat.motile[cells] = motile
    lat.lineage[cells] = np.arange(1, len(cells[0]) + 1) % 60000 + 1
    lat.traits[:, cells[0], cells[1], cells[2]] = 7
    vessels = (cells[0], cells[1], cells[2] + 1)
    lat.kind[vessels] = vessel
    lat.perfused[vessels] = perfused if vessel == VESSEL else 0
    lat.sprout_age[vessels] = sprout_age
    return lat, len(cells[0])


# -- who never leaves ---------------------------------------------------------------------

def test_a_motile_cell_beside_no_open_vessel_never_leaves():
    """Matrix, functional cells, debris, tumour cells of its clone that do not enter, stalks,
    tips and unperfused vessels offer no way in, however high the rates."""
    rules = rules_with(mature_blood_per_h=CERTAIN, sprout_blood_per_h=CERTAIN, lymph_per_h=CERTAIN)
    lat = allocate("t", 0, "numba", (7, 7, 7))
    place_cell(lat, (3, 3, 3))
    place_cell(lat, (3, 3, 4), motile=0)               # clone mate, adherent
    lat.kind[3, 3, 2] = FUNCTIONAL
    lat.kind[3, 2, 3] = NECROTIC
    place_vessel(lat, (3, 4, 3), SPROUT)
    place_vessel(lat, (2, 3, 3), TIP)
    place_vessel(lat, (4, 3, 3), VESSEL, perfused=0, sprout_age=5)
    kinds = lat.kind.copy()
    for step in range(1, 30):
        assert len(intravasate(lat, rules, step)) == 0
    assert (lat.kind == kinds).all() and lat.events[[BLOOD_EVENT, LYMPH_EVENT]].sum() == 0


@pytest.mark.parametrize("vessel", [VESSEL, LYMPH])
def test_an_adherent_cell_beside_a_vessel_never_leaves(vessel):
    rules = rules_with(mature_blood_per_h=CERTAIN, lymph_per_h=CERTAIN)
    lat, n = isolated_cells((6, 6, 9), vessel=vessel, motile=0)
    for step in range(1, 30):
        assert len(intravasate(lat, rules, step)) == 0
    assert (lat.kind == TUMOR).sum() == n
    lat.motile[lat.kind == TUMOR] = 1                 # the same cells, motile: all leave
    assert len(intravasate(lat, rules, 30)) == n and (lat.kind == TUMOR).sum() == 0


# -- how often: P = 1 − exp(−k Δt) ---------------------------------------------------------

def departures_per_step(lat, rules, steps=(1, 2, 3)):
    """Cells that leave in each of several independent steps of one initial lattice."""
    out = []
    for step in steps:
        trial = on("numba", lat)
        out.append(len(intravasate(trial, rules, step)))
    return sum(out)


def test_entry_frequencies_follow_the_declared_rates():
    """Isolated motile cells beside a mature vessel, a new (sprout-born) vessel and a
    lymphatic leave at P = 1 − exp(−k Δt) within 4 binomial σ, and the leaky new vessels
    take more cells than the mature ones."""
    rates = dict(mature_blood_per_h=0.02, sprout_blood_per_h=0.15, lymph_per_h=0.05)
    rules = rules_with(**rates)
    dt = rules.step_h
    shape = (40, 40, 45)
    counts = {}
    for name, vessel, age in (("mature_blood_per_h", VESSEL, 0), ("sprout_blood_per_h", VESSEL, 7),
                              ("lymph_per_h", LYMPH, 0)):
        lat, n = isolated_cells(shape, vessel=vessel, sprout_age=age)
        left = departures_per_step(lat, rules)
        p = 1.0 - math.exp(-rates[name] * dt)
        assert binomial_ok(left, 3 * n, p), (name, left, 3 * n * p)
        counts[name] = left
    assert counts["sprout_blood_per_h"] > 3 * counts["mature_blood_per_h"]


def test_beside_blood_and_lymph_the_route_follows_the_rates():
    """A cell touching a mature vessel and a lymphatic enters at the higher rate and takes
    blood with probability k_b/(k_b + k_l) (word 1)."""
    kb, kl = 0.3, 0.1
    rules = rules_with(mature_blood_per_h=kb, lymph_per_h=kl)
    lat, n = isolated_cells((40, 40, 45))
    cells = np.nonzero(lat.kind == TUMOR)
    lat.kind[cells[0], cells[1], cells[2] - 1] = np.where(cells[2] > 0, LYMPH, EMPTY)
    both = int((cells[2] > 0).sum())
    lat.motile[cells[0], cells[1], cells[2]] = cells[2] > 0       # only cells with both
    blood = lymph = 0
    for step in (1, 2, 3):
        d = intravasate(on("numba", lat), rules, step)
        blood += int((d["route"] == BLOOD).sum())
        lymph += int((d["route"] == LYMPHATIC).sum())
    assert binomial_ok(blood + lymph, 3 * both, 1 - math.exp(-max(kb, kl) * rules.step_h))
    assert binomial_ok(blood, blood + lymph, kb / (kb + kl))


# -- what leaves ----------------------------------------------------------------------------

def mixed_lattice(seed, shape=(14, 15, 16)):
    """Tumour cells (half motile, three lineages) among vessels of every kind."""
    rng = np.random.default_rng(seed)
    lat = allocate("t", 0, "numba", shape)
    lat.kind[...] = rng.choice([EMPTY, FUNCTIONAL, TUMOR, VESSEL, LYMPH, SPROUT],
                               p=[0.2, 0.1, 0.5, 0.1, 0.05, 0.05], size=shape)
    tumour = lat.kind == TUMOR
    lat.motile[...] = tumour & (rng.random(shape) < 0.5)
    lat.lineage[...] = np.where(tumour | (lat.kind == FUNCTIONAL), rng.integers(1, 4, shape), 0)
    lat.traits[...] = np.where(lat.kind == EMPTY, 0, rng.integers(0, 16, lat.traits.shape))
    lat.clock[...] = np.where(tumour, rng.integers(1, 60000, shape), 0)
    lat.hypoxia[...] = np.where(tumour, rng.integers(0, 5, shape), 0)
    vessel = lat.kind == VESSEL
    lat.perfused[...] = vessel & (rng.random(shape) < 0.8)
    lat.sprout_age[...] = np.where(vessel & (rng.random(shape) < 0.5),
                                   rng.integers(1, 50, shape), 0)
    return lat


def test_cells_are_conserved_and_departed_voxels_are_empty_matrix():
    rules = rules_with(mature_blood_per_h=0.3, sprout_blood_per_h=0.6, lymph_per_h=0.4)
    lat = mixed_lattice(1)
    before = lat.kind.copy(), lat.lineage.copy(), lat.traits.copy()
    d = intravasate(lat, rules, 5)
    assert len(d) > 20 and set(d["route"]) == {BLOOD, LYMPHATIC}
    assert (before[0] == TUMOR).sum() == (lat.kind == TUMOR).sum() + len(d)
    where = (d["z"], d["y"], d["x"])
    assert (before[0][where] == TUMOR).all()
    assert (lat.kind[where] == EMPTY).all()
    for name in ("motile", "lineage", "clock", "hypoxia", "vacancy"):
        assert (lat.arrays[name][where] == 0).all(), name
    assert (lat.traits[:, where[0], where[1], where[2]] == 0).all()
    # the record holds what the cells carried, in global index order
    assert (d["lineage"] == before[1][where]).all()
    assert (d["traits"] == before[2][:, where[0], where[1], where[2]].T).all()
    g = np.ravel_multi_index(where, lat.shape)
    assert (np.diff(g) > 0).all()
    assert (d["vessel"] == np.where(d["route"] == BLOOD, VESSEL, LYMPH)).all()
    # everything else stays, and the events count the departures by route
    changed = np.argwhere(lat.kind != before[0])
    assert len(changed) == len(d)
    assert lat.events[BLOOD_EVENT].sum() == (d["route"] == BLOOD).sum()
    assert lat.events[LYMPH_EVENT].sum() == (d["route"] == LYMPHATIC).sum()


def test_a_slab_reports_global_z():
    rules = rules_with(mature_blood_per_h=CERTAIN)
    lat = allocate("t", 0, "numba", (4, 4, 4))
    lat.z0 = 17
    place_cell(lat, (1, 1, 1))
    place_vessel(lat, (1, 1, 2))
    d = intravasate(lat, rules, 1)
    assert (d["z"][0], d["y"][0], d["x"][0]) == (18, 1, 1)


# -- clusters -----------------------------------------------------------------------------

def test_a_clone_block_along_a_vessel_leaves_as_one_cluster_of_four():
    """A 2×2 block of motile cells of one lineage; a vessel runs along one edge, touching two
    of them: those enter on their own draws and carry their face neighbours along."""
    rules = rules_with(mature_blood_per_h=CERTAIN)
    lat = allocate("t", 0, "numba", (6, 6, 6))
    for y in (2, 3):
        for x in (2, 3):
            place_cell(lat, (2, y, x), lineage=9)
        place_vessel(lat, (2, y, 1))
    d = intravasate(lat, rules, 1)
    assert len(d) == 4
    assert (d["cluster"] == 0).all() and (d["cluster_size"] == 4).all()
    assert (d["route"] == BLOOD).all() and (d["lineage"] == 9).all()
    assert (lat.kind == TUMOR).sum() == 0


def test_carrying_reaches_one_face_step():
    """With a vessel beside one cell of the block, the cell and its two face neighbours
    leave (a cluster of 3); the diagonal cell touches no cell that enters on its own."""
    rules = rules_with(mature_blood_per_h=CERTAIN)
    lat = allocate("t", 0, "numba", (6, 6, 6))
    for y in (2, 3):
        for x in (2, 3):
            place_cell(lat, (2, y, x), lineage=9)
    place_vessel(lat, (2, 2, 1))
    d = intravasate(lat, rules, 1)
    assert sorted(zip(d["y"], d["x"])) == [(2, 2), (2, 3), (3, 2)]
    assert (d["cluster_size"] == 3).all() and lat.kind[2, 3, 3] == TUMOR


def test_clusters_split_by_lineage_and_by_route():
    rules = rules_with(mature_blood_per_h=CERTAIN, lymph_per_h=CERTAIN)
    lat = allocate("t", 0, "numba", (6, 6, 6))
    for y in (2, 3):                                   # lineage 1 at x = 2, lineage 2 at x = 3
        for x, lineage in ((2, 1), (3, 2)):
            place_cell(lat, (2, y, x), lineage=lineage)
            place_vessel(lat, (1, y, x))               # a vessel under every cell
    for x in (2, 3):                                   # lineage 3: blood at y = 2, lymph at y = 3
        place_cell(lat, (4, 2, x), lineage=3)
        place_cell(lat, (4, 3, x), lineage=3)
        place_vessel(lat, (5, 2, x))
        place_vessel(lat, (5, 3, x), LYMPH)
    d = intravasate(lat, rules, 1)
    assert len(d) == 8 and (d["cluster_size"] == 2).all()
    assert list(d["cluster"]) == [0, 1, 0, 1, 2, 2, 3, 3]     # by lowest global index
    assert list(d["lineage"]) == [1, 2, 1, 2, 3, 3, 3, 3]
    assert list(d["route"][4:]) == [BLOOD, BLOOD, LYMPHATIC, LYMPHATIC]


def test_nobody_leaving_gives_an_empty_record():
    rules = rules_with()
    lat = allocate("t", 0, "numba", (4, 4, 4))
    d = intravasate(lat, rules, 1)
    assert d.dtype == DEPARTURE_DTYPE and len(d) == 0


# -- shedding rate ------------------------------------------------------------------------

def test_shedding_rate_per_gram_per_day_matches_its_expectation():
    """N isolated motile cells beside mature vessels in a tumour of N_t cells (the rest
    adherent): cells shed per gram per day ≈ N·P/(N_t·h³·1 g/cm³)·(24 h/Δt), within 4σ."""
    k = 0.05
    rules = rules_with(mature_blood_per_h=k)
    s = load_scenario("quickstart")
    h, dt = s["lattice.voxel_um"], rules.step_h
    lat, n = isolated_cells((40, 40, 45))
    lat.kind[1::2, 1::2, ::3] = TUMOR                 # adherent cells away from the vessels
    tumour = int((lat.kind == TUMOR).sum())
    assert tumour > n
    d = intravasate(lat, rules, 3)
    measured = shedding_per_g_per_day(d, tumour, h, dt)
    grams = tumour * (h * 1e-4) ** 3 * 1.0
    p = 1 - math.exp(-k * dt)
    unit = 24.0 / dt / grams                          # one cell, per gram per day
    assert measured == pytest.approx(len(d) * unit, rel=1e-12)
    assert abs(measured - n * p * unit) <= 4 * math.sqrt(n * p * (1 - p)) * unit
    with pytest.raises(ValueError):
        shedding_per_g_per_day(d, 0, h, dt)


# -- determinism --------------------------------------------------------------------------

def test_thread_count_does_not_change_the_outcome():
    rules = rules_with(mature_blood_per_h=0.3, sprout_blood_per_h=0.6, lymph_per_h=0.4)
    threads = numba.get_num_threads()
    results = []
    try:
        for n in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(n)
            lat = mixed_lattice(2)
            results.append((intravasate(lat, rules, 9).tobytes(), lat.kind.tobytes(),
                            lat.events.tobytes()))
    finally:
        numba.set_num_threads(threads)
    assert all(r == results[0] for r in results)


@needs_cxx
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cuda_twin_matches_numba_bit_for_bit(seed):
    """Both entries through the host harness (the .cu compiled for the CPU) against Numba:
    the state and the Departures record, on a slab deep in a larger lattice."""
    rules = rules_with(mature_blood_per_h=0.3, sprout_blood_per_h=0.6, lymph_per_h=0.4)
    rules = rules.replace(key=(seed * 7919, seed))
    reference = mixed_lattice(seed)
    reference.z0 = 3 * seed
    twin = on("cuda-host", reference)
    host = architecture("cuda-host").to_host
    for step in range(1, 4):
        a, b = intravasate(reference, rules, step), intravasate(twin, rules, step)
        assert len(a) > 0 and a.tobytes() == b.tobytes()
        for name in INTRAVASATION.arrays.keys() | {"kind", "traits", "clock", "hypoxia",
                                                    "lineage", "motile", "vacancy", "events"}:
            assert np.array_equal(reference.arrays[name], host(twin.arrays[name])), name


def test_the_simulation_keeps_each_steps_departures():
    """Through the whole step: `Simulation.departures` holds the cells its events count."""
    from conftest import small_scenario_text
    from engine.simulation import Simulation
    text = (small_scenario_text(20, seed_radius_um=100.0)
            .replace("detachment_per_h = 0.01", "detachment_per_h = 0.5")
            .replace("mature_blood_per_h = 0.02", "mature_blood_per_h = 2.0")
            .replace("lymph_per_h = 0.05", "lymph_per_h = 2.0"))
    sim = Simulation(parse_scenario(text, "shedding.toml"))
    left = 0
    for _ in range(8):
        row = sim.step()
        d = sim.departures
        assert d.dtype == DEPARTURE_DTYPE
        assert len(d) == row["intravasated_blood"] + row["intravasated_lymph"]
        assert (d["route"] == BLOOD).sum() == row["intravasated_blood"]
        left += len(d)
    assert left > 0
