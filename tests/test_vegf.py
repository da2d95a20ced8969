"""VEGF: hypoxic cells secrete, the field diffuses, decays and is taken up by endothelium."""
import dataclasses
import math

import numpy as np
import pytest

from engine.rules import build_rules
from engine.scenario import load_scenario
from engine.state import allocate
from kernels.lattice import EMPTY, FUNCTIONAL, TUMOR, VESSEL
from kernels.vegf import relax_vegf


@pytest.fixture(scope="module")
def setup():
    s = load_scenario("quickstart")
    rules = dataclasses.replace(build_rules(s), vegf_tolerance=1e-9, vegf_max_sweeps=200_000)
    return s, rules


def lattice(shape, kind=EMPTY, oxygen=38.0):
    lat = allocate("v", 0, "numba", shape)
    lat.kind[...] = kind
    lat.oxygen[...] = oxygen
    return lat


def test_secretion_balances_decay_and_uptake(setup):
    """Summing the discrete steady state over a zero-flux lattice gives exactly
    Σ s_i = Σ (1/a_i − 6) c_i: what hypoxic cells make is what decays or binds."""
    s, rules = setup
    lat = lattice((12, 14, 16), FUNCTIONAL)
    lat.kind[4:8, 5:9, 6:10] = TUMOR
    lat.oxygen[3:9, 4:10, 5:11] = 2.0                # hypoxic core: tumour and some tissue
    lat.kind[:, 0, :] = VESSEL                       # endothelium along one face
    relax_vegf(lat, rules, 1)
    hypoxic = (lat.oxygen < rules.hypoxic_mmHg) & ((lat.kind == TUMOR) | (lat.kind == FUNCTIONAL))
    made = np.where(hypoxic, rules.vegf_source[lat.kind], 0.0).sum(dtype=np.float64)
    lost = ((1.0 / rules.vegf_coeff[lat.kind].astype(np.float64) - 6.0) * lat.vegf).sum()
    assert made > 0 and abs(made - lost) / made < 1e-3
    assert lat.vegf[5, 6, 7] > lat.vegf[5, 1, 7] > 0     # highest in the core, bound at vessels


def test_only_hypoxic_live_cells_secrete(setup):
    s, rules = setup
    lat = lattice((6, 6, 6), FUNCTIONAL, oxygen=float(rules.hypoxic_mmHg))   # at threshold
    lat.kind[2, 2, 2] = TUMOR
    relax_vegf(lat, rules, 1)
    assert lat.vegf.max() == 0.0
    lat.oxygen[2, 2, 2] = 14.9
    relax_vegf(lat, rules, 2)
    assert lat.vegf.max() > 0.0


def test_planar_source_matches_cosh_profile(setup):
    """A secreting plane at z = 0 of a long zero-flux column: for z ≥ 1,
    c(z) ∝ cosh((Z − z)/L), L = sqrt(D/λ); within 1 % over 10 voxels."""
    s, rules = setup
    n = 160
    lat = lattice((n, 2, 2), EMPTY)
    lat.kind[0] = TUMOR
    lat.oxygen[0] = 1.0
    relax_vegf(lat, rules, 1)
    D = s["vegf.diffusion_um2_per_s"] * 3600.0
    lam = s["vegf.decay_per_min"] * 60.0
    h = s["lattice.voxel_um"]
    L = math.sqrt(D / lam) / h                       # in voxels (about 22.6)
    z = np.arange(1, 11)
    far = n - 0.5
    expected = np.cosh((far - z) / L) / np.cosh((far - 1) / L)
    profile = lat.vegf[1:11, 0, 0] / lat.vegf[1, 0, 0]
    assert np.max(np.abs(profile - expected)) < 0.01
