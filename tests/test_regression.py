"""Vessel regression: compressed or unperfused vessels die back after the stated delay."""
import numpy as np
import pytest

from engine.rules import build_rules
from engine.scenario import load_scenario
from engine.state import allocate
from engine.schedule import EVENT_NAMES
from kernels.lattice import EMPTY, TUMOR, VESSEL

VESSEL_REGRESSED = EVENT_NAMES.index("vessel_regressed")
from kernels.regression import regress_vessels


@pytest.fixture(scope="module")
def rules():
    return build_rules(load_scenario("quickstart"))


def test_compressed_vessel_regresses_exactly_after_the_delay(rules):
    lat = allocate("r", 0, "numba", (3, 3, 3))
    lat.kind[...] = EMPTY
    lat.kind[1, 1, :] = VESSEL
    lat.perfused[1, 1, :] = 1
    for z, y in ((0, 1), (2, 1), (1, 0), (1, 2)):           # four tumour cells around x = 1
        lat.kind[z, y, 1] = TUMOR
    assert rules.regression_compressing == 4
    for step in range(1, rules.regression_steps):
        regress_vessels(lat, rules, step)
        assert lat.kind[1, 1, 1] == VESSEL and lat.vessel_threat[1, 1, 1] == step
    regress_vessels(lat, rules, rules.regression_steps)
    assert lat.kind[1, 1, 1] == EMPTY and lat.events[VESSEL_REGRESSED].sum() == 1
    assert (lat.kind[1, 1, [0, 2]] == VESSEL).all()           # uncompressed neighbours stay


def test_relief_resets_the_count_and_unperfused_vessels_regress(rules):
    lat = allocate("r", 0, "numba", (3, 3, 3))
    lat.kind[1, 1, :] = VESSEL
    lat.perfused[1, 1, :2] = 1                                 # x = 2 carries no blood
    for step in range(1, rules.regression_steps + 1):
        regress_vessels(lat, rules, step)
    assert list(lat.kind[1, 1]) == [VESSEL, VESSEL, EMPTY]
    assert (lat.vessel_threat[1, 1, :2] == 0).all()           # never threatened


def test_a_large_nodule_has_a_necrotic_core_and_a_vascular_rim():
    """A 500 µm avascular nodule in the quickstart breast: its cells take up oxygen at a
    nearly constant rate, so the core deeper than the diffusion limit is anoxic and
    dies within a day and a half, a viable rim survives, new capillaries crowd the rim
    and the host tissue around stays as it was.  The pO2 at the nodule's surface is at
    most the vessels' 38 mmHg, so the constant-uptake anoxic radius with p_s = 38 mmHg
    is the smallest the core can be (a voxel allowed for the lattice)."""
    from conftest import anoxic_radius_um
    from engine.scenario import parse_scenario
    from engine.simulation import Simulation
    from kernels.lattice import NECROTIC, SPROUT, TIP
    scenario = load_scenario("quickstart")
    assert scenario["oxygen.uptake"] == "michaelis_menten"
    text = scenario.text.replace("seed_radius_um = 300.0", "seed_radius_um = 500.0")
    sim = Simulation(parse_scenario(text, "large-nodule"))
    for _ in range(36):
        sim.step()
    kind = np.asarray(sim.lattice.kind)
    centre, radius, h = np.array([720.0, 960.0, 960.0]), 500.0, 20.0
    r = np.linalg.norm(np.indices(kind.shape).transpose(1, 2, 3, 0) * h + h / 2 - centre, axis=-1)
    core = anoxic_radius_um(radius, scenario["oxygen.vessel_mmHg"],
                            scenario["tumor.o2_vmax_mmHg_per_s"],
                            scenario["oxygen.diffusion_um2_per_s"])
    assert 0.6 * radius < core < radius - 2 * h           # R lies beyond the diffusion limit
    inner = r < core - h
    assert (kind[inner] == TUMOR).mean() < 0.01               # the anoxic core has died
    assert (kind[inner] == NECROTIC).mean() > 0.9             # (a few voxels lysed already)
    shell = (r > radius - 2 * h) & (r < radius)
    assert (kind[shell] == TUMOR).mean() > 0.5                # the rim lives
    endothelium = (kind == VESSEL) | (kind == SPROUT) | (kind == TIP)
    breast = np.asarray(sim.lattice.organ) == 1
    rim = (r > radius) & (r < radius + 40)                  # the first two voxels outside
    host = (r > radius + 200) & (r < radius + 300) & breast
    assert endothelium[rim].mean() > 1.2 * endothelium[host].mean()
    assert not endothelium[inner].any()                     # no vessel enters the dead core
