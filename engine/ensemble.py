"""`oncolattice ensemble`: replicate runs and parameter sweeps.

    oncolattice ensemble SCENARIO --replicates N [--sweep KEY=V1,V2,...]... [--out DIR]
                         [--jobs J] [--member K] [--protocol P] [--days D | --steps S]
                         [--snapshot-every E] [--backend B]
    oncolattice ensemble collect DIR

**Members.**  Each ``--sweep KEY=V1,V2,...`` sets a scenario key (``table.key``,
``organs[i].key``, ``sites[i].key``) to each of its values; several give their
Cartesian product, the last flag varying fastest.  Every value is read as a TOML value
(``2.5``, ``true``, ``[1, 2, 3]``; a bare word is a string) and checked by the scenario
schema, and every sweep point by the relations between keys, before anything runs.
Sweep point p (0 .. P − 1, P = 1 without ``--sweep``) and replicate r (0 .. N − 1) make
member k = p · N + r, run in folder ``DIR/member-kkkk/`` (``run.h5``, its XDMF sidecar,
``summary.json``, ``status.json``: :mod:`engine.members`).

**Seeds.**  Member k runs with the seed of its *replicate*, :func:`replicate_seed`
(base seed = the scenario's ``scenario.seed``): the first two 32-bit words of
Philox4x32-10 keyed by the base seed at counter (r, 0, ENSEMBLE_STREAM, 0), joined as
high · 2³² + low.  A counter-based mix gives seeds that are unrelated bit patterns for
neighbouring r (not base, base + 1, ...), reproducible from (base seed, r) alone.
Members of different sweep points with the same replicate index share their seed:
*common random numbers*, so a difference between sweep points is the parameter's and not
the draw's, and a sweep comparison is sharper than with independent seeds.

**Where members run.**  Locally, ``--jobs J`` processes (default: the CPU count, or 1
process on the ``cupy`` backend, one GPU), each with ``NUMBA_NUM_THREADS = max(1, CPUs
// J)`` (:class:`engine.members.LocalPool`).  Under ``mpiexec -n R`` (or ``srun``),
rank 0 schedules and ranks 1 .. R − 1 run members (:mod:`engine.launch`).  With
``--member K`` only member K runs, in this process (one member per SLURM array task:
``--member $SLURM_ARRAY_TASK_ID``); then ``oncolattice ensemble collect DIR``.

**Reruns.**  The plan (scenario, its text's hash, replicates, sweep, length, seeds) is
written to ``DIR/ensemble.plan.json``; a later command on the same DIR must have the
same plan.  A member already complete (its status record, summary and run file agree,
:func:`engine.members.is_complete`) is skipped; a failed, interrupted or missing one is
run again.  A failed member is reported with its error and the command that reruns it
alone, the others go on, and the ensemble ends with exit status 1 once the rest are done
and collected.  A local or MPI ensemble ends by collecting (:mod:`engine.collect`):
``DIR/ensemble.csv`` and ``DIR/ensemble.json``.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import itertools
import json
import math
import os
import shlex
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import Interrupted, UserError, printable, shown
from .members import RUN_FILE, LocalPool, Member, RunFailed, Tally, cpu_count, is_complete, \
    run_member

ENSEMBLE_STREAM = 0x454E53      # "ENS": the Philox counter word of the seed mix
MAX_REPLICATES = 100_000
MAX_MEMBERS = 100_000
PLAN = "ensemble.plan.json"
COLLECT = "collect"             # `oncolattice ensemble collect DIR`
MEMBER_FOLDER = "member-{:04d}"
FIXED_KEYS = {"scenario.seed": "seeds come from the replicate index (--replicates)"}


def replicate_seed(base_seed: int, replicate: int) -> int:
    """The seed of replicate r: Philox4x32-10 keyed by the base seed at counter (r, 0,
    ENSEMBLE_STREAM, 0); words (w0, w1) -> w1 · 2³² + w0."""
    from kernels.philox import philox4x32_numpy, seed_key
    w0, w1, _, _ = philox4x32_numpy((replicate, 0, ENSEMBLE_STREAM, 0), seed_key(base_seed))
    return int(w1) << 32 | int(w0)


# -- sweeps ------------------------------------------------------------------------------

def split_values(text: str) -> list[str]:
    """`text` split at the commas outside brackets and quotes."""
    parts, depth, quote, current = [], 0, None, ""
    for c in text:
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += c
    return parts + [current.strip()]


def toml_value(text: str):
    """A value as TOML reads it (``2.5``, ``true``, ``[1, 2]``, ``"a"``); a bare word that
    is no TOML value is that string."""
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except (tomllib.TOMLDecodeError, ValueError, RecursionError):
        return text
    return value if isinstance(value, (bool, int, float, str, list)) else text


def parse_sweeps(flags: list[str] | None) -> dict[str, list]:
    """``--sweep KEY=V1,V2,...`` flags -> {key: [values]} in the order given; a malformed
    flag, an empty value, a key given twice or a key that cannot be swept is a one-line
    error naming the flag."""
    sweep: dict[str, list] = {}
    for flag in flags or []:
        given = printable(flag if len(flag) <= 80 else flag[:77] + "...")
        key, sep, text = flag.partition("=")
        key = key.strip()
        values = split_values(text) if sep else []
        if not key or not values or "" in values:
            raise UserError(f"--sweep {given}: expected KEY=V1,V2,... (a scenario key and "
                            f"its values, e.g. tumor.seed_radius_um=40,60)")
        if key in sweep:
            raise UserError(f"--sweep {given}: key {printable(key)} is swept twice")
        if key in FIXED_KEYS:
            raise UserError(f"--sweep {given}: {printable(key)} cannot be swept: "
                            f"{FIXED_KEYS[key]}")
        sweep[key] = [toml_value(v) for v in values]
    return sweep


def sweep_points(sweep: dict[str, list]) -> list[dict]:
    """The Cartesian product of the sweep, the last key varying fastest ([{}] if none)."""
    return [dict(zip(sweep, combo)) for combo in itertools.product(*sweep.values())]


def flag_of(key: str, values: list) -> str:
    return f"--sweep {printable(key)}=" + ",".join(printable(_toml(v)) for v in values)


def _toml(value) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def check_sweep(base, sweep: dict[str, list], points: list[dict]) -> None:
    """Every value through the schema, then every point through the relations between
    keys; the first that fails is a one-line error naming its --sweep flag(s)."""
    for key, values in sweep.items():
        for value in values:
            try:
                copy.deepcopy(base).with_parameters({key: value})
            except UserError as exc:
                raise UserError(f"--sweep {printable(key)}={printable(_toml(value))}: "
                                f"{exc}") from None
    for point in points if len(sweep) > 1 else []:
        try:
            copy.deepcopy(base).with_parameters(point)
        except UserError as exc:
            flags = " ".join(f"--sweep {printable(k)}={printable(_toml(v))}"
                             for k, v in point.items())
            raise UserError(f"{flags}: {exc}") from None


# -- the plan ------------------------------------------------------------------------------

@dataclass
class Plan:
    """A checked ensemble: its folder, members and the record written to DIR/PLAN."""

    folder: Path
    members: list[Member]
    record: dict
    command: str


def base_scenario(args):
    from .cli import scenario_of
    return scenario_of(args)


def check_length(args, scenario) -> float | None:
    """--days / --steps / --snapshot-every as `run` checks them; the duration in hours."""
    from kernels.process import MAX_STEPS
    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps {args.steps}: must be between 1 and {MAX_STEPS}")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise UserError(f"--snapshot-every {args.snapshot_every}: must be at least 1")
    if args.days is None:
        return None
    if not (math.isfinite(args.days) and args.days > 0):
        raise UserError(f"--days {args.days}: the duration must be a positive number of days")
    step_h = scenario["time.step_h"]
    if args.days * 24.0 < step_h * (1 - 1e-9):
        raise UserError(f"--days {args.days:g}: shorter than one step of {step_h:g} h")
    try:
        copy.deepcopy(scenario).with_overrides(duration_h=args.days * 24.0)
    except UserError as exc:
        raise UserError(f"--days {args.days:g}: {exc}") from None
    return args.days * 24.0


def command_line(args, folder: Path) -> list[str]:
    """The command that runs this ensemble again (no --jobs or --member)."""
    argv = ["oncolattice", "ensemble", args.scenario, "--replicates", str(args.replicates)]
    for flag in args.sweep or []:
        argv += ["--sweep", flag]
    for flag, value in (("--protocol", args.protocol), ("--days", args.days),
                        ("--steps", args.steps), ("--snapshot-every", args.snapshot_every)):
        if value is not None:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if args.backend != "auto":
        argv += ["--backend", args.backend]
    return argv + ["--out", str(folder)]


def make_plan(args) -> Plan:
    """Check the command line and build the members, before anything runs."""
    from .cli import default_stem
    if args.replicates is None:
        raise UserError("--replicates: required (--replicates N runs N replicates per sweep "
                        "point)")
    if not 1 <= args.replicates <= MAX_REPLICATES:
        raise UserError(f"--replicates {args.replicates}: must be between 1 and "
                        f"{MAX_REPLICATES}")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: must be at least 1")
    sweep = parse_sweeps(args.sweep)
    if "time.duration_h" in sweep and (args.days is not None or args.steps is not None):
        raise UserError("--sweep time.duration_h: cannot be combined with --days or --steps")
    base = base_scenario(args)
    duration = check_length(args, base)
    points = sweep_points(sweep)
    if len(points) * args.replicates > MAX_MEMBERS:
        raise UserError(f"--replicates {args.replicates} x {len(points)} sweep points: at most "
                        f"{MAX_MEMBERS} members")
    check_sweep(base, sweep, points)
    if args.member is not None and not 0 <= args.member < len(points) * args.replicates:
        raise UserError(f"--member {args.member}: the ensemble has members 0 .. "
                        f"{len(points) * args.replicates - 1}")
    folder = args.out or Path(f"ensemble_{default_stem(base['scenario.name'])}")
    check_folder(folder)
    from .backend import select_backend
    backend = select_backend(args.backend)
    base_seed = int(base["scenario.seed"])
    seeds = [replicate_seed(base_seed, r) for r in range(args.replicates)]
    argv = command_line(args, folder)
    command = shlex.join(argv)
    members = []
    for p, point in enumerate(points):
        for r in range(args.replicates):
            k = p * args.replicates + r
            where = Path(os.path.abspath(folder)) / MEMBER_FOLDER.format(k)
            members.append(Member(
                index=k, label=member_label(k, r, point), scenario=args.scenario, replicate=r,
                seed=seeds[r], out=str(where / RUN_FILE), backend=backend,
                protocol=args.protocol, values=tuple(point.items()), duration_h=duration,
                steps=args.steps, snapshot_every=args.snapshot_every, folder=str(where),
                rerun=shlex.join(argv + ["--member", str(k)])))
    record = {"scenario": args.scenario, "scenario_name": base["scenario.name"],
              "scenario_sha256": hashlib.sha256(base.resolved_toml().encode()).hexdigest(),
              "protocol": args.protocol, "replicates": args.replicates, "base_seed": base_seed,
              "seed_rule": "replicate_seed(base_seed, r): Philox4x32-10 (engine.ensemble)",
              "sweep": sweep, "points": points, "days": args.days, "steps": args.steps,
              "snapshot_every": args.snapshot_every,
              "members": [{"member": m.index, "point": m.index // args.replicates,
                           "replicate": m.replicate, "seed": m.seed,
                           "folder": Path(m.folder).name, "rerun": m.rerun}
                          for m in members]}
    return Plan(folder=Path(folder), members=members, record=record, command=command)


def member_label(k: int, replicate: int, point: dict) -> str:
    values = "".join(f", {printable(key)}={printable(_toml(v))}" for key, v in point.items())
    return f"member {k} (replicate {replicate}{values})"


def check_folder(folder: Path) -> None:
    """Refuse an --out that exists and is not a directory, or cannot be written."""
    from .cli import check_writable
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {shown(folder)}: exists and is not a directory")
    check_writable("--out", folder / PLAN, replace=True)


def write_plan(plan: Plan) -> None:
    """DIR/PLAN; a folder that holds another ensemble's plan is refused (one line)."""
    from .members import read_json
    from .output import write_summary
    path = plan.folder / PLAN
    old = read_json(path) if path.exists() else None
    if path.exists() and old != json.loads(json.dumps(plan.record)):
        differs = next((k for k in plan.record if (old or {}).get(k) != plan.record[k]),
                       "the plan")
        raise UserError(f"--out {shown(plan.folder)}: holds an ensemble of another plan "
                        f"({differs} differs); use another --out or remove it")
    plan.folder.mkdir(parents=True, exist_ok=True)
    if old is None:
        write_summary(path, plan.record)


def to_run(plan: Plan, tally: Tally) -> list[Member]:
    """The members not yet complete; the complete ones are announced as skipped."""
    todo = [m for m in plan.members if not is_complete(m)]
    done = len(plan.members) - len(todo)
    if done:
        tally.say(f"{done} of {len(plan.members)} members already complete, skipped"
                  + ("" if todo else "; nothing to run"))
    tally.total = len(todo)
    return todo


# -- running -------------------------------------------------------------------------------

def cmd_ensemble(args, stop=lambda: None) -> int:
    from .domain import world
    comm = world()
    if args.scenario == COLLECT and not Path(COLLECT).is_file():
        if args.folder is None:
            raise UserError("ensemble collect: the ensemble's folder is missing "
                            "(oncolattice ensemble collect DIR)")
        return 0 if comm is not None and comm.Get_rank() != 0 else cmd_collect(args)
    if args.folder is not None:
        raise UserError(f"{printable(args.folder)}: unexpected argument (only `ensemble "
                        f"collect DIR` takes a folder; the ensemble's is --out DIR)")
    if comm is not None:
        if args.member is not None:
            raise UserError("--member runs one member in this process: launch it without "
                            "mpiexec (or with one rank)")
        from .launch import run_under_mpi
        return run_under_mpi(args, comm, stop)
    plan = make_plan(args)
    write_plan(plan)
    if args.member is not None:
        return run_one(plan.members[args.member], stop)
    tally = Tally(0, "ensemble")
    todo = to_run(plan, tally)
    if todo:
        jobs = args.jobs or (1 if plan.members[0].backend == "cupy" else cpu_count())
        pool = LocalPool(todo, jobs, tally, stop=stop,
                         stopped_note="; rerun the same command to run the rest")
        tally.say(f"{plan.record['scenario_name']}: {announce(plan)}, {len(todo)} to run, "
                  f"{pool.processes} at a time (NUMBA_NUM_THREADS={pool.threads} each) "
                  f"-> {shown(plan.folder)}")
        pool.run()
    return finish(plan, tally)


def announce(plan: Plan) -> str:
    points = len(plan.record["points"])
    return (f"{points} sweep point{'s' * (points != 1)} x {plan.record['replicates']} "
            f"replicates = {len(plan.members)} members")


def run_one(member: Member, stop) -> int:
    """`--member K`: that member alone, in this process (skipped if complete)."""
    tally = Tally(1, "ensemble")
    if is_complete(member):
        tally.say(f"{member.label} is already complete, skipped")
        return 0
    tally.started(member)
    t0 = time.perf_counter()
    result = run_member(member, stop=stop)
    if (signum := stop()) is not None:
        raise Interrupted(signum, f"{member.label}: {result.get('error', 'stopped')}")
    if not result["ok"]:
        raise RunFailed(f"{member.label} ({member.note}) failed: {result['error']}; rerun it "
                        f"alone with: {member.rerun}")
    tally.finished(member, result, time.perf_counter() - t0)
    return 0


def finish(plan: Plan, tally: Tally) -> int:
    """Collect the members; a failed one makes the ensemble's exit status 1."""
    from .collect import collect
    table = collect(plan.folder)
    tally.say(f"collected {table['complete']} of {table['members']} members -> "
              f"{shown(plan.folder / 'ensemble.csv')}, {shown(plan.folder / 'ensemble.json')}")
    if tally.failed:
        listed = ", ".join(str(k) for k in sorted(tally.failed))
        raise RunFailed(f"{len(tally.failed)} of {len(plan.members)} members failed (member "
                        f"{listed}): each is listed above with its error and the command "
                        f"that reruns it alone; rerunning this command runs them again and "
                        f"skips the complete ones")
    if table["missing"]:
        raise RunFailed(f"members {table['missing']} are not complete; rerun: {plan.command}")
    print(plan.folder / "ensemble.csv")
    return 0


def cmd_collect(args) -> int:
    from .collect import collect
    table = collect(Path(args.folder))
    folder = Path(args.folder)
    incomplete = [f["member"] for f in table["failed"]] + table["missing"]
    print(folder / "ensemble.csv")
    if incomplete:
        raise RunFailed(f"collected {table['complete']} of {table['members']} members; "
                        f"not complete: member {', '.join(map(str, sorted(incomplete)))} "
                        f"(see {shown(folder / 'ensemble.json')} for the commands to rerun "
                        f"them)")
    return 0


def add_arguments(parser) -> None:
    """The `ensemble` sub-command's arguments."""
    from .backend import BACKENDS
    from .cli import PROTOCOL_HELP
    parser.add_argument("scenario", help="scenario file or built-in name; or `collect` "
                        "followed by an ensemble's folder")
    parser.add_argument("folder", nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--replicates", type=int, metavar="N",
                        help="runs per sweep point; replicate r runs with the seed "
                             "replicate_seed(scenario seed, r) at every sweep point")
    parser.add_argument("--sweep", action="append", metavar="KEY=V1,V2,...",
                        help="a scenario key and its values; several give their Cartesian "
                             "product (members: sweep point x replicates)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder of DIR/member-KKKK/ and ensemble.csv/json "
                             "(default: ensemble_<scenario name>)")
    parser.add_argument("--jobs", type=int, metavar="J",
                        help="members at a time, each its own process (default: the CPU "
                             "count; 1 on the cupy backend)")
    parser.add_argument("--member", type=int, metavar="K",
                        help="run member K alone in this process (a SLURM array task: "
                             "--member $SLURM_ARRAY_TASK_ID); collect afterwards")
    parser.add_argument("--protocol", metavar="PROTOCOL", help=PROTOCOL_HELP)
    length = parser.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, help="model time of each member, in days")
    length.add_argument("--steps", type=int, help="steps of each member")
    parser.add_argument("--snapshot-every", type=int, metavar="N",
                        help="steps between snapshots (default: time.snapshot_every_steps)")
    parser.add_argument("--backend", default="auto", choices=BACKENDS)
