"""The `oncolattice` command, run as a subprocess: one-line errors, check, a short real run."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib import resources

import h5py
import numpy as np
import pytest

from kernels.lattice import KIND_NAMES

import engine
from engine.backend import gpu_status
from engine.scenario import SCHEMA, parse_scenario

QUICKSTART = (resources.files("scenarios") / "quickstart.toml").read_text(encoding="utf-8")
KINDS = KIND_NAMES   # kind codes 0..len - 1
SMALL_SHAPE = (24, 24, 24)


def edit(text, old, new):
    assert text.count(old) == 1, f"expected exactly one {old!r} in the scenario text"
    return text.replace(old, new)


def small_scenario():
    """quickstart shrunk to 24³ voxels (480 µm): organs and seed scaled to fit."""
    t = QUICKSTART
    t = edit(t, "shape = [96, 96, 96]", "shape = [24, 24, 24]")
    t = edit(t, "z_um = [0.0, 1440.0]", "z_um = [0.0, 360.0]")
    t = edit(t, "z_um = [1520.0, 1920.0]", "z_um = [400.0, 480.0]")
    t = edit(t, "seed_center_um = [720.0, 960.0, 960.0]", "seed_center_um = [180.0, 240.0, 240.0]")
    t = edit(t, "seed_radius_um = 300.0", "seed_radius_um = 40.0")
    return t


def cli(*args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "ONCOLATTICE_DEBUG"}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *needles, status=2):
    """Exit `status`, exactly one `oncolattice: error:` line on stderr containing `needles`."""
    both = proc.stdout + proc.stderr
    assert "Traceback" not in both, both
    assert proc.returncode == status, both
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {lines}"
    assert lines[0].startswith("oncolattice: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_no_run_files(directory, allowed=()):
    left = sorted(p.name for p in directory.iterdir() if p.name not in allowed)
    assert left == [], f"files left behind: {left}"


# -- bad scenario files -----------------------------------------------------------------

# (id, old, new, dotted key the message must name, extra text, line expected (fragment) or None)
BAD_SCENARIOS = [
    ("unknown-key", "diffusion_um2_per_s = 1750.0", "difusion_um2_per_s = 1750.0",
     "oxygen.difusion_um2_per_s", "did you mean 'oxygen.diffusion_um2_per_s'", "difusion_um2_per_s ="),
    ("wrong-type", "max_sweeps = 500", "max_sweeps = 1.5", "oxygen.max_sweeps", "wrong type",
     "max_sweeps = 1.5"),
    ("string-for-number", "vessel_mmHg = 38.0", 'vessel_mmHg = "38"', "oxygen.vessel_mmHg",
     "wrong type", "vessel_mmHg ="),
    ("out-of-range", "sor_omega = 1.5", "sor_omega = 2.0", "oxygen.sor_omega", "out of range",
     "sor_omega = 2.0"),
    ("trait-level", "proliferation_level = 8", "proliferation_level = 16",
     "tumor.traits.proliferation_level", "out of range", "proliferation_level ="),
    ("organ-overlap", "z_um = [400.0, 480.0]", "z_um = [300.0, 480.0]", "organs[1].z_um",
     "overlaps", "z_um = [300"),
    ("malformed", "max_sweeps = 500", "max_sweeps = 500,", None, "malformed TOML", "max_sweeps = 500,"),
]


def _bad_file(tmp_path, case):
    _, old, new, *_ = case
    text = edit(small_scenario(), old, new)
    (tmp_path / "BAD.toml").write_text(text, encoding="utf-8")
    return text


def _expected_line(text, fragment):
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(hits) == 1
    return hits[0]


@pytest.mark.parametrize("case", BAD_SCENARIOS, ids=[c[0] for c in BAD_SCENARIOS])
def test_run_bad_scenario_is_one_line_and_writes_nothing(tmp_path, case):
    _, _, _, dotted, extra, fragment = case
    text = _bad_file(tmp_path, case)
    proc = cli("run", "BAD.toml", "--out", "x.h5", "--steps", "2", cwd=tmp_path)
    line = assert_one_line_error(proc, "BAD.toml", extra)
    n = _expected_line(text, fragment)
    if dotted is not None:
        assert dotted in line
        assert f"BAD.toml:{n}: " in line
    else:
        assert f"line {n}" in line
    assert proc.stdout == ""
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.xdmf").exists()
    assert_no_run_files(tmp_path, allowed={"BAD.toml"})


@pytest.mark.parametrize("case", BAD_SCENARIOS, ids=[c[0] for c in BAD_SCENARIOS])
def test_check_bad_scenario_is_one_line(tmp_path, case):
    _, _, _, dotted, extra, fragment = case
    text = _bad_file(tmp_path, case)
    proc = cli("check", "BAD.toml", cwd=tmp_path)
    line = assert_one_line_error(proc, "BAD.toml", extra)
    n = _expected_line(text, fragment)
    if dotted is not None:
        assert f"BAD.toml:{n}: " in line and dotted in line
    else:
        assert f"line {n}" in line
    assert proc.stdout == ""          # not "valid", no parameter listing
    assert_no_run_files(tmp_path, allowed={"BAD.toml"})


# -- bad command-line values ------------------------------------------------------------

@pytest.fixture
def small(tmp_path):
    (tmp_path / "small.toml").write_text(small_scenario(), encoding="utf-8")
    return tmp_path


@pytest.mark.skipif(gpu_status()[0], reason="a usable GPU is present; --backend cupy may run")
def test_backend_cupy_without_gpu(small):
    proc = cli("run", "small.toml", "--backend", "cupy", "--steps", "1", "--out", "x.h5", cwd=small)
    assert_one_line_error(proc, "cupy")
    assert_no_run_files(small, allowed={"small.toml"})


@pytest.mark.parametrize("args,needles", [
    (["--steps", "0"], ["--steps", "0"]),
    (["--steps", "-3"], ["--steps"]),
    (["--snapshot-every", "0"], ["--snapshot-every"]),
    (["--days", "-1"], ["duration"]),
    (["--days", "0"], ["duration"]),
    (["--days", "nan"], ["duration"]),
    (["--seed", "-1"], ["seed"]),
    (["--steps", "abc"], ["--steps", "abc"]),
    (["--days", "1", "--steps", "2"], ["--days", "--steps"]),
    (["--backend", "opencl"], ["--backend", "opencl"]),
    (["--out", "x.txt"], ["x.txt", ".h5"]),
], ids=lambda v: "_".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None)
def test_bad_run_options(small, args, needles):
    out = [] if "--out" in args else ["--out", "x.h5"]
    proc = cli("run", "small.toml", *args, *out, cwd=small)
    assert_one_line_error(proc, *needles)
    assert_no_run_files(small, allowed={"small.toml"})


def test_nonexistent_scenario_name(tmp_path):
    proc = cli("run", "no_such_scenario", "--out", "x.h5", cwd=tmp_path)
    assert_one_line_error(proc, "no_such_scenario", "quickstart")
    assert_no_run_files(tmp_path)
    proc = cli("check", "no_such_scenario.toml", cwd=tmp_path)
    assert_one_line_error(proc, "no_such_scenario.toml")


def test_missing_or_unknown_command(tmp_path):
    assert_one_line_error(cli(cwd=tmp_path), "command")
    assert_one_line_error(cli("frobnicate", cwd=tmp_path), "frobnicate")


def test_bench_bad_size(tmp_path):
    assert_one_line_error(cli("bench", "--size", "4", cwd=tmp_path), "--size")


def test_version(tmp_path):
    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"oncolattice {engine.__version__}"
    assert engine.__version__ and engine.__version__[0].isdigit()


# -- check ------------------------------------------------------------------------------

def test_check_quickstart(tmp_path):
    proc = cli("check", "quickstart", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    out = proc.stdout
    assert "scenarios/quickstart.toml: valid" in out
    for table, params in SCHEMA.items():
        for key in params:
            assert f"{table}.{key} " in out, f"{table}.{key} not listed"
    assert "organs[1].z_um" in out and '"pectoral_muscle"' in out
    diffusion = [ln for ln in out.splitlines() if "oxygen.diffusion_um2_per_s" in ln]
    assert len(diffusion) == 1 and "1750.0" in diffusion[0] and "µm²/s" in diffusion[0]
    assert "bytes/voxel" in out
    assert "largest cubic lattice" in out
    assert "96 x 96 x 96 = 884,736 voxels" in out
    assert "240 steps" in out
    assert_no_run_files(tmp_path)


def test_check_defaults_to_quickstart_and_reads_files(small):
    proc = cli("check", cwd=small)
    assert proc.returncode == 0 and "quickstart" in proc.stdout
    proc = cli("check", "small.toml", cwd=small)
    assert proc.returncode == 0, proc.stderr
    assert "small.toml: valid" in proc.stdout
    assert "24 x 24 x 24 = 13,824 voxels" in proc.stdout


# -- a short real run -------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("short_run")
    (d / "small.toml").write_text(small_scenario(), encoding="utf-8")
    proc = cli("run", "small.toml", "--steps", "6", "--out", "r.h5", "--summary", "s.json",
               "--seed", "5", "--backend", "numba", cwd=d)
    return d, proc


def test_short_run_exits_cleanly_with_plain_log(short_run):
    d, proc = short_run
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    err = proc.stderr
    assert "step 6/6" in err
    assert "\r" not in err                         # no progress bar when stderr is a pipe
    assert "seed=5" in err and "backend=numba" in err and "steps=6" in err
    assert "done in" in err
    assert sorted(p.name for p in d.iterdir()) == ["r.h5", "r.xdmf", "s.json", "small.toml"]


def test_short_run_summary(short_run):
    d, proc = short_run
    assert proc.returncode == 0, proc.stderr
    s = json.loads((d / "s.json").read_text())
    for key in ("steps", "time_h", "seed", "backend", "wall_s", "counts_initial", "counts"):
        assert key in s, key
    assert s["steps"] == 6
    assert s["time_h"] == pytest.approx(6.0)
    assert s["seed"] == 5
    assert s["backend"] == "numba"
    assert isinstance(s["wall_s"], (int, float)) and s["wall_s"] > 0
    assert s["version"] == engine.__version__
    voxels = int(np.prod(SMALL_SHAPE))
    for name in ("counts_initial", "counts"):
        counts = s[name]
        assert set(KINDS) <= set(counts), counts
        assert all(isinstance(counts[k], int) and counts[k] >= 0 for k in KINDS)
        assert sum(counts[k] for k in KINDS) == voxels, f"{name} does not cover the lattice"
    assert s["counts_initial"]["tumor"] > 0
    assert s["counts_initial"]["functional"] > 0 and s["counts_initial"]["vessel"] > 0


def test_short_run_file(short_run):
    d, proc = short_run
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((d / "s.json").read_text())
    with h5py.File(d / "r.h5", "r") as f:
        assert f.attrs["status"] == "complete"
        assert int(f.attrs["seed"]) == 5
        assert f.attrs["version"] == engine.__version__
        assert f.attrs["backend"] == "numba"
        resolved = parse_scenario(f.attrs["scenario_toml"], "from-run-file")
        assert resolved["scenario.seed"] == 5
        assert resolved.shape == SMALL_SHAPE
        assert resolved.organs[1]["z_um"] == [400.0, 480.0]

        counts = f["counts"][()]
        assert counts.shape == (7,)
        assert list(counts["step"]) == list(range(7))
        assert counts["time_h"][-1] == pytest.approx(6.0)
        for k in KINDS:
            assert int(counts[k][0]) == summary["counts_initial"][k]
            assert int(counts[k][-1]) == summary["counts"][k]

        kind = f["lattices/primary/kind"]
        assert kind.dtype == np.uint8
        steps = list(f["snapshots/step"][()])
        assert steps[0] == 0 and steps[-1] == 6 and len(steps) >= 2
        assert kind.shape == (len(steps), *SMALL_SHAPE)
        assert f["lattices/primary/oxygen"].shape == kind.shape
        for t, step in ((0, 0), (-1, 6)):
            snap = kind[t]
            assert snap.max() < len(KINDS)
            hist = np.bincount(snap.ravel(), minlength=len(KINDS))
            row = counts[counts["step"] == step][0]
            assert [int(hist[i]) for i in range(len(KINDS))] == [int(row[k]) for k in KINDS]

    xdmf = d / "r.xdmf"
    assert xdmf.exists()
    root = ET.parse(xdmf).getroot()
    refs = [e.text for e in root.iter("DataItem") if e.get("Format") == "HDF"]
    assert refs and all(r.startswith("r.h5:/") for r in refs)
    assert len(root.findall(".//Time")) == len(steps)


def test_run_is_reproducible_and_snapshot_every_and_quiet(short_run):
    """Same seed, different snapshot spacing, --quiet: identical counts, more snapshots, no output."""
    d, first = short_run
    assert first.returncode == 0, first.stderr
    proc = cli("run", "small.toml", "--steps", "6", "--out", "sub/q.h5", "--seed", "5",
               "--snapshot-every", "2", "--quiet", cwd=d)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    with h5py.File(d / "sub" / "q.h5", "r") as q, h5py.File(d / "r.h5", "r") as r:
        assert list(q["snapshots/step"][()]) == [0, 2, 4, 6]
        assert q.attrs["status"] == "complete"
        for k in KINDS:
            np.testing.assert_array_equal(q["counts"][k], r["counts"][k])
        np.testing.assert_array_equal(q["lattices/primary/kind"][-1], r["lattices/primary/kind"][-1])
    assert (d / "sub" / "q.xdmf").exists()


def test_days_sets_the_run_length(small):
    proc = cli("run", "small.toml", "--days", "0.125", "--out", "d.h5", "--summary", "d.json",
               "--quiet", cwd=small)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((small / "d.json").read_text())
    assert s["steps"] == 3 and s["time_h"] == pytest.approx(3.0)
    assert s["seed"] == 20261121                  # from the scenario when --seed is not given
    with h5py.File(small / "d.h5", "r") as f:
        assert f["counts"].shape == (4,)
        assert parse_scenario(f.attrs["scenario_toml"])["time.duration_h"] == pytest.approx(3.0)


def test_default_output_is_named_after_the_scenario(small):
    proc = cli("run", "small.toml", "--steps", "1", "--quiet", cwd=small)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in small.iterdir()) == ["quickstart.h5", "quickstart.xdmf", "small.toml"]
    with h5py.File(small / "quickstart.h5", "r") as f:
        assert f.attrs["status"] == "complete" and f["counts"].shape == (2,)
