"""Shared test fixtures, the slow/gpu markers (skipped visibly, with a reason) and the
fuzzing profiles.

Fuzzing (hypothesis): the `ci` profile (default) keeps every fuzz test to a few dozen
cases so the whole campaign stays under 2 minutes on 2 cores; `nightly` runs many more
(`HYPOTHESIS_PROFILE=nightly pytest -m fuzz`).  Each case has a deadline, so a hang fails.
"""
import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=25, deadline=20_000, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=1000, deadline=60_000,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    from engine.backend import gpu_status
    usable, why = gpu_status()
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(pytest.mark.skip(reason="slow test: run with --runslow"))
        if "gpu" in item.keywords and not usable:
            item.add_marker(pytest.mark.skip(reason=f"needs a GPU: {why}"))


def on(backend, lat):
    """A copy of a NumPy lattice on `backend` (for comparing one state on two backends)."""
    from engine.backend import architecture
    from engine.state import allocate
    copy = allocate(lat.name, lat.lattice_id, "numba", lat.shape)
    copy.z0 = lat.z0
    for key, a in lat.arrays.items():
        copy.arrays[key][...] = a
    return architecture(backend).place(copy)


def small_scenario_text(edge=24, seed_radius_um=60.0, extra=""):
    """The quickstart shrunk to an edge**3 lattice (organ slabs rescaled), as TOML text."""
    from engine.scenario import find_scenario
    _, text = find_scenario("quickstart")
    h = 20.0
    z = edge * h
    breast_end = round(0.75 * edge) * h
    text = (text.replace("shape = [96, 96, 96]", f"shape = [{edge}, {edge}, {edge}]")
                .replace("z_um = [0.0, 1440.0]", f"z_um = [0.0, {breast_end}]")
                .replace("z_um = [1520.0, 1920.0]", f"z_um = [{breast_end + 2 * h}, {z}]")
                .replace("seed_center_um = [720.0, 960.0, 960.0]",
                         f"seed_center_um = [{breast_end / 2}, {z / 2}, {z / 2}]")
                .replace("seed_radius_um = 300.0", f"seed_radius_um = {seed_radius_um}"))
    return text + extra


@pytest.fixture
def small_scenario(tmp_path):
    """Path of a small quickstart-like scenario file (edge 24 voxels)."""
    def make(edge=24, **kwargs):
        path = tmp_path / f"small{edge}.toml"
        path.write_text(small_scenario_text(edge, **kwargs))
        return path
    return make


def anoxic_radius_um(radius_um, p_surface_mmHg, vmax_mmHg_per_s, d_um2_per_s):
    """Radius of the anoxic core of a sphere of cells that take up oxygen at the constant
    rate V (zero-order kinetics, the Michaelis–Menten limit p >> K_m) with pO2 p_s at
    its surface: with q = V / (6 D), p(r) = q (r² + 2 r_c³ / r − 3 r_c²) in the live
    shell (p = p' = 0 at r_c), so p_s = q (R² + 2 r_c³ / R − 3 r_c²); 0 if R is below
    the diffusion limit √(p_s / q)."""
    q = vmax_mmHg_per_s / (6.0 * d_um2_per_s)
    excess = lambda rc: q * (radius_um ** 2 + 2 * rc ** 3 / radius_um - 3 * rc ** 2) - p_surface_mmHg
    if excess(0.0) <= 0:
        return 0.0
    lo, hi = 0.0, radius_um             # excess falls from > 0 at 0 to −p_s at R
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if excess(mid) > 0 else (lo, mid)
    return lo


@pytest.fixture(scope="module")
def gl():
    """Skip the module's rendering tests when no headless GL backend works (probed in
    child processes, so a crashing driver cannot kill pytest); else the backend's name."""
    from tools import render
    name, failures = render.find_headless_backend()
    if name is None:
        pytest.skip(f"no headless OpenGL backend: {failures}; {render.INSTALL_HINT}")
    return name


def with_values(text, **values):
    """Scenario text with the first `key = value` line of each key replaced."""
    for key, value in values.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old, f"{key} = {value}", 1)
    return text
