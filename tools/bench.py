"""`oncolattice bench`: voxel-updates per second of each pass and of a whole step.

The benchmark lattice is the built-in quickstart scenario resized to a cube of
`size` voxels: the organ slabs keep their fractions of the z extent (breast,
fascia gap, pectoral muscle) and the tumour seed, a ball of radius size/8
voxels, sits in the middle of the breast slab so the cell passes have real work.

After a warm-up (building the Simulation JIT-compiles the kernels and solves
oxygen once, then 2 untimed steps) each timed step is `Simulation.step` itself,
with every pass (and the census) timed through `Simulation.run_pass`; a pass the
step did not need (lumen and perfusion when nothing anastomosed) is not counted.  A voxel-update is
one voxel visited by one pass; the oxygen solver also reports updates per
red-black sweep.  Medians over the timed steps are reported.

Memory traffic: each kernel declares the voxel arrays it streams through
(`Kernel.reads` / `Kernel.writes`); their item sizes give the bytes read and
written per voxel (fields: per sweep, times the sweeps of the step).  Achieved
bandwidth is bytes x voxels / time, reported as a percentage of the copy
bandwidth (bytes read + written by a plain array copy) measured in the same
run on the same device: a parallel Numba copy on the CPU, a device-to-device
copy on the GPU.

Performance is measured by benchmarks, never asserted by timed tests.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numba
import numpy as np
from numba import prange

from engine import __version__
from engine.output import write_summary
from engine.scenario import load_scenario
from engine.schedule import FIELD_PASSES, PASSES
from engine.simulation import Simulation
from engine.state import (BYTES_PER_VOXEL, STATE_BYTES_PER_VOXEL, VOXEL_ARRAYS,
                          WORK_BYTES_PER_VOXEL)
from kernels.census import take_census

WARMUP_STEPS = 2
FORMAT = "oncolattice-bench-2"
COPY_BYTES = 256 * 2**20        # array size of the copy-bandwidth measurement
COPY_REPEATS = 5
ITEM_BYTES = {name: np.dtype(dtype).itemsize for name, dtype, *_ in VOXEL_ARRAYS}
PLANES = {name: n for name, _, n, *_ in VOXEL_ARRAYS}


def bytes_per_voxel(kernel) -> tuple[int, int]:
    """(read, written) bytes per voxel of one pass of `kernel` (one sweep for oxygen)."""
    def size(names):
        return sum(ITEM_BYTES[n.split(".")[0]] * (1 if "." in n else PLANES[n]) for n in names)
    return size(kernel.reads), size(kernel.writes)


@numba.njit(parallel=True, cache=True)
def _copy_numba(dst, src):
    for i in prange(src.shape[0]):
        dst[i] = src[i]


def copy_bandwidth(backend: str, sync) -> float:
    """Best of COPY_REPEATS copies of a COPY_BYTES array: bytes read + written per second."""
    if backend == "cupy":
        import cupy
        src = cupy.ones(COPY_BYTES // 4, dtype=np.float32)
        dst = cupy.empty_like(src)
        def copy():
            cupy.copyto(dst, src)
    else:
        src = np.ones(COPY_BYTES // 4, dtype=np.float32)
        dst = np.empty_like(src)
        def copy():
            _copy_numba(dst, src)
    copy()
    sync()
    best = float("inf")
    for _ in range(COPY_REPEATS):
        t0 = time.perf_counter()
        copy()
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * COPY_BYTES / best


def bench_scenario(size: int, nz: int | None = None):
    """The quickstart scenario resized to a `size`³ lattice (see module docstring), or
    to nz × size × size (the MPI weak-scaling benchmark stacks slabs along z)."""
    s = load_scenario("quickstart")
    h = s["lattice.voxel_um"]
    nz = nz or size
    scale = nz / s.shape[0]            # new z extent / old z extent
    s.values["scenario"]["name"] = f"bench{size}" if nz == size else f"bench{nz}x{size}"
    s.values["lattice"]["shape"] = [nz, size, size]
    for organ in s.organs:
        organ["z_um"] = [z * scale for z in organ["z_um"]]
    z0, z1 = s.organs[0]["z_um"]       # the breast slab
    extent = size * h
    s.values["tumor"]["seed_center_um"] = [(z0 + z1) / 2.0, extent / 2.0, extent / 2.0]
    s.values["tumor"]["seed_radius_um"] = h * min(size, nz) / 8.0
    return s


def _synchronizer(backend: str):
    """A function that waits for the device to finish queued work (no-op on the CPU)."""
    if backend == "cupy":
        import cupy
        return cupy.cuda.Device().synchronize
    return lambda: None


def _cpu_name() -> str:
    """CPU model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _stats(times_s, voxels, bytes_moved, copy_bw, sweeps=None) -> dict:
    """Median/min ms per step, voxel-updates per second (per sweep if given), and the
    achieved bandwidth from the bytes per voxel each step moved (one entry per step)."""
    med = statistics.median(times_s)
    rates = [b * voxels / t for b, t in zip(bytes_moved, times_s) if t > 0]
    gbps = statistics.median(rates) / 1e9 if rates else float("inf")
    row = {"median_ms": med * 1e3, "min_ms": min(times_s) * 1e3,
           "voxel_updates_per_s": voxels / med if med > 0 else float("inf"),
           "bytes_per_voxel": statistics.median(bytes_moved),
           "achieved_GB_per_s": gbps, "percent_of_copy": 100.0 * gbps * 1e9 / copy_bw}
    if sweeps is not None:
        rates = [voxels * n / t for n, t in zip(sweeps, times_s) if t > 0]
        row["voxel_updates_per_sweep_per_s"] = statistics.median(rates) if rates else float("inf")
        row["median_sweeps"] = statistics.median(sweeps)
    return row


class TimedSimulation(Simulation):
    """A Simulation whose passes are timed one by one, the device synchronised around each."""

    def __post_init__(self):
        self.sync = _synchronizer(self.backend)
        self.timing = None
        super().__post_init__()

    def run_pass(self, process):
        if self.timing is None:
            return super().run_pass(process)
        self.sync()
        t0 = time.perf_counter()
        result = super().run_pass(process)
        self.sync()
        self.timing[process.name] = time.perf_counter() - t0
        return result


def time_steps(sim: TimedSimulation, steps: int):
    """Run `steps` steps exactly as a run does: seconds per pass per step (None where a
    pass did not run that step, census included) and the sweeps of each field pass."""
    names = [p.name for p in PASSES] + [take_census.name]
    times = {name: [] for name in names}
    sweeps = {p.name: [] for p in FIELD_PASSES}
    for _ in range(steps):
        sim.timing = {}
        sim.step()
        for name in names:
            times[name].append(sim.timing.get(name))
        for process, (n, _) in zip(FIELD_PASSES, sim.field_stats):
            sweeps[process.name].append(int(n))
    sim.timing = None
    return times, sweeps


def format_table(r: dict) -> str:
    """The human-readable report of a `run_bench` result."""
    lat = r["lattice"]
    lines = [
        f"oncolattice {r['version']} bench: {lat['size']}^3 = {lat['voxels']:,} voxels "
        f"({lat['voxel_um']:g} µm), backend {r['backend']}, {r['threads']} threads",
        f"machine: {r['machine']['cpu']} ({r['machine']['cpu_count']} CPUs, "
        f"{r['machine']['platform']}); {r['date']}",
        f"memory: {r['bytes_per_voxel']} bytes/voxel ({r['state_bytes_per_voxel']} state + "
        f"{r['work_bytes_per_voxel']} work)",
        f"timed: {r['steps']} steps after {r['warmup_steps']} warm-up steps "
        f"(setup incl. JIT {r['setup_s']:.2f} s); tumour cells {r['tumor_cells']:,}; "
        "sweeps/step: " + ", ".join(f"{name} {min(n)}-{max(n)}"
                                    for name, n in r["field_sweeps"].items()),
        f"copy bandwidth (same run): {r['copy_GB_per_s']:.1f} GB/s",
        "",
        f"{'pass':<24}{'ms/step':>10}{'min ms':>10}{'voxel-upd/s':>13}{'per sweep/s':>13}"
        f"{'B/voxel':>9}{'GB/s':>8}{'% copy':>8}",
    ]
    rows = list(r["passes"].items()) + [("step (total)", r["step"])]
    for name, p in rows:
        sweep = p.get("voxel_updates_per_sweep_per_s")
        lines.append(f"{name:<24}{p['median_ms']:>10.3f}{p['min_ms']:>10.3f}"
                     f"{p['voxel_updates_per_s']:>13.3e}"
                     + (f"{sweep:>13.3e}" if sweep is not None else f"{'':>13}")
                     + f"{p['bytes_per_voxel']:>9.0f}{p['achieved_GB_per_s']:>8.2f}"
                     f"{p['percent_of_copy']:>7.1f}%")
    return "\n".join(lines) + "\n"


def per_pass_bytes(process, sweeps, times, i) -> int:
    """Bytes per voxel `process` moved in step i (0 if it did not run)."""
    if times[process.name][i] is None:
        return 0
    field = sweeps.get(process.name)
    return sum(bytes_per_voxel(process)) * (field[i] if field else 1)


def run_bench(size: int, backend: str, steps: int, json_path: Path | None,
              out=sys.stdout) -> dict:
    """Benchmark a `size`³ lattice on `backend` for `steps` timed steps.

    Prints a table to `out`, writes the result as JSON to `json_path` (if
    given) and returns it: per pass (and for the census and the whole step)
    median and minimum ms per step and voxel-updates per second, oxygen
    sweeps, bytes per voxel, lattice, backend, threads, date and machine.
    """
    scenario = bench_scenario(size)
    t0 = time.perf_counter()
    sim = TimedSimulation(scenario, backend=backend)
    for _ in range(WARMUP_STEPS):
        sim.step()
    sim.sync()
    setup_s = time.perf_counter() - t0

    times, sweeps = time_steps(sim, steps)
    copy_bw = copy_bandwidth(backend, sim.sync)
    voxels = sim.lattice.voxels
    passes = {}
    for process in PASSES + (take_census,):
        ran = [i for i, t in enumerate(times[process.name]) if t is not None]
        if not ran:
            continue                     # e.g. lumen and perfusion: no anastomosis this time
        field = sweeps.get(process.name)
        passes[process.name] = _stats([times[process.name][i] for i in ran], voxels,
                                      [per_pass_bytes(process, sweeps, times, i) for i in ran],
                                      copy_bw, [field[i] for i in ran] if field else None)
        passes[process.name]["runs"] = len(ran)
    totals = [sum(t[i] or 0.0 for t in times.values()) for i in range(steps)]
    step_bytes = [sum(per_pass_bytes(process, sweeps, times, i) for process in PASSES + (take_census,))
                  for i in range(steps)]
    result = {
        "format": FORMAT,
        "version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_name(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "backend": backend,
        "threads": numba.get_num_threads(),
        "lattice": {"size": size, "shape": list(sim.lattice.shape), "voxels": voxels,
                    "voxel_um": scenario["lattice.voxel_um"]},
        "bytes_per_voxel": BYTES_PER_VOXEL,
        "state_bytes_per_voxel": STATE_BYTES_PER_VOXEL,
        "work_bytes_per_voxel": WORK_BYTES_PER_VOXEL,
        "warmup_steps": WARMUP_STEPS,
        "steps": steps,
        "setup_s": setup_s,
        "tumor_cells": int(sim.census()["tumor"]),
        "field_sweeps": sweeps,
        "passes": passes,
        "copy_GB_per_s": copy_bw / 1e9,
        "step": _stats(totals, voxels, step_bytes, copy_bw),
    }
    out.write(format_table(result))
    out.flush()
    if json_path is not None:
        write_summary(json_path, result)
    return result
