"""Sprouting angiogenesis: tips climb the VEGF gradient, anastomose, and carry blood
exactly from the step they join the network."""

import numpy as np
import pytest

from engine.backend import architecture
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES
from engine.state import allocate
from kernels.cuda import compiler
from kernels.angiogenesis import grow_sprouts, lumenise, propose_sprouting
from kernels.lattice import EMPTY, SPROUT, TIP, TUMOR, VESSEL
from kernels.perfusion import spread_perfusion
from kernels.vegf import relax_vegf

SOURCE = (14, 16, 16)
ANGIOGENESIS_PASSES = (propose_sprouting, grow_sprouts, lumenise, spread_perfusion)
ANASTOMOSIS = EVENT_NAMES.index("anastomosis")
STALK_LAID = EVENT_NAMES.index("stalk_laid")
TIP_SPROUTED = EVENT_NAMES.index("tip_sprouted")



@pytest.fixture(scope="module")
def rules():
    """Quickstart rules with a stronger source and sprouting rate, and the activation
    threshold lowered so the small test source (200 µm from the vessel) activates
    it: these tests are about the mechanics, not the quickstart's calibration."""
    text = (load_scenario("quickstart").text
            .replace("tumor_secretion_ng_per_mL_per_h = 20.0", "tumor_secretion_ng_per_mL_per_h = 50.0")
            .replace("sprout_rate_per_h = 0.002", "sprout_rate_per_h = 0.005"))
    r = build_rules(parse_scenario(text, "angiogenesis-test"))
    return r.replace(vegf_tolerance=1e-5, vegf_max_sweeps=5000, sprout_vegf=np.float32(0.05))


def vessel_and_source(backend="numba"):
    """A perfused vessel along x at z = 4 and a hypoxic tumour block 10 voxels above it."""
    lat = allocate("a", 0, "numba", (26, 32, 32))
    lat.kind[...] = EMPTY
    lat.oxygen[...] = 38.0
    lat.kind[4, 16, :] = VESSEL
    z, y, x = SOURCE
    lat.kind[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = TUMOR
    lat.oxygen[z - 2:z + 3, y - 2:y + 3, x - 2:x + 3] = 1.0       # held hypoxic
    lat = architecture(backend).place(lat)
    return lat


def grow(lat, rules, steps, first=1):
    """VEGF and angiogenesis only (oxygen held fixed); returns per-step event sums."""
    spread_perfusion(lat, rules, 0)
    history = []
    for s in range(first, first + steps):
        lat.events[...] = 0
        relax_vegf(lat, rules, s)
        for process in ANGIOGENESIS_PASSES:
            process(lat, rules, s)
        history.append((lat.events.sum(axis=1).copy(), lat.kind.copy(), lat.perfused.copy()))
    return history


def closest_tip(kind):
    tips = np.argwhere(kind == TIP)
    return np.linalg.norm(tips - np.array(SOURCE), axis=1).min() if len(tips) else np.nan


def new_endothelium_distance(kind):
    """Mean distance to the source of everything that grew (stalks, tips, new vessels)."""
    grown = (kind == SPROUT) | (kind == TIP) | (kind == VESSEL)
    grown[4, 16, :] = False                                   # the original vessel
    return np.linalg.norm(np.argwhere(grown) - np.array(SOURCE), axis=1).mean()


def test_tips_climb_the_vegf_gradient_toward_the_source(rules):
    history = grow(vessel_and_source(), rules, 40)
    front = [closest_tip(kind) for _, kind, _ in history]
    first = next(d for d in front if not np.isnan(d))
    assert np.nanmin(front[:30]) <= first - 4          # the front advances by 80 µm or more
    events = sum(e for e, _, _ in history)
    assert events[TIP_SPROUTED] > 0 and events[STALK_LAID] > 10
    # against the same run without chemotaxis, growth ends up nearer the source
    blind = rules.replace(chi0=np.float32(0.0))
    control = grow(vessel_and_source(), blind, 40)
    assert new_endothelium_distance(history[-1][1]) < new_endothelium_distance(control[-1][1]) - 1


def test_sprouts_carry_blood_exactly_from_anastomosis(rules):
    lat = vessel_and_source()
    history = grow(lat, rules, 80)
    fused = [i for i, (e, _, _) in enumerate(history) if e[ANASTOMOSIS] > 0]
    assert fused, "no anastomosis in 80 h"
    i = fused[0]
    _, kind_before, perfused_before = history[i - 1]
    _, kind_after, perfused_after = history[i]
    # before: stalks and tips have no blood; after: the fused sprout is a perfused vessel
    assert not perfused_before[(kind_before == SPROUT) | (kind_before == TIP)].any()
    new_vessel = (kind_after == VESSEL) & (kind_before != VESSEL)
    assert new_vessel.sum() >= 2 and perfused_after[new_vessel].all()


def test_anastomosis_closes_loops(rules):
    """After fusion the vessel graph has a cycle: removing no single new vessel voxel
    disconnects it (every new voxel keeps two vessel neighbours)."""
    lat = vessel_and_source()
    history = grow(lat, rules, 80)
    kind = history[-1][1]
    original = np.zeros_like(kind, dtype=bool)
    original[4, 16, :] = True
    new = (kind == VESSEL) & ~original
    assert new.any()
    vessel = kind == VESSEL
    neighbours = sum(np.roll(vessel, s, a) for a in range(3) for s in (1, -1))
    assert (neighbours[new] >= 2).all()


def test_disabled_angiogenesis_grows_nothing():
    s = load_scenario("quickstart")
    s.values["angiogenesis"]["enabled"] = False
    from engine.simulation import Simulation
    sim = Simulation(s)
    assert not sim.angiogenesis
    row = sim.step()
    assert row["tip"] == row["sprout"] == row["tip_sprouted"] == 0


@pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the host harness")
def test_sprouting_is_bit_identical_through_the_cuda_host_harness(rules):
    a, b = vessel_and_source("numba"), vessel_and_source("cuda-host")
    ha, hb = grow(a, rules, 60), grow(b, rules, 60)
    for (ea, ka, pa), (eb, kb, pb) in zip(ha, hb):
        assert np.array_equal(ea, eb) and np.array_equal(ka, kb) and np.array_equal(pa, pb)
    for name in ("clock", "hypoxia", "vegf", "intent"):
        assert np.array_equal(a.arrays[name], b.arrays[name]), name
    assert ha[-1][0][STALK_LAID] >= 0 and (ha[-1][1] == VESSEL).sum() > 32
