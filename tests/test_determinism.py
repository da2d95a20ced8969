"""Same seed ⇒ bit-identical runs, whatever the thread count; another seed differs.

Each run goes through the real command line in a fresh process, so Numba's
thread count is set the way a user sets it (NUMBA_NUM_THREADS).
"""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest


def run(tmp_path, scenario, name, seed, threads):
    out = tmp_path / f"{name}.h5"
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(scenario), "--steps", "30",
                           "--snapshot-every", "10", "--seed", str(seed), "--out", str(out),
                           "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["status"] == "complete"
        return {"kind": f["lattices/primary/kind"][...],
                "oxygen": f["lattices/primary/oxygen"][...],
                "counts": f["counts"][...]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from conftest import small_scenario_text
    tmp = tmp_path_factory.mktemp("det")
    scenario = tmp / "small.toml"
    scenario.write_text(small_scenario_text(32, seed_radius_um=80.0))
    return {
        "a": run(tmp, scenario, "a", seed=11, threads=2),
        "b": run(tmp, scenario, "b", seed=11, threads=2),
        "one_thread": run(tmp, scenario, "c", seed=11, threads=1),
        "other_seed": run(tmp, scenario, "d", seed=12, threads=2),
    }


def identical(x, y):
    return all(np.array_equal(x[k], y[k]) for k in ("kind", "oxygen")) and \
        x["counts"].tobytes() == y["counts"].tobytes()


def test_runs_do_something(runs):
    counts = runs["a"]["counts"]
    assert counts["tumor"][-1] > counts["tumor"][0]
    assert runs["a"]["kind"].shape[0] == 4          # snapshots at steps 0, 10, 20, 30


def test_same_seed_is_bit_identical(runs):
    assert identical(runs["a"], runs["b"])


def test_thread_count_does_not_change_results(runs):
    assert identical(runs["a"], runs["one_thread"])


def test_other_seed_differs(runs):
    assert not np.array_equal(runs["a"]["kind"][-1], runs["other_seed"]["kind"][-1])
