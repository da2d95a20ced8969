"""A run: a simulation driven step by step, with snapshots, counts and a summary."""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import signal
import sys
import time
import dataclasses
from contextlib import contextmanager, nullcontext
from pathlib import Path

import h5py
import numpy as np

from kernels.immune import IMMUNE
from kernels.immunotherapy import IMMUNOTHERAPY
from kernels.lattice import KIND_NAMES

from . import __version__
from .backend import cpu_threads, gpu_free_bytes
from .errors import DoesNotFit, Interrupted, OutputFailed, UserError, shown
from .checkpoint import Loop, read_checkpoint, sha256, write_checkpoint
from .output import Cut, LatticeInfo, RunLock, RunWriter, write_summary
from .runformat import (BLOCK_FRACTION_ATTR, BODY, CODES_ATTR, COLONIES, COLONY_SIZES, CTCS,
                        KIND, LATTICE_ID_ATTR, PRIMARY, ROLE_ATTR, SITE, SITE_CLASS_ATTR,
                        SITE_ORGAN_ATTR, THERAPY, CHECKUPS, DECISIONS, UNITS_ATTR, FORMAT,
                        FORMAT_ATTR, STATUS_ATTR, counts_path,
                        kind_codes_attr, plain_rows)
from .body import NK_KILLED, Body, circulation_totals, site_class
from .domain import depend_on_each_other, use_rank_gpu
from .colonies import CLASSES, COLONY_DTYPE, SIZE_DTYPE
from .simulation import counts_dtype
from .protocol import DECISION_DTYPE, checkup_dtype
from .therapy import RECORD_DTYPE as THERAPY_RECORD
from .state import SNAPSHOT_FIELDS, host_bytes_per_voxel, human_bytes, run_bytes

KIND_CODES = kind_codes_attr(KIND_NAMES)      # stored with the kind data: readers decode by it
SPACE_MARGIN_BYTES = 16 << 20   # free space kept beyond a snapshot before writing it
RESUMED_ATTR = "resumed_at_step"    # run file attribute: the step of every resume, in order


def available_host_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, else physical pages; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def lattice_shapes(scenario) -> dict[str, tuple[int, int, int]]:
    """The shape of every lattice of the body, by the scenario key that sets it."""
    shapes = {"lattice.shape": scenario.shape}
    shapes.update({f"sites[{i}].shape": tuple(site["shape"])
                   for i, site in enumerate(scenario.sites)})
    return shapes


def ensure_fits(scenario, backend: str) -> None:
    """Refuse, before allocating, a body the machine cannot hold.

    The host holds the initial tissue while it is built (all state arrays) and a
    staged snapshot; the compute device holds every lattice's state and work buffers
    (on the CPU backends the device is the host)."""
    shapes = lattice_shapes(scenario)
    device = sum(run_bytes(shape)["device_bytes"] for shape in shapes.values())
    voxels = sum(run_bytes(shape)["voxels"] for shape in shapes.values())
    largest = max(shapes, key=lambda key: run_bytes(shapes[key])["voxels"])
    nz, ny, nx = shapes[largest]
    size = (f"lattice {nz}x{ny}x{nx}" if len(shapes) == 1 else
            f"a body of {len(shapes)} lattices ({voxels} voxels; largest {largest} = "
            f"[{nz}, {ny}, {nx}])")
    on_host = voxels * host_bytes_per_voxel(backend)
    if backend == "cupy":
        free = gpu_free_bytes()
        if free is not None and device > free:
            raise DoesNotFit(f"{size} needs {human_bytes(device)} of GPU memory "
                             f"but the device has {human_bytes(free)} free")
    have = available_host_bytes()
    if have is not None and on_host > have:
        raise DoesNotFit(f"{size} needs about {human_bytes(on_host)} of host memory for the "
                         f"{backend} backend, but only {human_bytes(have)} is available")


def lattice_infos(body) -> list[LatticeInfo]:
    """The static description of every lattice of the body, with its role."""
    infos = []
    for sim in body.lattices:
        lat = sim.lattice
        attrs = {ROLE_ATTR: PRIMARY if sim is body.primary else SITE, LATTICE_ID_ATTR: lat.lattice_id}
        if sim is not body.primary:
            organ = body.organ_of[sim.name]
            attrs.update({SITE_ORGAN_ATTR: organ, SITE_CLASS_ATTR: site_class(organ),
                          BLOCK_FRACTION_ATTR: body.block_fraction[sim.name]})
        infos.append(LatticeInfo(name=sim.name, shape=sim.shape,
                                 voxel_um=sim.scenario["lattice.voxel_um"],
                                 organ=sim.gathered("organ"),
                                 organ_names=("none",) + sim.organ_names, attrs=attrs))
    return infos


def body_tables(body) -> dict[str, np.dtype]:
    """The run file's tables beyond the primary's counts (engine.runformat)."""
    tables = {counts_path(site.name, SITE): site.dtype for site in body.sites}
    tables.update({BODY: body.dtype, COLONY_SIZES: SIZE_DTYPE, COLONIES: COLONY_DTYPE,
                   CTCS: body.circulation.records.dtype, THERAPY: THERAPY_RECORD,
                   CHECKUPS: checkup_dtype(), DECISIONS: DECISION_DTYPE})
    return tables


def body_summary(body) -> dict:
    """The body part of the summary: each site's counts, the circulation's totals and
    the colony registry."""
    return {
        "sites": {site.name: {"organ": body.organ_of[site.name],
                              "block_fraction_of_organ": body.block_fraction[site.name],
                              **counts_by_kind(row)}
                  for site, row in zip(body.sites, body.rows[1:])},
        "circulation": circulation_totals(body.circulation),
        "colonies_by_class": {c: int((body.registry.rows["class"] == c.encode()).sum())
                              for c in CLASSES},
        "colonies": body.registry.summary(),
    }


def immune_summary(body, totals: dict) -> dict:
    """The patient's immune status and what immunity did over the run (every lattice):
    cells on the lattices now, each immune event (and adoptive transfer's infused cells,
    `kernels/immunotherapy.py`) summed over the steps, and the arrivals NK cells killed
    (`engine.body`)."""
    scenario = body.scenario
    circulation = body.circulation
    reason = (circulation.fail_reasons.index(NK_KILLED) + 1
              if NK_KILLED in circulation.fail_reasons else -1)
    return {"enabled": bool(scenario["immune.enabled"]),
            "status": float(scenario["immune.status"]),
            "t_cell": sum(int(r["t_cell"]) for r in body.rows),
            "nk_cell": sum(int(r["nk_cell"]) for r in body.rows),
            **{event: int(n) for event, n in totals.items()},
            "killed_by_nk_on_arrival": int((circulation.records["fail_reason"] == reason).sum())}


def therapy_summary(body) -> list[dict]:
    """The therapy record of the run: every delivery given, in time order."""
    return plain_rows(body.schedule[body.schedule["step"] <= body.step_index])


def protocol_summary(body) -> dict:
    """The adaptive protocol's name and every decision it took."""
    return {"name": body.scenario.protocol["name"],
            "modelled_on": body.scenario.protocol["modelled_on"],
            "decisions": [{"step": d.step, "rule": d.rule, "action": d.verb,
                           "therapy": d.therapy, "factor": d.factor}
                          for d in body.scenario.decisions]}


def steps_for(scenario) -> int:
    return max(1, int(round(scenario["time.duration_h"] / scenario["time.step_h"])))


def disk_estimate(scenario, steps: int, snapshot_every: int) -> dict:
    """Disk a run writes at most (snapshots uncompressed, plus the counts table)."""
    snapshots = steps // snapshot_every + 2             # step 0, every N, the last step
    per_snapshot = sum(run_bytes(shape)["host_bytes"]              # uncompressed
                       for shape in lattice_shapes(scenario).values())
    row = counts_dtype(tuple(o["name"] for o in scenario.organs)).itemsize * (
        1 + len(scenario.sites))
    return {"snapshots": snapshots, "snapshot_bytes": per_snapshot,
            "bytes": snapshots * per_snapshot + (steps + 1) * row}


def free_bytes(directory) -> int:
    """Free space an unprivileged writer may use on the filesystem of `directory`."""
    return shutil.disk_usage(directory).free


def write_error_reason(exc) -> str:
    """The reason of a failed write in a few words: the OS error's text, also when
    HDF5 wraps it ("... errno = 28, error message = 'No space left on device' ...")."""
    if getattr(exc, "strerror", None):
        return exc.strerror
    text = str(exc)
    if found := re.search(r"error message = '([^']*)'", text):
        return found.group(1)
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def writing(writer, out, what: str):
    """Turn a failed write (a full disk, a quota, an I/O error; h5py raises OSError or
    RuntimeError) into OutputFailed naming the file; the file is closed as `failed`
    with the reason where it can still be written."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        reason = write_error_reason(exc)
        message = f"{shown(out)}: cannot write {what}: {reason}"
        if not writer.closed:
            try:
                writer.close("failed", message)
            except Exception:
                pass
        raise OutputFailed(message, hdf5_unclosed=writer.hdf5_unclosed) from None


class Progress:
    """A tqdm bar on a terminal; plain log lines (about every 10 %) otherwise."""

    def __init__(self, total: int, stream=sys.stderr, enabled: bool = True, start: int = 0):
        self.total, self.stream, self.enabled, self.start = total, stream, enabled, start
        self.bar = None
        self.every = max(1, total // 10)
        self.started = time.perf_counter()
        if enabled and stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=start, unit="step", file=stream,
                            dynamic_ncols=True)

    def update(self, row) -> None:
        if not self.enabled:
            return
        status = f"tumor={int(row['tumor'])} functional_fraction={float(row['functional_fraction']):.4f}"
        if self.bar is not None:
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.update(1)
            return
        step = int(row["step"])
        if step % self.every == 0 or step == self.total:
            rate = (step - self.start) / max(time.perf_counter() - self.started, 1e-9)
            print(f"step {step}/{self.total} t={float(row['time_h']):.1f} h {status} "
                  f"({rate:.1f} steps/s)", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def counts_by_kind(row) -> dict[str, int]:
    return {name: int(row[name]) for name in KIND_NAMES}


class NoWriter:
    """The run file as ranks other than 0 see it: they compute, gather to rank 0 and
    write nothing."""

    closed, n_snapshots, hdf5_unclosed = False, 0, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self, status, reason=None):
        self.closed = True

    def flush(self) -> dict:
        return {}

    def write_snapshot(self, *args):
        pass

    append_counts = append_rows = write_table = write_snapshot


def no_stop() -> int | None:
    return None


def run(scenario, *, backend: str, steps: int, out: Path, snapshot_every: int,
        summary_path: Path | None = None, progress: bool = True, log=sys.stderr,
        overwrite: bool = True, stop=no_stop, lock: RunLock | None = None,
        checkpoint: Path | None = None, checkpoint_every: int | None = None,
        comm=None) -> dict:
    """Run `steps` steps, writing `out` (HDF5 + XDMF) and optionally a JSON summary.

    `out` is locked (:class:`RunLock`; `lock` if the caller holds it already) before
    it is created and until it is closed; an existing `out` is replaced only with
    `overwrite`.  `stop()` returns the number
    of a signal that asks the run to end, or None: it is polled at each step
    boundary, and the run then snapshots its current step, closes the file as
    ``interrupted`` and raises :class:`Interrupted`.  A failed write ends the run
    with :class:`OutputFailed`; so does a disk too full for the next snapshot.

    With a `checkpoint` path the run writes its whole state there (`engine.checkpoint`)
    every `checkpoint_every` steps (None: never on schedule) and always when a stop
    signal ends it, so that :func:`resume` continues it.

    With `comm` (MPI, several ranks) every lattice is split into z slabs
    (`engine.domain`); rank 0 alone locks and writes `out`, the summary and the
    checkpoints, the same files a single process writes, and the stop signal is the one
    any rank received."""
    out = Path(out)
    loop = Loop(scenario=scenario, steps=int(steps), snapshot_every=int(snapshot_every),
                out=out, summary_path=summary_path, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every,
                immune_totals=dict.fromkeys(IMMUNE.events + IMMUNOTHERAPY.events, 0))
    if comm is not None:
        stop = everywhere(stop, comm)
        if comm.Get_rank() != 0:
            return _run_locked(dataclasses.replace(loop, summary_path=None), backend=backend,
                               lock=None, progress=False, log=log, stop=stop, comm=comm)
    if lock is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(out) as lock:
            return run(scenario, backend=backend, steps=steps, out=out, lock=lock,
                       snapshot_every=snapshot_every, summary_path=summary_path,
                       progress=progress, log=log, overwrite=overwrite, stop=stop,
                       checkpoint=checkpoint, checkpoint_every=checkpoint_every, comm=comm)
    with lock:
        if out.exists() and not overwrite:
            raise UserError(f"--out {shown(out)}: the file exists (use --overwrite to replace it)")
        return _run_locked(loop, backend=backend, lock=lock, progress=progress, log=log,
                           stop=stop, comm=comm)


def everywhere(stop, comm):
    """`stop` polled on every rank: the largest signal number any rank received (every
    rank then stops at the same step boundary)."""
    from mpi4py import MPI

    def stop_anywhere():
        return comm.allreduce(stop() or 0, op=MPI.MAX) or None
    return stop_anywhere


def _stop_before_start(stop, out):
    if (signum := stop()) is not None:
        raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} before the run "
                                  f"started; nothing was written to {shown(out)}")


def writer_layout(body) -> dict:
    """What a RunWriter of this body's run is told of its file: lattices, counts and
    tables, snapshot fields."""
    return {"lattices": lattice_infos(body), "counts_dtype": body.primary.dtype,
            "snapshot_fields": {name: dtype for name, (dtype, _) in SNAPSHOT_FIELDS.items()},
            "tables": body_tables(body)}


def _run_locked(loop: Loop, *, backend, lock, progress, log, stop, comm=None) -> dict:
    scenario, out = loop.scenario, loop.out
    _stop_before_start(stop, out)
    ensure_fits(scenario, backend)
    started = time.perf_counter()
    if comm is not None and backend == "cupy":
        use_rank_gpu(comm)
    body = Body(scenario, backend=backend, comm=comm)
    _stop_before_start(stop, out)
    loop.created_utc = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    attrs = {
        "scenario_toml": scenario.resolved_toml(),
        "scenario_source": scenario.text,
        "scenario_path": scenario.path,
        "seed": int(scenario["scenario.seed"]),
        "version": __version__,
        "backend": backend,
        "step_h": float(scenario["time.step_h"]),
        "steps_planned": loop.steps,
        "mpi_ranks": body.primary.domain.size,
        "created_utc": loop.created_utc,
    }
    field_attrs = {name: {UNITS_ATTR: units} for name, (_, units) in SNAPSHOT_FIELDS.items()}
    field_attrs[KIND][CODES_ATTR] = KIND_CODES
    layout = writer_layout(body)              # every rank: the organ maps are gathered
    try:
        writer = (RunWriter(out, attrs=attrs, field_attrs=field_attrs, lock=lock, **layout)
                  if body.primary.domain.root else NoWriter())
    except OSError as exc:
        raise OutputFailed(f"{shown(out)}: cannot create the run file: "
                           f"{exc.strerror or exc}") from None
    return drive(Recorder(writer, body, loop), backend=backend, started=started,
                 progress=progress, log=log, stop=stop, begin=True)


class Recorder:
    """What a run writes of its body: each step's rows, snapshots, checkpoints."""

    def __init__(self, writer, body, loop: Loop):
        self.writer, self.body, self.loop = writer, body, loop
        self.snapshot_bytes = sum(run_bytes(s.shape)["host_bytes"] for s in body.lattices)
        self.checkpointed = -1          # step of the last checkpoint this process wrote

    def record(self, rows) -> None:
        """Queue one step's rows of every table (and sum its immune events)."""
        body, writer, totals = self.body, self.writer, self.loop.immune_totals
        for r in rows:
            for event in totals:
                totals[event] += int(r[event])
        writer.append_counts(rows[0])
        for site, row in zip(body.sites, rows[1:]):
            writer.append_rows(counts_path(site.name, SITE), row)
        writer.append_rows(BODY, body.body_row)
        writer.append_rows(COLONY_SIZES, body.sizes)
        writer.append_rows(THERAPY, body.delivered)
        writer.append_rows(CHECKUPS, body.clinic.checkups)
        writer.append_rows(DECISIONS, body.clinic.decided)

    def snapshot(self) -> int:
        """Write the snapshot of the current step (and the changing tables); returns the step."""
        body, writer = self.body, self.writer
        need = self.snapshot_bytes + SPACE_MARGIN_BYTES
        if body.primary.domain.root and free_bytes(self.loop.out.parent) < need:
            raise OSError(28, f"No space left on device (under {human_bytes(need)} free)")
        writer.write_table(COLONIES, body.registry.rows)
        writer.write_table(CTCS, body.circulation.records)
        writer.write_snapshot(body.step_index, body.time_h,
                              {s.name: s.snapshot() for s in body.lattices})
        return body.step_index

    def scheduled_snapshot(self) -> None:
        """The snapshot of every `snapshot_every` steps and of the last step."""
        step, loop = self.body.step_index, self.loop
        if step % loop.snapshot_every == 0 or step == loop.steps:
            loop.last_snapshot = self.snapshot()

    def checkpoint(self, started: float) -> None:
        """Flush the run file, then write the checkpoint of the current step (the file
        then holds every row the checkpoint's step needs)."""
        loop, step = self.loop, self.body.step_index
        if loop.checkpoint is None or self.checkpointed == step:
            return
        lengths = self.writer.flush()
        write_checkpoint(loop.checkpoint, self.body, dataclasses.replace(
            loop, lengths=lengths, wall_s=loop.wall_s + time.perf_counter() - started))
        self.checkpointed = step


def drive(recorder: Recorder, *, backend, started, progress, log, stop,
          begin: bool = False) -> dict:
    """Step the body to the planned step, recording each step (the loop of a run and
    of a resumed run; `begin`: first record step 0), then close the file and return
    the summary."""
    writer, body, loop = recorder.writer, recorder.body, recorder.loop
    out, sim = loop.out, body.primary
    with writer:
        if begin:
            with writing(writer, out, "the first snapshot"):
                recorder.record(body.rows)
                loop.last_snapshot = recorder.snapshot()
        bar = Progress(loop.steps, stream=log, enabled=progress, start=sim.step_index)
        try:
            while sim.step_index < loop.steps:
                if (signum := stop()) is not None:
                    stop_run(recorder, signum, started)
                rows = body.step()
                with writing(writer, out, f"the snapshot of step {sim.step_index}"):
                    recorder.record(rows)
                    recorder.scheduled_snapshot()
                    if loop.checkpoint_due(sim.step_index):
                        recorder.checkpoint(started)
                bar.update(rows[0])
        finally:
            bar.close()
        with writing(writer, out, "the end of the run"):
            writer.write_table(COLONIES, body.registry.rows)
            writer.write_table(CTCS, body.circulation.records)
            writer.close("complete")
    return finish(body, loop, backend, loop.wall_s + time.perf_counter() - started)


def stop_run(recorder: Recorder, signum: int, started: float) -> None:
    """End the run at this step boundary on a stop signal: the checkpoint (where the run
    keeps one), a snapshot of the current step, the file closed as interrupted."""
    writer, body, loop = recorder.writer, recorder.body, recorder.loop
    step, name = body.step_index, signal.Signals(signum).name
    with writing(writer, loop.out, f"the snapshot of step {step}"):
        recorder.checkpoint(started)
        last = loop.last_snapshot if loop.last_snapshot == step else recorder.snapshot()
        kept = writer.n_snapshots
        writer.close("interrupted", f"stopped by {name} at step {step}")
    resumable = (f"; checkpoint {shown(loop.checkpoint)} (oncolattice resume "
                 f"{shown(loop.checkpoint)})" if loop.checkpoint is not None else "")
    raise Interrupted(signum, f"stopped by {name} at step {step} of {loop.steps}: "
                      f"{shown(loop.out)} keeps {kept} snapshots up to step {last} "
                      f"(status interrupted){resumable}")


def finish(body, loop: Loop, backend: str, wall: float) -> dict:
    """The summary of a finished run, written to `loop.summary_path` if it has one."""
    scenario, sim = loop.scenario, body.primary
    row = body.rows[0]
    summary = {
        "scenario": scenario["scenario.name"],
        "output": str(loop.out),
        "steps": int(sim.step_index),
        "time_h": float(sim.time_h),
        "seed": int(scenario["scenario.seed"]),
        "backend": backend,
        "threads": cpu_threads() if backend == "numba" else None,
        "mpi_ranks": body.primary.domain.size,
        "version": __version__,
        "wall_s": round(wall, 3),
        "counts_initial": counts_by_kind(sim.initial),
        "counts": counts_by_kind(row),
        "functional_fraction": float(row["functional_fraction"]),
        "tumor_growth": float(row["tumor"]) / max(int(sim.initial["tumor"]), 1),
    }
    summary["immune"] = immune_summary(body, loop.immune_totals)
    if body.sites:
        summary["body"] = body_summary(body)
    if scenario.therapies:
        summary["therapy"] = therapy_summary(body)
    if scenario.rules:
        summary["protocol"] = protocol_summary(body)
    if loop.summary_path is not None:
        try:
            write_summary(loop.summary_path, summary)
        except OSError as exc:
            raise OutputFailed(f"--summary {shown(loop.summary_path)}: cannot write: "
                               f"{exc.strerror or exc}") from None
    return summary


# -- resuming ------------------------------------------------------------------------

def resume(checkpoint: Path, *, backend: str, out: Path | None = None, progress: bool = True,
           log=sys.stderr, stop=no_stop, comm=None) -> dict:
    """Continue the run of `checkpoint` to its planned step, appending to its run file
    (`out`: the run file, where it has moved since).  The run file is locked, checked
    against the checkpoint (its scenario, its creation, the rows it holds) before
    anything is changed, then cut back to the checkpoint's step (`output.Cut`: rows
    and snapshots a killed run wrote after it are dropped) and continued; every row
    and snapshot equals those of the run never interrupted, on any number of MPI ranks
    (`comm`: rank 0 locks, checks and writes; every rank holds its slabs)."""
    ckpt = read_checkpoint(checkpoint)
    out = Path(out) if out is not None else ckpt.run_file
    if not out.is_file():
        raise UserError(f"{shown(out)}: no such run file (the run file of {shown(checkpoint)}; "
                        f"name it with --out if it has moved)")
    body, loop = ckpt.state_of_run()
    resumed = check_run_file(out, ckpt, loop.lengths).get(RESUMED_ATTR, ())
    root = comm is None or comm.Get_rank() == 0
    if comm is not None:
        stop = everywhere(stop, comm)
        depend_on_each_other(comm)          # every rank checked the files; rank 0 writes
    with RunLock(out) if root else nullcontext() as lock:
        if root:
            check_run_file(out, ckpt, loop.lengths)          # again, now that it is locked
        _stop_before_start(stop, out)
        ensure_fits(loop.scenario, backend)
        if comm is not None and backend == "cupy":
            use_rank_gpu(comm)
        ckpt.place(body, backend, comm)
        loop.out, loop.checkpoint = out, ckpt.path
        if not root:
            loop.summary_path = None
        if progress and root:
            print(f"oncolattice {__version__}: resuming {shown(out)} at step {ckpt.step} of "
                  f"{loop.steps} from {shown(checkpoint)} backend={backend}"
                  + (f" ranks={comm.Get_size()}" if comm is not None else ""), file=log,
                  flush=True)
        started = time.perf_counter()
        cut = Cut(lengths=loop.lengths,
                  whole={COLONIES: body.registry.rows, CTCS: body.circulation.records})
        layout = writer_layout(body)
        try:
            writer = RunWriter(out, lock=lock, cut=cut, **layout, attrs={
                RESUMED_ATTR: np.append(np.asarray(resumed, dtype=np.int64), ckpt.step)}) \
                if root else NoWriter()
        except OSError as exc:
            raise OutputFailed(f"{shown(out)}: cannot reopen the run file: "
                               f"{exc.strerror or exc}") from None
        recorder = Recorder(writer, body, loop)
        recorder.checkpointed = ckpt.step           # it is there already
        return drive(recorder, backend=backend, started=started, progress=progress and root,
                     log=log, stop=stop)


def check_run_file(out: Path, ckpt, lengths: dict[str, int]) -> dict:
    """Refuse a run file the checkpoint cannot continue: not a run file, of another
    scenario or another run, complete, or short of the rows the checkpoint's step has
    written (`lengths`, path -> rows); else return its root attributes."""
    attrs, have = run_file_facts(out, lengths)
    name = shown(ckpt.path)
    if sha256(str(attrs.get("scenario_toml", "")).encode()) != ckpt.attrs["scenario_sha256"]:
        raise UserError(f"{name}: the checkpoint's scenario is not that of {shown(out)} "
                        f"(scenario_toml hashes differ)")
    if attrs.get("created_utc") != ckpt.attrs["run_created_utc"]:
        raise UserError(f"{name}: the checkpoint is of another run of {shown(out)} (created "
                        f"{ckpt.attrs['run_created_utc']}, the file {attrs.get('created_utc')})")
    if attrs.get(STATUS_ATTR) == "complete":
        raise UserError(f"{shown(out)}: the run is complete; there is nothing to resume")
    for path, rows in lengths.items():
        if have[path] < rows:
            raise UserError(f"{shown(out)}: /{path} holds {max(have[path], 0)} rows, fewer than "
                            f"the {rows} written up to step {ckpt.step} of checkpoint {name}")
    return attrs


def run_file_facts(out: Path, paths) -> tuple[dict, dict[str, int]]:
    """(root attributes, rows of each dataset in `paths`, -1 where it is missing) of a
    run file, read without changing it (also the file of a writer that died, still
    marked open for write)."""
    for options in ({}, {"swmr": True}):
        try:
            with h5py.File(out, "r", locking=False, **options) as f:
                if f.attrs.get(FORMAT_ATTR) != FORMAT:
                    raise UserError(f"{shown(out)}: not an oncolattice run file")
                attrs = {k: (v.decode() if isinstance(v, bytes) else v)
                         for k, v in f.attrs.items()}
                return attrs, {path: int(f[path].shape[0]) if path in f else -1
                               for path in paths}
        except OSError as exc:
            reason = str(exc).splitlines()[0]
    raise UserError(f"{shown(out)}: not a readable HDF5 file ({reason})")
