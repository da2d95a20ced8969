"""`oncolattice bench --mpi`: strong and weak scaling of the z-slab decomposition.

For each rank count R (default 1–4) two runs are launched with `mpiexec -n R`:

* strong: the benchmark lattice of `--size` (a size³ quickstart, `tools.bench`) split
  over R ranks;
* weak: a lattice R times as deep (R·size × size × size), so every rank holds a
  size³ slab.

Efficiency is the work per processor-second against the 1-rank run's,
(W_R / (t_R c_R)) / (W_1 / (t_1 c_1)), with W the voxels and c the processors a run had
(GPUs, or Numba threads up to the machine's cores): on a 2-core laptop, where one rank
of two threads and four ranks of one thread share the same two cores, c stays 2.

Each run builds the simulation (JIT warm-up included), steps WARMUP_STEPS untimed,
then times `--steps` steps; a step's time is the slowest rank's (ranks meet at a
barrier before and after).  Halo time is the time inside `Slab.exchange` (copying
halo planes and MPI_Sendrecv); bytes and messages are those one rank sends per step
(the largest over ranks).  Medians over the timed steps are reported.  On a machine
with fewer cores than ranks × threads the ranks share cores: the figures then show
the cost of the decomposition, not a speed-up.  Performance is measured here, never
asserted by tests.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARMUP_STEPS = 2
FORMAT = "oncolattice-bench-mpi-1"


def measure(size: int, nz: int, backend: str, steps: int, comm) -> dict | None:
    """Time `steps` steps of the nz × size × size benchmark lattice on this rank's slab;
    rank 0 returns the medians (others None)."""
    from engine.domain import use_rank_gpu
    from engine.simulation import Simulation
    from tools.bench import _synchronizer, bench_scenario
    if backend == "cupy":
        use_rank_gpu(comm)
    started = time.perf_counter()
    sim = Simulation(bench_scenario(size, nz), backend=backend,
                     comm=comm if comm.Get_size() > 1 else None)
    for _ in range(WARMUP_STEPS):
        sim.step()
    sync, domain = _synchronizer(backend), sim.domain
    setup_s = max(comm.allgather(time.perf_counter() - started))
    rows = []
    for _ in range(steps):
        sync()
        comm.Barrier()
        before = (domain.exchange_s, domain.bytes_exchanged, domain.messages)
        t0 = time.perf_counter()
        sim.step()
        sync()
        mine = (time.perf_counter() - t0, domain.exchange_s - before[0],
                domain.bytes_exchanged - before[1], domain.messages - before[2])
        rows.append(tuple(map(max, zip(*comm.allgather(mine)))))   # the slowest rank's
    tumour = int(sim.census()["tumor"])          # a collective: every rank takes it
    if comm.Get_rank() != 0:
        return None
    step_s, halo_s, sent, messages = (statistics.median(r[i] for r in rows) for i in range(4))
    return {"ranks": comm.Get_size(), "shape": [nz, size, size], "voxels": nz * size * size,
            "backend": backend, "threads_per_rank": _threads(backend), "setup_s": setup_s,
            "step_ms": step_s * 1e3, "halo_ms": halo_s * 1e3,
            "halo_share": halo_s / step_s if step_s > 0 else 0.0,
            "halo_bytes_per_rank": int(sent), "halo_messages_per_rank": int(messages),
            "tumor_cells": tumour}


def _threads(backend):
    import numba
    return numba.get_num_threads() if backend == "numba" else None


def run_mpi_bench(size: int, ranks: list[int], backend: str, steps: int,
                  json_path: Path | None, out=sys.stdout) -> dict:
    """Launch the strong and weak runs for every rank count; print the table, write JSON."""
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        from engine.errors import UserError
        raise UserError("bench --mpi: mpiexec not found (pip install mpi4py mpich)")
    results = []
    for mode in ("strong", "weak"):
        for r in ranks:
            nz = size * r if mode == "weak" else size
            results.append({"mode": mode, **_launch(mpiexec, r, size, nz, backend, steps)})
    report = {"format": FORMAT, "size": size, "steps": steps, "backend": backend,
              "cpu_count": os.cpu_count(), "runs": results}
    out.write(format_table(report))
    out.flush()
    if json_path is not None:
        from engine.output import write_summary
        write_summary(json_path, report)
    return report


def _launch(mpiexec, ranks, size, nz, backend, steps) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        command = [mpiexec, "-n", str(ranks), sys.executable, "-m", "tools.bench_mpi",
                   str(size), str(nz), backend, str(steps), str(result)]
        env = dict(os.environ)
        env.setdefault("NUMBA_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // ranks)))
        proc = subprocess.run(command, capture_output=True, text=True, env=env)
        if proc.returncode != 0 or not result.exists():
            from engine.errors import UserError
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"bench --mpi: the {ranks}-rank run failed: {tail}")
        return json.loads(result.read_text())


def format_table(report: dict) -> str:
    """Strong and weak scaling as a text table: ms per step, halo share, bytes sent."""
    lines = [f"MPI scaling, {report['backend']}, {report['cpu_count']} cores, "
             f"{report['steps']} timed steps (medians; slowest rank)",
             f"{'mode':<7}{'ranks':>6}{'lattice':>16}{'ms/step':>10}{'halo ms':>9}"
             f"{'halo %':>8}{'MB sent/rank':>14}{'msgs/rank':>11}{'efficiency':>12}"]
    base = {}
    for run in report["runs"]:
        key = run["mode"]
        base.setdefault(key, run)
        one = base[key]
        eff = (one["step_ms"] / run["step_ms"] * (run["voxels"] / one["voxels"])
               * (cores(one, report) / cores(run, report)))
        shape = "x".join(str(n) for n in run["shape"])
        lines.append(f"{key:<7}{run['ranks']:>6}{shape:>16}{run['step_ms']:>10.1f}"
                     f"{run['halo_ms']:>9.1f}{100 * run['halo_share']:>7.1f}%"
                     f"{run['halo_bytes_per_rank'] / 1e6:>14.2f}"
                     f"{run['halo_messages_per_rank']:>11}{eff:>11.0%} ")
    return "\n".join(lines) + "\n"


def cores(run: dict, report: dict) -> int:
    """The processors a run had: one GPU per rank, or its ranks' Numba threads (at most
    the machine's cores)."""
    if run["backend"] == "cupy":
        return run["ranks"]
    return min(run["ranks"] * (run["threads_per_rank"] or 1), report["cpu_count"] or 1)


def _worker(size, nz, backend, steps, path) -> int:
    from mpi4py import MPI
    result = measure(int(size), int(nz), backend, int(steps), MPI.COMM_WORLD)
    if result is not None:
        Path(path).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(*sys.argv[1:]))
