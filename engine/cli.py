"""The `oncolattice` command: run, check, bench, view, render, report.

Errors a user can fix are printed as one line on stderr with a non-zero exit
status (2 for bad input); a traceback is shown only with ONCOLATTICE_DEBUG=1.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import signal
import sys
from pathlib import Path

from . import __version__
from .backend import BACKENDS, gpu_free_bytes, gpu_status, select_backend
from .errors import UserError

DEFAULT_SCENARIO = "quickstart"

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
    run.add_argument("--quiet", action="store_true", help="no progress output")

    check = sub.add_parser("check", help="validate a scenario; print resolved parameters and memory")
    check.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO)

    bench = sub.add_parser("bench", help="voxel-updates per second of each pass and of a whole step")
    bench.add_argument("--size", type=int, default=128, help="cubic lattice edge in voxels")
    bench.add_argument("--backend", default="auto", choices=BACKENDS)
    bench.add_argument("--steps", type=int, default=10, help="timed steps (after warm-up)")
    bench.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")

    for name, module in TOOL_COMMANDS.items():
        tool = importlib.import_module(module)
        tool.add_arguments(sub.add_parser(name, help=tool.HELP, description=tool.HELP))
    return parser


def cmd_run(args) -> int:
    from .run import run, steps_for
    from .scenario import load_scenario
    if args.days is not None and not (math.isfinite(args.days) and args.days > 0):
        raise UserError(f"--days {args.days}: the duration must be a positive number of days")
    scenario = load_scenario(args.scenario)
    duration = None if args.days is None else args.days * 24.0
    scenario.with_overrides(seed=args.seed, duration_h=duration)
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be at least 1")
    if args.snapshot_every is not None and args.snapshot_every < 1:
        raise UserError(f"--snapshot-every {args.snapshot_every}: must be at least 1")
    backend = select_backend(args.backend)
    steps = args.steps if args.steps is not None else steps_for(scenario)
    out = args.out or Path(f"{default_stem(scenario['scenario.name'])}.h5")
    if out.suffix not in (".h5", ".hdf5"):
        raise UserError(f"--out {out}: the run file must end in .h5 or .hdf5")
    every = args.snapshot_every or scenario["time.snapshot_every_steps"]
    log = sys.stderr
    if not args.quiet:
        print(f"oncolattice {__version__}: {scenario.path} seed={scenario['scenario.seed']} "
              f"backend={backend} steps={steps} -> {out}", file=log, flush=True)
    summary = run(scenario, backend=backend, steps=steps, out=out, snapshot_every=every,
                  summary_path=args.summary, progress=not args.quiet, log=log)
    if not args.quiet:
        c0, c = summary["counts_initial"], summary["counts"]
        print(f"done in {summary['wall_s']:.1f} s: tumor {c0['tumor']} -> {c['tumor']} cells "
              f"(x{summary['tumor_growth']:.1f}), functional fraction "
              f"{summary['functional_fraction']:.4f}, necrotic {c['necrotic']}", file=log)
    return 0


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
    from .scenario import load_scenario
    from .state import (BYTES_PER_VOXEL, STATE_BYTES_PER_VOXEL, WORK_BYTES_PER_VOXEL,
                        host_bytes_per_voxel, human_bytes, run_bytes)
    scenario = load_scenario(args.scenario)
    shape = scenario.shape
    need = run_bytes(shape)
    steps = steps_for(scenario)
    snapshots = steps // scenario["time.snapshot_every_steps"] + 1
    print(f"scenario {scenario.path}: valid")
    print("resolved parameters:")
    print("\n".join(scenario.describe()))
    print(f"lattice: {shape[0]} x {shape[1]} x {shape[2]} = {need['voxels']:,} voxels, "
          f"{scenario['lattice.voxel_um']:g} µm edge")
    print(f"run: {steps} steps of {scenario['time.step_h']:g} h, {snapshots} snapshots")
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
    run_bench(size=args.size, backend=select_backend(args.backend), steps=args.steps,
              json_path=args.json)
    return 0


COMMANDS = {"run": cmd_run, "check": cmd_check, "bench": cmd_bench}


def _stop_on_sigterm(signum, frame):
    """Batch schedulers end jobs with SIGTERM: stop like Ctrl-C, keeping snapshots."""
    raise KeyboardInterrupt


def main(argv=None) -> int:
    debug = os.environ.get("ONCOLATTICE_DEBUG") == "1"
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        args = build_parser().parse_args(argv)
        if args.command in TOOL_COMMANDS:
            return importlib.import_module(TOOL_COMMANDS[args.command]).command(args)
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"oncolattice: error: {exc}", file=sys.stderr)
        if debug:
            raise
        return exc.exit_status
    except KeyboardInterrupt:
        print("oncolattice: interrupted (snapshots written so far are kept; "
              "the run file says status=interrupted)", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"oncolattice: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # an internal bug: one line, traceback on request
        if debug:
            raise
        print(f"oncolattice: internal error: {type(exc).__name__}: {exc} "
              f"(set ONCOLATTICE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
