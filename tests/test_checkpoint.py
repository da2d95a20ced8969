"""Checkpoint and restart (issue 13): `run --checkpoint-every`, checkpoints on stop
signals, `resume` (also of a run killed outright, and of a resumed run), and the
refusals of a checkpoint that cannot continue its run file.

A small body (a 16³ primary shedding into an 8³ lymph node and an 8³ lung block,
with radiotherapy and a protocol rule that switches to bevacizumab at a check-up)
runs 40 steps; every interrupted-and-resumed run must leave a run file whose every
dataset equals, bit for bit, that of the run never interrupted.
"""
import json
import os
import pickle
import random
import shutil
import signal
import time

import h5py
import pytest

from conftest import small_scenario_text, with_values
from test_body import FAST, SITES as BODY_SITES
from test_cuda import CUDA_BACKENDS
from test_hardening_run import handles_stop_signals, main, one_error, wait_for
from test_hardening_run import spawn as spawn_engine
from test_protocol import RULES, THERAPIES
from engine import cli
from engine.body import Body
from engine.checkpoint import (STATE_ARRAYS, Loop, checkpoint_path_for, lattice_state,
                               read_checkpoint, write_checkpoint)
from engine.scenario import parse_scenario

STEPS = 40
SITES = (BODY_SITES.replace("[12, 12, 12]", "[8, 8, 8]")     # 8³ blocks, dense capillaries
         .replace("capillary_spacing_um = 100.0", "capillary_spacing_um = 60.0")
         .replace("capillary_spacing_um = 80.0", "capillary_spacing_um = 60.0"))


def body_text() -> str:
    """The body scenario: cells reach both sites within a few steps; radiotherapy from
    step 2, a check-up every 8 h whose rule switches to bevacizumab from day 0.5."""
    therapies = (THERAPIES.replace("start_h = 10.0", "start_h = 2.0")
                 .replace("interval_h = 24.0", "interval_h = 6.0")
                 .replace("interval_h = 48.0", "interval_h = 6.0"))
    rules = RULES.replace("24.0", "8.0").replace("days >= 2", "days >= 0.5")
    text = with_values(small_scenario_text(16, seed_radius_um=80.0), **FAST) + SITES
    return (text + therapies + rules).replace("snapshot_every_steps = 24",
                                              "snapshot_every_steps = 7")


def run_args(out, *more):
    return ("run", "b.toml", "--steps", STEPS, "--out", out, "--quiet", *more)


def spawn(*args, cwd, **kwargs):
    """`oncolattice` in a subprocess on one Numba thread (the result is the same for any
    count; on a shared 2-core machine this is faster).  The variable is set only while
    the child is created: Numba re-reads it at every compile in this process, and a
    changed value after its threads started is an error."""
    before = os.environ.get("NUMBA_NUM_THREADS")
    os.environ["NUMBA_NUM_THREADS"] = "1"
    try:
        return spawn_engine(*args, cwd=cwd, **kwargs)
    finally:
        if before is None:
            del os.environ["NUMBA_NUM_THREADS"]
        else:
            os.environ["NUMBA_NUM_THREADS"] = before


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (checkpoints every 5 steps), with its summary."""
    where = tmp_path_factory.mktemp("reference")
    (where / "b.toml").write_text(body_text())
    proc = spawn(*run_args("r.h5", "--checkpoint-every", 5, "--summary", "r.json"), cwd=where)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return where


@pytest.fixture
def fresh(tmp_path, reference):
    """An empty directory with the scenario."""
    shutil.copy(reference / "b.toml", tmp_path / "b.toml")
    return tmp_path


def datasets(path) -> dict:
    """Every dataset of a run file: (dtype, shape, bytes, attributes)."""
    out = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            out[name] = (obj.dtype, obj.shape, obj[()].tobytes(), dict(obj.attrs))
    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return out


def assert_same_run(path, reference):
    """The run file equals the reference in every dataset and is complete."""
    got, want = datasets(path), datasets(reference)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name][:2] == want[name][:2], name
        assert got[name][2] == want[name][2], f"{name} differs"
        assert got[name][3].keys() == want[name][3].keys(), name
    with h5py.File(path, "r") as f, h5py.File(reference, "r") as g:
        assert f.attrs["status"] == "complete"
        for key in ("scenario_toml", "seed", "steps_planned", "version"):
            assert f.attrs[key] == g.attrs[key]


def assert_same_summary(path, reference):
    """The summaries agree but in the wall time, the path and the thread count."""
    got, want = (json.loads(p.read_text()) for p in (path, reference))
    for s in (got, want):
        for key in ("wall_s", "output", "threads"):
            s.pop(key)
    assert got == want


def state_of(path) -> dict:
    """What a checkpoint holds, as comparable bytes: arrays, and the body's records."""
    ckpt = read_checkpoint(path)
    body, loop = ckpt.state_of_run()
    out = {f"{lat}/{name}": a.tobytes() for lat, arrays in ckpt.arrays.items()
           for name, a in arrays.items()}
    out.update(step=ckpt.step, seed=ckpt.attrs["seed"], last=loop.last_snapshot,
               totals=loop.immune_totals, next_clone=body.next_clone,
               decisions=repr(body.scenario.decisions),
               registry=body.registry.rows.tobytes(),
               records=body.circulation.records.tobytes(),
               schedule=body.schedule.tobytes(), rows=[r.tobytes() for r in body.rows],
               clinic=pickle.dumps({k: v for k, v in vars(body.clinic).items()}),
               sims=[(s.step_index, s.placed_from_outside, s.tissue_changed,
                      repr(s.field_stats), s.initial.tobytes(), s.departures.tobytes())
                     for s in body.lattices])
    return out


def finished(proc, *statuses, timeout=300):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode in statuses, (proc.returncode, err)
    assert "Traceback" not in err, err
    return err


def resume_in(where, *more, status=0):
    return finished(spawn("resume", "r.ckpt.h5", "--quiet", *more, cwd=where), status)


# -- interrupted runs resumed -----------------------------------------------------------

def test_killed_run_resumes_bit_identical(fresh, reference):
    """SIGKILL at an arbitrary step after the first checkpoint; the file still carries
    its writer's open flags and rows after the checkpoint, which resume drops."""
    proc = spawn(*run_args("r.h5", "--checkpoint-every", 3, "--summary", "r.json"), cwd=fresh)
    wait_for(lambda: (fresh / "r.ckpt.h5").exists() or proc.poll() is not None, timeout=120)
    time.sleep(random.Random(13).uniform(0.0, 0.4))
    proc.kill()
    finished(proc, -signal.SIGKILL)
    step = read_checkpoint(fresh / "r.ckpt.h5").step
    assert 3 <= step < STEPS
    resume_in(fresh)
    assert_same_run(fresh / "r.h5", reference / "r.h5")
    assert_same_summary(fresh / "r.json", reference / "r.json")
    assert state_of(fresh / "r.ckpt.h5").keys() == state_of(reference / "r.ckpt.h5").keys()


def test_sigterm_writes_a_checkpoint_and_the_resumed_run_is_bit_identical(fresh, reference):
    """SIGTERM at an arbitrary moment: the checkpoint of the step it stopped at (no
    --checkpoint-every: only on the signal), then resume."""
    proc = spawn(*run_args("r.h5", "--checkpoint", "r.ckpt.h5", "--summary", "r.json"),
                 cwd=fresh)
    wait_for(lambda: handles_stop_signals(proc) and (fresh / "r.h5").exists(), timeout=120)
    time.sleep(random.Random(7).uniform(0.0, 0.3))
    proc.send_signal(signal.SIGTERM)
    err = finished(proc, 143)
    assert "r.ckpt.h5" in err and "resume" in err
    with h5py.File(fresh / "r.h5", "r") as f:
        assert f.attrs["status"] == "interrupted"
    assert read_checkpoint(fresh / "r.ckpt.h5").step < STEPS
    resume_in(fresh)
    assert_same_run(fresh / "r.h5", reference / "r.h5")
    assert_same_summary(fresh / "r.json", reference / "r.json")


def test_a_resumed_run_killed_resumes_again_bit_identical(fresh, reference):
    """SIGUSR1 (a scheduler's warning), resume killed after its first checkpoint, resume
    again; the last checkpoint equals the uninterrupted run's."""
    proc = spawn(*run_args("r.h5", "--checkpoint-every", 5), cwd=fresh)
    wait_for(lambda: (fresh / "r.ckpt.h5").exists() or proc.poll() is not None, timeout=120)
    proc.send_signal(signal.SIGUSR1)
    finished(proc, 138)
    first = read_checkpoint(fresh / "r.ckpt.h5").step
    mtime = os.stat(fresh / "r.ckpt.h5").st_mtime_ns
    proc = spawn("resume", "r.ckpt.h5", "--quiet", cwd=fresh)
    wait_for(lambda: os.stat(fresh / "r.ckpt.h5").st_mtime_ns != mtime
             or proc.poll() is not None, timeout=120)
    proc.kill()
    finished(proc, -signal.SIGKILL)
    assert first < read_checkpoint(fresh / "r.ckpt.h5").step < STEPS
    resume_in(fresh)
    assert_same_run(fresh / "r.h5", reference / "r.h5")
    assert state_of(fresh / "r.ckpt.h5") == state_of(reference / "r.ckpt.h5")


def test_rows_and_snapshots_written_after_the_checkpoint_are_replaced(tmp_path, reference,
                                                                     capsys, monkeypatch):
    """A run file that went on past its checkpoint (here: to the end, then marked
    interrupted) is cut back to the checkpoint's step: its last rows, the last snapshot
    and the whole tables are those the resumed run writes, equal to the reference."""
    for name in ("b.toml", "r.h5", "r.ckpt.h5"):
        shutil.copy(reference / name, tmp_path / name)
    edit_attr(tmp_path / "r.h5", "status", "interrupted")
    monkeypatch.chdir(tmp_path)
    assert main(capsys, "resume", "r.ckpt.h5", "--quiet") == (0, [])
    assert_same_run(tmp_path / "r.h5", reference / "r.h5")
    assert_same_summary(tmp_path / "r.json", reference / "r.json")
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert list(f.attrs["resumed_at_step"]) == [35]


def test_a_failed_checkpoint_write_fails_the_run_and_leaves_no_partial_file(fresh, capsys,
                                                                           monkeypatch):
    import engine.checkpoint

    def full_disk(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(engine.checkpoint, "_write", full_disk)
    monkeypatch.chdir(fresh)
    line = one_error(capsys, *run_args("r.h5", "--checkpoint-every", 4), status=1)
    assert "r.ckpt.h5: cannot write the checkpoint of step 4: No space left" in line
    with h5py.File(fresh / "r.h5", "r") as f:
        assert f.attrs["status"] == "failed"
    assert sorted(p.name for p in fresh.iterdir()) == ["b.toml", "r.h5", "r.xdmf"]


# -- in process: checkpoint, restore, step ------------------------------------------------

def body_state(body) -> dict:
    arrays = {f"{s.name}/{k}": a for s in body.lattices for k, a in lattice_state(s).items()}
    rows = {f"{s.name}/row": row for s, row in zip(body.lattices, body.rows)}
    return {**arrays, **rows, "registry": body.registry.rows, "body": body.body_row,
            "records": body.circulation.records, "sizes": body.sizes}


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


@pytest.mark.parametrize("backend", ["numba", *CUDA_BACKENDS])
def test_checkpoint_restore_step_equals_step(tmp_path, backend):
    """A body checkpointed on Numba and restored on `backend` steps on exactly as the
    body never checkpointed (every state array, row and record, each step)."""
    scenario = parse_scenario(body_text(), "b.toml")
    body = Body(scenario, backend="numba")
    for _ in range(12):
        body.step()
    loop = Loop(scenario=scenario, steps=STEPS, snapshot_every=7, out=tmp_path / "x.h5")
    write_checkpoint(tmp_path / "x.ckpt.h5", body, loop)
    twin, _ = read_checkpoint(tmp_path / "x.ckpt.h5").restore(backend)
    assert_same_state(body_state(twin), body_state(body))
    for _ in range(6):
        body.step()
        twin.step()
        assert_same_state(body_state(twin), body_state(body))
    assert len(body.registry.rows) and len(body.circulation.records)
    assert set(lattice_state(body.primary)) == set(STATE_ARRAYS)


# -- refusals ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stopped(tmp_path_factory, reference):
    """A run stopped by SIGTERM at step 6 (in process), with its checkpoint."""
    where = tmp_path_factory.mktemp("stopped")
    shutil.copy(reference / "b.toml", where / "b.toml")
    polls = []

    def stop_at_step_six():
        polls.append(1)
        return signal.SIGTERM if len(polls) > 8 else None      # 2 polls before the loop
    cwd = os.getcwd()
    os.chdir(where)
    try:
        original, cli.stop_requested = cli.stop_requested, stop_at_step_six
        try:
            assert cli.main([str(a) for a in run_args("r.h5", "--checkpoint-every", 4)]) == 143
        finally:
            cli.stop_requested = original
    finally:
        os.chdir(cwd)
    assert read_checkpoint(where / "r.ckpt.h5").step == 6
    return where


@pytest.fixture
def copy(tmp_path, stopped, monkeypatch):
    """A copy of the stopped run, made the working directory."""
    for name in ("b.toml", "r.h5", "r.ckpt.h5"):
        shutil.copy(stopped / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(capsys, where, *args, needle):
    """A one-line error naming the problem; the run file and checkpoint unchanged."""
    before = {p: p.read_bytes() for p in (where / "r.h5", where / "r.ckpt.h5") if p.exists()}
    line = one_error(capsys, *args)
    assert needle in line, line
    assert {p: p.read_bytes() for p in before} == before
    return line


def edit_attr(path, key, value):
    with h5py.File(path, "r+") as f:
        f.attrs[key] = value


def test_a_checkpoint_of_another_version_is_refused(copy, capsys):
    edit_attr(copy / "r.ckpt.h5", "version", "0.0.1")
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="oncolattice 0.0.1")


def test_a_checkpoint_of_another_scenario_is_refused(copy, capsys):
    with h5py.File(copy / "r.h5", "r+") as f:
        f.attrs["scenario_toml"] = f.attrs["scenario_toml"].replace("seed = ", "seed = 1")
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="scenario")


def test_a_checkpoint_of_another_run_of_the_file_is_refused(copy, capsys):
    edit_attr(copy / "r.h5", "created_utc", "2026-01-01T00:00:00+00:00")
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="another run")


def test_a_run_file_short_of_the_checkpoints_rows_is_refused(copy, capsys):
    with h5py.File(copy / "r.h5", "r+") as f:
        f["body"].resize(3, axis=0)
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="/body holds 3 rows")


def test_a_truncated_checkpoint_is_refused(copy, capsys):
    data = (copy / "r.ckpt.h5").read_bytes()
    (copy / "r.ckpt.h5").write_bytes(data[: len(data) // 2])
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="corrupt checkpoint")


def test_a_flipped_byte_in_a_dataset_is_refused(copy, capsys):
    with h5py.File(copy / "r.ckpt.h5", "r") as f:
        offset = f["lattices/primary/kind"].id.get_offset() + 100
    with open(copy / "r.ckpt.h5", "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="corrupt checkpoint")


def test_missing_checkpoint_or_run_file_is_refused(copy, capsys):
    refused(capsys, copy, "resume", "nothere.ckpt.h5", needle="no such checkpoint")
    (copy / "r.h5").unlink()
    refused(capsys, copy, "resume", "r.ckpt.h5", needle="no such run file")


def test_a_complete_run_is_not_resumed(reference, capsys):
    refused(capsys, reference, "resume", str(reference / "r.ckpt.h5"), needle="is complete")


def test_checkpoint_every_zero_and_a_checkpoint_on_the_run_file_are_refused(fresh, capsys,
                                                                          monkeypatch):
    monkeypatch.chdir(fresh)
    refused(capsys, fresh, *run_args("r.h5", "--checkpoint-every", 0),
            needle="--checkpoint-every 0")
    refused(capsys, fresh, *run_args("r.h5", "--checkpoint", "r.h5"),
            needle="would overwrite the --out run file")
    refused(capsys, fresh, *run_args("r.h5", "--checkpoint", "b.toml"),
            needle="would overwrite the scenario file")
    assert not (fresh / "r.h5").exists()
    assert not checkpoint_path_for(fresh / "r.h5").exists()
