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

from kernels.lattice import KIND_NAMES

from . import __version__
from .backend import cpu_threads, gpu_free_bytes
from .errors import DoesNotFit, Interrupted, OutputFailed, UserError, shown
from .output import LatticeInfo, RunLock, RunWriter, write_summary
from .runformat import CODES_ATTR, KIND, UNITS_ATTR, kind_codes_attr
from .simulation import Simulation, counts_dtype
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


def ensure_fits(shape, backend: str) -> None:
    """Refuse, before allocating, a lattice the machine cannot hold.

    The host holds the initial tissue while it is built (all state arrays) and a
    staged snapshot; the compute device holds state and work buffers (on the CPU
    backends the device is the host)."""
    need = run_bytes(shape)
    size = f"lattice {shape[0]}x{shape[1]}x{shape[2]}"
    on_host = need["voxels"] * host_bytes_per_voxel(backend)
    if backend == "cupy":
        free = gpu_free_bytes()
        if free is not None and need["device_bytes"] > free:
            raise DoesNotFit(f"{size} needs {human_bytes(need['device_bytes'])} of GPU memory "
                             f"but the device has {human_bytes(free)} free")
    have = available_host_bytes()
    if have is not None and on_host > have:
        raise DoesNotFit(f"{size} needs about {human_bytes(on_host)} of host memory for the "
                         f"{backend} backend, but only {human_bytes(have)} is available")


def steps_for(scenario) -> int:
    return max(1, int(round(scenario["time.duration_h"] / scenario["time.step_h"])))


def disk_estimate(scenario, steps: int, snapshot_every: int) -> dict:
    """Disk a run writes at most (snapshots uncompressed, plus the counts table)."""
    snapshots = steps // snapshot_every + 2             # step 0, every N, the last step
    per_snapshot = run_bytes(scenario.shape)["host_bytes"]        # uncompressed
    row = counts_dtype(tuple(o["name"] for o in scenario.organs)).itemsize
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


def no_stop() -> int | None:
    return None


def run(scenario, *, backend: str, steps: int, out: Path, snapshot_every: int,
        summary_path: Path | None = None, progress: bool = True, log=sys.stderr,
        overwrite: bool = True, stop=no_stop, lock: RunLock | None = None) -> dict:
    """Run `steps` steps, writing `out` (HDF5 + XDMF) and optionally a JSON summary.

    `out` is locked (:class:`RunLock`; `lock` if the caller holds it already) before
    it is created and until it is closed; an existing `out` is replaced only with
    `overwrite`.  `stop()` returns the number
    of a signal that asks the run to end, or None: it is polled at each step
    boundary, and the run then snapshots its current step, closes the file as
    ``interrupted`` and raises :class:`Interrupted`.  A failed write ends the run
    with :class:`OutputFailed`; so does a disk too full for the next snapshot."""
    out = Path(out)
    if lock is None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with RunLock(out) as lock:
            return run(scenario, backend=backend, steps=steps, out=out, lock=lock,
                       snapshot_every=snapshot_every, summary_path=summary_path,
                       progress=progress, log=log, overwrite=overwrite, stop=stop)
    with lock:
        if out.exists() and not overwrite:
            raise UserError(f"--out {shown(out)}: the file exists (use --overwrite to replace it)")
        return _run_locked(scenario, backend=backend, steps=steps, out=out, lock=lock,
                           snapshot_every=snapshot_every, summary_path=summary_path,
                           progress=progress, log=log, stop=stop)


def _stop_before_start(stop, out):
    if (signum := stop()) is not None:
        raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} before the run "
                                  f"started; nothing was written to {shown(out)}")


def _run_locked(scenario, *, backend, steps, out, lock, snapshot_every, summary_path,
                progress, log, stop) -> dict:
    _stop_before_start(stop, out)
    ensure_fits(scenario.shape, backend)
    started = time.perf_counter()
    sim = Simulation(scenario, backend=backend)
    _stop_before_start(stop, out)
    lat = sim.lattice
    attrs = {
        "scenario_toml": scenario.resolved_toml(),
        "scenario_source": scenario.text,
        "scenario_path": scenario.path,
        "seed": int(scenario["scenario.seed"]),
        "version": __version__,
        "backend": backend,
        "step_h": float(scenario["time.step_h"]),
        "steps_planned": int(steps),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    info = LatticeInfo(name=lat.name, shape=lat.shape, voxel_um=scenario["lattice.voxel_um"],
                       organ=sim.arch.to_host(lat.organ), organ_names=("none",) + sim.organ_names)
    field_attrs = {name: {UNITS_ATTR: units} for name, (_, units) in SNAPSHOT_FIELDS.items()}
    field_attrs[KIND][CODES_ATTR] = KIND_CODES
    fields = {name: dtype for name, (dtype, _) in SNAPSHOT_FIELDS.items()}
    try:
        writer = RunWriter(out, attrs=attrs, lattices=[info], counts_dtype=sim.dtype,
                           snapshot_fields=fields, field_attrs=field_attrs, lock=lock)
    except OSError as exc:
        raise OutputFailed(f"{shown(out)}: cannot create the run file: "
                           f"{exc.strerror or exc}") from None

    def snapshot():
        need = run_bytes(lat.shape)["host_bytes"] + SPACE_MARGIN_BYTES
        if free_bytes(out.parent) < need:
            raise OSError(28, f"No space left on device (under {human_bytes(need)} free)")
        writer.write_snapshot(sim.step_index, sim.time_h, {lat.name: sim.snapshot()})
        return sim.step_index

    with writer:
        with writing(writer, out, "the first snapshot"):
            writer.append_counts(sim.initial)
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
                row = sim.step()
                with writing(writer, out, f"the snapshot of step {sim.step_index}"):
                    writer.append_counts(row)
                    if sim.step_index % snapshot_every == 0 or sim.step_index == steps:
                        last = snapshot()
                bar.update(row)
        finally:
            bar.close()
        with writing(writer, out, "the end of the run"):
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
        "version": __version__,
        "wall_s": round(wall, 3),
        "counts_initial": counts_by_kind(sim.initial),
        "counts": counts_by_kind(row),
        "functional_fraction": float(row["functional_fraction"]),
        "tumor_growth": float(row["tumor"]) / max(int(sim.initial["tumor"]), 1),
    }
    if summary_path is not None:
        try:
            write_summary(summary_path, summary)
        except OSError as exc:
            raise OutputFailed(f"--summary {shown(summary_path)}: cannot write: "
                               f"{exc.strerror or exc}") from None
    return summary
