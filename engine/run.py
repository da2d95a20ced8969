"""A run: a simulation driven step by step, with snapshots, counts and a summary."""
from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from pathlib import Path

import numpy as np

from kernels.lattice import KIND_NAMES

from . import __version__
from .backend import cpu_threads, gpu_free_bytes
from .errors import DoesNotFit, UserError
from .output import LatticeInfo, RunWriter, write_summary
from .runformat import CODES_ATTR, KIND, UNITS_ATTR, kind_codes_attr
from .simulation import SNAPSHOT_FIELDS, Simulation
from .state import host_bytes_per_voxel, human_bytes, run_bytes

KIND_CODES = kind_codes_attr(KIND_NAMES)      # stored with the kind data: readers decode by it


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


def run(scenario, *, backend: str, steps: int, out: Path, snapshot_every: int,
        summary_path: Path | None = None, progress: bool = True, log=sys.stderr) -> dict:
    """Run `steps` steps, writing `out` (HDF5 + XDMF) and optionally a JSON summary."""
    ensure_fits(scenario.shape, backend)
    started = time.perf_counter()
    sim = Simulation(scenario, backend=backend)
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
    out.parent.mkdir(parents=True, exist_ok=True)
    with RunWriter(out, attrs=attrs, lattices=[info], counts_dtype=sim.dtype,
                   snapshot_fields={name: dtype for name, (dtype, _) in SNAPSHOT_FIELDS.items()},
                   field_attrs=field_attrs) as writer:
        writer.append_counts(sim.initial)
        writer.write_snapshot(0, 0.0, {lat.name: sim.snapshot()})
        bar = Progress(steps, stream=log, enabled=progress)
        try:
            row = sim.initial
            for _ in range(steps):
                row = sim.step()
                writer.append_counts(row)
                if sim.step_index % snapshot_every == 0 or sim.step_index == steps:
                    writer.write_snapshot(sim.step_index, sim.time_h, {lat.name: sim.snapshot()})
                bar.update(row)
        finally:
            bar.close()
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
            raise UserError(f"--summary {summary_path}: cannot write: {exc.strerror or exc}") from None
    return summary
