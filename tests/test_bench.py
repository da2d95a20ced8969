"""The benchmark runs and reports every pass.

Performance is measured by benchmarks, never asserted by timed tests: these
tests check the report's structure, not its numbers' size.
"""
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from engine import schedule
from engine.schedule import PASSES, STEP
from engine.simulation import Simulation
from engine.state import BYTES_PER_VOXEL
from tools.bench import TimedSimulation, bench_scenario, run_bench, time_steps


def test_run_bench_reports_every_pass(tmp_path):
    """JSON and table hold each pass, the census and the whole step."""
    out = io.StringIO()
    result = run_bench(size=24, backend="numba", steps=2, json_path=tmp_path / "b.json", out=out)
    data = json.loads((tmp_path / "b.json").read_text())
    assert data == json.loads(json.dumps(result))
    every_step = [s.run for s in STEP             # a growing tumour: every step has events
                  if s.when in (None, schedule.ANGIOGENESIS_ENABLED, schedule.TISSUE_CHANGED)]
    names = [p.name for p in every_step]
    assert "relax_oxygen" in names and "place_daughters" in names
    assert set(data["passes"]) <= {p.name for p in PASSES} | {"take_census"}
    for name in names + ["take_census"]:
        assert data["passes"][name]["runs"] == 2
        assert data["passes"][name]["voxel_updates_per_s"] > 0
        assert name in out.getvalue()
    assert data["step"]["voxel_updates_per_s"] > 0
    assert data["passes"]["relax_oxygen"]["voxel_updates_per_sweep_per_s"] > 0
    assert data["bytes_per_voxel"] == BYTES_PER_VOXEL
    assert data["lattice"]["voxels"] == 24 ** 3 and data["backend"] == "numba"
    assert all(len(n) == 2 for n in data["field_sweeps"].values()) and data["threads"] >= 1
    assert set(data["field_sweeps"]) == {"relax_oxygen", "relax_vegf"}
    assert "step (total)" in out.getvalue()


def test_bench_scenario_and_pass_by_pass_step_match_simulation():
    """The resized scenario keeps organ fractions and a tumour seed; timing pass by
    pass advances the lattice exactly as Simulation.step does."""
    s = bench_scenario(32)
    assert s.shape == (32, 32, 32)
    assert s.organs[0]["z_um"] == [0.0, 480.0] and s.organs[1]["z_um"][1] == 640.0
    a, b = Simulation(bench_scenario(16)), TimedSimulation(bench_scenario(16))
    assert a.initial["tumor"] > 0
    for _ in range(2):
        a.step()
    times, _ = time_steps(b, 2)
    assert all(t is not None and t >= 0 for t in times["decide_fate"])
    assert a.step_index == b.step_index == 2
    for key, arr in a.lattice.arrays.items():
        assert np.array_equal(arr, b.lattice.arrays[key]), key


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "engine", "bench", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli_bench_writes_json(tmp_path):
    p = tmp_path / "bench.json"
    r = _cli("--size", "16", "--steps", "1", "--json", str(p))
    assert r.returncode == 0, r.stderr
    data = json.loads(p.read_text())
    assert data["lattice"]["size"] == 16 and "step" in data
    assert "relax_oxygen" in r.stdout


def test_cli_bench_rejects_tiny_lattice():
    r = _cli("--size", "4")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "--size" in r.stderr


def test_traffic_is_counted_from_the_arrays_each_pass_touches():
    from kernels.census import take_census
    from kernels.oxygen import relax_oxygen
    from tools.bench import bytes_per_voxel
    # one sweep reads pO2 (float32), kind, organ and perfused (uint8) and writes pO2
    assert bytes_per_voxel(relax_oxygen) == (7, 4)
    assert bytes_per_voxel(take_census) == (12, 0)        # + VEGF (float32), motile
    for process in PASSES:
        read, written = bytes_per_voxel(process)
        assert read > 0, process.name


def test_bandwidth_is_reported_against_the_copy_roofline(tmp_path):
    r = run_bench(size=16, backend="numba", steps=1, json_path=None, out=io.StringIO())
    assert r["copy_GB_per_s"] > 0
    step = r["step"]
    assert step["bytes_per_voxel"] == sum(p["bytes_per_voxel"] for p in r["passes"].values())
    assert 0 < step["percent_of_copy"] == pytest.approx(
        100 * step["achieved_GB_per_s"] / r["copy_GB_per_s"])
