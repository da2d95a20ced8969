"""Lysis of necrotic debris (kernels/lysis.py): the worked example of
docs/adding-a-process.md."""
import math

import numpy as np
import pytest

from engine.errors import ScenarioError
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES, PASSES
from engine.state import allocate
from kernels.lattice import CLOCK_FULL, EMPTY, NECROTIC, TUMOR, VESSEL
from kernels.lysis import lyse_debris

DEBRIS_LYSED = EVENT_NAMES.index("debris_lysed")


def scenario_with(clearance_per_h):
    text = load_scenario("quickstart").text.replace(
        "debris_clearance_per_h = 0.000694444", f"debris_clearance_per_h = {clearance_per_h}", 1)
    return parse_scenario(text, "lysis-test")


def test_debris_lyses_at_the_declared_rate():
    k, steps = 0.05, 20                              # per h, 1 h steps
    rules = build_rules(scenario_with(k))
    lat = allocate("t", 0, "numba", (16, 16, 16))
    lat.kind[...] = NECROTIC
    lat.lineage[...] = 7
    n0, left = lat.voxels, [lat.voxels]
    for step in range(1, steps + 1):
        lat.events[...] = 0
        lyse_debris(lat, rules, step)
        left.append(int((lat.kind == NECROTIC).sum()))
        assert lat.events[DEBRIS_LYSED].sum() == left[-2] - left[-1]      # every lysis counted
    expected = n0 * math.exp(-k * steps)
    sd = math.sqrt(n0 * math.exp(-k * steps) * (1 - math.exp(-k * steps)))
    assert abs(left[-1] - expected) < 4 * sd
    freed = lat.kind == EMPTY
    assert freed.sum() == n0 - left[-1] and (lat.lineage[freed] == 0).all()


def test_lysed_core_is_refilled_by_the_tumour_rim():
    """A ready tumour cell walled in by vessels and debris divides into the debris's
    voxel once it has lysed."""
    r = build_rules(scenario_with(1000.0))            # P(lysis per step) = 1
    rules = r.replace(apoptosis_thr=np.zeros_like(r.apoptosis_thr))
    lat = allocate("t", 0, "numba", (3, 3, 3))
    lat.kind[...] = VESSEL
    lat.organ[...] = 1
    lat.oxygen[...] = 38.0
    lat.kind[1, 1, 1] = TUMOR
    lat.clock[1, 1, 1] = CLOCK_FULL
    lat.kind[1, 1, 2] = NECROTIC
    last = next(p for p in PASSES if p.name == "place_daughters")
    cell_step = PASSES[PASSES.index(lyse_debris):PASSES.index(last) + 1]
    assert cell_step[0] is lyse_debris and cell_step[-1].name == "place_daughters"
    for process in cell_step:
        process(lat, rules, 1)
    assert lat.kind[1, 1, 2] == TUMOR and (lat.kind == TUMOR).sum() == 2


def test_check_describes_the_parameter_and_refuses_a_negative_rate():
    described = "\n".join(load_scenario("quickstart").describe())
    assert "cells.debris_clearance_per_h" in described and "PhysiCell necrosis" in described
    with pytest.raises(ScenarioError, match="cells.debris_clearance_per_h"):
        scenario_with(-1.0)
