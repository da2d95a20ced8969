"""The CUDA twins of every kernel: they compile, and they compute what Numba computes, bit for bit.

Each comparison runs on two CUDA backends:
* `cuda-host` — the CUDA C entry points compiled for the CPU by the C++ compiler
  (the host harness): runs everywhere, CI included;
* `cupy` — the same sources compiled by NVRTC and run on a GPU (marker `gpu`,
  skipped with the reason where no GPU is usable).
"""
import dataclasses
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import on

import kernels.lattice as lattice_py
import kernels.philox as philox_py
from engine.pharmacokinetics import PlasmaSchedule, drug_of
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import EVENT_NAMES, FIELD_PASSES, PASSES
from engine.simulation import Simulation
from engine.state import VOXEL_ARRAYS, allocate
from kernels.census import take_census
from kernels.cuda import KERNEL_DIR, SOURCES, compiler, draw_words, source_text
from kernels.lattice import (CLOCK_FULL, DORMANT, EMPTY, FUNCTIONAL, LYMPH, NK_CELL, SPROUT, T_CELL,
                             TIP, TUMOR, VESSEL)
from kernels.oxygen import relax_oxygen
from kernels.perfusion import spread_perfusion
from kernels.radiation import N_O2_BINS, Fraction

needs_cxx = pytest.mark.skipif(compiler() is None, reason="no C++ compiler for the host harness")
CUDA_BACKENDS = [pytest.param("cuda-host", marks=needs_cxx),
                 pytest.param("cupy", marks=pytest.mark.gpu)]
STATE = [name for name, *_ in VOXEL_ARRAYS] + ["events"]


# -- the CUDA sources themselves ----------------------------------------------------------

def cuda_constants(header):
    text = (KERNEL_DIR / header).read_text()
    return {m.group(1): int(m.group(2)) for m in
            re.finditer(r"constexpr\s+\w+\s+(\w+)\s*=\s*(\d+)\s*;", text)}


def test_cuda_constants_equal_their_python_twins():
    constants = cuda_constants("lattice.cuh")
    assert len(constants) >= 6
    for name, value in constants.items():
        assert getattr(lattice_py, name) == value, name


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found on PATH")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("source", SOURCES)
def test_source_compiles_with_nvcc_without_fused_multiply_add(source, arch, tmp_path):
    ptx = tmp_path / f"{source}.ptx"
    unit = tmp_path / source
    unit.write_text(source_text(source))          # with its generated process constants
    proc = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", "-fmad=false", "-std=c++17",
                           f"-I{KERNEL_DIR}", str(unit), "-o", str(ptx)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = ptx.read_text()
    assert ".entry" in text
    assert "fma.rn.f32" not in text          # -fmad=false: float32 rounding as on the CPU


@pytest.mark.gpu
def test_every_source_compiles_with_nvrtc_for_this_gpu():
    """The path a GPU run takes: each source, with its generated constants, through
    CuPy's RawModule (NVRTC, -fmad=false), every entry point found."""
    from kernels.cuda import launcher
    from kernels.process import PROCESSES
    launch = launcher("cupy")
    for source in SOURCES:
        module = launch.module(source)
        module.compile()
        for p in PROCESSES.values():
            if p.source == source:
                for entry in p.entries:
                    module.get_function(entry)


# -- random states ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rules():
    return build_rules(load_scenario("quickstart"))


def random_lattice(shape, seed, z0=0):
    """Every kind, organ label, trait level and clock state, including ready cells,
    vacancies, hypoxic and anoxic voxels."""
    rng = np.random.default_rng(seed)
    lat = allocate("r", 0, "numba", shape)
    lat.z0 = z0
    lat.kind[...] = rng.choice([EMPTY, FUNCTIONAL, TUMOR, 3, VESSEL, SPROUT, TIP], size=shape,
                               p=[0.28, 0.33, 0.23, 0.05, 0.05, 0.03, 0.03])
    lat.organ[...] = rng.integers(0, 3, size=shape)
    lat.traits[:3] = rng.integers(0, 16, size=(3, *shape))        # the first three traits'
    lat.traits[3:] = np.random.default_rng(seed + 10**6).integers(  # draws as they always were
        0, 16, size=(lat.traits.shape[0] - 3, *shape))
    lat.clock[...] = np.where(rng.random(shape) < 0.4, CLOCK_FULL,
                              rng.integers(0, CLOCK_FULL, size=shape))
    lat.vacancy[...] = (lat.kind == EMPTY) & (rng.random(shape) < 0.5)
    lat.hypoxia[...] = rng.integers(0, 14, size=shape)
    sprout = (lat.kind == TIP) | (lat.kind == SPROUT)
    lat.sprout_age[...] = np.where(sprout, rng.integers(0, 40, size=shape), 0)
    lat.trail[...] = np.where(sprout, rng.integers(0, 7, size=shape), 0)
    lat.vessel_threat[...] = np.where(lat.kind == VESSEL, rng.integers(0, 4, size=shape), 0)
    lat.lineage[...] = rng.integers(0, 5, size=shape)
    lat.oxygen[...] = rng.uniform(0.0, 40.0, size=shape).astype(np.float32)
    lat.oxygen[lat.kind == VESSEL] = 38.0
    lat.vegf[...] = rng.uniform(0.0, 3.0, size=shape).astype(np.float32)
    lat.perfused[...] = (lat.kind == VESSEL) & (rng.random(shape) < 0.7)
    lat.motile[...] = (lat.kind == TUMOR) & (rng.random(shape) < 0.2)   # last: the draws above stay
    dormant = (lat.kind == EMPTY) & (rng.random(shape) < 0.1)          # then dormant cells
    lat.kind[dormant] = DORMANT
    lat.vacancy[dormant] = 0
    immune = (lat.kind == EMPTY) & (rng.random(shape) < 0.15)        # then T and NK cells,
    n = int(immune.sum())                                             # some in contact
    lat.kind[immune] = np.where(rng.random(n) < 0.7, T_CELL, NK_CELL)
    lat.vacancy[immune] = 0
    lat.immune_busy[immune] = rng.choice([0, 1, 1, 2, 6], n)
    lat.immune_state[immune] = rng.integers(1, 7, n) | 8 | (rng.integers(0, 4, n) << 4)  # lethal
    lat.immune_kills[immune] = rng.integers(0, 12, n)
    lat.chemokine[...] = rng.uniform(0.0, 2.0, size=shape).astype(np.float32)
    return lat


def add_lymphatics_and_new_vessels(lat, seed):
    """Some empty voxels become lymphatics, some vessels new (sprout-born, sprout_age > 0),
    so vessel invasion takes every route."""
    rng = np.random.default_rng(seed + 1000)
    lat.kind[(lat.kind == EMPTY) & (rng.random(lat.shape) < 0.3)] = LYMPH
    new = (lat.kind == VESSEL) & (rng.random(lat.shape) < 0.5)
    lat.sprout_age[new] = rng.integers(1, 40, size=int(new.sum()))


def host(lat):
    from engine.backend import architecture
    arch = architecture(lat.backend)
    return {key: arch.to_host(lat.arrays[key]) for key in STATE}


def assert_same_state(a, b, where):
    ha, hb = host(a), host(b)
    for key in STATE:
        assert np.array_equal(ha[key], hb[key]), f"{where}: {key} differs"


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_philox_stream_matches_numpy_twin(backend, rules):
    lat = allocate("r", 0, "numba", (6, 7, 9))
    lat.z0 = 11                                          # a slab deep inside a larger lattice
    words = draw_words(backend, on(backend, lat), rules, 1234, 4)
    z, y, x = np.indices(lat.shape)
    gidx = ((11 + z) * 7 + y) * 9 + x
    expected = philox_py.voxel_draw_numpy(gidx.astype(np.uint64), 1234, 4, 0, rules.key)
    for w in range(4):
        assert np.array_equal(words[..., w], expected[w])


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_kernel_matches_numba_on_random_states(backend, seed, rules):
    shape = (9, 10, 11)
    # sprouting and branching made likely, so every angiogenesis path runs
    eager = dict(sprout_vegf=np.float32(0.5), sprout_thr=np.uint32(2**31),
                 branch_p=np.float32(0.5))
    # migration made likely: an eighth of the adherent cells detach, a quarter of the motile ones
    # re-adhere, and motile cells take two sub-steps of hops with probability 1/2 each
    motility = dict(detach_thr=np.full_like(rules.detach_thr, 2**29), readhere_thr=np.uint32(2**30),
                    hop_substeps=2, hop_thr=np.uint32(2**31), oxygen_bias=np.float32(0.25))
    # vessel invasion made likely: half the motile cells beside an open vessel enter
    invasion = dict(intravasation_thr=np.where(rules.intravasation_thr > 0, 2**31, 0)
                    .astype(np.uint32))
    # a quarter of the dormant cells wake, a quarter die; half the debris lyses
    dormancy = dict(wake_thr=np.uint32(2**30), wake_or_death_thr=np.uint32(2**31))
    step = 100 + seed
    # a radiotherapy fraction this step, in a sphere: kill probability rising with the pO2 bin,
    # differing between tumour and organ rows
    kill = np.minimum(2**30 + np.arange(3)[:, None] * 2**28 + np.arange(N_O2_BINS) * 2**23,
                      2**32 - 1).astype(np.uint32)
    radiation = dict(radiation_kill_thr=kill[None], fraction_steps=frozenset({step}),
                     radiation_fractions={step: Fraction(2.0, 0, (0, 12, 1, 10, 0, 11), 1,
                                                         tuple(np.float32(v) for v in (6.5, 5.0, 5.5)),
                                                         np.float32(25.0))})
    # anti-angiogenic exposure E = 1/2 this step: the blocked rates (× 1/2) still give sprouting
    # and branching probabilities of about 1/2; a fifth of the immature vessels are pruned
    blockade = dict(antiangiogenic_exposure=np.full(step + 1, 0.5), sprout_rate_per_h=1.4,
                    branch_rate_per_h=1.4, prune_per_h=0.45,
                    # receptor blockade E = 0.6: tumour cycle rates × (1 − 0.6·receptor/15)
                    hormone_therapy_exposure=np.full(step + 1, 0.6))
    # chemotherapy active this step (a bolus of 0.5 mg/L 5 h before), the kill made likely:
    # thresholds rising from 1/32 with the hazard bin
    chemo = dict(chemo_plasma=PlasmaSchedule(dataclasses.replace(
                     drug_of(load_scenario("quickstart"), "chemotherapy"), infusion_h=0.0),
                     1.0, ((step - 5, 0.5),)),
                 chemo_kill_thr=np.minimum(np.arange(len(rules.chemo_kill_thr), dtype=np.uint64)
                                           * 2**15 + 2**27, 2**32 - 1).astype(np.uint32))
    # immune cells: recruitment from every perfused vessel with P 1/2, kill capacity 5
    immunity = dict(recruit_thr=np.full_like(rules.recruit_thr, 2**31), t_kill_capacity=5,
                    # immunotherapy: checkpoint blockade E = 1/2, a vaccine dose 10 steps ago
                    # (recruitment overrides from fast rates), an adoptive infusion of 20 cells
                    checkpoint_blockade_exposure=np.full(step + 1, 0.5),
                    vaccine_doses=((step - 10, 1.0),), vaccine_recruitment=(2.0, 0.5, 1.0),
                    adoptive_infusions={step: 20.0}, adoptive_share=1e-6)
    r = rules.replace(key=(seed * 7919, seed), o2_max_sweeps=25, regression_steps=3, **immunity,
                      lysis_thr=np.uint32(2**31), **eager, **motility, **invasion, **dormancy,
                      **radiation, **blockade, **chemo)
    solved = random_lattice(shape, seed, z0=seed)
    solved_twin = on(backend, solved)
    assert relax_oxygen(solved, r, step) == relax_oxygen(solved_twin, r, step)
    assert_same_state(solved, solved_twin, "relax_oxygen")
    # the cell passes start from the raw random field, anoxic voxels included
    reference = random_lattice(shape, seed, z0=seed)
    add_lymphatics_and_new_vessels(reference, seed)
    twin = on(backend, reference)
    for process in PASSES:
        if process in FIELD_PASSES:
            continue
        process(reference, r, step)
        process(twin, r, step)
        assert_same_state(reference, twin, process.name)
    counts_a, counts_b = take_census(reference, r, step), take_census(twin, r, step)
    for x, y in zip(counts_a, counts_b):
        assert np.array_equal(x, y)
    assert spread_perfusion(reference, r, step) == spread_perfusion(twin, r, step)
    assert_same_state(reference, twin, "spread_perfusion")
    # the random state exercised the passes: cells were born, moved and died
    events = dict(zip(EVENT_NAMES, host(reference)["events"].sum(axis=1)))
    assert events["birth_tumor"] > 0 and events["displaced_functional"] > 0
    assert events["necrosis_tumor"] > 0 and events["compression_functional"] > 0
    assert events["tip_sprouted"] > 0 and events["stalk_laid"] > 0
    assert events["anastomosis"] > 0
    assert events["vessel_regressed"] > 0 and events["debris_lysed"] > 0
    assert events["detached"] > 0 and events["readhered"] > 0 and events["migrated"] > 0
    assert events["intravasated_blood"] > 0 and events["intravasated_lymph"] > 0
    assert events["woke"] > 0 and events["dormant_died"] > 0   # (settled_abroad: test_dormancy)
    assert events["irradiated_tumor_killed"] > 0 and events["irradiated_functional_killed"] > 0
    assert events["irradiated_dormant_killed"] > 0
    assert events["vessel_pruned"] > 0
    assert events["chemo_killed_tumor"] > 0 and events["chemo_killed_functional"] > 0
    assert events["recruited_t_cell"] > 0 and events["killed_by_t_cell"] > 0
    assert events["immune_exhausted"] > 0 and events["immune_migrated"] > 0
    assert events["infused_t_cell"] > 0


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_quickstart_48_steps_bit_identical(backend):
    scenario = load_scenario("quickstart")
    reference = Simulation(scenario, backend="numba")
    twin = Simulation(load_scenario("quickstart"), backend=backend)
    assert reference.initial.tobytes() == twin.initial.tobytes()
    for step in range(1, 49):
        row_a, row_b = reference.step(), twin.step()
        assert row_a.tobytes() == row_b.tobytes(), f"counts differ at step {step}"
        if step % 12 == 0:
            assert_same_state(reference.lattice, twin.lattice, f"step {step}")
    assert row_a["necrotic"] > 0 and row_a["birth_tumor"] > 0   # the core died, the rim divides


@pytest.mark.gpu
def test_cli_runs_on_gpu_give_the_numba_arrays(tmp_path):
    files = {}
    for backend in ("numba", "cupy"):
        out = tmp_path / f"{backend}.h5"
        proc = subprocess.run([sys.executable, "-m", "engine", "run", "quickstart", "--steps", "48",
                               "--snapshot-every", "12", "--backend", backend, "--out", str(out),
                               "--quiet"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        files[backend] = h5py.File(out, "r")
    a, b = files["numba"], files["cupy"]
    assert b.attrs["backend"] == "cupy"
    for key in ("lattices/primary/kind", "lattices/primary/oxygen", "counts"):
        assert a[key][...].tobytes() == b[key][...].tobytes(), key


@needs_cxx
def test_hypoxic_scenario_runs_identically_through_the_host_harness():
    from test_accounting import HYPOXIC
    a = Simulation(parse_scenario(HYPOXIC, "hypoxic.toml"), backend="numba")
    b = Simulation(parse_scenario(HYPOXIC, "hypoxic.toml"), backend="cuda-host")
    for _ in range(30):
        assert a.step().tobytes() == b.step().tobytes()
    assert_same_state(a.lattice, b.lattice, "hypoxic run")


def test_tile_constants():
    from kernels.tiles import TILE
    constants = cuda_constants("cuda_common.cuh")
    assert constants["TILE"] == TILE and TILE > 2 * constants["REACH"]


QUIESCENT = (load_scenario("quickstart").text
             .replace("seed_radius_um = 300.0", "seed_radius_um = 50.0")   # a small nodule
             .replace("apoptosis_per_h = 0.0005 ", "apoptosis_per_h = 0.0 ")
             .replace("apoptosis_per_h = 0.0001 ", "apoptosis_per_h = 0.0 "))


@needs_cxx
def test_only_tiles_near_the_tumour_are_visited_in_quiescent_tissue():
    from kernels.tiles import tile_grid
    assert QUIESCENT.count("apoptosis_per_h = 0.0 ") == 2
    twin = Simulation(parse_scenario(QUIESCENT, "quiescent.toml"), backend="cuda-host")
    reference = Simulation(parse_scenario(QUIESCENT, "quiescent.toml"), backend="numba")
    visited = []
    for _ in range(24):
        assert twin.step().tobytes() == reference.step().tobytes()
        visited.append(twin.lattice.active_tiles.count)
    total = int(np.prod(tile_grid(twin.lattice.shape)))
    assert 0 < max(visited) <= 27          # the tumour's neighbourhood, not the organ
    assert total == 1728
    assert_same_state(twin.lattice, reference.lattice, "quiescent tissue")
