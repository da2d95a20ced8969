"""A run: a simulation driven step by step, with snapshots, counts and a summary."""
from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from kernels.immune import IMMUNE
from kernels.immunotherapy import IMMUNOTHERAPY
from kernels.lattice import KIND_NAMES

from . import __version__
from .backend import cpu_threads, gpu_free_bytes
from .errors import DoesNotFit, Interrupted, OutputFailed, UserError, shown
from .output import LatticeInfo, RunLock, RunWriter, write_summary
from .runformat import (BLOCK_FRACTION_ATTR, BODY, CODES_ATTR, COLONIES, COLONY_SIZES, CTCS,
                        KIND, LATTICE_ID_ATTR, PRIMARY, ROLE_ATTR, SITE, SITE_CLASS_ATTR,
                        SITE_ORGAN_ATTR, THERAPY, CHECKUPS, DECISIONS, UNITS_ATTR, counts_path,
                        kind_codes_attr, plain_rows)
from .body import NK_KILLED, Body, circulation_totals, site_class
from .domain import use_rank_gpu
from .colonies import CLASSES, COLONY_DTYPE, SIZE_DTYPE
from .simulation import counts_dtype
from .protocol import DECISION_DTYPE, checkup_dtype
from .therapy import RECORD_DTYPE as THERAPY_RECORD
from .state import SNAPSHOT_FIELDS, host_bytes_per_voxel, human_bytes, run_bytes

KIND_CODES = kind_codes_attr(KIND_NAMES)      # stored with the kind data: readers decode by it
SPACE_MARGIN_BYTES = 16 << 20   # free space kept beyond a snapshot before writing it


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

    def __init__(self, total: int, stream=sys.stderr, enabled: bool = True):
        self.total, self.stream, self.enabled = total, stream, enabled
        self.bar = None
        self.every = max(1, total // 10)
        self.started = time.perf_counter()
        if enabled and stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="step", file=stream, dynamic_ncols=True)

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
            rate = step / max(time.perf_counter() - self.started, 1e-9)
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

    def write_snapshot(self, *args):
        pass

    append_counts = append_rows = write_table = write_snapshot


def no_stop() -> int | None:
    return None


def run(scenario, *, backend: str, steps: int, out: Path, snapshot_every: int,
        summary_path: Path | None = None, progress: bool = True, log=sys.stderr,
        overwrite: bool = True, stop=no_stop, lock: RunLock | None = None,
        comm=None) -> dict:
    """Run `steps` steps, writing `out` (HDF5 + XDMF) and optionally a JSON summary.

    `out` is locked (:class:`RunLock`; `lock` if the caller holds it already) before
    it is created and until it is closed; an existing `out` is replaced only with
    `overwrite`.  `stop()` returns the number
    of a signal that asks the run to end, or None: it is polled at each step
    boundary, and the run then snapshots its current step, closes the file as
    ``interrupted`` and raises :class:`Interrupted`.  A failed write ends the run
    with :class:`OutputFailed`; so does a disk too full for the next snapshot.

    With `comm` (MPI, several ranks) every lattice is split into z slabs
    (`engine.domain`); rank 0 alone locks and writes `out` and the summary, the same
    file a single process writes, and the stop signal is the one any rank received."""
    out = Path(out)
    if comm is not None:
        stop = everywhere(stop, comm)
        if comm.Get_rank() != 0:
            return _run_locked(scenario, backend=backend, steps=steps, out=out, lock=None,
                               snapshot_every=snapshot_every, summary_path=None,
                               progress=False, log=log, stop=stop, comm=comm)
    if lock is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(out) as lock:
            return run(scenario, backend=backend, steps=steps, out=out, lock=lock,
                       snapshot_every=snapshot_every, summary_path=summary_path,
                       progress=progress, log=log, overwrite=overwrite, stop=stop, comm=comm)
    with lock:
        if out.exists() and not overwrite:
            raise UserError(f"--out {shown(out)}: the file exists (use --overwrite to replace it)")
        return _run_locked(scenario, backend=backend, steps=steps, out=out, lock=lock,
                           snapshot_every=snapshot_every, summary_path=summary_path,
                           progress=progress, log=log, stop=stop, comm=comm)


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


def _run_locked(scenario, *, backend, steps, out, lock, snapshot_every, summary_path,
                progress, log, stop, comm=None) -> dict:
    _stop_before_start(stop, out)
    ensure_fits(scenario, backend)
    started = time.perf_counter()
    if comm is not None and backend == "cupy":
        use_rank_gpu(comm)
    body = Body(scenario, backend=backend, comm=comm)
    root = body.primary.domain.root
    sim = body.primary
    _stop_before_start(stop, out)
    attrs = {
        "scenario_toml": scenario.resolved_toml(),
        "scenario_source": scenario.text,
        "scenario_path": scenario.path,
        "seed": int(scenario["scenario.seed"]),
        "version": __version__,
        "backend": backend,
        "step_h": float(scenario["time.step_h"]),
        "steps_planned": int(steps),
        "mpi_ranks": body.primary.domain.size,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    field_attrs = {name: {UNITS_ATTR: units} for name, (_, units) in SNAPSHOT_FIELDS.items()}
    field_attrs[KIND][CODES_ATTR] = KIND_CODES
    fields = {name: dtype for name, (dtype, _) in SNAPSHOT_FIELDS.items()}
    infos = lattice_infos(body)               # every rank: the organ maps are gathered
    try:
        writer = RunWriter(out, attrs=attrs, lattices=infos, counts_dtype=sim.dtype,
                           snapshot_fields=fields, field_attrs=field_attrs, lock=lock,
                           tables=body_tables(body)) if root else NoWriter()
    except OSError as exc:
        raise OutputFailed(f"{shown(out)}: cannot create the run file: "
                           f"{exc.strerror or exc}") from None
    snapshot_bytes = sum(run_bytes(s.shape)["host_bytes"] for s in body.lattices)

    def snapshot():
        need = snapshot_bytes + SPACE_MARGIN_BYTES
        if root and free_bytes(out.parent) < need:
            raise OSError(28, f"No space left on device (under {human_bytes(need)} free)")
        writer.write_table(COLONIES, body.registry.rows)
        writer.write_table(CTCS, body.circulation.records)
        writer.write_snapshot(sim.step_index, sim.time_h,
                              {s.name: s.snapshot() for s in body.lattices})
        return sim.step_index

    immune_totals = dict.fromkeys(IMMUNE.events + IMMUNOTHERAPY.events, 0)   # adoptive cells too

    def record_step(rows):
        for r in rows:
            for event in immune_totals:
                immune_totals[event] += int(r[event])
        writer.append_counts(rows[0])
        for site, row in zip(body.sites, rows[1:]):
            writer.append_rows(counts_path(site.name, SITE), row)
        writer.append_rows(BODY, body.body_row)
        writer.append_rows(COLONY_SIZES, body.sizes)
        writer.append_rows(THERAPY, body.delivered)
        writer.append_rows(CHECKUPS, body.clinic.checkups)
        writer.append_rows(DECISIONS, body.clinic.decided)

    with writer:
        with writing(writer, out, "the first snapshot"):
            record_step(body.rows)
            last = snapshot()
        bar = Progress(steps, stream=log, enabled=progress)
        try:
            row = sim.initial
            for _ in range(steps):
                if (signum := stop()) is not None:
                    with writing(writer, out, f"the snapshot of step {sim.step_index}"):
                        if last != sim.step_index:
                            last = snapshot()
                        name = signal.Signals(signum).name
                        kept = writer.n_snapshots
                        writer.close("interrupted", f"stopped by {name} at step {sim.step_index}")
                    raise Interrupted(signum, f"stopped by {name} at step {sim.step_index} of "
                                      f"{steps}: {shown(out)} keeps {kept} snapshots up to "
                                      f"step {last} (status interrupted)")
                rows = body.step()
                row = rows[0]
                with writing(writer, out, f"the snapshot of step {sim.step_index}"):
                    record_step(rows)
                    if sim.step_index % snapshot_every == 0 or sim.step_index == steps:
                        last = snapshot()
                bar.update(row)
        finally:
            bar.close()
        with writing(writer, out, "the end of the run"):
            writer.write_table(COLONIES, body.registry.rows)
            writer.write_table(CTCS, body.circulation.records)
            writer.close("complete")
    wall = time.perf_counter() - started
    summary = {
        "scenario": scenario["scenario.name"],
        "output": str(out),
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
    summary["immune"] = immune_summary(body, immune_totals)
    if body.sites:
        summary["body"] = body_summary(body)
    if scenario.therapies:
        summary["therapy"] = therapy_summary(body)
    if scenario.rules:
        summary["protocol"] = protocol_summary(body)
    if summary_path is not None and root:
        try:
            write_summary(summary_path, summary)
        except OSError as exc:
            raise OutputFailed(f"--summary {shown(summary_path)}: cannot write: "
                               f"{exc.strerror or exc}") from None
    return summary
