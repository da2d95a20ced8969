"""Vessel regression: compressed or unperfused vessels die back after the stated delay."""
import pytest

from engine.rules import build_rules
from engine.scenario import load_scenario
from engine.state import allocate
from kernels.lattice import EMPTY, TUMOR, VESSEL, VESSEL_REGRESSED
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
        assert lat.kind[1, 1, 1] == VESSEL and lat.clock[1, 1, 1] == step
    regress_vessels(lat, rules, rules.regression_steps)
    assert lat.kind[1, 1, 1] == EMPTY and lat.events[:, VESSEL_REGRESSED].sum() == 1
    assert (lat.kind[1, 1, [0, 2]] == VESSEL).all()           # uncompressed neighbours stay


def test_relief_resets_the_count_and_unperfused_vessels_regress(rules):
    lat = allocate("r", 0, "numba", (3, 3, 3))
    lat.kind[1, 1, :] = VESSEL
    lat.perfused[1, 1, :2] = 1                                 # x = 2 carries no blood
    for step in range(1, rules.regression_steps + 1):
        regress_vessels(lat, rules, step)
    assert list(lat.kind[1, 1]) == [VESSEL, VESSEL, EMPTY]
    assert (lat.clock[1, 1, :2] == 0).all()                   # never threatened
