"""Checkpoints: the whole state of a run at a step boundary, to resume it bit for bit.

A checkpoint (``RUN.ckpt.h5`` beside the run file by default) holds what the next
step reads: every lattice's state arrays (``engine.state.VOXEL_ARRAYS`` without the
work buffers, which hold nothing between steps), and, pickled, the body without its
lattice arrays (circulation, colony registry, next clone ids, each simulation's
flags and clock, the therapy schedule, the scenario with its decisions, the clinic)
with the run loop's own state (:class:`Loop`).  Layout (format
``oncolattice-checkpoint-1``)::

    /                          attrs: format, version, step, seed, scenario_sha256,
                               run_file (relative to the checkpoint's directory),
                               run_created_utc, state_sha256
    /state                     uint8 (n,): the pickled body and loop
    /lattices/<name>/<array>   a lattice's state array (global); attr sha256

Every dataset carries the SHA-256 of its bytes (the pickle's is a root attribute);
:func:`read_checkpoint` refuses a file whose bytes do not match ("corrupt
checkpoint"), one of another version, or one that is not a checkpoint.  A
checkpoint is written to a temporary file beside its path, flushed, synced and read
back before it replaces the previous one (`runformat.atomic_path`), so a run killed
while writing keeps its last good checkpoint.

Lattice arrays pass through :func:`lattice_state` and :func:`restore_lattice` alone:
where a lattice is split into MPI slabs (`engine.domain`) they gather the whole
lattice (rank 0 writes the file) and give each rank its slab with halos, so a
checkpoint does not depend on the number of ranks that wrote or resume it.

The tiles the last step's division marked (`kernels.tiles`) are not kept: the next
step revisits them only to clear the claims written there, and a restored lattice's
work buffers (claims included) start at zero; visiting a tile without claims changes
nothing, so the resumed step is the same.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import __version__
from .backend import architecture
from .errors import OutputFailed, UserError, shown
from .runformat import atomic_path
from .domain import decomposition
from .state import VOXEL_ARRAYS, allocate

FORMAT = "oncolattice-checkpoint-1"
STATE = "state"
LATTICES = "lattices"
SHA_ATTR = "sha256"
PATHS = ("out", "summary_path", "checkpoint")     # a Loop's paths
STATE_ARRAYS = tuple(name for name, _, _, work, *_ in VOXEL_ARRAYS if not work)


def checkpoint_path_for(run_path) -> Path:
    """The default checkpoint of a run file: ``RUN.ckpt.h5`` beside ``RUN.h5``."""
    run_path = Path(run_path)
    return run_path.with_name(f"{run_path.stem}.ckpt.h5")


def scenario_hash(scenario) -> str:
    """SHA-256 of the resolved scenario, as the run file stores it (``scenario_toml``)."""
    return sha256(scenario.resolved_toml().encode())


def sha256(data) -> str:
    """The SHA-256 (hex) of bytes, or of an array's bytes in C order."""
    return hashlib.sha256(memoryview(np.ascontiguousarray(data)).cast("B")
                          if isinstance(data, np.ndarray) else data).hexdigest()


@dataclass
class Loop:
    """What the run loop carries from step to step besides the body: its plan, its
    paths, and what it has summed and written so far."""

    scenario: object                    # as the run was started (the run file's scenario_toml)
    steps: int
    snapshot_every: int
    out: Path
    summary_path: Path | None = None
    checkpoint: Path | None = None      # None: no checkpoints
    checkpoint_every: int | None = None     # None: only on a stop signal
    immune_totals: dict = field(default_factory=dict)
    last_snapshot: int = -1             # step of the last scheduled snapshot written
    lengths: dict = field(default_factory=dict)     # of the run file's tables (output.Cut)
    wall_s: float = 0.0                 # wall time of the processes before this one
    created_utc: str = ""               # the run file's, to match a checkpoint to it

    def paths_from(self, directory) -> "Loop":
        """A copy with its paths relative to `directory` (as a checkpoint there stores
        them, so a directory moved or copied whole resumes its own files)."""
        return self._with_paths(lambda p: Path(os.path.relpath(os.path.abspath(p),
                                                               os.path.abspath(directory))))

    def paths_in(self, directory) -> "Loop":
        """A copy with its relative paths taken from `directory`."""
        return self._with_paths(lambda p: Path(directory) / p)

    def _with_paths(self, change) -> "Loop":
        return dataclasses.replace(self, **{name: change(getattr(self, name)) for name in PATHS
                                            if getattr(self, name) is not None})

    def checkpoint_due(self, step: int) -> bool:
        """Whether the run checkpoints after `step` (every N steps, never after the last)."""
        return (self.checkpoint is not None and self.checkpoint_every is not None
                and step % self.checkpoint_every == 0 and step < self.steps)


# -- lattice arrays: the only place they are read or replaced ---------------------

def lattice_state(sim) -> dict[str, np.ndarray]:
    """Host copies of a lattice's global state arrays (no work buffers), gathered from
    every slab (every rank takes part; each gets the whole lattice)."""
    return {name: np.array(sim.gathered(name), copy=True) for name in STATE_ARRAYS}


def restore_lattice(sim, arrays: dict[str, np.ndarray], comm=None) -> None:
    """Give `sim` its lattice arrays again on its backend: this rank's slab of the
    global state `arrays` (with its halos; the whole lattice without `comm`) and fresh
    (zeroed) work buffers."""
    lat = sim.lattice
    sim.comm, sim.domain = comm, decomposition(sim.shape[0], comm)
    planes = slice(sim.domain.z0, sim.domain.z0 + sim.domain.local_nz)
    fresh = allocate(lat.name, lat.lattice_id, sim.backend,
                     (sim.domain.local_nz,) + tuple(sim.shape[1:]))
    for name in STATE_ARRAYS:
        fresh.arrays[name][...] = arrays[name][..., planes, :, :]
    fresh.z0, fresh.domain = sim.domain.z0, sim.domain
    lat.__dict__.pop("active_tiles", None)
    lat.arrays = sim.arch.place(fresh).arrays
    lat.backend, lat.shape, lat.z0, lat.domain = sim.backend, fresh.shape, fresh.z0, fresh.domain


@contextmanager
def detached(body):
    """The body without its lattice arrays, tile lists, communicators and backends while
    the block runs (to pickle it); they are put back after."""
    kept = [(sim, sim.lattice.arrays, sim.arch, sim.comm,
             sim.lattice.__dict__.pop("active_tiles", None)) for sim in body.lattices]
    for sim, *_ in kept:
        sim.lattice.arrays, sim.arch, sim.comm = {}, None, None
    try:
        yield body
    finally:
        for sim, arrays, arch, comm, tiles in kept:
            sim.lattice.arrays, sim.arch, sim.comm = arrays, arch, comm
            if tiles is not None:
                sim.lattice.__dict__["active_tiles"] = tiles


def attach(body, backend: str) -> None:
    """Put an unpickled body onto `backend` (its lattice arrays are restored next)."""
    for sim in body.lattices:
        sim.backend = backend
        sim.arch = architecture(backend)


# -- writing --------------------------------------------------------------------------

def write_checkpoint(path, body, loop: Loop) -> None:
    """Write the state of `body` and `loop` at the current step to `path` atomically
    (temporary file, flush, fsync, read back and verified, then renamed over `path`).
    A failed write is OutputFailed naming `path`; the previous checkpoint stays."""
    path = Path(path)
    arrays = {sim.name: lattice_state(sim) for sim in body.lattices}
    if not body.primary.domain.root:             # MPI: rank 0 writes what all gathered
        return
    loop = loop.paths_from(path.parent)
    with detached(body):
        state = pickle.dumps({"body": body, "loop": loop}, protocol=pickle.HIGHEST_PROTOCOL)
    attrs = {"format": FORMAT, "version": __version__, "step": int(body.step_index),
             "seed": int(loop.scenario["scenario.seed"]),
             "scenario_sha256": scenario_hash(loop.scenario),
             "run_file": str(loop.out), "run_created_utc": loop.created_utc,
             "state_sha256": sha256(state)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            _write(tmp, attrs, state, arrays)
            read_checkpoint(tmp, shown_as=path)
    except (OSError, RuntimeError, UserError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0]
        raise OutputFailed(f"{shown(path)}: cannot write the checkpoint of step "
                           f"{body.step_index}: {reason}") from None


def _write(tmp, attrs: dict, state: bytes, arrays: dict[str, dict[str, np.ndarray]]) -> None:
    with h5py.File(tmp, "w") as f:
        f.attrs.update(attrs)
        f.create_dataset(STATE, data=np.frombuffer(state, dtype=np.uint8))
        for lattice, named in arrays.items():
            group = f.create_group(f"{LATTICES}/{lattice}")
            for name, a in named.items():
                group.create_dataset(name, data=a).attrs[SHA_ATTR] = sha256(a)
        f.flush()


# -- reading --------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """A checkpoint read back and verified: its attributes, pickled state and arrays."""

    path: Path
    attrs: dict
    state: bytes
    arrays: dict[str, dict[str, np.ndarray]]

    @property
    def step(self) -> int:
        return int(self.attrs["step"])

    @property
    def run_file(self) -> Path:
        """The run file, stored relative to the checkpoint's directory (so a directory
        moved or copied whole resumes its own run file)."""
        return self.path.parent / self.attrs["run_file"]

    def state_of_run(self):
        """(body, loop) as they were, the body without lattice arrays (see `place`)."""
        try:
            saved = pickle.loads(self.state)
        except Exception as exc:        # the same version string, other code (a dev build)
            raise UserError(f"{shown(self.path)}: this oncolattice cannot restore the "
                            f"checkpoint's state ({type(exc).__name__}: {exc})") from None
        return saved["body"], saved["loop"].paths_in(self.path.parent)

    def place(self, body, backend: str, comm=None) -> None:
        """Put the body on `backend` with its lattice arrays as they were (this rank's
        slabs with `comm`)."""
        attach(body, backend)
        for sim in body.lattices:
            restore_lattice(sim, self.arrays[sim.name], comm)

    def restore(self, backend: str, comm=None):
        """(body, loop) on `backend`, as they were when the checkpoint was written."""
        body, loop = self.state_of_run()
        self.place(body, backend, comm)
        return body, loop


def read_checkpoint(path, shown_as=None) -> Checkpoint:
    """Read and verify the checkpoint at `path`: a UserError names what is wrong (not a
    checkpoint, another oncolattice version, corrupt: unreadable or a hash mismatch)."""
    path = Path(path)
    name = shown(shown_as or path)
    if not path.is_file():
        raise UserError(f"{name}: no such checkpoint")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT:
                raise UserError(f"{name}: not an oncolattice checkpoint")
            if attrs.get("version") != __version__:
                raise UserError(f"{name}: written by oncolattice {attrs.get('version')}; this "
                                f"is {__version__}, which cannot resume it")
            state = f[STATE][()].tobytes()
            if sha256(state) != attrs.get("state_sha256"):
                raise UserError(f"{name}: corrupt checkpoint (the run state's SHA-256 "
                                f"does not match)")
            arrays = {lattice: {key: _verified(name, ds) for key, ds in group.items()}
                      for lattice, group in f[LATTICES].items()}
    except UserError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{name}: corrupt checkpoint (cannot be read: {reason})") from None
    return Checkpoint(path=path, attrs=attrs, state=state, arrays=arrays)


def _verified(name: str, ds) -> np.ndarray:
    a = ds[()]
    if sha256(a) != ds.attrs.get(SHA_ATTR):
        raise UserError(f"{name}: corrupt checkpoint ({ds.name}: SHA-256 does not match)")
    return a


def _plain(value):
    return value.decode() if isinstance(value, bytes) else (
        value.item() if isinstance(value, np.generic) else value)
