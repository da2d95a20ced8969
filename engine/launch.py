"""Ensembles under MPI: ``mpiexec -n R oncolattice ensemble ...`` (or ``srun``).

MPI is looked for only when a launcher started this process (``engine.domain.world``,
which `run` uses too); a plain command never initialises MPI.  Then mpi4py is imported; with more than one rank the members are spread across the ranks by
:class:`mpi4py.futures.MPICommExecutor`: rank 0 plans, schedules, logs and collects,
ranks 1 .. R − 1 each run one member at a time in their own process.  A launch of
several ranks without mpi4py is a one-line error.

Threads: each rank runs Numba on ``NUMBA_NUM_THREADS`` threads when it is set, else on
its node's cores split among the node's ranks (at least 1, at most the cores the rank
may run on).  A rank that dies ends the MPI job; its member's status record still says
``running``, so the next run of the same command runs it again.
"""
from __future__ import annotations

import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, wait

from .errors import Interrupted, UserError
from .members import POLL_S, Tally, cpu_count, one_line, run_member

def rank_threads(comm) -> int:
    """Numba threads for each rank: NUMBA_NUM_THREADS if set, else the node's cores over
    its ranks (collective: every rank calls it)."""
    from mpi4py import MPI
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks = local.Get_size()
    local.Free()
    if os.environ.get("NUMBA_NUM_THREADS", "").isdigit():
        return int(os.environ["NUMBA_NUM_THREADS"])
    return max(1, min(cpu_count(), (os.cpu_count() or 1) // ranks))


def run_on_rank(member, threads: int) -> dict:
    """:func:`run_member` on a worker rank, on `threads` Numba threads, stopping at a
    step boundary on the rank's own stop signal."""
    import numba

    from .cli import stop_requested
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    return run_member(member, stop=stop_requested)


def run_under_mpi(args, comm, stop) -> int:
    """The ensemble across the ranks of `comm`; worker ranks return 0 when rank 0 ends."""
    from mpi4py.futures import MPICommExecutor

    from .ensemble import announce, finish, make_plan, to_run, write_plan
    threads = rank_threads(comm)
    with MPICommExecutor(comm, root=0) as executor:
        if executor is None:
            return 0                    # a worker rank: it ran members until rank 0 was done
        plan = make_plan(args)
        write_plan(plan)
        tally = Tally(0, "ensemble")
        todo = to_run(plan, tally)
        tally.say(f"{plan.record['scenario_name']}: {announce(plan)}, {len(todo)} to run on "
                  f"{comm.Get_size() - 1} MPI worker rank(s) (NUMBA_NUM_THREADS={threads} each) "
                  f"-> {plan.folder}")
        run_on_executor(executor, todo, tally, threads, stop)
    return finish(plan, tally)


def run_on_executor(executor, members, tally: Tally, threads: int, stop) -> None:
    """Submit every member, log each as it ends; a stop signal cancels the members not
    started and raises :class:`Interrupted` (those running stop on their own signal)."""
    started = time.perf_counter()
    futures = {executor.submit(run_on_rank, m, threads): m for m in members}
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
        for future in done:
            try:
                result = future.result()
            except Exception as exc:        # the rank could not run it (e.g. unpicklable)
                result = {"ok": False, "error": one_line(f"{type(exc).__name__}: {exc}")}
            tally.finished(futures[future], result,
                           result.get("wall_s", time.perf_counter() - started))
        if (signum := stop()) is not None:
            for future in pending:
                future.cancel()
            raise Interrupted(signum, f"stopped by {signal.Signals(signum).name} with "
                                      f"{len(tally.results)} of {len(members)} members "
                                      f"finished; rerun the same command to run the rest")
