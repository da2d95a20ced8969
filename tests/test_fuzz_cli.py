"""Fuzzing `oncolattice run`'s flags (hypothesis): every case ends with exit 0 and a
complete run file, or exit 2 with one line on stderr naming the offending flag or
value; never a traceback or an internal error, and within a bounded time."""
import os
import subprocess
import sys
import time

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import cli
from conftest import small_scenario_text

pytestmark = pytest.mark.fuzz
CASE_SECONDS = 20

small_ints = st.integers(min_value=1, max_value=3)
bad_ints = st.sampled_from([0, -1, -(10 ** 6), 10 ** 12, 2 ** 63, 10 ** 30])
garbage = st.sampled_from(["", "abc", "1e", "--", "0x10", "½", "nan", "inf", "-inf", " 3"])
floats_bad = st.sampled_from([0.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-9,
                              1e300, 1e12])
names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/\x00"),
                min_size=1, max_size=12)
control = st.sampled_from(["a\nb", "tab\there", "esc\x1b[31m", "bell\x07", "cr\r"])


def values(good, bad):
    return st.one_of(good.map(str), bad.map(str), garbage)


@st.composite
def run_args(draw):
    args = {}
    if draw(st.booleans()):
        if draw(st.booleans()):
            args["--steps"] = draw(values(small_ints, bad_ints))
        else:
            args["--days"] = draw(st.one_of(st.sampled_from(["0.05", "0.1"]),
                                            floats_bad.map(repr), garbage))
    else:
        args["--steps"] = "2"
    if draw(st.booleans()):
        args["--seed"] = draw(values(st.integers(0, 2 ** 31), st.sampled_from([-1, 2 ** 80])))
    if draw(st.booleans()):
        args["--snapshot-every"] = draw(values(small_ints, bad_ints))
    if draw(st.booleans()):
        args["--backend"] = draw(st.sampled_from(["numba", "auto", "opencl", "", "NUMBA"]))
    stem = draw(st.one_of(names, control))
    args["--out"] = draw(st.sampled_from([f"{stem}.h5", f"{stem}", f"sub/{stem}.h5", f"{stem}.txt"]))
    if draw(st.booleans()):
        args["--summary"] = draw(st.sampled_from([f"{stem}.json", "t.toml", args["--out"],
                                                  "dir", "t.toml/x.json"]))
    return [x for kv in args.items() for x in kv]


def check_case(tmp_path_factory, capsys, argv):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "t.toml").write_text(small_scenario_text(16, seed_radius_um=40.0))
    (d / "dir").mkdir()
    cwd = os.getcwd()
    os.chdir(d)
    started = time.monotonic()
    try:
        status = cli.main(["run", "t.toml", "--quiet", *argv])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert time.monotonic() - started < CASE_SECONDS
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if status == 0:
        out = d / argv[argv.index("--out") + 1]
        with h5py.File(out, "r") as f:
            assert f.attrs["status"] == "complete", argv
        return
    lines = err.splitlines()
    assert status == 2 and len(lines) == 1, (argv, status, lines)
    line = lines[0]
    assert line.startswith("oncolattice: error: "), line
    flags = [a for a in argv if a.startswith("--")] + ["scenario", "steps", "days"]
    assert any(flag in line for flag in flags) or any(
        v and v in line for v in argv if not v.startswith("--")), (argv, line)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=run_args())
def test_fuzz_run_flags(tmp_path_factory, capsys, argv):
    check_case(tmp_path_factory, capsys, argv)


@pytest.mark.parametrize("argv", [
    ["--steps", "nan"], ["--days", "inf"], ["--out", "bad\x1b.h5\n", "--steps", "1"],
    ["--steps", "2", "--out", "ok.h5", "--summary", "ok.h5"],
])
def test_fuzz_cases_in_a_subprocess(tmp_path, argv):
    (tmp_path / "t.toml").write_text(small_scenario_text(16, seed_radius_um=40.0))
    env = {k: v for k, v in os.environ.items() if k != "ONCOLATTICE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "t.toml", "--quiet", *argv],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr
