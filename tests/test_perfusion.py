"""Perfusion: exactly the blood vessels joined to the lattice faces carry blood."""

import numpy as np
import pytest

from engine.backend import architecture
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.simulation import Simulation
from engine.state import allocate
from kernels.cuda import compiler
from kernels.lattice import EMPTY, FUNCTIONAL, VESSEL
from kernels.oxygen import relax_oxygen
from kernels.perfusion import spread_perfusion
from test_tissue import reachable_from_faces

BACKENDS = ["numba", pytest.param("cuda-host", marks=pytest.mark.skipif(
    compiler() is None, reason="no C++ compiler for the host harness"))]


@pytest.fixture(scope="module")
def rules():
    return build_rules(load_scenario("quickstart")).replace(o2_tolerance_mmHg=1e-4,
                                                            o2_max_sweeps=20_000)


def lattice_with(kind, backend="numba"):
    lat = allocate("p", 0, "numba", kind.shape)
    lat.kind[...] = kind
    lat.oxygen[...] = 38.0
    return architecture(backend).place(lat)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_segment_is_perfused_exactly_while_it_is_connected(backend, rules):
    kind = np.full((5, 5, 12), EMPTY, np.uint8)
    kind[2, 2, 0:6] = VESSEL          # joined to the x = 0 face
    kind[2, 2, 7:10] = VESSEL         # a sprout not yet connected
    lat = lattice_with(kind, backend)
    spread_perfusion(lat, rules, 0)
    assert list(lat.perfused[2, 2]) == [1] * 6 + [0] * 6
    lat.kind[2, 2, 6] = VESSEL        # anastomosis
    spread_perfusion(lat, rules, 1)
    assert list(lat.perfused[2, 2]) == [1] * 10 + [0] * 2
    lat.kind[2, 2, 3] = EMPTY         # the vessel is cut: everything downstream loses flow
    spread_perfusion(lat, rules, 2)
    assert list(lat.perfused[2, 2]) == [1] * 3 + [0] * 9
    assert lat.perfused.sum() == 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perfusion_is_the_connected_component_of_the_face_vessels(backend, seed, rules):
    rng = np.random.default_rng(seed)
    kind = np.where(rng.random((18, 20, 22)) < 0.3, VESSEL, FUNCTIONAL).astype(np.uint8)
    lat = lattice_with(kind, backend)
    rounds = spread_perfusion(lat, rules, 0)
    expected = reachable_from_faces(kind == VESSEL)
    assert np.array_equal(lat.perfused.astype(bool), expected)
    assert rounds > 1 and 0 < expected.sum() < (kind == VESSEL).sum()   # tangled clusters


def test_only_perfused_vessels_supply_oxygen(rules):
    kind = np.full((9, 9, 9), FUNCTIONAL, np.uint8)
    kind[4, 4, 2:7] = VESSEL          # touches no face: no flow
    lat = lattice_with(kind)
    spread_perfusion(lat, rules, 0)
    relax_oxygen(lat, rules, 0)
    # no source anywhere: pO2 decays from its 38 mmHg start toward 0
    assert lat.perfused.sum() == 0 and lat.oxygen.max() < 0.05 * rules.vessel_mmHg
    lat.kind[4, 4, :] = VESSEL        # now it runs face to face
    spread_perfusion(lat, rules, 1)
    relax_oxygen(lat, rules, 1)
    assert lat.perfused.sum() == 9 and lat.oxygen[4, 4, 4] == rules.vessel_mmHg


def test_quickstart_network_is_fully_perfused_until_the_nodule_cuts_it():
    text = load_scenario("quickstart").text
    host = parse_scenario(text.replace("seed_radius_um = 300.0", "seed_radius_um = 10.0"), "host")
    row = Simulation(host).initial
    assert row["tumor"] == 0
    assert row["vessel_perfused"] == row["vessel"] > 0 and row["perfused_fraction"] == 1.0
    # the avascular nodule replaces the vessels inside it; pieces it cuts off carry no blood
    sim = Simulation(load_scenario("quickstart"))
    kind, perfused = np.asarray(sim.lattice.kind), np.asarray(sim.lattice.perfused)
    assert sim.initial["vessel"] < row["vessel"]
    cut = np.argwhere((kind == VESSEL) & (perfused == 0)) * 20.0 + 10.0
    assert len(cut) > 0
    far = np.linalg.norm(cut - np.array([720.0, 960.0, 960.0]), axis=1)
    assert far.max() < 300.0 + 2 * 140.0          # within a capillary spacing or two
