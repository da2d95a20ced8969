"""`oncolattice compare`: arms on paired seeds in parallel processes, the comparison
report, and its errors (bad input: one line naming the argument, exit 2; a failed run:
one line naming the arm and replicate, exit 1, no report)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import small_scenario_text, with_values
from engine.cli import main
from engine.output import RunLock
from tools.compare_report import FIGURES
from tools.report_html import TREATMENT_DISCLAIMER
from tools.runfile import RunFile

ROOT = Path(__file__).resolve().parents[1]
EDGE = 16
RADIOTHERAPY = """
[protocol]
name = "rt_test"
modelled_on = "a test: 2 Gy fractions to the whole lattice, switched to bevacizumab once the tumour shrinks"
checkup_interval_h = 6.0

[[therapy]]
name = "rt"
kind = "radiotherapy"
start_h = 4.0
count = 2
interval_h = 8.0
dose_Gy = 2.0

[[therapy]]
name = "bev"
kind = "anti_angiogenic"
start_h = 1.0
count = 1
dose_mg_per_kg = 10.0
held = true

[[rule]]
when = "burden_vs_baseline < 0.9"
then = "switch rt bev"
"""


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare_inputs")
    scenario = folder / "tiny.toml"
    scenario.write_text(small_scenario_text(EDGE, seed_radius_um=60.0))
    protocol = folder / "rt.toml"
    protocol.write_text(RADIOTHERAPY)
    return scenario, protocol


def command(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_NUM_THREADS", None)
    return [sys.executable, "-m", "engine", "compare", *map(str, args)], env


def compare(*args):
    argv, env = command(*args)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def compared(inputs, tmp_path_factory):
    scenario, protocol = inputs
    out = tmp_path_factory.mktemp("compare") / "cmp"
    t0 = time.perf_counter()
    done = compare(scenario, "--arm", "control=untreated", "--arm", "again=untreated",
                   "--arm", f"rt={protocol}", "--replicates", 2, "--days", 1, "--jobs", 2,
                   "--out", out)
    wall = time.perf_counter() - t0
    print(f"compare end to end: {wall:.1f} s")
    assert done.returncode == 0, done.stderr
    return out, done, wall


def counts(path):
    with RunFile(path) as run:
        return run.counts(), run.attrs["seed"], run.status


def test_every_arm_runs_every_replicate_on_the_same_seeds(compared):
    out, done, _ = compared
    seeds = {}
    for arm in ("control", "again", "rt"):
        for r in (0, 1):
            table, seed, status = counts(out / arm / f"rep{r}.h5")
            assert status == "complete"
            seeds[arm, r] = seed
    for r in (0, 1):
        assert seeds["control", r] == seeds["again", r] == seeds["rt", r]
    assert seeds["control", 1] == seeds["control", 0] + 1
    # paired: the same protocol on the same seed gives the same run, bit for bit
    for r in (0, 1):
        a, _, _ = counts(out / "control" / f"rep{r}.h5")
        b, _, _ = counts(out / "again" / f"rep{r}.h5")
        assert np.array_equal(a, b)
    # another seed is another run; a treated arm is another course
    c0, _, _ = counts(out / "control" / "rep0.h5")
    c1, _, _ = counts(out / "control" / "rep1.h5")
    rt0, _, _ = counts(out / "rt" / "rep0.h5")
    assert not np.array_equal(c0, c1)
    assert rt0["irradiated_functional_killed"].sum() > 0
    assert rt0["tumor"][-1] < c0["tumor"][-1]
    lines = done.stderr.splitlines()
    assert all(line.startswith("compare: ") for line in lines), done.stderr
    assert sum("started" in line for line in lines) == 6
    assert any(line.startswith("compare: [6/6] ") for line in lines)
    assert "NUMBA_NUM_THREADS=1" in lines[0]            # 2 processes on 2+ cores: 1 each
    assert done.stdout.strip() == str(out / "compare.html")


def test_the_report_shows_the_arms_side_by_side(compared):
    out, _, _ = compared
    data = json.loads((out / "compare.json").read_text())
    arms = data["arms"]
    assert list(arms) == ["control", "again", "rt"]
    assert data["info"]["seeds"][1] == data["info"]["seeds"][0] + 1
    # identical arms give identical curves and numbers
    same = lambda a: {k: v for k, v in a.items() if k not in ("protocol", "runs")}
    assert same(arms["control"]) == same(arms["again"])
    for a, b in zip(arms["control"]["runs"], arms["again"]["runs"]):
        assert {k: v for k, v in a.items() if k != "run"} == \
               {k: v for k, v in b.items() if k != "run"}
    assert arms["control"]["harm_cells_total"]["max"] == 0
    assert arms["rt"]["harm_cells_total"]["min"] > 0
    # adaptive: the first fraction shrinks the tumour below 0.9 of its baseline, so the
    # check-up at 6 h switches from radiotherapy to the held anti-angiogenic drug
    for run in arms["rt"]["runs"]:
        first = [(d["time_h"], d["action"], d["therapy"]) for d in run["decisions"][:2]]
        assert first == [(6.0, "stop", "rt"), (6.0, "start", "bev")]
    assert arms["rt"]["therapy_given"]["rt"]["deliveries"] == {"median": 1, "min": 1, "max": 1}
    assert arms["rt"]["therapy_given"]["bev"]["deliveries"]["min"] >= 1
    assert arms["rt"]["decisions"]["min"] >= 2 and arms["control"]["decisions"]["max"] == 0
    assert arms["rt"]["burden_cells_final"]["median"] < arms["control"]["burden_cells_final"]["median"]
    assert arms["control"]["replicates"] == 2
    assert len(arms["rt"]["progression_free"]["time_h"]) >= 1
    page = (out / "compare.html").read_text(encoding="utf-8")
    assert TREATMENT_DISCLAIMER in page
    assert page.count('<tr class="arm">') == 3
    for name in FIGURES:
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
        assert f'<figure id="{name}"><img' in page
    assert "http://" not in page and "<script" not in page
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]


def test_a_failed_run_names_its_arm_and_replicate_and_leaves_no_report(inputs, tmp_path):
    scenario, _ = inputs
    out = tmp_path / "cmp"
    (out / "b").mkdir(parents=True)
    (out / "compare.html").write_text("an earlier comparison")
    with RunLock(out / "b" / "rep0.h5"):          # a second writer: that run cannot start
        done = compare(scenario, "--arm", "a=untreated", "--arm", "b=untreated",
                       "--replicates", 1, "--days", 0.25, "--jobs", 2, "--out", out,
                       "--overwrite")
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("oncolattice: error: arm b replicate 0 (seed "), done.stderr
    assert "in use by oncolattice process" in error
    assert "Traceback" not in done.stderr
    assert not (out / "compare.html").exists() and not (out / "compare.json").exists()


def test_sigterm_stops_every_run_and_writes_no_report(inputs, tmp_path):
    scenario, _ = inputs
    out = tmp_path / "cmp"
    argv, env = command(scenario, "--arm", "a=untreated", "--arm", "b=untreated",
                        "--replicates", 1, "--days", 60, "--jobs", 2, "--out", out)
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        while sum("started" in line for line in lines) < 2:
            lines.append(proc.stderr.readline())
            assert lines[-1], "".join(lines)
        deadline = time.monotonic() + 120
        while not all((out / arm / "rep0.h5").exists() for arm in "ab"):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(1.0)                         # both runs are stepping
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143
    assert rest.strip().splitlines()[-1].startswith(
        "oncolattice: interrupted: stopped by SIGTERM with 0 of 2 runs finished"), rest
    for arm in "ab":
        with RunFile(out / arm / "rep0.h5") as run:
            assert run.status == "interrupted"
    assert not (out / "compare.html").exists()


@pytest.mark.parametrize("args, names", [
    (["--arm", "noequals"], "--arm noequals: expected NAME=PROTOCOL"),
    (["--arm", "a="], "--arm a=: expected NAME=PROTOCOL"),
    (["--arm", "=untreated"], "--arm =untreated: the arm name must be"),
    (["--arm", "1a=untreated"], "--arm 1a=untreated: the arm name must be"),
    (["--arm", "a/b=untreated"], "--arm a/b=untreated: the arm name must be"),
    (["--arm", "a=untreated", "--arm", "a=untreated"], "--arm a=untreated: arm name 'a' is given twice"),
    (["--arm", "a=untreated", "--arm", "A=untreated"], "--arm A=untreated: arm name 'A' is given twice"),
    (["--arm", "a=untreated", "--replicates", "4294967296"], "--replicates 4294967296: must"),
    (["--arm", "a=no_such_protocol_xyz"], "--arm a=no_such_protocol_xyz: "),
    (["--arm", "a=untreated", "--replicates", "0"], "--replicates 0: must be between 1"),
    (["--arm", "a=untreated", "--jobs", "0"], "--jobs 0: must be at least 1"),
    (["--arm", "a=untreated", "--days", "-1"], "--days -1"),
    ([], "--arm: at least one arm is needed"),
])
def test_bad_input_is_one_line_naming_the_argument(inputs, tmp_path, capsys, args, names):
    scenario, _ = inputs
    argv = ["compare", str(scenario), *args, "--out", str(tmp_path / "cmp")]
    if "--replicates" not in args:
        argv += ["--replicates", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"oncolattice: error: {names}"), err
    assert not (tmp_path / "cmp").exists()          # nothing written


def test_seeds_past_the_largest_are_an_error_naming_replicates(tmp_path, capsys):
    scenario = tmp_path / "late.toml"
    scenario.write_text(with_values(small_scenario_text(EDGE), seed=2 ** 64 - 2))
    assert main(["compare", str(scenario), "--arm", "a=untreated", "--replicates", "3",
                 "--out", str(tmp_path / "cmp")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oncolattice: error: --replicates 3: the last replicate's seed "
                          f"{2 ** 64}: "), err


def test_existing_runs_are_kept_without_overwrite(inputs, tmp_path, capsys):
    scenario, _ = inputs
    out = tmp_path / "cmp"
    (out / "a").mkdir(parents=True)
    (out / "a" / "rep0.h5").write_bytes(b"precious")
    assert main(["compare", str(scenario), "--arm", "a=untreated", "--replicates", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "rep0.h5: the file exists (use --overwrite" in err
    assert (out / "a" / "rep0.h5").read_bytes() == b"precious"
