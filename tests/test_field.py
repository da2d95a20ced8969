"""The generic field solver (`kernels/field.py`) for every field declaration (oxygen, VEGF).

Analytic steady states, run for every declaration and for both uptake kinetics (first
order as declared, and Michaelis–Menten in its linear limit K_m ≫ f, where
V_max/K_m plays λ), with these tolerances:
* a planar emitter (a perfused vessel wall for a field with a vessel value, a plane of
  hypoxic secreting cells for a field with a source) in a uniform medium with a
  zero-flux far face: f(z) ∝ cosh((Z − z)/L), L = sqrt(D/λ); within 1 % over 300 µm;
* a point emitter in a uniform medium: f(r) ∝ exp(−r/L)/r; within 3 % for
  5 ≤ r/h ≤ 12, and the fitted decay length within 2 % of sqrt(D/λ);
* mass balance on a zero-flux lattice: Σ sources + Σ flux out of Dirichlet voxels
  = Σ (1/a_i − 6 + t_i) f_i, within 1e-3 (what is made or supplied is what is lost);
* Michaelis–Menten with K_m ≪ f: a slab between a vessel plane (p0) and a zero-flux
  face at distance L has the zero-order parabola p(x) = p0 − (V/2D)(2Lx − x²);
  within 0.01 mmHg (0.03 % of p0) where p ≥ 13 mmHg ≫ K_m = 0.001 mmHg.
The CUDA twin (host harness; on a GPU with marker `gpu`) equals Numba bit for bit
on random states, for both kinetics, with the batched stopping rule.

The analytic tests take their media from the quickstart solved with first-order
uptake (`oxygen.uptake = "first_order"`), where a decay length sqrt(D/λ) exists.
"""
import dataclasses
import math
import re

import numpy as np
import pytest
from conftest import on

from engine.backend import architecture
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import FIELD_PASSES
from engine.state import allocate
from kernels import field as field_py
from kernels.cuda import KERNEL_DIR, compiler
from kernels.field import FIRST_ORDER, MichaelisMenten, michaelis_menten, relax_field
from kernels.lattice import EMPTY, FUNCTIONAL, N_KINDS, SPROUT, TIP, TUMOR, VESSEL
from kernels.oxygen import relax_oxygen
from kernels.vegf import relax_vegf

DECLARATIONS = [pytest.param(p, id=p.name) for p in (relax_oxygen, relax_vegf)]
KINETICS = ["first-order", "michaelis-menten-linear"]
needs_cxx = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the host harness")
CUDA_BACKENDS = [pytest.param("cuda-host", marks=needs_cxx),
                 pytest.param("cupy", marks=pytest.mark.gpu)]


def first_order_quickstart():
    text = load_scenario("quickstart").text
    uptake = re.findall(r'^uptake = "\w+"', text, re.M)
    assert len(uptake) == 1
    return parse_scenario(text.replace(uptake[0], 'uptake = "first_order"'), "quickstart-first-order")


@pytest.fixture(scope="module")
def scenario():
    return first_order_quickstart()


@pytest.fixture(scope="module")
def rules(scenario):
    return build_rules(scenario)


def medium(relax, s):
    """A uniform medium for the analytic tests of each declaration: (kind, λ in 1/h,
    D in µm²/h) from the scenario, so the decay length L = sqrt(D/λ) is the physics'."""
    if relax is relax_oxygen:
        return TUMOR, s["tumor.o2_uptake_per_min"] * 60.0, s["oxygen.diffusion_um2_per_s"] * 3600.0
    if relax is relax_vegf:    # unperfused endothelium: decay and receptor uptake
        lam = (s["vegf.decay_per_min"] + s["vegf.endothelial_uptake_per_min"]) * 60.0
        return VESSEL, lam, s["vegf.diffusion_um2_per_s"] * 3600.0
    raise KeyError(relax.name)


def declared(relax, rules, kinetics="first-order", tolerance=None, max_sweeps=50_000):
    """The declaration's Field, its tolerance tightened 100 times (a few float32 ulps of
    the field's values: 1e-5 mmHg, 1e-6 ng/mL); for Michaelis–Menten in the linear limit
    the linear loss moves into V_max = λ K_m with K_m ≫ f, so V_max/(K_m + f) ≈ λ."""
    f = relax.field(rules)
    f = dataclasses.replace(f, tolerance=tolerance or f.tolerance / 100, max_sweeps=max_sweeps)
    if kinetics == "first-order":
        return f
    km = np.float32(1e6)
    lam_h2_over_d = 1.0 / f.coeff.astype(np.float64) - 6.0
    return dataclasses.replace(f, coeff=np.full_like(f.coeff, np.float32(1.0 / 6.0)),
                               uptake=MichaelisMenten(vmax=(lam_h2_over_d * km).astype(np.float32),
                                                      km=km))


def lattice(shape, kind, oxygen=38.0):
    lat = allocate("f", 0, "numba", shape)
    lat.kind[...] = kind
    lat.organ[...] = 1
    lat.oxygen[...] = oxygen
    return lat


def emit(lat, f, where):
    """Make `where` an emitter of field f: a perfused vessel (vessel value) or hypoxic
    secreting tumour cells (source)."""
    if f.vessel_value is not None:
        lat.kind[where] = VESSEL
        lat.perfused[where] = 1
    else:
        assert f.source is not None and f.source[TUMOR] > 0
        lat.kind[where] = TUMOR
        lat.oxygen[where] = 1.0


@pytest.mark.parametrize("kinetics", KINETICS)
@pytest.mark.parametrize("relax", DECLARATIONS)
def test_planar_emitter_matches_cosh_profile(relax, kinetics, rules, scenario):
    kind, lam, D = medium(relax, scenario)
    h = scenario["lattice.voxel_um"]
    L = math.sqrt(D / lam)
    f = declared(relax, rules, kinetics)
    n = 64
    lat = lattice((n, 3, 3), kind)
    emit(lat, f, 0)
    sweeps, residual = relax_field(lat, f)
    assert residual <= f.tolerance and sweeps < f.max_sweeps
    values = lat.arrays[f.array]
    anchor = 0 if f.vessel_value is not None else 1      # first voxel of the medium's law
    z = np.arange(anchor, anchor + 16) * h               # 300 µm
    far = (n - 0.5) * h                                  # the zero-flux face half a voxel out
    exact = np.cosh((far - z) / L) / np.cosh((far - anchor * h) / L)
    num = values[anchor:anchor + 16, 1, 1].astype(np.float64) / values[anchor, 1, 1]
    if f.vessel_value is not None:
        assert values[0, 1, 1] == f.vessel_value
    assert np.max(np.abs(num - exact) / exact) < 0.01
    # the cross-section is uniform to within the solver tolerance (zero-flux sides)
    assert np.ptp(values, axis=(1, 2)).max() < 10 * f.tolerance


@pytest.mark.parametrize("kinetics", KINETICS)
@pytest.mark.parametrize("relax", DECLARATIONS)
def test_point_emitter_matches_yukawa_profile(relax, kinetics, rules, scenario):
    kind, lam, D = medium(relax, scenario)
    h = scenario["lattice.voxel_um"]
    L = math.sqrt(D / lam)
    c = math.ceil(12 + 1.75 * L / h)                    # faces far enough for 12 voxels
    n = 2 * c + 1
    f = declared(relax, rules, kinetics)
    lat = lattice((n, n, n), kind)
    emit(lat, f, (c, c, c))
    sweeps, residual = relax_field(lat, f)
    assert residual <= f.tolerance and sweeps < f.max_sweeps
    zz, yy, xx = np.indices((n, n, n))
    r = np.sqrt((zz - c) ** 2 + (yy - c) ** 2 + (xx - c) ** 2) * h
    m = (r >= 5 * h) & (r <= 12 * h)
    p = lat.arrays[f.array][m].astype(np.float64)
    shape = np.exp(-r[m] / L) / r[m]
    amplitude = (p * shape).sum() / (shape * shape).sum()
    assert np.max(np.abs(p - amplitude * shape) / (amplitude * shape)) < 0.03
    slope = np.polyfit(r[m], np.log(p * r[m]), 1)[0]
    assert abs(-1.0 / slope - L) / L < 0.02


def table(t, kind, organ):
    return (t[kind, organ] if t.ndim == 2 else t[kind]).astype(np.float64)


@pytest.mark.parametrize("kinetics", KINETICS + ["michaelis-menten"])
@pytest.mark.parametrize("relax", DECLARATIONS)
def test_mass_balance(relax, kinetics, rules):
    """Summing the discrete steady state over the non-Dirichlet voxels of a zero-flux
    lattice: Σ s_i + Σ_(i, d) (f_d − f_i) over faces to Dirichlet voxels d equals
    Σ (1/a_i − 6 + t_i) f_i (t_i: linearised Michaelis–Menten uptake)."""
    f = declared(relax, rules, "first-order" if kinetics == "michaelis-menten" else kinetics)
    if kinetics == "michaelis-menten":       # saturating: K_m of the order of the field
        lam_h2_over_d = 1.0 / f.coeff.astype(np.float64) - 6.0
        km = np.float32(2.0)
        f = dataclasses.replace(f, uptake=MichaelisMenten(
            vmax=(2.0 * km * lam_h2_over_d).astype(np.float32), km=km))
    lat = lattice((12, 14, 16), FUNCTIONAL)
    lat.organ[:, :, 8:] = 2
    lat.kind[4:8, 5:9, 6:10] = TUMOR
    lat.oxygen[3:9, 4:10, 5:11] = 2.0                # hypoxic core: tumour and some tissue
    lat.kind[:, 0, :] = VESSEL                       # endothelium along one face,
    lat.perfused[:, 0, :] = 1                        # perfused (Dirichlet for a vessel value)
    lat.kind[0, 3:6, 3:6] = SPROUT
    lat.kind[11, 3:6, 3:6] = TIP
    sweeps, residual = relax_field(lat, f)
    assert residual <= f.tolerance and sweeps < f.max_sweeps
    c = lat.arrays[f.array].astype(np.float64)
    kind, organ = lat.kind, lat.organ
    fixed = ((kind == VESSEL) & (lat.perfused == 1) if f.vessel_value is not None
             else np.zeros(kind.shape, bool))
    free = ~fixed
    mu = 1.0 / table(f.coeff, kind, organ) - 6.0
    if isinstance(f.uptake, MichaelisMenten):
        mu += table(f.uptake.vmax, kind, organ) / (float(f.uptake.km) + np.maximum(c, 0.0))
    lost = (mu * c)[free].sum()
    made = 0.0
    if f.source is not None:
        secretes = np.ones(kind.shape, bool)
        if f.secrete_below_mmHg is not None:
            secretes = (lat.oxygen < f.secrete_below_mmHg) & ((kind == TUMOR) | (kind == FUNCTIONAL))
        made += np.where(secretes & free, table(f.source, kind, organ), 0.0).sum()
    for axis in range(3):                            # faces between a free and a fixed voxel
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        lo, hi = tuple(lo), tuple(hi)
        made += np.where(free[lo] & fixed[hi], c[hi] - c[lo], 0.0).sum()
        made += np.where(free[hi] & fixed[lo], c[lo] - c[hi], 0.0).sum()
    assert made > 0 and abs(made - lost) / made < 1e-3


@pytest.mark.parametrize("relax", DECLARATIONS)
def test_warm_start_stops_at_tolerance(relax, rules, scenario):
    f = declared(relax, rules, tolerance=10 * relax.field(rules).tolerance, max_sweeps=5000)
    lat = lattice((32, 8, 8), medium(relax, scenario)[0])
    emit(lat, f, 0)
    sweeps, residual = relax_field(lat, f)
    assert 1 < sweeps < f.max_sweeps and residual <= f.tolerance
    again, residual2 = relax_field(lat, f)           # warm start: already converged
    assert again == 1 and residual2 <= f.tolerance


def test_only_hypoxic_live_cells_secrete(rules):
    for relax in (relax_oxygen, relax_vegf):
        f = relax.field(rules)
        if f.secrete_below_mmHg is None:
            continue
        lat = lattice((6, 6, 6), FUNCTIONAL, oxygen=float(f.secrete_below_mmHg))   # at threshold
        lat.kind[2, 2, 2] = TUMOR
        relax_field(lat, f)
        assert lat.arrays[f.array].max() == 0.0
        lat.oxygen[2, 2, 2] = 14.9
        lat.kind[...] = np.where(lat.kind == FUNCTIONAL, EMPTY, lat.kind)
        lat.oxygen[3, 3, 3] = 0.0                    # hypoxic, but no cell there
        relax_field(lat, f)
        values = lat.arrays[f.array]
        assert values.max() == values[2, 2, 2] > 0.0


def test_michaelis_menten_slab_matches_zero_order_parabola(rules, scenario):
    """K_m ≪ p: uptake ≈ V, so between a vessel plane (p0, z = 0) and a zero-flux face
    (half a voxel beyond the last voxel) p(z) = p0 − (V h²/2D)(2Lz − z²) in voxels;
    the discrete zero-order solution equals the parabola at the voxels, so what
    remains is K_m/p, the tolerance and float32."""
    h = scenario["lattice.voxel_um"]
    D = scenario["oxygen.diffusion_um2_per_s"] * 3600.0
    n = 12                                               # 230 µm: a tumour cord's radius
    L = n - 0.5                                          # voxels
    p0 = float(rules.vessel_mmHg)
    V = 50.0 / L**2 * D / (h * h)                        # mmHg/h: a 25 mmHg drop at the face
    vmax = np.zeros(rules.o2_coeff.shape)
    vmax[TUMOR, :] = V
    for relax in (relax_oxygen,):                        # every declaration with a vessel value
        f = relax.field(rules)
        assert f.vessel_value is not None
        f = dataclasses.replace(f, coeff=np.full_like(f.coeff, np.float32(1.0 / 6.0)),
                                uptake=michaelis_menten(vmax, 1e-3, h, D), omega=np.float32(1.9),
                                tolerance=1e-5, max_sweeps=100_000)
        lat = lattice((n, 2, 2), TUMOR)
        emit(lat, f, 0)
        sweeps, residual = relax_field(lat, f)
        assert residual <= f.tolerance and sweeps < f.max_sweeps
        z = np.arange(n, dtype=np.float64)
        v = float(f.uptake.vmax[TUMOR, 1])
        exact = p0 - v / 2.0 * (2.0 * L * z - z * z)
        num = lat.oxygen[:, 0, 0].astype(np.float64)
        assert exact.min() > 12.9
        assert np.max(np.abs(num - exact)) < 0.01


def test_michaelis_menten_converges_to_the_tolerance_on_tissue(rules):
    """Saturable uptake (K_m of the order of pO2) on a random tissue converges with the
    declared tolerance like first order does."""
    lat = random_lattice((16, 17, 18), 5)
    f = relax_oxygen.field(rules)
    lam_h2_over_d = 1.0 / f.coeff.astype(np.float64) - 6.0
    f = dataclasses.replace(f, uptake=MichaelisMenten(
        vmax=(3.0 * lam_h2_over_d).astype(np.float32), km=np.float32(3.0)))
    sweeps, residual = relax_field(lat, f)
    assert residual <= f.tolerance and 1 < sweeps < f.max_sweeps


# -- declarations -------------------------------------------------------------------------

def test_field_passes_are_the_declarations():
    assert FIELD_PASSES == (relax_oxygen, relax_vegf)


@pytest.mark.parametrize("relax", DECLARATIONS)
def test_declared_reads_and_writes_are_what_a_sweep_touches(relax, rules):
    f = relax.field(rules)
    assert set(relax.reads) == set(f.reads) and len(relax.reads) == len(f.reads)
    assert relax.writes == (f.array,)


def test_rules_carry_the_kinetics_the_scenario_states(rules, scenario):
    assert scenario["oxygen.uptake"] == "first_order"
    assert relax_oxygen.field(rules).uptake is FIRST_ORDER
    assert relax_vegf.field(rules).uptake is FIRST_ORDER
    shipped = build_rules(load_scenario("quickstart"))
    assert isinstance(relax_oxygen.field(shipped).uptake, MichaelisMenten)
    h = scenario["lattice.voxel_um"]
    mm = michaelis_menten(np.ones(rules.o2_coeff.shape), 1.0, h, 1e6)
    assert relax_oxygen.field(rules.replace(o2_uptake=mm)).uptake is mm
    mm_vegf = michaelis_menten(np.ones(rules.vegf_coeff.shape), 0.1, h, 1e6)
    assert relax_vegf.field(rules.replace(vegf_uptake=mm_vegf)).uptake is mm_vegf


def test_cuda_flags_equal_their_python_twins():
    text = (KERNEL_DIR / "field.cu").read_text()
    flags = {m.group(1): int(m.group(2))
             for m in re.finditer(r"constexpr\s+int\s+(FIELD_\w+)\s*=\s*(\d+)\s*;", text)}
    assert len(flags) == 4
    for name, value in flags.items():
        assert getattr(field_py, name) == value, name


# -- the CUDA twin ------------------------------------------------------------------------

def random_lattice(shape, seed, z0=0):
    """Every kind and organ label; hypoxic, anoxic and normoxic voxels; perfused and
    unperfused vessels; random warm starts of both fields."""
    rng = np.random.default_rng(seed)
    lat = allocate("r", 0, "numba", shape)
    lat.z0 = z0
    lat.kind[...] = rng.integers(0, N_KINDS, size=shape)
    lat.organ[...] = rng.integers(0, 3, size=shape)
    lat.oxygen[...] = rng.uniform(0.0, 40.0, size=shape).astype(np.float32)
    lat.oxygen[lat.kind == VESSEL] = 38.0
    lat.vegf[...] = rng.uniform(0.0, 3.0, size=shape).astype(np.float32)
    lat.perfused[...] = (lat.kind == VESSEL) & (rng.random(shape) < 0.7)
    return lat


def saturating(f):
    """f with Michaelis–Menten uptake whose K_m is of the order of the field."""
    km = np.float32(5.0 if f.vessel_value is not None else 0.5)
    lam_h2_over_d = 1.0 / f.coeff.astype(np.float64) - 6.0
    return dataclasses.replace(f, uptake=MichaelisMenten(
        vmax=(2.0 * float(km) * lam_h2_over_d).astype(np.float32), km=km))


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("kinetics", ["first-order", "michaelis-menten"])
@pytest.mark.parametrize("relax", DECLARATIONS)
@pytest.mark.parametrize("max_sweeps", [1, 8, 13, 500])
def test_cuda_twin_matches_numba_bit_for_bit(relax, kinetics, max_sweeps, backend, rules):
    """Same (sweeps, residual) and the same field bits, for stops at the sweep limit
    (inside, at the end of and after a batch) and at convergence; odd x extent and a
    slab offset z0 exercise the colour indexing."""
    f = dataclasses.replace(relax.field(rules), max_sweeps=max_sweeps)
    if kinetics == "michaelis-menten":
        f = saturating(f)
    reference = random_lattice((9, 10, 11), 3, z0=3)
    twin = on(backend, reference)
    result = relax_field(reference, f)
    assert relax_field(twin, f) == result
    if max_sweeps == 500:
        assert result[0] < 500 and result[1] <= f.tolerance
    arch = architecture(backend)
    for name in ("oxygen", "vegf"):
        a, b = reference.arrays[name], arch.to_host(twin.arrays[name])
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), name
