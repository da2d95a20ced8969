"""`oncolattice ensemble`: replicates and sweeps run locally, under mpiexec and one member
at a time (--member), their seeds, the merged tables, failed members and reruns, and
bad --sweep input (one line naming it, exit 2, nothing written)."""
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import small_scenario_text
from engine.cli import main
from engine.ensemble import ENSEMBLE_STREAM, replicate_seed
from engine.output import RunLock
from kernels.philox import philox4x32_numpy, seed_key
from tools.runfile import RunFile

ROOT = Path(__file__).resolve().parents[1]
EDGE = 16
STEPS = "3"
SWEEP = "tumor.seed_radius_um=40,60"


def command(*args, mpi_ranks=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_NUM_THREADS", None)
    argv = [sys.executable, "-m", "engine", "ensemble", *map(str, args)]
    if mpi_ranks:
        argv = ["mpiexec", "-n", str(mpi_ranks), *argv]
    return argv, env


def ensemble(*args, mpi_ranks=None):
    argv, env = command(*args, mpi_ranks=mpi_ranks)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def table(folder):
    with open(folder / "ensemble.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    path = tmp_path_factory.mktemp("ensemble_inputs") / "tiny.toml"
    path.write_text(small_scenario_text(EDGE, seed_radius_um=60.0))
    return path


@pytest.fixture(scope="module")
def replicates(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "ens"
    done = ensemble(scenario, "--replicates", 4, "--steps", STEPS, "--jobs", 2, "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done


@pytest.fixture(scope="module")
def swept(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "ens"
    done = ensemble(scenario, "--replicates", 2, "--sweep", SWEEP, "--steps", STEPS,
                    "--jobs", 2, "--out", out)
    assert done.returncode == 0, done.stderr
    return out, done


def test_replicates_are_merged_into_one_row_each_and_their_statistics(replicates):
    out, done = replicates
    rows = table(out)
    assert [int(r["member"]) for r in rows] == [0, 1, 2, 3]
    assert [int(r["replicate"]) for r in rows] == [0, 1, 2, 3]
    assert {r["state"] for r in rows} == {"complete"}
    merged = json.loads((out / "ensemble.json").read_text())
    assert merged["members"] == merged["complete"] == 4
    assert merged["failed"] == [] and merged["missing"] == []
    (point,) = merged["points"]
    assert point["n"] == 4 and point["members"] == [0, 1, 2, 3]
    for column in ("tumor_final", "tumor_growth", "functional_fraction"):
        values = [float(r[column]) for r in rows]
        got = point["outcomes"][column]
        assert got["n"] == 4
        assert got["mean"] == pytest.approx(statistics.fmean(values))
        assert got["sd"] == pytest.approx(statistics.stdev(values))
        assert (got["min"], got["max"]) == (min(values), max(values))
    for k, row in enumerate(rows):              # each member's own files and status record
        folder = out / f"member-{k:04d}"
        summary = json.loads((folder / "summary.json").read_text())
        status = json.loads((folder / "status.json").read_text())
        assert status["state"] == "complete" and status["seed"] == int(row["seed"])
        assert summary["counts"]["tumor"] == int(row["tumor_final"])
        assert "--member" in status["rerun"] and status["rerun"].endswith(f"--member {k}")
    assert done.stdout.strip() == str(out / "ensemble.csv")


def test_seeds_follow_the_documented_rule_and_differ(replicates, scenario):
    out, _ = replicates
    base = 20261121                                       # the quickstart's scenario.seed
    seeds = [int(r["seed"]) for r in table(out)]
    assert seeds == [replicate_seed(base, r) for r in range(4)]
    w = philox4x32_numpy((2, 0, ENSEMBLE_STREAM, 0), seed_key(base))
    assert seeds[2] == int(w[1]) * 2 ** 32 + int(w[0])
    assert len(set(seeds)) == 4 and base not in seeds and base + 1 not in seeds
    many = {replicate_seed(base, r) for r in range(2000)}
    assert len(many) == 2000 and all(0 <= s < 2 ** 64 for s in many)
    with RunFile(out / "member-0000" / "run.h5") as a, RunFile(out / "member-0001" / "run.h5") as b:
        assert a.attrs["seed"] == seeds[0] and b.attrs["seed"] == seeds[1]
        assert not np.array_equal(a.counts(), b.counts())   # another seed, another run


def test_a_rerun_skips_the_complete_members(replicates, scenario):
    out, _ = replicates
    before = {p: p.stat().st_mtime_ns for p in out.glob("member-*/run.h5")}
    done = ensemble(scenario, "--replicates", 4, "--steps", STEPS, "--out", out)
    assert done.returncode == 0, done.stderr
    assert "4 of 4 members already complete, skipped" in done.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("member-*/run.h5")} == before


def test_another_plan_in_the_same_folder_is_refused(replicates, scenario, capsys):
    out, _ = replicates
    assert main(["ensemble", str(scenario), "--replicates", "3", "--steps", STEPS,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oncolattice: error: --out {out}: holds an ensemble of another "
                          f"plan (replicates differs)"), err


def test_a_sweep_runs_every_point_on_common_seeds(swept):
    out, _ = swept
    rows = table(out)
    assert [(int(r["member"]), int(r["point"]), int(r["replicate"]), r[SWEEP.split("=")[0]])
            for r in rows] == [(0, 0, 0, "40"), (1, 0, 1, "40"), (2, 1, 0, "60"), (3, 1, 1, "60")]
    # common random numbers: replicate r has one seed at every sweep point
    assert rows[0]["seed"] == rows[2]["seed"] != rows[1]["seed"] == rows[3]["seed"]
    merged = json.loads((out / "ensemble.json").read_text())
    assert [p["values"] for p in merged["points"]] == [{"tumor.seed_radius_um": 40},
                                                      {"tumor.seed_radius_um": 60}]
    assert [p["n"] for p in merged["points"]] == [2, 2]
    small, large = (p["outcomes"]["tumor_initial"]["mean"] for p in merged["points"])
    assert small < large                        # the swept key reached the runs
    with RunFile(out / "member-0002" / "run.h5") as run:
        assert "seed_radius_um = 60" in run.attrs["scenario_toml"]


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec is not installed "
                    "(pip install mpi4py mpich)")
def test_mpiexec_gives_the_same_table_as_the_local_run(swept, scenario, tmp_path):
    pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install mpi4py)")
    local, _ = swept
    out = tmp_path / "ens"
    done = ensemble(scenario, "--replicates", 2, "--sweep", SWEEP, "--steps", STEPS,
                    "--out", out, mpi_ranks=2)
    assert done.returncode == 0, done.stderr
    assert "on 1 MPI worker rank(s)" in done.stderr
    assert (out / "ensemble.csv").read_text() == (local / "ensemble.csv").read_text()


def test_member_runs_exactly_one_member_then_collect_lists_the_rest(scenario, tmp_path, capsys):
    out = tmp_path / "ens"
    argv = ["ensemble", str(scenario), "--replicates", "2", "--sweep", SWEEP,
            "--steps", STEPS, "--out", str(out)]
    assert main(argv + ["--member", "2"]) == 0
    assert sorted(p.name for p in out.glob("member-*")) == ["member-0002"]
    assert json.loads((out / "member-0002" / "status.json").read_text())["state"] == "complete"
    assert main(argv + ["--member", "2"]) == 0                 # complete: skipped
    assert "member 2 (replicate 0, tumor.seed_radius_um=60) is already complete" in \
        capsys.readouterr().err
    assert main(["ensemble", "collect", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"oncolattice: error: collected 1 of 4 members; not complete: member "
                   f"0, 1, 3 (see {out / 'ensemble.json'} for the commands to rerun them)")
    merged = json.loads((out / "ensemble.json").read_text())
    assert merged["missing"] == [0, 1, 3] and [p["n"] for p in merged["points"]] == [0, 1]
    assert [r["state"] for r in table(out)] == ["missing", "missing", "complete", "missing"]
    # a killed member's record still says running: not complete, so it runs again
    status = out / "member-0002" / "status.json"
    status.write_text(status.read_text().replace('"state": "complete"', '"state": "running"'))
    assert main(argv + ["--member", "2"]) == 0
    assert "already complete" not in capsys.readouterr().err
    assert json.loads(status.read_text())["state"] == "complete"


def test_a_failed_member_is_reported_and_a_rerun_completes_it(scenario, tmp_path):
    out = tmp_path / "ens"
    (out / "member-0001").mkdir(parents=True)
    args = (scenario, "--replicates", 2, "--steps", STEPS, "--jobs", 2, "--out", out)
    with RunLock(out / "member-0001" / "run.h5"):        # a second writer: member 1 fails
        done = ensemble(*args)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    failed = next(line for line in lines if "failed:" in line and "member 1" in line)
    assert "in use by oncolattice process" in failed
    assert failed.endswith(f"rerun it alone with: oncolattice ensemble {scenario} "
                           f"--replicates 2 --steps {STEPS} --out {out} --member 1")
    assert lines[-1].startswith("oncolattice: error: 1 of 2 members failed (member 1)")
    assert "Traceback" not in done.stderr
    merged = json.loads((out / "ensemble.json").read_text())
    assert [f["member"] for f in merged["failed"]] == [1]
    assert merged["failed"][0]["rerun"].endswith("--member 1")
    assert [r["state"] for r in table(out)] == ["complete", "failed"]
    first = (out / "member-0000" / "run.h5").stat().st_mtime_ns
    again = ensemble(*args)
    assert again.returncode == 0, again.stderr
    assert "1 of 2 members already complete, skipped" in again.stderr
    assert (out / "member-0000" / "run.h5").stat().st_mtime_ns == first
    assert [r["state"] for r in table(out)] == ["complete", "complete"]


@pytest.mark.parametrize("sweep, names", [
    ("tumor.seed_radiu_um=40,60", "--sweep tumor.seed_radiu_um=40: unknown key "
                                  "'tumor.seed_radiu_um' (did you mean 'tumor.seed_radius_um'?)"),
    ("time.step_h=1,-1", "--sweep time.step_h=-1: "),
    ("time.step_h=1,fast", "--sweep time.step_h=\"fast\": "),
    ("nokey", "--sweep nokey: expected KEY=V1,V2,..."),
    ("time.step_h=1,,2", "--sweep time.step_h=1,,2: expected KEY=V1,V2,..."),
    ("scenario.seed=1,2", "--sweep scenario.seed=1,2: scenario.seed cannot be swept"),
])
def test_a_bad_sweep_is_one_line_naming_it(scenario, tmp_path, capsys, sweep, names):
    out = tmp_path / "ens"
    assert main(["ensemble", str(scenario), "--replicates", "2", "--sweep", sweep,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"oncolattice: error: {names}"), err
    assert not out.exists()                                    # nothing written


@pytest.mark.parametrize("args, names", [
    (["--replicates", "0"], "--replicates 0: must be between 1"),
    ([], "--replicates: required"),
    (["--replicates", "2", "--days", "0"], "--days 0.0: the duration must be a positive"),
    (["--replicates", "2", "--member", "2"], "--member 2: the ensemble has members 0 .. 1"),
    (["--replicates", "2", "--jobs", "0"], "--jobs 0: must be at least 1"),
    (["--replicates", "2", "--sweep", "a.b=1", "--sweep", "a.b=2"], "--sweep a.b=2: key a.b is "
                                                                     "swept twice"),
])
def test_bad_ensemble_input_is_one_line(scenario, tmp_path, capsys, args, names):
    out = tmp_path / "ens"
    assert main(["ensemble", str(scenario), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oncolattice: error: {names}") and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_collect_needs_an_ensemble_folder(tmp_path, capsys):
    assert main(["ensemble", "collect"]) == 2
    assert capsys.readouterr().err.strip() == ("oncolattice: error: ensemble collect: the "
                                               "ensemble's folder is missing (oncolattice "
                                               "ensemble collect DIR)")
    assert main(["ensemble", "collect", str(tmp_path)]) == 2
    assert "not an ensemble folder" in capsys.readouterr().err


def test_several_ranks_without_mpi4py_is_one_line(scenario, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setitem(sys.modules, "mpi4py", None)         # `import mpi4py` fails
    assert main(["ensemble", str(scenario), "--replicates", "2", "--out",
                 str(tmp_path / "ens")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("oncolattice: error: launched as one of 2 MPI ranks but mpi4py is not "
                   "installed: pip install mpi4py (mpi4py mpich on a laptop), or run without "
                   "mpiexec")
