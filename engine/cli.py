"""The `oncolattice` command: run, resume, check, bench, compare, ensemble, view, render,
report.

Errors a user can fix are printed as one line on stderr with a non-zero exit
status (2 for bad input); a traceback is shown only with ONCOLATTICE_DEBUG=1.

`run` stops on SIGINT (Ctrl-C), SIGTERM and SIGUSR1 (batch schedulers' warnings
before the wall time): the handlers only record the signal, and the run checks
at each step boundary, writes its checkpoint (where it keeps one:
``--checkpoint-every``, ``--checkpoint``), snapshots the current step, closes its
file as ``interrupted`` and exits with 128 + the signal number (130, 143, 138).
`resume` continues a run from its checkpoint the same way.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

from . import __version__
from .backend import BACKENDS, gpu_free_bytes, gpu_status, select_backend
from .errors import Interrupted, UserError, shown

DEFAULT_SCENARIO = "quickstart"
LONG_RUN_STEPS = 10_000         # a run longer than this prints its disk estimate first
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

# Commands that read run files live in tools/: each module has HELP,
# add_arguments(parser) and command(args) -> exit status, and imports its heavy
# libraries (vispy, Qt, matplotlib) only when its command runs.  They read run
# files through engine.runformat alone, so this module imports the simulation
# (scenario, state: Numba and kernels/) only inside the commands that run it.
TOOL_COMMANDS = {"view": "tools.viewer", "render": "tools.render", "report": "tools.report"}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="oncolattice", description=(
        "GPU-accelerated 3D voxel lattice model of solid tumour growth. "
        "A research tool, not clinical advice."))
    parser.add_argument("--version", action="version", version=f"oncolattice {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a scenario and write RUN.h5 (+ RUN.xdmf)")
    run.add_argument("--protocol", metavar="PROTOCOL", help=PROTOCOL_HELP)
    run.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                     help="scenario file or built-in name (default: quickstart)")
    length = run.add_mutually_exclusive_group()
    length.add_argument("--days", type=float, help="model time to run, in days")
    length.add_argument("--steps", type=int, help="number of steps to run")
    run.add_argument("--seed", type=int, help="random seed (overrides scenario.seed)")
    run.add_argument("--backend", default="auto", choices=BACKENDS)
    run.add_argument("--out", type=Path, help="HDF5 output (default: <scenario name>.h5)")
    run.add_argument("--snapshot-every", type=int, metavar="N",
                     help="steps between snapshots (default: time.snapshot_every_steps)")
    run.add_argument("--summary", type=Path, metavar="SUMMARY.json", help="write a JSON summary")
    run.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--checkpoint-every", type=int, metavar="N",
                     help="write a checkpoint every N steps (and always on SIGTERM/SIGUSR1)")
    run.add_argument("--checkpoint", type=Path, metavar="CKPT.h5",
                     help="checkpoint path (default: RUN.ckpt.h5 beside --out); given alone, "
                          "a checkpoint is written only when a stop signal ends the run")

    resume = sub.add_parser("resume", help="continue a run from its checkpoint, appending to "
                            "its run file (bit for bit what the uninterrupted run writes)")
    resume.add_argument("checkpoint", type=Path, metavar="CKPT.h5")
    resume.add_argument("--backend", default="auto", choices=BACKENDS)
    resume.add_argument("--out", type=Path, metavar="RUN.h5",
                        help="the run file, if it has moved since the checkpoint was written")
    resume.add_argument("--quiet", action="store_true", help="no progress output")

    repair = sub.add_parser("repair", help="make the file of a killed run readable again "
                            "(marks it closed and interrupted, trims a torn snapshot)")
    repair.add_argument("run_file", type=Path, metavar="RUN.h5")

    check = sub.add_parser("check", help="validate a scenario; print resolved parameters and memory")
    check.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO)
    check.add_argument("--protocol", metavar="PROTOCOL", help=PROTOCOL_HELP)

    bench = sub.add_parser("bench", help="voxel-updates per second of each pass and of a whole step")
    bench.add_argument("--size", type=int, default=128, help="cubic lattice edge in voxels")
    bench.add_argument("--backend", default="auto", choices=BACKENDS)
    bench.add_argument("--steps", type=int, default=10, help="timed steps (after warm-up)")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    bench.add_argument("--mpi", action="store_true",
                       help="strong and weak scaling of the MPI slab decomposition "
                            "(launches mpiexec -n R for each of --ranks)")
    bench.add_argument("--ranks", default="1,2,3,4", metavar="R1,R2,...",
                       help="rank counts of --mpi (default 1,2,3,4)")

    from .compare import add_arguments as compare_arguments
    compare_help = ("run therapy arms on the same seeds (paired replicates), each run in its "
                    "own process, and write a comparison report (compare.html)")
    compare_arguments(sub.add_parser("compare", help=compare_help, description=compare_help))

    from .ensemble import add_arguments as ensemble_arguments
    ensemble_help = ("replicate runs and parameter sweeps (--sweep KEY=V1,V2,...), locally, "
                     "under mpiexec or one member per SLURM array task (--member K); "
                     "`ensemble collect DIR` merges their summaries")
    ensemble_arguments(sub.add_parser("ensemble", help=ensemble_help, description=ensemble_help))

    for name, module in TOOL_COMMANDS.items():
        tool = importlib.import_module(module)
        tool.add_arguments(sub.add_parser(name, help=tool.HELP, description=tool.HELP))
    return parser


PROTOCOL_HELP = ("therapies and rules in place of the scenario's: untreated, a shipped "
                 "protocol (scenarios/protocols/) or a protocol file")


def scenario_of(args):
    """The scenario named on the command line, with its --protocol if one is given."""
    from .protocol import scenario_with_protocol
    from .scenario import load_scenario
    if getattr(args, "protocol", None):
        return scenario_with_protocol(args.scenario, args.protocol)
    return load_scenario(args.scenario)


def cmd_run(args) -> int:
    from kernels.process import MAX_STEPS

    from .output import RunLock
    from .run import disk_estimate, free_bytes, run, steps_for
    from .state import human_bytes
    if args.days is not None and not (math.isfinite(args.days) and args.days > 0):
        raise UserError(f"--days {args.days}: the duration must be a positive number of days")
    scenario = scenario_of(args)
    step_h = scenario["time.step_h"]
    if args.days is not None and args.days * 24.0 < step_h * (1 - 1e-9):
        raise UserError(f"--days {args.days:g}: shorter than one step of {step_h:g} h "
                        f"({step_h / 24.0:g} days)")
    duration = None if args.days is None else args.days * 24.0
    try:
        scenario.with_overrides(seed=args.seed, duration_h=duration)
    except UserError as exc:               # name the flag, not only the scenario key
        given = [f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}"
                 for flag, value in (("--seed", args.seed), ("--days", args.days))
                 if value is not None]
        raise UserError(f"{' '.join(given)}: {exc}") from None
    if args.steps is not None and not 1 <= args.steps <= MAX_STEPS:
        raise UserError(f"--steps {args.steps}: must be between 1 and {MAX_STEPS}")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise UserError(f"--snapshot-every {args.snapshot_every}: must be at least 1")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UserError(f"--checkpoint-every {args.checkpoint_every}: must be at least 1")
    backend = select_backend(args.backend)
    steps = args.steps if args.steps is not None else steps_for(scenario)
    out = args.out or Path(f"{default_stem(scenario['scenario.name'])}.h5")
    if out.suffix not in (".h5", ".hdf5"):
        raise UserError(f"--out {shown(out)}: the run file must end in .h5 or .hdf5")
    check_run_paths(out, args.summary, Path(scenario.path), overwrite=args.overwrite)
    comm = mpi_world_for(scenario)
    checkpoint = checkpoint_of(args, out, Path(scenario.path))
    every = args.snapshot_every or scenario["time.snapshot_every_steps"]
    log = sys.stderr
    estimate = disk_estimate(scenario, steps, every)
    where = existing_ancestor(out.parent)
    free = free_bytes(where)
    if steps > LONG_RUN_STEPS or estimate["bytes"] > free:
        length = (f"--steps {args.steps}" if args.steps is not None else
                  f"--days {args.days:g}" if args.days is not None else f"{steps} steps")
        need = (f"up to {human_bytes(estimate['bytes'])} ({estimate['snapshots']:,} snapshots "
                f"x {human_bytes(estimate['snapshot_bytes'])} before compression, plus counts)")
        if estimate["bytes"] > free:
            raise UserError(f"{length}: the run would write {need} but {shown(where)} has "
                            f"{human_bytes(free)} free; shorten it or raise --snapshot-every")
        if not args.quiet:
            print(f"oncolattice: {length}: the run will write {need}; "
                  f"{human_bytes(free)} free on {shown(where)}", file=log, flush=True)
    root = comm is None or comm.Get_rank() == 0
    if comm is not None:
        from .domain import depend_on_each_other
        depend_on_each_other(comm)          # every rank checked the paths; rank 0 writes
    lock = None
    if root:
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = RunLock(out).acquire()       # refuse a second writer before anything else
    quiet = args.quiet or not root
    if not quiet:
        ranks = f" ranks={comm.Get_size()}" if comm is not None else ""
        print(f"oncolattice {__version__}: {shown(scenario.path)} seed={scenario['scenario.seed']} "
              f"backend={backend}{ranks} steps={steps} -> {shown(out)}", file=log, flush=True)
    summary = run(scenario, backend=backend, steps=steps, out=out, snapshot_every=every,
                  summary_path=args.summary, progress=not quiet, log=log,
                  overwrite=args.overwrite, stop=stop_requested, lock=lock, comm=comm,
                  checkpoint=checkpoint, checkpoint_every=args.checkpoint_every)
    if not quiet:
        print_done(summary, log)
    return 0


def print_done(summary: dict, log) -> None:
    c0, c = summary["counts_initial"], summary["counts"]
    print(f"done in {summary['wall_s']:.1f} s: tumor {c0['tumor']} -> {c['tumor']} cells "
          f"(x{summary['tumor_growth']:.1f}), functional fraction "
          f"{summary['functional_fraction']:.4f}, necrotic {c['necrotic']}", file=log)


def checkpoint_of(args, out: Path, scenario: Path) -> Path | None:
    """The run's checkpoint path: --checkpoint, else RUN.ckpt.h5 with --checkpoint-every,
    else None (no checkpoints); refused where it would overwrite the run's other files."""
    from .checkpoint import checkpoint_path_for
    if args.checkpoint is None and args.checkpoint_every is None:
        return None
    path = args.checkpoint or checkpoint_path_for(out)
    for other, what in ((out, "the --out run file"), (out.with_suffix(".xdmf"),
                        "the run's XDMF sidecar"), (args.summary, "the --summary file"),
                        (scenario, "the scenario file")):
        if other is not None and _same_file(path, other):
            raise UserError(f"--checkpoint {shown(path)}: would overwrite {what} {shown(other)}")
    check_writable("--checkpoint", path, replace=True)
    return path


def cmd_resume(args) -> int:
    from .run import resume
    from .domain import world
    backend = select_backend(args.backend)
    log = sys.stderr
    comm = world()
    quiet = args.quiet or (comm is not None and comm.Get_rank() != 0)
    summary = resume(args.checkpoint, backend=backend, out=args.out, progress=not quiet,
                     log=log, stop=stop_requested, comm=comm)
    if not quiet:
        print_done(summary, log)
    return 0


def mpi_world_for(scenario):
    """The MPI communicator of a run started by mpiexec with several ranks (None: one
    process), after checking every lattice is thick enough for its slabs."""
    from .domain import check_split, world
    from .run import lattice_shapes
    comm = world()
    if comm is not None:
        for key, shape in lattice_shapes(scenario).items():
            check_split(key, shape[0], comm.Get_size())
    return comm


def cmd_repair(args) -> int:
    from .output import repair_run_file
    print(repair_run_file(args.run_file))
    return 0


# -- output paths ---------------------------------------------------------------------

def existing_ancestor(path: Path) -> Path:
    """`path` or its nearest existing ancestor (the directory a run would create it in)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(os.path.abspath(a)).resolve() == Path(os.path.abspath(b)).resolve()


def check_writable(flag: str, path: Path, *, replace: bool) -> None:
    """Refuse, before anything is written, a `flag` path that cannot be written: a
    NUL in it, a directory there, an existing file without `replace`, a parent path
    component that is a plain file, a directory that is not writable."""
    if "\0" in os.fspath(path):
        raise UserError(f"{flag} {shown(path)}: the path contains a NUL character")
    if path.is_dir():
        raise UserError(f"{flag} {shown(path)}: is a directory")
    if path.exists() or path.is_symlink():
        if not replace:
            raise UserError(f"{flag} {shown(path)}: the file exists "
                            f"(use --overwrite to replace it)")
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {shown(path)}: the file is not writable")
    where = existing_ancestor(path.parent)
    if not where.is_dir():
        raise UserError(f"{flag} {shown(path)}: {shown(where)} is not a directory")
    if not os.access(where, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {shown(path)}: directory {shown(where)} is not writable")


def check_run_paths(out: Path, summary: Path | None, scenario: Path, *, overwrite: bool) -> None:
    """Refuse output paths that would destroy an input or each other: --out (or its
    XDMF sidecar) on the scenario file, --summary on --out, its sidecar or the
    scenario; then check each can be written (:func:`check_writable`)."""
    xdmf = out.with_suffix(".xdmf")
    if _same_file(out, scenario) or _same_file(xdmf, scenario):
        raise UserError(f"--out {shown(out)}: would overwrite the scenario file {shown(scenario)}")
    if summary is not None:
        for other, what in ((out, "the --out run file"), (xdmf, "the run's XDMF sidecar"),
                            (scenario, "the scenario file")):
            if _same_file(summary, other):
                raise UserError(f"--summary {shown(summary)}: would overwrite {what} {shown(other)}")
    check_writable("--out", out, replace=overwrite)
    if summary is not None:
        check_writable("--summary", summary, replace=True)


def default_stem(name: str) -> str:
    """A safe file stem from a scenario name (no directories); 'run' if none is left."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")
    return stem or "run"


def largest_cube(bytes_available: int, bytes_per_voxel: int | None = None) -> int:
    """Edge of the largest cubic lattice whose arrays fit in `bytes_available`
    (`bytes_per_voxel` default: state and work arrays, ``state.BYTES_PER_VOXEL``)."""
    if bytes_per_voxel is None:
        from .state import BYTES_PER_VOXEL as bytes_per_voxel
    return int((bytes_available / bytes_per_voxel) ** (1.0 / 3.0))


def cmd_check(args) -> int:
    from .run import available_host_bytes, steps_for
    from .protocol import protocol_lines
    from .therapy import schedule_lines
    from .state import (BYTES_PER_VOXEL, STATE_BYTES_PER_VOXEL, WORK_BYTES_PER_VOXEL,
                        host_bytes_per_voxel, human_bytes, run_bytes)
    scenario = scenario_of(args)
    shape = scenario.shape
    need = run_bytes(shape)
    steps = steps_for(scenario)
    snapshots = steps // scenario["time.snapshot_every_steps"] + 1
    print(f"scenario {scenario.path}: valid")
    print("resolved parameters:")
    print("\n".join(scenario.describe()))
    print(f"lattice: {shape[0]} x {shape[1]} x {shape[2]} = {need['voxels']:,} voxels, "
          f"{scenario['lattice.voxel_um']:g} µm edge")
    for site in scenario.sites:
        z, y, x = site["shape"]
        print(f"site {site['name']}: {site['organ']} block {z} x {y} x {x} = {z * y * x:,} voxels")
    print(f"run: {steps} steps of {scenario['time.step_h']:g} h, {snapshots} snapshots")
    if scenario.therapies:
        print("therapy schedule (as it will run):")
        print("\n".join(schedule_lines(scenario, steps) + protocol_lines(scenario)))
    print(f"memory: {BYTES_PER_VOXEL} bytes/voxel ({STATE_BYTES_PER_VOXEL} state + "
          f"{WORK_BYTES_PER_VOXEL} work) = {human_bytes(need['device_bytes'])} on the compute "
          f"device, {human_bytes(need['host_bytes'])} host staging per snapshot")
    print(f"output: up to {human_bytes(need['host_bytes'] * snapshots)} of snapshots "
          f"before compression")
    host = available_host_bytes()
    if host:
        print(f"host: {human_bytes(host)} available; largest cubic lattice that fits a CPU run: "
              f"{largest_cube(host, host_bytes_per_voxel('numba'))}^3")
    usable, why = gpu_status()
    gpu_free = gpu_free_bytes()
    if gpu_free:
        print(f"gpu: {why}, {human_bytes(gpu_free)} free; largest cubic lattice that fits: "
              f"{largest_cube(gpu_free)}^3")
    else:
        print(f"gpu: {why}")
    print(f"--backend auto uses {select_backend('auto')}")
    return 0


def cmd_bench(args) -> int:
    from tools.bench import run_bench
    if args.size < 8:
        raise UserError(f"--size {args.size}: must be at least 8")
    if args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be at least 1")
    if args.mpi:
        from tools.bench_mpi import run_mpi_bench
        try:
            ranks = [int(r) for r in args.ranks.split(",")]
        except ValueError:
            ranks = []
        if not ranks or min(ranks) < 1:
            raise UserError(f"--ranks {args.ranks}: give rank counts like 1,2,3,4")
        from .domain import check_split
        for r in ranks:
            check_split("--size", args.size, r)
        run_mpi_bench(size=args.size, ranks=ranks, backend=select_backend(args.backend),
                      steps=args.steps, json_path=args.json)
        return 0
    run_bench(size=args.size, backend=select_backend(args.backend), steps=args.steps,
              json_path=args.json)
    return 0


def cmd_compare(args) -> int:
    from .compare import cmd_compare as compare
    return compare(args, stop=stop_requested)


def cmd_ensemble(args) -> int:
    from .ensemble import cmd_ensemble as ensemble
    return ensemble(args, stop=stop_requested)


COMMANDS = {"run": cmd_run, "resume": cmd_resume, "check": cmd_check, "bench": cmd_bench,
            "repair": cmd_repair, "compare": cmd_compare, "ensemble": cmd_ensemble}
STOPPABLE = ("run", "resume", "repair", "compare", "ensemble")   # end at a safe point on a stop signal

_stops: list[int] = []          # stop signals received, in order


def _record_stop(signum, frame):
    """Only record the signal: raising here could land anywhere (even in a weakref
    callback, where the exception is discarded and the run goes on)."""
    _stops.append(signum)


def stop_requested() -> int | None:
    """The first stop signal received during this command, or None."""
    return _stops[0] if _stops else None


@contextmanager
def stop_signals(restore: bool = True):
    """Record SIGINT, SIGTERM and SIGUSR1 instead of acting on them, for the
    command's lifetime (from before argument parsing); restore the handlers after
    (`restore`; the `oncolattice` process itself keeps them until it exits, so a signal
    after a finished run cannot kill it with the file complete but the exit status lost).
    Outside the main thread signals cannot be handled: nothing changes."""
    _stops.clear()
    try:
        previous = {sig: signal.signal(sig, _record_stop) for sig in STOP_SIGNALS}
    except ValueError:
        previous = {}
    try:
        yield previous
    finally:
        for sig, handler in previous.items() if restore else ():
            signal.signal(sig, handler)


def _dispatch(argv, previous) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in STOPPABLE:         # tools and bench: the usual Ctrl-C
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if (signum := stop_requested()) is not None:
            raise Interrupted(signum, f"stopped by {signal.Signals(signum).name}")
    if args.command in TOOL_COMMANDS:
        return importlib.import_module(TOOL_COMMANDS[args.command]).command(args)
    return COMMANDS[args.command](args)


def _from_h5py_dealloc(tb) -> bool:
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name.endswith("_dealloc") and "h5py" in code.co_filename:
            return True
        tb = tb.tb_next
    return False


@contextmanager
def quiet_h5py_teardown():
    """After a failed write h5py reports each object it cannot release (its HDF5 close
    must write too) as an ignored exception with a traceback.  The run reports the
    failure in one line; those reports are dropped (kept with ONCOLATTICE_DEBUG=1)."""
    unraisable, excepthook = sys.unraisablehook, sys.excepthook

    def quiet_unraisable(u):
        if not _from_h5py_dealloc(u.exc_traceback):
            unraisable(u)

    def quiet_excepthook(kind, value, tb):
        if not _from_h5py_dealloc(tb):
            excepthook(kind, value, tb)

    sys.unraisablehook, sys.excepthook = quiet_unraisable, quiet_excepthook
    try:
        yield
    finally:
        sys.unraisablehook, sys.excepthook = unraisable, excepthook


def _end_now(status: int) -> None:
    """Exit at once, skipping HDF5's exit handler, which crashes on a file it could not
    close after a failed write (the file keeps what was written; `repair` fixes it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def report(line: str) -> None:
    """Print a one-line error: under MPI, before the ranks depend on each other, every
    rank meets the same error and rank 0 alone says it; afterwards, the rank it
    happened on."""
    from .domain import COLLECTIVE, launcher_rank
    if COLLECTIVE["comm"] is not None or launcher_rank() == 0:
        print(line, file=sys.stderr, flush=True)


def main(argv=None) -> int:
    """The command line `argv` (None: this process is `oncolattice`, sys.argv) -> exit
    status.  An MPI run that fails on one rank after the ranks began to depend on each
    other aborts them all (the others would wait for it forever)."""
    from .domain import COLLECTIVE
    status = _main(argv)
    if status and COLLECTIVE["comm"] is not None:
        COLLECTIVE["comm"].Abort(status)
    return status


def _main(argv=None) -> int:
    debug = os.environ.get("ONCOLATTICE_DEBUG") == "1"
    try:
        with stop_signals(restore=argv is not None) as previous, quiet_h5py_teardown():
            return _dispatch(argv, previous)
    except UserError as exc:
        report(f"oncolattice: error: {exc}")
        if debug:
            raise
        if getattr(exc, "hdf5_unclosed", False) and argv is None:
            with quiet_h5py_teardown():
                _end_now(exc.exit_status)
        return exc.exit_status
    except Interrupted as exc:
        from .domain import COLLECTIVE
        COLLECTIVE["comm"] = None           # every rank stopped at the same step
        report(f"oncolattice: interrupted: {exc}")
        return exc.exit_status
    except KeyboardInterrupt:
        report("oncolattice: interrupted")
        return 130
    except OSError as exc:
        if debug:
            raise
        where = f"{shown(exc.filename)}: " if getattr(exc, "filename", None) else ""
        report(f"oncolattice: error: {where}{exc.strerror or exc}")
        return 1
    except Exception as exc:  # an internal bug: one line, traceback on request
        if debug:
            raise
        report(f"oncolattice: internal error: {type(exc).__name__}: {exc} "
               f"(set ONCOLATTICE_DEBUG=1 for the traceback)")
        return 1
