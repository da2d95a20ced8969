"""Processes and their kernel entry points, each declared once.

A *process* (division, cell fate, angiogenesis, oxygen ...) is declared in its own module
under `kernels/` with `Process(...)`: its scenario parameters (`params`: type, unit,
range, default, source; they join the scenario schema and `check`'s output, with any
relations between them in `@process.checks`), the rule constants it derives from them
(`@process.rules_from`), the voxel arrays it owns (`arrays`: dtype and meaning; the
lattice layout, bytes per voxel and the README's state table follow from them; which
arrays a kernel reads or writes is its `.cu` prototype), the event counters it reports
(census columns, in declared order) and the Philox streams it draws from (fixed ids,
unique across processes, so adding a process never changes another's random numbers).  Its kernels
are *entries*: one CUDA C function `OL_ENTRY name(...)` in the process's `.cu` file and
one Numba twin, joined by `@process.entry("name")` on the Numba function.

The `.cu` prototype is the argument list's one declaration: name, C type (and so the
dtype), and `const` for an array the kernel only reads.  From it follow

* the Numba call: the twin must take exactly the prototype's parameters, in order
  (checked at import, so a drifted twin fails at once, not silently);
* the launch tuple: every argument is looked up by name (the process's `events` block,
  a lattice array, `step`, a rule constant, or a value the caller passes) and checked or
  cast to the declared type: a wrong dtype or an inexact cast is an error, never a
  silently wrong launch;
* the C constants of the process (its local event codes, its stream ids), generated
  and prepended to the source when it is compiled (NVRTC or the host harness).

Both backends receive the same tuple followed by the slab parameters
(`OL_SLAB_PARAMS`: nz, ny, nx, z0, ny_global, nx_global, lattice id, key words).
`Entry.__call__` is the only place where the backend is looked at.

Events live in `lattice.events`, shape (n_events, nz) int64, one row per event and
one column per z plane (so parallel plane loops never share a counter); a process's
kernels see only their own rows, with local codes 0..n-1.
"""
from __future__ import annotations

import functools
import inspect
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

KERNEL_DIR = Path(__file__).resolve().parent

C_TYPES = {"u8": np.uint8, "u16": np.uint16, "u32": np.uint32, "int": np.int32,
           "i64": np.int64, "float": np.float32, "u64": np.uint64}
PROCESSES: dict[str, "Process"] = {}
STREAM_IDS: dict[int, str] = {}


class DeclarationError(Exception):
    """A process, entry or kernel argument that contradicts its declaration."""


REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One scenario parameter: type, default, bounds, unit and source."""

    type: str                  # "float", "int", "bool", "str", "vec3", "range", "shape"
    default: Any = REQUIRED
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False      # True: value must be > lo (else >= lo)
    hi_open: bool = False      # True: value must be < hi (else <= hi)
    unit: str = ""
    source: str = ""
    choices: tuple[str, ...] = ()   # a "str" parameter: the values allowed (empty: any)
    pattern: str = ""               # a "str" parameter: a regular expression it must match whole
    pattern_text: str = ""          # that pattern in words, for error messages

    def bounds_text(self) -> str:
        show = (lambda b: str(b)) if self.type in ("int", "shape") else (lambda b: f"{b:g}")
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.lo_open else '>='} {show(self.lo)}")
        if self.hi is not None:
            parts.append(f"{'<' if self.hi_open else '<='} {show(self.hi)}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Array:
    """A voxel array a process owns: one value (or `planes` values) per voxel, with the
    one thing it means.  A work array holds nothing between steps."""

    dtype: type
    meaning: str
    planes: int = 1
    work: bool = False

    @property
    def bytes(self) -> int:
        return np.dtype(self.dtype).itemsize * self.planes


@dataclass(frozen=True)
class Arg:
    """One kernel argument as the `.cu` prototype declares it."""

    name: str
    ctype: str
    pointer: bool
    const: bool

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(C_TYPES[self.ctype])

    def __str__(self):
        return f"{'const ' if self.const else ''}{self.ctype} {'*' if self.pointer else ''}{self.name}"


def _parse_param(text: str) -> Arg:
    m = re.fullmatch(r"(const\s+)?(\w+)\s*(\*)?\s*(\w+)", text.strip())
    if not m or m.group(2) not in C_TYPES:
        raise DeclarationError(f"cannot read kernel parameter {text.strip()!r}")
    return Arg(m.group(4), m.group(2), bool(m.group(3)), bool(m.group(1)))


def _macro_params(name: str) -> tuple[Arg, ...]:
    """The parameters of `#define name ...` in cuda_common.cuh."""
    m = re.search(rf"#define\s+{name}\s+([^\n]*)", (KERNEL_DIR / "cuda_common.cuh").read_text())
    return tuple(_parse_param(p) for p in m.group(1).split(","))


SLAB = _macro_params("OL_SLAB_PARAMS")         # every entry ends with these
TILE = _macro_params("OL_TILE_PARAMS")         # a tile pass's list of tiles
SLAB_PARAMS = tuple(a.name for a in SLAB)


@functools.lru_cache(maxsize=None)
def prototype(source: str, entry: str) -> tuple[Arg, ...]:
    """The declared arguments of `OL_ENTRY entry(...)` in `source`, without the slab
    parameters (which every entry must end with); OL_TILE_PARAMS expanded."""
    text = (KERNEL_DIR / source).read_text()
    m = re.search(rf"OL_ENTRY\s+{entry}\s*\(([^)]*)\)", text)
    if not m:
        raise DeclarationError(f"{source}: no entry point OL_ENTRY {entry}(...)")
    params = [p.strip() for p in m.group(1).split(",")]
    if params[-1] != "OL_SLAB_PARAMS":
        raise DeclarationError(f"{source}: {entry} must end with OL_SLAB_PARAMS")
    args = []
    for p in params[:-1]:
        if p == "OL_TILE_PARAMS":
            args += TILE
        else:
            args.append(_parse_param(p))
    return tuple(args)


def positive(default, unit, source="", hi=None) -> Param:
    """A strictly positive float parameter."""
    return Param("float", default, lo=0.0, lo_open=True, hi=hi, unit=unit, source=source)


def nonnegative(default, unit, source="", hi=None) -> Param:
    """A float parameter >= 0."""
    return Param("float", default, lo=0.0, hi=hi, unit=unit, source=source)


# Guard: the step counter is a uint32 kernel argument; 10**9 steps is over a century even at
# the shortest allowed step (time.step_h), far beyond any run.
MAX_STEPS = 10**9


def steps_of(hours: float, step_h: float, lo: int = 1, hi: int | None = None) -> int:
    """A duration in whole steps, rounded up (a float64 host computation), within [lo, hi].

    The rule: a duration longer than `hi` (default MAX_STEPS) saturates at `hi`
    explicitly, never overflows; a duration or step that is not a finite number
    (or a step that is not positive) is refused with ValueError."""
    hours, step_h = float(hours), float(step_h)
    if not (math.isfinite(hours) and math.isfinite(step_h) and hours >= 0.0 and step_h > 0.0):
        raise ValueError(f"steps_of({hours!r} h, {step_h!r} h): needs a finite duration >= 0 "
                         "and a finite step > 0")
    cap = MAX_STEPS if hi is None else hi
    ratio = hours / step_h                  # may be inf for a tiny step: saturates below
    n = cap if not ratio < cap else math.ceil(ratio - 1e-9)
    return min(cap, max(lo, n))


def float32_of(value):
    """A float32 rule constant (scalar or array) from float64 host values; OverflowError
    if any is not finite as float32 (beyond 3.4e38 a cast would silently give inf)."""
    a = np.asarray(value, dtype=np.float64)
    if not (np.isfinite(a).all() and (np.abs(a) <= float(np.finfo(np.float32).max)).all()):
        raise OverflowError(f"rule constant {value!r} does not fit float32")
    return np.float32(a) if a.ndim == 0 else a.astype(np.float32)


class Process:
    """A biological process: its events, its Philox streams and its kernel entries."""

    def __init__(self, name: str, source: str | None = None, *, events=(), streams=None,
                 params=None, arrays=None):
        if name in PROCESSES:
            raise DeclarationError(f"process {name!r} declared twice")
        self.name, self.source = name, source
        self.events = tuple(events)
        self.streams = dict(streams or {})
        for stream, sid in self.streams.items():
            if sid in STREAM_IDS:
                raise DeclarationError(f"Philox stream id {sid} of {name}.{stream} is already "
                                       f"{STREAM_IDS[sid]}")
            STREAM_IDS[sid] = f"{name}.{stream}"
        self.params = dict(params or {})     # scenario table -> {key: Param}
        self.arrays = dict(arrays or {})     # voxel arrays it owns: name -> Array
        for array in self.arrays:
            owner = [p.name for p in PROCESSES.values() if array in p.arrays]
            if owner:
                raise DeclarationError(f"voxel array {array!r} of {name} is already {owner[0]}'s")
        self.derive = None                   # scenario -> {rule constant: value}
        self.check = None                    # scenario -> [(dotted key, message)]
        self.entries: dict[str, Entry] = {}
        self.module = sys._getframe(1).f_globals.get("__name__")
        PROCESSES[name] = self

    def constants(self) -> dict[str, int]:
        """The process's named constants: local event codes and stream ids."""
        out = {event.upper(): code for code, event in enumerate(self.events)}
        out.update({f"STREAM_{s.upper()}": sid for s, sid in self.streams.items()})
        return out

    def c_header(self) -> str:
        """The constants as C, prepended to the process's source when compiled."""
        lines = [f"// generated from the declaration of process '{self.name}'"]
        lines += [f"constexpr {'u32' if k.startswith('STREAM_') else 'int'} {k} = {v};"
                  for k, v in self.constants().items()]
        return "\n".join(lines) + "\n"

    def rules_from(self, derive):
        """Decorate `derive(scenario) -> dict`: the rule constants of this process,
        computed on the host in float64 and rounded to kernel types (engine.rules)."""
        self.derive = derive
        return derive

    def checks(self, check):
        """Decorate `check(scenario) -> [(dotted key, message), ...]`: relations between
        this process's parameters that single-key ranges cannot express (engine.scenario
        reports the first as a one-line error)."""
        self.check = check
        return check

    def entry(self, name: str, *, over: str = "voxels"):
        """Decorate the Numba twin of CUDA entry `name`; returns the Entry."""
        def declare(numba_fn):
            e = Entry(self, name, numba_fn, over)
            self.entries[name] = e
            return e
        return declare


class Entry:
    """One kernel entry point: the `.cu` function and its Numba twin."""

    def __init__(self, process: Process, name: str, numba_fn, over: str):
        self.process, self.name, self.numba, self.over = process, name, numba_fn, over
        self.args = prototype(process.source, name)
        py = getattr(numba_fn, "py_func", numba_fn)
        params = tuple(inspect.signature(py).parameters)
        expected = tuple(a.name for a in self.args) + SLAB_PARAMS
        if params != expected:
            raise DeclarationError(
                f"Numba twin {py.__module__}.{py.__name__} takes ({', '.join(params)}) but "
                f"{process.source}: {name} declares ({', '.join(expected)})")

    def bind(self, lattice, rules, step, extra, table, upload=None) -> tuple:
        """The launch tuple: every declared argument found by name and checked.  A host
        (NumPy) array the pass hands over for a `const` pointer (a rule table computed for
        this step) goes through `upload`: to the device, uncached, for this launch only."""
        values = []
        for a in self.args:
            if a.name in extra:
                v = extra[a.name]
                if upload is not None and a.pointer and a.const and isinstance(v, np.ndarray):
                    v = upload(v)
            elif a.name == "events":
                v = lattice.events[lattice.event_rows(self.process)]
            elif a.name in lattice.arrays:
                v = lattice.arrays[a.name]
            elif a.name == "step":
                v = step
            elif hasattr(rules, a.name):          # a rule field or any process's constant
                v = getattr(rules, a.name)
                if a.pointer:
                    v = table(v)
            else:
                raise DeclarationError(f"{self.name}: no value for argument {a}")
            values.append(_checked(self.name, a, v))
        return tuple(values)

    def threads(self, lattice, extra) -> tuple[int, int]:
        """(threads, block) of a launch: one thread per voxel, or one block per tile."""
        from .tiles import TILE_VOXELS
        if self.over == "voxels":
            return lattice.voxels, 256
        if self.over == "tiles":
            return int(extra["n_tiles"]) * TILE_VOXELS, TILE_VOXELS
        return int(extra[self.over]), 256

    def __call__(self, lattice, rules, step, **extra):
        """Run the entry on the lattice's backend."""
        from .cuda import launcher, slab_args
        slab = slab_args(lattice, rules)
        if lattice.backend == "numba":
            args = self.bind(lattice, rules, step, extra, lambda t: t)
            result = self.numba(*args, *slab)
        else:
            launch = launcher(lattice.backend)
            threads, block = self.threads(lattice, extra)
            args = self.bind(lattice, rules, step, extra, launch.table, launch.upload)
            launch.launch(self.process.source, self.name, threads, args + slab, block=block)
            result = None
        if lattice.domain.size > 1:
            lattice.domain.exchange(lattice, self.written(lattice, args))
        return result

    def written(self, lattice, args) -> list[str]:
        """The lattice arrays this launch wrote: its non-const pointer arguments that are
        voxel arrays of the lattice (by identity; the event table is per plane, not
        exchanged)."""
        names = {id(a): name for name, a in lattice.arrays.items()
                 if name not in ("events", "plane_max")}
        return [names[id(v)] for a, v in zip(self.args, args)
                if a.pointer and not a.const and id(v) in names]


def slab_values(lattice, rules) -> tuple:
    """The OL_SLAB_PARAMS every entry ends with, filled by name and typed as declared:
    the local slab, where it sits in the global lattice (z-slabs: y and x are global),
    the lattice id and the Philox key."""
    values = {"nz": lattice.nz, "ny": lattice.ny, "nx": lattice.nx, "z0": lattice.z0,
              "ny_global": lattice.ny, "nx_global": lattice.nx,
              "lattice_id": lattice.lattice_id, "k0": rules.key[0], "k1": rules.key[1]}
    return tuple(_checked("OL_SLAB_PARAMS", a, values[a.name]) for a in SLAB)


def _checked(entry: str, a: Arg, v):
    """`v` as argument `a`: arrays must have the declared dtype; scalars are cast to
    it only where the cast is exact."""
    if a.pointer:
        if getattr(v, "dtype", None) != a.dtype or not hasattr(v, "shape"):
            raise DeclarationError(f"{entry}: argument {a} got "
                                   f"{getattr(v, 'dtype', type(v).__name__)}")
        return v
    if isinstance(v, np.generic) and v.dtype == a.dtype:
        return v
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise DeclarationError(f"{entry}: argument {a} got {type(v).__name__}")
    try:
        cast = a.dtype.type(v)
    except OverflowError:
        cast = None
    exact = (float(cast) == float(v) if a.dtype.kind == "f" else int(cast) == int(v)) \
        if cast is not None and (a.dtype.kind == "f" or float(v).is_integer()) else False
    if not exact:
        raise DeclarationError(f"{entry}: argument {a} = {v!r} does not fit {a.dtype}")
    return cast


def launch_args(source: str, entry: str, values: dict) -> tuple:
    """The launch tuple of CUDA entry `entry` in `source`, built by name from `values`
    and checked against its prototype like a process entry's (for a driver that
    launches an entry itself: the field solver's batched sweeps)."""
    args = prototype(source, entry)
    missing = [a.name for a in args if a.name not in values]
    if missing:
        raise DeclarationError(f"{source}: {entry}: no value for {', '.join(missing)}")
    return tuple(_checked(entry, a, values[a.name]) for a in args)


def c_header_for(source: str) -> str:
    """Generated constants of every process whose kernels live in `source`."""
    return "".join(p.c_header() for p in PROCESSES.values() if p.source == source)
