"""Members: the runs of an ensemble or a comparison, each run on its own, and the pool that
runs them in local processes.

A :class:`Member` is everything one run needs (scenario, protocol, scenario keys set,
seed, length, backend, where to write), as plain data that pickles to a spawned process
or an MPI rank.  :func:`run_member` runs one in the calling process and never raises for
a failed run: it returns ``{"ok": False, "error": one line}``.  A member with a
``folder`` also leaves there its JSON summary (``summary.json``, written by the run when
it completes) and a status record (``status.json``: ``running`` when it starts, then
``complete`` or ``failed`` with the error and the command that reruns it alone); a
member is *complete* only when the record says so and the summary and run file agree
with it (:func:`is_complete`), so a rerun skips exactly the members that finished.

:class:`LocalPool` runs members each in a spawned process (multiprocessing), at most J
at a time, each with ``NUMBA_NUM_THREADS = max(1, CPUs // J)`` so they do not
oversubscribe the cores.  With ``fail_fast`` (``compare``) the first failure stops the
other runs and raises :class:`RunFailed`; without it (``ensemble``) a failure is
recorded and the rest go on.  A stop signal stops every run at its next step (SIGTERM to
the children: their files close as ``interrupted``) and raises :class:`Interrupted`.
"""
from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from .errors import Interrupted, UserError, printable, shown

STOP_GRACE_S = 30.0             # a stopped run's time to close its file before it is killed
POLL_S = 0.5                    # how often the parent looks for a stop signal
SUMMARY = "summary.json"
STATUS = "status.json"
RUN_FILE = "run.h5"


class RunFailed(UserError):
    """A run (member) failed: one line naming it, exit status 1."""

    exit_status = 1


@dataclass(frozen=True)
class Member:
    """One run, as the process that runs it receives it."""

    index: int
    label: str                      # how messages name it: "member 3", "arm a replicate 0"
    scenario: str                   # the scenario's name or path, as given
    replicate: int
    seed: int
    out: str                        # the run file
    backend: str
    protocol: str | None = None     # a protocol in place of the scenario's (None: its own)
    values: tuple[tuple[str, Any], ...] = ()    # scenario keys set (a sweep point)
    duration_h: float | None = None
    steps: int | None = None        # None: the scenario's duration
    snapshot_every: int | None = None
    folder: str | None = None       # summary and status record here; None: the run file alone
    rerun: str = ""                 # the command that reruns this member alone

    @property
    def note(self) -> str:
        """Seed (and protocol) as the progress lines show them."""
        return f"seed {self.seed}" + (f", protocol {printable(self.protocol)}"
                                      if self.protocol else "")

    def path(self, name: str) -> Path | None:
        return None if self.folder is None else Path(self.folder) / name


def one_line(text: str) -> str:
    return printable(" ".join(str(text).split()))


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def member_scenario(member: Member):
    """The member's scenario: its protocol, its keys set, its seed and duration."""
    from .protocol import scenario_with_protocol
    from .scenario import load_scenario
    scenario = (scenario_with_protocol(member.scenario, member.protocol) if member.protocol
                else load_scenario(member.scenario))
    if member.values:
        scenario.with_parameters(dict(member.values))
    return scenario.with_overrides(seed=member.seed, duration_h=member.duration_h)


# -- one member ------------------------------------------------------------------------

def _utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def write_status(member: Member, state: str, **fields) -> None:
    """The member's status record (atomically; nothing without a folder)."""
    from .output import write_summary
    path = member.path(STATUS)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    write_summary(path, {"member": member.index, "state": state, "replicate": member.replicate,
                         "seed": member.seed, "values": dict(member.values),
                         "run_file": member.out, "host": socket.gethostname(),
                         "pid": os.getpid(), "utc": _utc(), **fields,
                         "rerun": member.rerun})


def read_json(path: Path | None) -> dict | None:
    """A JSON object from `path`, or None if it is missing or not one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def member_state(folder, seed: int, values: dict, run_file: str) -> tuple[str, dict]:
    """(state, status record) of the member in `folder`: ``complete`` only when its status
    record says so for this seed and these keys, its summary names this seed and run
    file (by name: a folder may be moved), and the run file exists; else ``failed`` or ``running`` as the record says, or
    ``missing`` (no record, another member's record, or a complete one that does not
    hold up)."""
    status = read_json(Path(folder) / STATUS) or {}
    if status.get("seed") != seed or status.get("values") != values:
        return "missing", {}
    if status.get("state") == "complete":
        summary = read_json(Path(folder) / SUMMARY) or {}
        ok = (summary.get("seed") == seed and Path(run_file).is_file()
              and Path(str(summary.get("output"))).name == Path(run_file).name)
        return ("complete" if ok else "missing"), status
    return (status["state"] if status.get("state") in ("failed", "running") else "missing",
            status)


def is_complete(member: Member) -> bool:
    """The member has run to the end (:func:`member_state`)."""
    return member.folder is not None and member_state(
        member.folder, member.seed, dict(member.values), member.out)[0] == "complete"


def run_member(member: Member, stop=None) -> dict:
    """Run `member` in this process; ``{"ok": True, "wall_s", "tumor_initial",
    "tumor_final"}`` or ``{"ok": False, "error": one line}``.  `stop()` returns a stop
    signal or None (polled at each step)."""
    from .run import run, steps_for
    started = time.perf_counter()
    write_status(member, "running")
    try:
        scenario = member_scenario(member)
        out = Path(member.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = run(scenario, backend=member.backend,
                      steps=member.steps or steps_for(scenario), out=out,
                      snapshot_every=(member.snapshot_every
                                      or scenario["time.snapshot_every_steps"]),
                      summary_path=member.path(SUMMARY), progress=False, overwrite=True,
                      stop=stop or (lambda: None))
        result = {"ok": True, "wall_s": summary["wall_s"],
                  "tumor_initial": summary["counts_initial"]["tumor"],
                  "tumor_final": summary["counts"]["tumor"]}
    except (UserError, Interrupted) as exc:
        result = {"ok": False, "error": one_line(exc)}
    except Exception as exc:        # an internal bug: still one line
        result = {"ok": False, "error": one_line(f"internal error: {type(exc).__name__}: {exc}")}
    wall = round(time.perf_counter() - started, 3)
    if result["ok"]:
        write_status(member, "complete", wall_s=wall)
    else:
        write_status(member, "failed", wall_s=wall, error=result["error"])
    return result


def _child(member: Member, conn) -> None:
    """One member in a spawned process: sends back :func:`run_member`'s result."""
    stops: list[int] = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)        # the parent stops its runs itself
    signal.signal(signal.SIGTERM, lambda signum, frame: stops.append(signum))
    result = {"ok": False, "error": "the run ended without a result"}
    try:
        result = run_member(member, stop=lambda: stops[0] if stops else None)
    finally:
        try:
            conn.send(result)
        finally:
            conn.close()


# -- progress lines --------------------------------------------------------------------

class Tally:
    """The progress lines of a set of members on stderr (``<prefix>: ...``), and their
    results by member index; failures are kept in `failed` ({index: error})."""

    def __init__(self, total: int, prefix: str, log=None):
        self.total, self.prefix, self.log = total, prefix, log or sys.stderr
        self.results: dict[int, dict] = {}
        self.failed: dict[int, str] = {}

    def say(self, text: str) -> None:
        print(f"{self.prefix}: {text}", file=self.log, flush=True)

    def started(self, member: Member) -> None:
        self.say(f"{member.label} ({member.note}) started -> {shown(member.out)}")

    def finished(self, member: Member, result: dict, seconds: float) -> None:
        done = len(self.results) + len(self.failed) + 1
        if result.get("ok"):
            self.results[member.index] = result
            self.say(f"[{done}/{self.total}] {member.label} done in {seconds:.1f} s: tumour "
                     f"{result['tumor_initial']} -> {result['tumor_final']} cells")
            return
        self.failed[member.index] = result["error"]
        rerun = f"; rerun it alone with: {member.rerun}" if member.rerun else ""
        self.say(f"[{done}/{self.total}] {member.label} ({member.note}) failed: "
                 f"{result['error']}{rerun}")


def process_failure(member: Member, exitcode) -> dict:
    """The result of a member whose process ended without sending one (killed, crashed);
    its status record says so."""
    error = f"the run's process ended with exit status {exitcode} without finishing the run"
    write_status(member, "failed", error=error)
    return {"ok": False, "error": error}


# -- the local pool ---------------------------------------------------------------------

class LocalPool:
    """Members, each in a spawned process, at most `processes` at a time."""

    def __init__(self, members: list[Member], processes: int, tally: Tally,
                 stop=lambda: None, fail_fast: bool = False, stopped_note: str = ""):
        self.members = list(members)
        self.tally = tally
        self.stop = stop                # () -> a stop signal received, or None
        self.fail_fast = fail_fast
        self.stopped_note = stopped_note
        self.processes = max(1, min(processes, len(self.members) or 1))
        self.threads = max(1, cpu_count() // self.processes)
        self.running: dict = {}         # process sentinel -> (process, connection, member, t0)

    def run(self) -> Tally:
        ctx = multiprocessing.get_context("spawn")
        pending = list(self.members)
        before = os.environ.get("NUMBA_NUM_THREADS")
        os.environ["NUMBA_NUM_THREADS"] = str(self.threads)     # the children inherit it
        try:
            while pending or self.running:
                while pending and len(self.running) < self.processes:
                    self._start(ctx, pending.pop(0))
                ready = wait([s for s in self.running] +
                             [conn for _, conn, _, _ in self.running.values()], timeout=POLL_S)
                if (signum := self.stop()) is not None:
                    raise Interrupted(signum, self._stopped(signum))
                for sentinel in list(self.running):
                    proc, conn, member, t0 = self.running[sentinel]
                    if sentinel in ready or conn in ready:
                        self._finish(sentinel, proc, conn, member, t0)
        except BaseException:
            self.stop_all()
            raise
        finally:
            if before is None:
                os.environ.pop("NUMBA_NUM_THREADS", None)
            else:
                os.environ["NUMBA_NUM_THREADS"] = before
        return self.tally

    def _stopped(self, signum: int) -> str:
        name = signal.Signals(signum).name
        return (f"stopped by {name} with {len(self.tally.results)} of {len(self.members)} "
                f"runs finished; the runs still going were stopped (their files say "
                f"interrupted){self.stopped_note}")

    def _start(self, ctx, member: Member) -> None:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(member, send),
                           name=f"oncolattice-member-{member.index}")
        proc.start()
        send.close()
        self.running[proc.sentinel] = (proc, receive, member, time.perf_counter())
        self.tally.started(member)

    def _finish(self, sentinel, proc, conn, member: Member, t0: float) -> None:
        result = None
        try:
            if conn.poll():
                result = conn.recv()
        except (EOFError, OSError):
            result = None
        proc.join()
        conn.close()
        del self.running[sentinel]
        if result is None:
            result = process_failure(member, proc.exitcode)
        if self.fail_fast and not result["ok"]:
            raise RunFailed(f"{member.label} (seed {member.seed}): {one_line(result['error'])}")
        self.tally.finished(member, result, time.perf_counter() - t0)

    def stop_all(self) -> None:
        """Stop the runs still going (SIGTERM: they close their files as interrupted),
        then kill any that do not end within STOP_GRACE_S."""
        for proc, conn, _, _ in self.running.values():
            if proc.is_alive():
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for proc, conn, member, _ in self.running.values():
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
                process_failure(member, proc.exitcode)
            conn.close()
        self.running.clear()
