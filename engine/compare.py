"""`oncolattice compare`: therapy arms run side by side on the same seeds.

    oncolattice compare SCENARIO --arm NAME=PROTOCOL [--arm ...] --replicates N
                        [--days D] [--out DIR] [--jobs J] [--backend B] [--overwrite]

Each arm is the scenario with a protocol (``untreated``, a shipped protocol or a
protocol file; :func:`engine.protocol.scenario_with_protocol`).  Replicate r
(0 .. N − 1) of every arm runs with seed = the scenario's seed + r, so the arms are
*paired*: replicate r of each arm starts from the same tissue and draws the same random
numbers until their treatments differ (two arms with the same protocol give identical
runs).  Every run is a member run by the ensemble's machinery
(:class:`engine.members.LocalPool`): a process of its own (multiprocessing, spawn), at
most J at a time (default: the CPU count), each with NUMBA_NUM_THREADS = max(1, CPUs //
J) so the runs do not oversubscribe the cores; run r of arm A writes
``DIR/A/rep<r>.h5``.  When
every run has finished, the comparison report (:mod:`tools.compare_report`) is
written from the run files alone: ``DIR/compare.html``, ``compare.json`` and its PNGs.

Progress goes to stderr, one line per run started and finished.  SIGINT (Ctrl-C),
SIGTERM or SIGUSR1 stop the comparison the same way (exit 128 + the signal), the runs
being told to stop at their next step.  A run that fails
(or whose process dies) stops the comparison: the other runs are stopped (their files
say ``interrupted``), no report is written, any earlier report in DIR has been removed
before the runs began, and the error is one line naming the arm and replicate (exit 1).
Bad input (a malformed or repeated ``--arm``, an unknown protocol, ``--replicates`` or
``--jobs`` below 1, existing run files without ``--overwrite``) is one line naming
the argument, exit 2, before anything runs.
"""
from __future__ import annotations

import math
import re
import time
from pathlib import Path

from .errors import UserError, printable, shown
from .members import LocalPool, Member, Tally, cpu_count

ARM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
MAX_ARMS = 16
MAX_REPLICATES = 1000


def parse_arms(values: list[str] | None) -> dict[str, str]:
    """``--arm NAME=PROTOCOL`` values -> {name: protocol}, in order; one-line errors."""
    if not values:
        raise UserError("--arm: at least one arm is needed (--arm NAME=PROTOCOL, e.g. "
                        "--arm control=untreated)")
    if len(values) > MAX_ARMS:
        raise UserError(f"--arm: at most {MAX_ARMS} arms ({len(values)} given)")
    arms: dict[str, str] = {}
    for value in values:
        name, sep, protocol = value.partition("=")
        given = printable(value if len(value) <= 80 else value[:77] + "...")
        if not sep or not protocol.strip():
            raise UserError(f"--arm {given}: expected NAME=PROTOCOL (a protocol name, a "
                            f"protocol file or untreated)")
        if not ARM_NAME.fullmatch(name):
            raise UserError(f"--arm {given}: the arm name must be a letter followed by up "
                            f"to 63 letters, digits, '_' or '-' (it names the arm's folder)")
        twin = next((a for a in arms if a.lower() == name.lower()), None)
        if twin is not None:
            raise UserError(f"--arm {given}: arm name {name!r} is given twice"
                            + (f" (as {twin!r}: arms are folders, told apart by more than "
                               f"case)" if twin != name else ""))
        arms[name] = protocol.strip()
    return arms


def arm_scenario(scenario: str, name: str, protocol: str):
    """The scenario of one arm; a protocol that cannot be used is a one-line error naming
    the --arm argument."""
    from .errors import ScenarioError
    from .protocol import scenario_with_protocol
    from .scenario import find_scenario
    find_scenario(scenario)            # a missing scenario is the scenario's error, not the arm's
    try:
        return scenario_with_protocol(scenario, protocol)
    except ScenarioError as exc:
        raise UserError(f"--arm {printable(name)}={printable(protocol)}: {exc}") from None


def plan(args) -> tuple[list[Member], dict]:
    """Check the command line and build the jobs, before anything is written."""
    from .run import steps_for
    arms = parse_arms(args.arm)
    if args.replicates is None or not 1 <= args.replicates <= MAX_REPLICATES:
        raise UserError(f"--replicates {args.replicates}: must be between 1 and "
                        f"{MAX_REPLICATES}")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    if args.days is not None and not (math.isfinite(args.days) and args.days > 0):
        raise UserError(f"--days {args.days}: the duration must be a positive number of days")
    duration = None if args.days is None else args.days * 24.0
    scenarios = {name: arm_scenario(args.scenario, name, protocol)
                 for name, protocol in arms.items()}
    first = next(iter(scenarios.values()))
    base_seed = int(first["scenario.seed"])
    step_h = first["time.step_h"]
    if duration is not None and duration < step_h * (1 - 1e-9):
        raise UserError(f"--days {args.days:g}: shorter than one step of {step_h:g} h")
    for s in scenarios.values():
        try:
            s.with_overrides(duration_h=duration)
        except UserError as exc:
            raise UserError(f"--days {args.days:g}: {exc}") from None
        try:
            s.with_overrides(seed=base_seed + args.replicates - 1)
        except UserError as exc:
            raise UserError(f"--replicates {args.replicates}: the last replicate's seed "
                            f"{base_seed + args.replicates - 1}: {exc}") from None
    from .cli import default_stem
    out = args.out or Path(f"compare_{default_stem(first['scenario.name'])}")
    check_out(out, list(arms), args.replicates, overwrite=args.overwrite)
    from .backend import select_backend
    backend = select_backend(args.backend)
    pairs = [(name, protocol, r) for r in range(args.replicates) for name, protocol in arms.items()]
    jobs = [Member(index=i, label=f"arm {name} replicate {r}", scenario=args.scenario,
                   replicate=r, seed=base_seed + r, out=str(run_path(out, name, r)),
                   backend=backend, protocol=protocol, duration_h=duration)
            for i, (name, protocol, r) in enumerate(pairs)]
    info = {"scenario": first["scenario.name"], "scenario_arg": args.scenario,
            "arms": arms, "replicates": args.replicates,
            "seeds": [base_seed + r for r in range(args.replicates)],
            "days": (duration if duration is not None else first["time.duration_h"]) / 24.0,
            "steps": steps_for(first), "backend": backend, "out": str(out)}
    return jobs, info


def run_path(out: Path, arm: str, replicate: int) -> Path:
    return Path(out) / arm / f"rep{replicate}.h5"


REPORT_FILES = ("compare.html", "compare.json")


def check_out(out: Path, arms: list[str], replicates: int, *, overwrite: bool) -> None:
    """Refuse an --out that is a file, or existing run files or a report without
    --overwrite; refuse what cannot be written."""
    from .cli import check_writable
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {shown(out)}: exists and is not a directory")
    for name in REPORT_FILES:
        if (out / name).exists() and not overwrite:
            raise UserError(f"--out {shown(out)}: {name} exists (use --overwrite to replace "
                            f"the comparison)")
    for arm in arms:
        for r in range(replicates):
            check_writable("--out", run_path(out, arm, r), replace=overwrite)


def run_record(job: Member, result: dict) -> dict:
    """A run of the comparison as compare.json lists it (the arm is its run's folder)."""
    return {"arm": Path(job.out).parent.name, "protocol": job.protocol,
            "replicate": job.replicate, "seed": job.seed, "scenario": job.scenario,
            "duration_h": job.duration_h, "backend": job.backend, "out": job.out, **result}


def cmd_compare(args, stop=lambda: None) -> int:
    jobs, info = plan(args)
    out = Path(info["out"])
    out.mkdir(parents=True, exist_ok=True)
    from tools.compare_report import REPORT_OUTPUTS
    for name in REPORT_OUTPUTS:                 # no earlier report passes for this one
        (out / name).unlink(missing_ok=True)
    tally = Tally(len(jobs), "compare")
    pool = LocalPool(jobs, args.jobs or cpu_count(), tally, stop=stop, fail_fast=True,
                     stopped_note=" and no report was written")
    tally.say(f"{info['scenario']}: {len(info['arms'])} arms x {info['replicates']} "
              f"replicates = {len(jobs)} runs of {info['days']:g} days, {pool.processes} "
              f"at a time (NUMBA_NUM_THREADS={pool.threads} each), seeds "
              f"{info['seeds'][0]}..{info['seeds'][-1]} -> {shown(out)}")
    started = time.perf_counter()
    results = pool.run().results
    info["runs"] = [run_record(job, results[job.index]) for job in jobs]
    info["wall_s"] = round(time.perf_counter() - started, 3)
    from tools.compare_report import write_compare
    report = write_compare(out, {arm: [run_path(out, arm, r) for r in range(info["replicates"])]
                                 for arm in info["arms"]}, info)
    tally.say(f"all {len(jobs)} runs done in {info['wall_s']:.1f} s; report: "
              f"{shown(report['html'])}")
    print(report["html"])
    return 0


def add_arguments(parser) -> None:
    """The `compare` sub-command's arguments."""
    from .backend import BACKENDS
    parser.add_argument("scenario", help="scenario file or built-in name")
    parser.add_argument("--arm", action="append", metavar="NAME=PROTOCOL",
                        help="an arm: its name and protocol (untreated, a shipped protocol "
                             "or a protocol file); give it once per arm")
    parser.add_argument("--replicates", type=int, required=True, metavar="N",
                        help="runs per arm; replicate r uses seed = scenario seed + r in "
                             "every arm (paired)")
    parser.add_argument("--days", type=float, help="model time of each run, in days "
                        "(default: the scenario's duration)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for DIR/<arm>/rep<r>.h5 and compare.html "
                             "(default: compare_<scenario name>)")
    parser.add_argument("--jobs", type=int, metavar="J",
                        help="runs at a time, each its own process (default: the CPU count)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing run files and report in DIR")
