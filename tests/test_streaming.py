"""Live streaming (HDF5 SWMR): a reader process follows a writer process.

The writer stamps every voxel of snapshot ``t`` with the value ``t`` (all
fields), so a reader can tell a torn snapshot (mixed values, or zeros not yet
written) from a complete one.
"""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tools.runfile import RunFile

SHAPE = (24, 20, 16)

WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from engine.output import LatticeInfo, RunWriter
    path, n, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    shape = {shape}
    info = LatticeInfo("primary", shape, 20.0, np.ones(shape, np.uint8), ("none", "breast"))
    dt = np.dtype([("step", np.int64), ("time_h", np.float64), ("tumor", np.int64)])
    with RunWriter(path, attrs={{}}, lattices=[info], counts_dtype=dt,
                   snapshot_fields={{"kind": np.uint8, "oxygen": np.float32}}) as w:
        print("open", flush=True)
        for t in range(n):
            w.append_counts(np.array((t, float(t), 2 ** t), dtype=dt))
            stamp = {{"kind": np.full(shape, t, np.uint8),
                      "oxygen": np.full(shape, t, np.float32)}}
            w.write_snapshot(t, float(t), {{"primary": stamp}})
            print("wrote", t, flush=True)
            time.sleep(pause)
""").format(shape=SHAPE)

READER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from tools.runfile import RunFile
    path, n = sys.argv[1], int(sys.argv[2])
    seen, polls = set(), 0
    deadline = time.monotonic() + 60
    with RunFile(path) as run:
        while len(seen) < n and time.monotonic() < deadline:
            k = run.refresh()
            polls += 1
            for t in range(k):
                assert run.steps[t] == t, (t, run.steps[:k])
                kind = run.snapshot(None, "kind", t)
                oxy = run.snapshot(None, "oxygen", t)
                if not ((kind == t).all() and (oxy == t).all()):
                    print("TORN", t, np.unique(kind), np.unique(oxy), flush=True)
                    sys.exit(3)
                seen.add(t)
            counts = run.counts()
            assert (counts["tumor"] == 2 ** counts["step"]).all()
            time.sleep(0.01)
    print("seen", len(seen), "polls", polls, flush=True)
    sys.exit(0 if len(seen) == n else 4)
""")


def _env():
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_reader_process_follows_writer_process_and_never_sees_a_torn_snapshot(tmp_path):
    path = tmp_path / "live.h5"
    n = 25
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), "0.02"],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert writer.stdout.readline().strip() == "open"
        reader = subprocess.run([sys.executable, "-c", READER, str(path), str(n)],
                                capture_output=True, text=True, env=_env(), timeout=120)
        assert reader.returncode == 0, reader.stdout + reader.stderr
        assert f"seen {n}" in reader.stdout
        polls = int(reader.stdout.split()[-1])
        assert polls > 1                 # it really followed, not read once at the end
    finally:
        writer.wait(timeout=60)
    assert writer.returncode == 0
    with RunFile(path) as run:
        assert run.status == "complete" and run.n_snapshots == n


def test_a_writer_killed_mid_run_leaves_every_indexed_snapshot_readable(tmp_path):
    path = tmp_path / "killed.h5"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "1000", "0.0"],
                              stdout=subprocess.PIPE, text=True, env=_env())
    try:
        lines = 0
        while lines < 12:                  # let it get well into the series
            assert writer.stdout.readline().strip()
            lines += 1
        writer.send_signal(signal.SIGKILL)  # no handler, no close, mid-write
    finally:
        writer.wait(timeout=30)
    with RunFile(path) as run:
        n = run.n_snapshots
        assert n >= 10
        assert run.status == "running"     # nobody recorded an ending
        for t in range(n):
            assert (run.snapshot(None, "kind", t) == t).all()
            assert (run.snapshot(None, "oxygen", t) == t).all()
        assert list(run.steps) == list(range(n))


def test_runfile_sees_new_snapshots_only_after_refresh(tmp_path):
    from engine.output import LatticeInfo, RunWriter
    info = LatticeInfo("primary", SHAPE, 20.0, np.ones(SHAPE, np.uint8), ("none", "breast"))
    dt = np.dtype([("step", np.int64), ("time_h", np.float64)])
    path = tmp_path / "r.h5"
    with RunWriter(path, attrs={}, lattices=[info], counts_dtype=dt,
                   snapshot_fields={"kind": np.uint8}) as w:
        w.write_snapshot(0, 0.0, {"primary": {"kind": np.zeros(SHAPE, np.uint8)}})
        with RunFile(path) as run:
            assert run.n_snapshots == 1 and run.status == "running"
            w.write_snapshot(5, 2.5, {"primary": {"kind": np.full(SHAPE, 2, np.uint8)}})
            assert run.n_snapshots == 1
            with pytest.raises(Exception, match="out of range"):
                run.snapshot("primary", "kind", 1)
            assert run.refresh() == 2
            assert run.index_of_step(5) == 1 and run.times_h[1] == 2.5
            assert (run.snapshot("primary", "kind", -1) == 2).all()
    with RunFile(path) as run:
        assert run.status == "complete"


def test_runfile_bad_input_is_one_line_user_error(tmp_path):
    from engine.errors import UserError
    with pytest.raises(UserError, match="no such run file"):
        RunFile(tmp_path / "missing.h5")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(UserError, match="junk.h5"):
        RunFile(junk)
    import h5py
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(UserError, match="not an oncolattice run file"):
        RunFile(tmp_path / "other.h5")


def test_default_lattice_is_the_primary_tumour_even_when_others_sort_first(tmp_path):
    from engine.output import LatticeInfo, RunWriter
    dt = np.dtype([("step", np.int64), ("time_h", np.float64)])
    lats = [LatticeInfo(name, SHAPE, 20.0, np.ones(SHAPE, np.uint8), ("none", "breast"))
            for name in ("primary", "met1")]
    with RunWriter(tmp_path / "two.h5", attrs={}, lattices=lats, counts_dtype=dt,
                   snapshot_fields={"kind": np.uint8}):
        pass
    with RunFile(tmp_path / "two.h5") as run:
        assert list(run.lattices) == ["met1", "primary"]      # HDF5 lists groups by name
        assert run.lattice().name == "primary"
