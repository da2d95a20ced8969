"""Hardening of `oncolattice run` (issue 10): no lost runs, no hangs, no crashes on
bad paths, full disks or signals; `oncolattice repair` for the file of a killed run."""
import errno
import os
import random
import resource
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from engine import cli
from engine.output import RunWriter
from engine.runformat import lock_path
from conftest import small_scenario_text

EDGE = 16
SIGNAL_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGUSR1: 138}


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A directory with a 16³ quickstart (t.toml), made the working directory."""
    (tmp_path / "t.toml").write_text(small_scenario_text(EDGE, seed_radius_um=40.0))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def main(capsys, *args):
    """`oncolattice ARGS` in this process: (exit status, stderr lines)."""
    status = cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    return status, err.splitlines()


def one_error(capsys, *args, status=2):
    code, lines = main(capsys, *args)
    assert code == status and len(lines) == 1, (code, lines)
    assert lines[0].startswith("oncolattice: error: "), lines
    return lines[0]


def spawn(*args, cwd, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]))
    env.pop("ONCOLATTICE_DEBUG", None)
    return subprocess.Popen([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def snapshots_in(path) -> int:
    try:
        with h5py.File(path, "r", swmr=True) as f:
            return f["snapshots/step"].shape[0]
    except (OSError, KeyError):
        return 0


def assert_consistent(path, final_step=None):
    """The file opens with plain h5py; index, series and counts agree."""
    with h5py.File(path, "r") as f:
        steps = f["snapshots/step"][()]
        assert len(steps) == f["snapshots/time_h"].shape[0] >= 1
        assert steps[0] == 0 and (np.diff(steps) > 0).all()
        for name in ("kind", "oxygen", "vegf"):
            assert f[f"lattices/primary/{name}"].shape[0] == len(steps)
        counts = f["counts"]["step"]
        assert list(counts) == list(range(len(counts)))
        assert steps[-1] == counts[-1], "the last computed step has no snapshot"
        if final_step is not None:
            assert steps[-1] == final_step
        kind = f["lattices/primary/kind"][-1]
        assert int(np.count_nonzero(kind == 2)) == int(f["counts"]["tumor"][-1])
        return f.attrs["status"], len(steps)


# -- 1. output paths ----------------------------------------------------------------------

def test_existing_out_is_refused_unless_overwrite(tiny, capsys):
    assert main(capsys, "run", "t.toml", "--steps", "1", "--out", "r.h5", "--quiet")[0] == 0
    before = (tiny / "r.h5").read_bytes()
    line = one_error(capsys, "run", "t.toml", "--steps", "2", "--out", "r.h5", "--quiet")
    assert "r.h5" in line and "--overwrite" in line
    assert (tiny / "r.h5").read_bytes() == before
    assert main(capsys, "run", "t.toml", "--steps", "2", "--out", "r.h5", "--quiet",
                "--overwrite")[0] == 0
    assert_consistent(tiny / "r.h5", final_step=2)
    assert sorted(p.name for p in tiny.iterdir()) == ["r.h5", "r.xdmf", "t.toml"]


@pytest.mark.parametrize("args,needle", [
    (["--out", "t.h5", "--scenario-as", "t.h5"], "scenario"),
    (["--out", "r.h5", "--summary", "r.h5"], "--summary r.h5"),
    (["--out", "r.h5", "--summary", "r.xdmf"], "--summary r.xdmf"),
    (["--out", "r.h5", "--summary", "t.toml"], "--summary t.toml"),
    (["--out", "adir.h5"], "adir.h5: is a directory"),
    (["--out", "plain/x.h5"], "plain is not a directory"),
    (["--out", "r.h5", "--summary", "plain/deeper/s.json"], "plain is not a directory"),
    (["--out", "r.h5", "--summary", "adir.h5"], "--summary adir.h5: is a directory"),
], ids=["out-is-scenario", "summary-is-out", "summary-is-xdmf", "summary-is-scenario",
        "out-is-dir", "parent-is-file", "summary-parent-is-file", "summary-is-dir"])
def test_bad_output_paths_are_refused_before_anything_is_written(tiny, capsys, args, needle):
    (tiny / "adir.h5").mkdir()
    (tiny / "plain").write_text("not a directory")
    scenario = "t.toml"
    if "--scenario-as" in args:
        i = args.index("--scenario-as")
        (tiny / args[i + 1]).write_text((tiny / "t.toml").read_text())
        scenario, args = args[i + 1], args[:i]
    listing = sorted(p.name for p in tiny.iterdir())
    line = one_error(capsys, "run", scenario, "--steps", "1", "--quiet", *args)
    assert needle in line, line
    assert sorted(p.name for p in tiny.iterdir()) == listing


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_unwritable_directory_is_refused(tiny, capsys):
    (tiny / "ro").mkdir(mode=0o500)
    line = one_error(capsys, "run", "t.toml", "--steps", "1", "--out", "ro/r.h5")
    assert "ro" in line and "not writable" in line


# -- 2. one writer per file -----------------------------------------------------------------

def test_a_second_writer_is_refused_and_the_first_run_survives(tiny):
    first = spawn("run", "t.toml", "--steps", "5000", "--snapshot-every", "5", "--out", "r.h5",
                  "--quiet", cwd=tiny)
    try:
        wait_for(lambda: snapshots_in(tiny / "r.h5") >= 2 or first.poll() is not None)
        for extra in ([], ["--overwrite"]):
            second = spawn("run", "t.toml", "--steps", "2", "--out", "r.h5", *extra, cwd=tiny)
            _, err = second.communicate(timeout=60)
            assert second.returncode == 2, err
            lines = err.splitlines()
            assert len(lines) == 1 and "r.h5" in lines[0], lines
            if extra:           # the existing-file check may come first without --overwrite
                assert f"PID {first.pid}" in lines[0], lines
        assert first.poll() is None, "the first run was disturbed"
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 143, err
    status, n = assert_consistent(tiny / "r.h5")
    assert status == "interrupted" and n >= 2
    assert not lock_path(tiny / "r.h5").exists()


def test_a_stale_lock_of_a_dead_writer_does_not_block(tiny, capsys):
    lock_path(tiny / "r.h5").write_text("999999 elsewhere\n")     # nobody holds the flock
    assert main(capsys, "run", "t.toml", "--steps", "1", "--out", "r.h5", "--quiet")[0] == 0
    assert not lock_path(tiny / "r.h5").exists()


def test_runwriter_holds_the_lock_for_its_lifetime(tmp_path):
    from test_output import writer
    w = writer(tmp_path / "w.h5")
    with pytest.raises(cli.UserError, match=f"PID {os.getpid()}"):
        writer(tmp_path / "w.h5")
    w.close("complete")
    writer(tmp_path / "w.h5").close("complete")


# -- 3. signals -----------------------------------------------------------------------------

def handles_stop_signals(proc) -> bool:
    """Whether `proc` catches SIGINT, SIGTERM and SIGUSR1 (SigCgt in /proc): `main`
    has installed its handlers (before that Python itself is still starting)."""
    try:
        with open(f"/proc/{proc.pid}/status") as status:
            mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return proc.poll() is not None
    return all(mask >> (sig - 1) & 1 for sig in SIGNAL_CODES)


def test_signals_at_random_moments_end_cleanly(tiny):
    """15 runs, each sent SIGINT, SIGTERM or SIGUSR1 at a random moment from the
    start of `main` on (start-up, the loop, closing)."""
    rng = random.Random(10)
    outcomes = []
    for i in range(15):
        sig = rng.choice(list(SIGNAL_CODES))
        out = tiny / f"s{i}.h5"
        proc = spawn("run", "t.toml", "--steps", "15", "--snapshot-every", "4", "--out", out.name,
                     "--quiet", cwd=tiny)
        wait_for(lambda: handles_stop_signals(proc), timeout=30)
        time.sleep(rng.uniform(0.0, 1.3))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        lines = err.splitlines()
        if proc.returncode in (0, -sig):   # -sig: it came as Python exited (its finalisation
            # restores the default handlers), after the run had finished and closed the file
            assert lines == [] and assert_consistent(out, final_step=15)[0] == "complete"
            outcomes.append("complete")
            continue
        assert proc.returncode == SIGNAL_CODES[sig], (sig, proc.returncode, err)
        assert len(lines) == 1 and lines[0].startswith("oncolattice: interrupted:"), lines
        assert signal.Signals(sig).name in lines[0]
        if out.exists():
            status, _ = assert_consistent(out)
            assert status == "interrupted"
            outcomes.append("interrupted")
        else:
            assert "before the run started" in lines[0]
            outcomes.append("start-up")
        assert not lock_path(out).exists()
    assert "interrupted" in outcomes, outcomes


def test_stop_before_the_loop_writes_nothing(tiny, capsys, monkeypatch):
    monkeypatch.setattr(cli, "stop_requested", lambda: signal.SIGTERM)
    code, lines = main(capsys, "run", "t.toml", "--steps", "3", "--out", "r.h5")
    assert code == 143 and lines[-1].startswith("oncolattice: interrupted:")
    assert sorted(p.name for p in tiny.iterdir()) == ["t.toml"]


def test_stop_in_the_loop_snapshots_the_current_step(tiny, capsys, monkeypatch):
    polls = []

    def stop_after_three_steps():
        polls.append(1)
        return signal.SIGUSR1 if len(polls) > 5 else None   # 2 polls before the loop
    monkeypatch.setattr(cli, "stop_requested", stop_after_three_steps)
    code, lines = main(capsys, "run", "t.toml", "--steps", "10", "--snapshot-every", "8",
                       "--out", "r.h5", "--quiet")
    assert code == 138 and len(lines) == 1 and "SIGUSR1 at step 3" in lines[0], lines
    status, n = assert_consistent(tiny / "r.h5", final_step=3)
    assert status == "interrupted" and n == 2
    with h5py.File(tiny / "r.h5", "r") as f:
        assert "SIGUSR1" in f.attrs["status_reason"]


# -- 4. write failures ----------------------------------------------------------------------

def test_file_size_limit_fails_cleanly_and_repair_recovers(tiny, capsys):
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    proc = spawn("run", "t.toml", "--steps", "60", "--snapshot-every", "2", "--out", "f.h5",
                 "--quiet", cwd=tiny, preexec_fn=limit_file_size)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (proc.returncode, err)            # not killed by a signal
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("oncolattice: error: f.h5: "), lines
    assert "File too large" in lines[0]
    assert main(capsys, "repair", "f.h5")[0] == 0
    status, n = assert_consistent(tiny / "f.h5")
    assert status in ("interrupted", "failed") and n >= 2


def test_a_full_disk_during_a_snapshot_marks_the_run_failed(tiny, capsys, monkeypatch):
    real = RunWriter.write_snapshot
    calls = []

    def write_until_full(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(RunWriter, "write_snapshot", write_until_full)
    line = one_error(capsys, "run", "t.toml", "--steps", "10", "--snapshot-every", "2",
                     "--out", "r.h5", "--summary", "s.json", "--quiet", status=1)
    assert "r.h5" in line and "No space left on device" in line and "step 4" in line
    with h5py.File(tiny / "r.h5", "r") as f:
        assert f.attrs["status"] == "failed"
        assert "No space left on device" in f.attrs["status_reason"]
        assert list(f["snapshots/step"][()]) == [0, 2]
    assert not (tiny / "s.json").exists() and not lock_path(tiny / "r.h5").exists()


def test_too_little_free_space_stops_before_the_snapshot(tiny, capsys, monkeypatch):
    import engine.run
    free = iter([1 << 40, 1 << 40, 1 << 40])        # the estimate, step 0, step 2; then full
    monkeypatch.setattr(engine.run, "free_bytes", lambda d: next(free, 0))
    line = one_error(capsys, "run", "t.toml", "--steps", "6", "--snapshot-every", "2",
                     "--out", "r.h5", "--quiet", status=1)
    assert "r.h5" in line and "No space left" in line
    with h5py.File(tiny / "r.h5", "r") as f:
        assert f.attrs["status"] == "failed" and list(f["snapshots/step"][()]) == [0, 2]


# -- 5. repair ------------------------------------------------------------------------------

def test_kill9_then_repair_opens_in_plain_h5py(tiny, capsys):
    proc = spawn("run", "t.toml", "--steps", "5000", "--snapshot-every", "3", "--out", "k.h5",
                 "--quiet", cwd=tiny)
    try:
        wait_for(lambda: snapshots_in(tiny / "k.h5") >= 3 or proc.poll() is not None)
        line = one_error(capsys, "repair", "k.h5")                 # the writer is alive
        assert f"PID {proc.pid}" in line
    finally:
        proc.kill()
        proc.wait(timeout=30)
    with pytest.raises(OSError):
        h5py.File(tiny / "k.h5", "r").close()
    code, lines = main(capsys, "repair", "k.h5")
    assert code == 0
    status, n = assert_consistent(tiny / "k.h5")
    assert status == "interrupted" and n >= 3
    import xml.etree.ElementTree as ET
    assert len(ET.parse(tiny / "k.xdmf").getroot().findall(".//Time")) == n
    assert one_error(capsys, "repair", "t.toml")                   # not HDF5: one line
    assert one_error(capsys, "repair", "nothere.h5")


# -- 6. small ones --------------------------------------------------------------------------

def test_days_shorter_than_one_step(tiny, capsys):
    line = one_error(capsys, "run", "t.toml", "--days", "1e-9", "--out", "r.h5")
    assert "--days" in line and "1 h" in line
    assert sorted(p.name for p in tiny.iterdir()) == ["t.toml"]


def test_a_run_larger_than_the_free_space_is_refused(tiny, capsys):
    line = one_error(capsys, "run", "t.toml", "--steps", "1000000000", "--snapshot-every", "1",
                     "--out", "r.h5")
    assert "--steps 1000000000" in line and "free" in line
    line = one_error(capsys, "run", "t.toml", "--steps", "1000000000000", "--out", "r.h5")
    assert "--steps 1000000000000" in line and "between 1 and 1000000000" in line
    assert sorted(p.name for p in tiny.iterdir()) == ["t.toml"]


def test_os_errors_name_the_file_with_one_colon(capsys, monkeypatch):
    def fail(args):
        raise PermissionError(errno.EACCES, "Permission denied", "some/file.h5")
    monkeypatch.setitem(cli.COMMANDS, "check", fail)
    code, lines = main(capsys, "check")
    assert code == 1 and lines == ["oncolattice: error: some/file.h5: Permission denied"]

    def fail_unnamed(args):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setitem(cli.COMMANDS, "check", fail_unnamed)
    assert main(capsys, "check")[1] == ["oncolattice: error: Input/output error"]


def test_host_harness_cache_is_private(tmp_path, monkeypatch):
    from kernels import cuda
    monkeypatch.delenv("ONCOLATTICE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = cuda.private_cache_dir()
    assert cache == tmp_path / "xdg" / "oncolattice"
    assert os.stat(cache).st_mode & 0o077 == 0
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("ONCOLATTICE_CACHE", str(shared))
    with pytest.raises(RuntimeError, match="not private"):
        cuda.private_cache_dir()
