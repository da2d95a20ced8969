"""The oxygen solver against analytic steady states of D∇²p = λp.

Tolerances (stated in the README):
* a planar vessel wall with uniform uptake and a zero-flux far face:
  p(z) = P cosh((Z − z)/L) / cosh(Z/L), L = sqrt(D/λ); within 1 % over 300 µm;
* a point vessel with uniform uptake: p(r) ∝ exp(−r/L)/r; within 3 % for
  5 ≤ r/h ≤ 12, and the fitted decay length within 2 % of sqrt(D/λ).
"""
import dataclasses
import math

import numpy as np
import pytest

from engine.rules import build_rules
from engine.scenario import load_scenario
from engine.state import allocate
from kernels.lattice import TUMOR, VESSEL
from kernels.oxygen import relax_oxygen


@pytest.fixture(scope="module")
def setup():
    s = load_scenario("quickstart")
    rules = dataclasses.replace(build_rules(s), o2_tolerance_mmHg=1e-6, o2_max_sweeps=100_000)
    D = s["oxygen.diffusion_um2_per_s"] * 3600.0
    lam = s["tumor.o2_uptake_per_min"] * 60.0
    return s, rules, math.sqrt(D / lam), s["lattice.voxel_um"]


def test_planar_vessel_matches_cosh_profile(setup):
    s, rules, L, h = setup
    lat = allocate("t", 0, "numba", (64, 3, 3))
    lat.kind[...] = TUMOR
    lat.kind[0] = VESSEL
    lat.perfused[0] = 1
    sweeps, residual = relax_oxygen(lat, rules, 0)
    assert residual <= 1e-6 and sweeps < rules.o2_max_sweeps
    z = np.arange(64) * h
    far = 63.5 * h                       # the zero-flux face lies half a voxel out
    exact = 38.0 * np.cosh((far - z) / L) / np.cosh(far / L)
    num = lat.oxygen[:, 1, 1].astype(np.float64)
    near = z <= 300.0
    assert np.max(np.abs(num[near] - exact[near]) / exact[near]) < 0.01
    # the 3x3 cross-section is uniform to within the solver tolerance (zero-flux sides)
    assert np.ptp(lat.oxygen, axis=(1, 2)).max() < 1e-5


def test_point_vessel_matches_yukawa_profile(setup):
    s, rules, L, h = setup
    n, c = 41, 20
    lat = allocate("t", 0, "numba", (n, n, n))
    lat.kind[...] = TUMOR
    lat.kind[c, c, c] = VESSEL
    lat.perfused[c, c, c] = 1
    relax_oxygen(lat, rules, 0)
    zz, yy, xx = np.indices((n, n, n))
    r = np.sqrt((zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2) * h
    m = (r >= 5 * h) & (r <= 12 * h)
    p = lat.oxygen[m].astype(np.float64)
    shape = np.exp(-r[m] / L) / r[m]
    amplitude = (p * shape).sum() / (shape * shape).sum()
    assert np.max(np.abs(p - amplitude * shape) / (amplitude * shape)) < 0.03
    slope = np.polyfit(r[m], np.log(p * r[m]), 1)[0]
    assert abs(-1.0 / slope - L) / L < 0.02


def test_warm_start_stops_at_tolerance(setup):
    s, rules, L, h = setup
    coarse = dataclasses.replace(rules, o2_tolerance_mmHg=1e-2)
    lat = allocate("t", 0, "numba", (32, 8, 8))
    lat.kind[...] = TUMOR
    lat.kind[0] = VESSEL
    lat.perfused[0] = 1
    sweeps, residual = relax_oxygen(lat, coarse, 0)
    assert 1 < sweeps < coarse.o2_max_sweeps and residual <= 1e-2
    again, residual2 = relax_oxygen(lat, coarse, 1)      # warm start: already converged
    assert again == 1 and residual2 <= 1e-2
