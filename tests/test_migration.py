"""Adhesion loss and migration (kernels/migration.py)."""
import math

import numpy as np
import pytest

from conftest import with_values
from engine.errors import ScenarioError
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES, PASSES
from engine.state import allocate
from kernels.lattice import (ADHESION, CLOCK_FULL, EMPTY, FUNCTIONAL, N_KINDS, NECROTIC, TUMOR,
                             VESSEL)
from kernels.migration import MAX_SUBSTEPS, lose_adhesion, migrate

DETACHED, READHERED, MIGRATED = (EVENT_NAMES.index(e) for e in ("detached", "readhered", "migrated"))
QUICKSTART = load_scenario("quickstart").text


def scenario_with(**values):
    """The quickstart with some `key = value` lines replaced."""
    return parse_scenario(with_values(QUICKSTART, **values), "migration-test")


def tumour_block(shape, adhesion, oxygen=38.0):
    lat = allocate("t", 0, "numba", shape)
    lat.kind[...] = TUMOR
    lat.traits[ADHESION] = adhesion
    lat.oxygen[...] = oxygen
    return lat


# -- (a), (d): adhesion loss --------------------------------------------------------------

def test_adhesion_level_15_never_detaches():
    rules = build_rules(scenario_with(detachment_per_h=1000.0, hypoxic_emt_factor=100.0))
    assert (rules.detach_thr[:, 15] == 0).all() and (rules.detach_thr[:, :15] > 0).all()
    lat = tumour_block((12, 12, 12), adhesion=15, oxygen=0.0)        # hypoxic too
    for step in range(1, 21):
        lose_adhesion(lat, rules, step)
    assert lat.motile.sum() == 0 and lat.events[DETACHED].sum() == 0
    lat.traits[ADHESION] = 0                                        # no adhesion left: P ≈ 1
    lose_adhesion(lat, rules, 21)
    assert lat.motile.all()


def binomial_ok(k, n, p, sigmas=4.0):
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def test_hypoxia_raises_detachment_by_the_emt_factor():
    """Tumour cells at adhesion 6 detach at k0·(1 − 6/15)·(1 + f) below the hypoxic pO2
    and at k0·(1 − 6/15) above it: counts within 4 binomial standard deviations."""
    k0, f = 0.05, 2.0
    s = scenario_with(detachment_per_h=k0, hypoxic_emt_factor=f)
    rules = build_rules(s)
    lat = tumour_block((32, 32, 32), adhesion=6)
    lat.oxygen[:16] = 5.0                                           # below hypoxic_mmHg = 15
    lose_adhesion(lat, rules, 7)
    n = 16 * 32 * 32
    k = k0 * (1 - 6 / 15)
    hypoxic, normoxic = int(lat.motile[:16].sum()), int(lat.motile[16:].sum())
    assert binomial_ok(hypoxic, n, 1 - math.exp(-k * (1 + f)))
    assert binomial_ok(normoxic, n, 1 - math.exp(-k))
    assert hypoxic > 2 * normoxic
    assert lat.events[DETACHED].sum() == hypoxic + normoxic


def test_motile_cells_readhere_at_the_declared_rate():
    rules = build_rules(scenario_with(readhesion_per_h=0.2))
    lat = tumour_block((32, 32, 32), adhesion=15)
    lat.motile[...] = 1
    lose_adhesion(lat, rules, 3)
    readhered = int((lat.motile == 0).sum())
    assert binomial_ok(readhered, 32 ** 3, 1 - math.exp(-0.2))
    assert lat.events[READHERED].sum() == readhered and lat.events[DETACHED].sum() == 0


# -- (b): a random walk with the declared diffusion coefficient -----------------------------

@pytest.mark.parametrize("speed", [0.2, 0.5])        # p = 0.6 hops per step; 1.5 in 2 sub-steps
def test_free_motile_cells_diffuse_with_D_from_the_speed(speed):
    """Unbiased motile cells in empty matrix: MSD(t) = 6 D t with D = p h²/(6 Δt), p = vΔt/h;
    in voxels and steps the slope of MSD(t) is p (within 10 %).  Lineage ids track cells."""
    s = scenario_with(speed_um_per_min=speed, oxygen_bias_per_mmHg=0.0)
    rules = build_rules(s)
    p = speed * 60.0 * s["time.step_h"] / s["lattice.voxel_um"]
    assert rules.hop_substeps == math.ceil(p)
    lat = allocate("t", 0, "numba", (48, 48, 48))
    lat.oxygen[...] = 20.0
    start = np.stack(np.meshgrid(*[np.arange(10, 38, 3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    ids = np.arange(1, len(start) + 1)
    lat.kind[tuple(start.T)] = TUMOR
    lat.motile[tuple(start.T)] = 1
    lat.lineage[tuple(start.T)] = ids
    steps, msd = 24, []
    for step in range(1, steps + 1):
        migrate(lat, rules, step)
        where = np.argwhere(lat.kind == TUMOR)
        order = np.argsort(lat.lineage[tuple(where.T)])
        assert len(where) == len(ids) and (lat.lineage[tuple(where.T)][order] == ids).all()
        msd.append(((where[order] - start) ** 2).sum(axis=1).mean())
    t = np.arange(1, steps + 1)
    slope = (t * np.array(msd)).sum() / (t * t).sum()           # MSD = slope · t, through 0
    assert abs(slope - p) <= 0.1 * p, (slope, p)
    assert lat.events[MIGRATED].sum() > 0


def test_a_step_holds_at_most_16_hop_substeps():
    assert build_rules(scenario_with(speed_um_per_min=5.0)).hop_substeps == 15   # the bound
    text = QUICKSTART.replace("step_h = 1.0 ", "step_h = 2.0 ", 1).replace(
        "speed_um_per_min = 0.3 ", "speed_um_per_min = 3.0 ", 1)   # 18 hops per step
    with pytest.raises(ScenarioError, match="migration.speed_um_per_min") as err:
        parse_scenario(text, "fast")
    assert "\n" not in str(err.value).strip() and str(MAX_SUBSTEPS) in str(err.value)


# -- (c): the motion pass conserves cells ------------------------------------------------------

def test_migration_moves_cells_without_losing_or_doubling_any():
    """On random states (every kind, many motile cells, two sub-steps of likely hops):
    the motion conserves the count of each kind and every cell with all it carries;
    only motile tumour cells and functional cells they swapped with move; vessels,
    debris and adherent cells stay where they were."""
    from test_cuda import random_lattice
    r = build_rules(load_scenario("quickstart"))
    rules = r.replace(hop_substeps=2, hop_thr=np.uint32(2**31), oxygen_bias=np.float32(0.25))
    for seed in (1, 2, 3):
        lat = random_lattice((12, 13, 14), seed)
        lat.motile[...] = (lat.kind == TUMOR) & (np.arange(lat.voxels).reshape(lat.shape) % 2 == 0)
        lat.lineage[...] = np.arange(lat.voxels).reshape(lat.shape) % 60000   # identities

        def cells(l):
            occupied = l.kind != EMPTY
            rows = np.stack([l.kind[occupied], l.lineage[occupied], l.clock[occupied],
                             l.hypoxia[occupied], l.motile[occupied],
                             *[t[occupied] for t in l.traits]], axis=1)
            return rows[np.lexsort(rows.T[::-1])]

        before = {k: np.array(v) for k, v in lat.arrays.items()}
        cells_before = cells(lat)
        migrate(lat, rules, 50 + seed)
        assert lat.events[MIGRATED].sum() > 0
        assert (np.bincount(lat.kind.ravel(), minlength=N_KINDS)
                == np.bincount(before["kind"].ravel(), minlength=N_KINDS)).all()
        assert np.array_equal(cells(lat), cells_before)          # each cell once, intact
        fixed = ~np.isin(before["kind"], (EMPTY, FUNCTIONAL)) & ~(
            (before["kind"] == TUMOR) & (before["motile"] == 1))
        for name in ("kind", "lineage", "organ", "oxygen"):
            assert np.array_equal(lat.arrays[name][fixed], before[name][fixed]), name
        assert not lat.motile[lat.kind != TUMOR].any()
        assert np.array_equal(lat.organ, before["organ"])       # tissue labels stay put


def test_never_onto_vessels_debris_or_other_tumour_cells():
    """A motile cell boxed in by a vessel, debris and tumour cells (and the lattice
    walls) stays; given one empty neighbour, it takes it."""
    rules = build_rules(scenario_with(speed_um_per_min=1.0))      # 3 hops per step
    lat = allocate("t", 0, "numba", (2, 2, 2))
    lat.kind[...] = TUMOR
    lat.kind[0, 0, 1], lat.kind[0, 1, 0], lat.kind[1, 0, 0] = VESSEL, NECROTIC, TUMOR
    lat.motile[0, 0, 0] = 1
    for step in range(1, 11):
        migrate(lat, rules, step)
    assert lat.motile[0, 0, 0] == 1 and lat.events[MIGRATED].sum() == 0
    lat.kind[1, 0, 0] = EMPTY
    for step in range(11, 21):
        migrate(lat, rules, step)
    assert lat.events[MIGRATED].sum() > 0 and lat.kind[0, 0, 1] == VESSEL
    assert lat.kind[0, 1, 0] == NECROTIC and (lat.kind == TUMOR).sum() == 5


# -- (e): go or grow -----------------------------------------------------------------------

def test_motile_cells_do_not_divide():
    """Ready tumour cells in well-oxygenated matrix: the adherent ones divide (but for
    the few that lose a contested site), the motile ones neither divide nor advance
    their clock."""
    rules = build_rules(load_scenario("quickstart"))
    lat = allocate("t", 0, "numba", (16, 16, 16))
    lat.oxygen[...] = 38.0
    sites = np.argwhere(np.indices(lat.shape).sum(axis=0) % 4 == 0)
    sites = sites[(sites > 0).all(axis=1) & (sites < 15).all(axis=1)]
    lat.kind[tuple(sites.T)] = TUMOR
    lat.clock[tuple(sites.T)] = CLOCK_FULL
    lat.lineage[tuple(sites.T)] = np.arange(1, len(sites) + 1)
    motile = np.arange(len(sites)) % 2 == 0
    lat.motile[tuple(sites[motile].T)] = 1
    lat.clock[tuple(sites[motile][:5].T)] = 1000                 # a motile clock holds
    division = [p for p in PASSES if p.process is not None
                and p.process.name in ("division", "displacement")]
    assert division[0].name == "propose_division"
    for p in division:
        p(lat, rules, 5)
    births = np.bincount(lat.lineage[lat.kind == TUMOR], minlength=len(sites) + 1)[1:] - 1
    assert (births[motile] == 0).all()
    assert (births[~motile] <= 1).all() and births[~motile].mean() > 0.8   # a few lost a contest
    held = lat.clock[tuple(sites[motile].T)]
    assert (held[:5] == 1000).all() and (held[5:] == CLOCK_FULL).all()


# -- (f): parameters -------------------------------------------------------------------------

@pytest.mark.parametrize("key, bad", [("detachment_per_h", -0.1), ("readhesion_per_h", -1.0),
                                      ("hypoxic_emt_factor", -2.0), ("speed_um_per_min", -0.3),
                                      ("speed_um_per_min", 50.0), ("oxygen_bias_per_mmHg", -1.0)])
def test_bad_parameters_are_one_line_errors_naming_the_key(key, bad):
    with pytest.raises(ScenarioError, match=f"migration.{key}") as err:
        scenario_with(**{key: bad})
    assert "\n" not in str(err.value).strip()


def test_check_describes_every_migration_parameter():
    described = "\n".join(load_scenario("quickstart").describe())
    for key in ("detachment_per_h", "hypoxic_emt_factor", "readhesion_per_h", "speed_um_per_min",
                "oxygen_bias_per_mmHg"):
        assert f"migration.{key}" in described
    assert "intravital imaging reviews (approx.)" in described


def test_the_census_counts_motile_cells_and_they_balance_with_the_events():
    """Counts column motile_tumor: the motile cells in the lattice; from one step to the
    next it changes by detachments − re-adhesions − motile cells that died or entered a
    vessel."""
    from conftest import small_scenario_text
    from engine.simulation import Simulation
    text = small_scenario_text(24, seed_radius_um=100.0).replace(
        "detachment_per_h = 0.01", "detachment_per_h = 0.5")
    sim = Simulation(parse_scenario(text, "motile.toml"))
    before = sim.initial["motile_tumor"]
    for _ in range(6):
        row = sim.step()
        assert row["motile_tumor"] == int((np.asarray(sim.lattice.motile) != 0).sum())
        assert row["motile_tumor"] <= before + row["detached"] - row["readhered"]
        before = row["motile_tumor"]
    assert before > 0
