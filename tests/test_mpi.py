"""MPI domain decomposition (engine/domain.py): a run split into z slabs over 2, 3 and 4
ranks writes the same run file, bit for bit, as one process; bad splits and a missing
mpi4py are one-line errors.

The runs use `mpiexec` from the `mpich` wheel (pip install mpi4py mpich); without it the
tests skip with that reason.  Every rank runs one Numba thread (two cores in CI)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import small_scenario_text
from engine.domain import HALO, GUARD, Whole, check_split, split
from engine.errors import UserError
from test_body import body_text
from test_immune import immune_text
from test_cuda import needs_cxx
from test_immunotherapy import therapy

MPIEXEC = shutil.which("mpiexec")
try:
    import mpi4py  # noqa: F401
    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False
needs_mpi = pytest.mark.skipif(MPIEXEC is None or not HAVE_MPI4PY,
                               reason="needs mpiexec and mpi4py (pip install mpi4py mpich)")
STEPS = 12

THERAPIES = (therapy("checkpoint_blockade", "dose_mg", 200.0, start_h=1.0, name="a")
             + therapy("adoptive_t_cells", "dose_million_cells", 30000.0, start_h=2.0, name="b")
             + "\n[[therapy]]\nname = \"paclitaxel\"\nkind = \"chemotherapy\"\nstart_h = 3.0\n"
               "count = 1\ninterval_h = 504.0\ndose_mg_per_m2 = 175.0\n")
SCENARIOS = {
    "quickstart": lambda: small_scenario_text(24),
    "metastasis": body_text,               # primary 24³ shedding into a node and a lung
    "immunotherapy": lambda: immune_text(edge=24, extra=THERAPIES),
}


def run(tmp_path, name, ranks, extra_args=(), env=None):
    scenario = tmp_path / f"{name}.toml"
    if not scenario.exists():
        scenario.write_text(SCENARIOS[name]())
    out = tmp_path / f"{name}-{ranks}.h5"
    command = [sys.executable, "-m", "engine", "run", str(scenario), "--steps", str(STEPS),
               "--snapshot-every", "4", "--out", str(out), "--quiet", *extra_args]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command]
    environment = dict(os.environ, NUMBA_NUM_THREADS="1", **(env or {}))
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    return proc, out


def datasets(path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset)
                     else None)
    return out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process run file of each scenario."""
    where = tmp_path_factory.mktemp("single")
    files = {}
    for name in SCENARIOS:
        proc, out = run(where, name, 1)
        assert proc.returncode == 0, proc.stderr
        files[name] = out
    return files


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3, 4])
@pytest.mark.parametrize("name", ["quickstart", "metastasis"])
def test_a_run_on_several_ranks_writes_the_single_process_file(tmp_path, single, name, ranks):
    proc, out = run(tmp_path, name, ranks)
    assert proc.returncode == 0, proc.stderr
    one, many = datasets(single[name]), datasets(out)
    assert one.keys() == many.keys()
    for key in one:
        assert one[key].dtype == many[key].dtype and one[key].tobytes() == many[key].tobytes(), key
    with h5py.File(out, "r") as f:
        assert f.attrs["mpi_ranks"] == ranks and f.attrs["status"] == "complete"
        if name == "metastasis":
            assert len(f["ctcs"]) > 0 and len(f["colonies"]) > 0   # the body did spread


@needs_mpi
def test_immunity_and_three_therapies_split_over_three_ranks_change_nothing(tmp_path, single):
    proc, out = run(tmp_path, "immunotherapy", 3)
    assert proc.returncode == 0, proc.stderr
    one, many = datasets(single["immunotherapy"]), datasets(out)
    for key in one:
        assert one[key].tobytes() == many[key].tobytes(), key
    counts = one["counts"]
    assert counts["infused_t_cell"].sum() > 0 and counts["chemo_killed_tumor"].sum() > 0


@needs_mpi
def test_more_ranks_than_the_thinnest_lattice_allows_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "thin.toml").write_text(body_text().replace("shape = [12, 12, 12]",
                                                            "shape = [8, 12, 12]", 1))
    out = tmp_path / "thin.h5"
    command = [MPIEXEC, "-n", "3", sys.executable, "-m", "engine", "run",
               str(tmp_path / "thin.toml"), "--steps", "2", "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("oncolattice")]
    assert lines == ["oncolattice: error: sites[0].shape: 8 planes along z cannot be split "
                     "over 3 MPI ranks (each rank needs at least 3 planes; use at most 2 ranks)"]
    assert not out.exists() and not out.with_suffix(".xdmf").exists()


def test_a_process_started_by_mpiexec_without_mpi4py_is_one_line(tmp_path):
    fake = tmp_path / "nompi" / "mpi4py"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no mpi4py here')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", ""),
                                          os.getcwd()]),
           "PMI_RANK": "0", "PMI_SIZE": "2"}
    proc, out = run(tmp_path, "quickstart", 1, env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "oncolattice: error: launched as one of 2 MPI ranks but mpi4py is not installed: "
        "pip install mpi4py (mpi4py mpich on a laptop), or run without mpiexec")
    assert not out.exists()


# -- the split itself ---------------------------------------------------------------------

def test_slabs_cover_the_lattice_once_the_first_ranks_one_plane_thicker():
    for nz in range(2, 40):
        for ranks in range(1, nz // (HALO + GUARD) + 1):
            bounds = split(nz, ranks)
            assert bounds[0][0] == 0 and bounds[-1][1] == nz
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
            check_split("lattice.shape", nz, ranks)          # thick enough: no error
    with pytest.raises(UserError, match=r"sites\[1\].shape: 11 planes along z cannot be "
                                        r"split over 4 MPI ranks"):
        check_split("sites[1].shape", 11, 4)


def test_a_whole_lattice_is_its_own_single_slab():
    whole = Whole(24)
    assert (whole.z0, whole.local_nz, whole.interior) == (0, 24, slice(0, 24))
    assert whole.holds(0) and whole.holds(23) and not whole.holds(24)
    assert whole.sum(5) == 5 and whole.any(False) is False
    a = np.arange(8)
    assert whole.gather(a) is a and whole.concatenate(a) is a
    assert HALO + GUARD == 3


# -- the CUDA C kernels on slabs (through the host harness) -------------------------------

@needs_mpi
@needs_cxx
@pytest.mark.parametrize("name, ranks", [("metastasis", 2), ("immunotherapy", 3)])
def test_cuda_kernels_on_slabs_match_numba_on_the_whole_lattice(tmp_path, name, ranks):
    """The CUDA C code (field solver one sweep at a time with halo refreshes, every
    entry's halo) run on slabs through the host harness (`cuda-host`) gives the whole
    Numba lattice's counts and state, bit for bit."""
    scenario = tmp_path / f"{name}.toml"
    scenario.write_text(SCENARIOS[name]())
    script = str(Path(__file__).with_name("mpi_state.py"))
    env = dict(os.environ, NUMBA_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]),
                                           os.environ.get("PYTHONPATH", "")]))
    for command in ([sys.executable, script, str(scenario), "numba", "8", str(tmp_path / "a.npz")],
                    [MPIEXEC, "-n", str(ranks), sys.executable, script, str(scenario),
                     "cuda-host", "8", str(tmp_path / "b.npz")]):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a.files == b.files and len(a.files) > 20
    for key in a.files:
        assert np.array_equal(a[key], b[key]), key


# -- checkpoints across rank counts -------------------------------------------------------

@needs_mpi
def test_a_run_stopped_on_two_ranks_resumes_on_three_bit_identical(tmp_path):
    """SIGUSR1 to one rank stops every rank at the same step with a checkpoint; the
    checkpoint (the whole lattices, gathered) resumes on three ranks; the run file
    equals the single-process run's."""
    import signal
    import time
    steps = "40"
    scenario = tmp_path / "q.toml"
    scenario.write_text(SCENARIOS["quickstart"]())
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    base = [sys.executable, "-m", "engine", "run", str(scenario), "--steps", steps,
            "--snapshot-every", "8", "--quiet"]
    one = subprocess.run(base + ["--out", str(tmp_path / "one.h5")], capture_output=True,
                         text=True, timeout=600, env=env)
    assert one.returncode == 0, one.stderr
    out, ckpt = tmp_path / "two.h5", tmp_path / "two.ckpt.h5"
    job = subprocess.Popen([MPIEXEC, "-n", "2", *base, "--out", str(out), "--checkpoint-every",
                            "4"], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not ckpt.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    ranks = subprocess.run(["pgrep", "-f", "--", f"engine run .*--out {out}"],
                           capture_output=True, text=True)
    pids = [int(p) for p in ranks.stdout.split() if int(p) != job.pid]
    os.kill(max(pids), signal.SIGUSR1)                    # one rank: every rank stops
    _, err = job.communicate(timeout=300)
    assert job.returncode == 128 + signal.SIGUSR1, err
    assert "oncolattice resume" in err
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "interrupted" and len(f["counts"]) < int(steps) + 1
    resumed = subprocess.run([MPIEXEC, "-n", "3", sys.executable, "-m", "engine", "resume",
                              str(ckpt), "--quiet"], capture_output=True, text=True,
                             timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr
    a, b = datasets(tmp_path / "one.h5"), datasets(out)
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key


# -- the scaling benchmark runs (its figures are measured, never asserted) ---------------

@needs_mpi
def test_bench_mpi_reports_strong_and_weak_runs(tmp_path):
    out = tmp_path / "scaling.json"
    proc = subprocess.run([sys.executable, "-m", "engine", "bench", "--mpi", "--size", "8",
                           "--steps", "1", "--ranks", "1,2", "--json", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, NUMBA_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    runs = {(r["mode"], r["ranks"]): r for r in report["runs"]}
    assert set(runs) == {("strong", 1), ("strong", 2), ("weak", 1), ("weak", 2)}
    assert runs["weak", 2]["shape"] == [16, 8, 8] and runs["strong", 2]["shape"] == [8, 8, 8]
    assert runs["strong", 1]["halo_bytes_per_rank"] == 0
    assert runs["strong", 2]["halo_bytes_per_rank"] > 0
    assert runs["strong", 2]["halo_messages_per_rank"] > 0
    assert "efficiency" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "engine", "bench", "--mpi", "--size", "8",
                          "--ranks", "1,5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "oncolattice: error: --size: 8 planes along z cannot be split over 5 MPI ranks "
        "(each rank needs at least 3 planes; use at most 2 ranks)")
