"""Reading a run file, finished or still being written (HDF5 SWMR).

The writer (:class:`engine.output.RunWriter`) appends each snapshot's field data
first and its entry in the time index ``/snapshots/step`` last, flushing in
between.  A reader therefore trusts only the time index: snapshot ``i`` exists
once ``/snapshots/step`` has more than ``i`` entries, and by then its data are
complete.  :meth:`RunFile.refresh` re-reads the index of a live file.

Names, layout and kind codes follow :mod:`engine.runformat`, the contract the
writer shares.  Each lattice's voxel kinds are decoded from the codes stored
in the file (:attr:`LatticeMeta.kinds`), never from the engine's current
numbering, so old files and files with kinds this version does not know read
correctly.

    with RunFile("quickstart.h5") as run:
        kind = run.snapshot("primary", "kind", -1)     # (nz, ny, nx) uint8
        kinds = run.lattice("primary").kinds           # code <-> name, as stored
        counts = run.counts()                          # structured, one row per step
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from engine.errors import UserError
from engine.runformat import (COUNTS, DEFAULT_KIND_CODES, FORMAT, FORMAT_ATTR, KIND, LATTICE_ATTRS,
                              LATTICES, ORGAN, RUNNING, SNAPSHOT_STEP, SNAPSHOT_TIME, STATUS_ATTR,
                              UNITS_ATTR, KindCodes, field_path, read_kind_codes)


@dataclass(frozen=True)
class LatticeMeta:
    """The static description of one lattice in a run file."""

    name: str
    shape: tuple[int, int, int]       # (nz, ny, nx)
    voxel_um: float
    organ_names: tuple[str, ...]      # index = organ label; 0 is "none"
    organ: np.ndarray                 # uint8 (nz, ny, nx)
    kinds: KindCodes                  # voxel kind codes, as stored with the kind field


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


class RunFile:
    """A run file opened for reading; safe while the writer is still appending.

    ``lattices`` maps lattice names to :class:`LatticeMeta`; ``fields`` maps each
    snapshot field (``kind``, ``oxygen``, ``vegf``, ...) to its units.
    Opening a file that is not an oncolattice run raises :class:`UserError`
    naming the file.
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such run file")
        try:
            self._f = _open_swmr(self.path)
        except OSError as exc:
            raise UserError(f"{self.path}: not a readable HDF5 run file ({exc})") from None
        try:
            self._describe()
        except BaseException:
            self._f.close()
            raise

    def _describe(self):
        f = self._f
        fmt = _text(f.attrs.get(FORMAT_ATTR, "missing"))
        if fmt != FORMAT or SNAPSHOT_STEP not in f or LATTICES not in f:
            raise UserError(f"{self.path}: not an oncolattice run file (format {fmt!r}, "
                            f"expected {FORMAT!r})")
        self.lattices: dict[str, LatticeMeta] = {}
        self.fields: dict[str, str] = {}
        for name, g in f[LATTICES].items():
            missing = [a for a in LATTICE_ATTRS if a not in g.attrs]
            missing += [] if ORGAN in g else [ORGAN]
            if missing:
                raise UserError(f"{self.path}: lattice {name!r} lacks {', '.join(missing)} "
                                f"(damaged or not an {FORMAT} file)")
            try:
                kinds = read_kind_codes(g[KIND].attrs) if KIND in g else DEFAULT_KIND_CODES
            except ValueError as exc:
                raise UserError(f"{self.path}: lattice {name!r}: {exc}") from None
            self.lattices[name] = LatticeMeta(
                name=name, shape=tuple(int(n) for n in g.attrs["shape"]),
                voxel_um=float(g.attrs["voxel_um"]),
                organ_names=tuple(_text(s) for s in g.attrs["organ_names"]),
                organ=g[ORGAN][()], kinds=kinds)
            for fname, ds in g.items():
                if fname != ORGAN:
                    self.fields[fname] = _text(ds.attrs.get(UNITS_ATTR, ""))
        self.refresh()

    # -- the time index --------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the time index of a live file; return the snapshots complete."""
        idx = self._f[SNAPSHOT_STEP]
        idx.refresh()
        times = self._f[SNAPSHOT_TIME]
        times.refresh()
        n = int(idx.shape[0])
        self.steps = idx[:n].astype(np.int64)
        # time_h is written before step, so it always has at least n entries
        self.times_h = times[:n].astype(np.float64)
        return n

    @property
    def n_snapshots(self) -> int:
        """Snapshots complete as of the last :meth:`refresh`."""
        return len(self.steps)

    @property
    def status(self) -> str:
        """``running`` while the writer has the file open (or was killed),
        else ``complete``, ``interrupted`` or ``failed``."""
        return _text(self._f.attrs.get(STATUS_ATTR, RUNNING))

    @property
    def attrs(self) -> dict:
        """The run's root attributes (scenario text, seed, backend, ...)."""
        return {k: (_text(v) if isinstance(v, (bytes, str)) else v)
                for k, v in self._f.attrs.items()}

    # -- data --------------------------------------------------------------------

    def lattice(self, name: str | None = None) -> LatticeMeta:
        """A lattice by name; the primary tumour's (else the first) if `name` is None."""
        if name is None:
            return self.lattices.get("primary") or next(iter(self.lattices.values()))
        try:
            return self.lattices[name]
        except KeyError:
            raise UserError(f"{self.path}: no lattice {name!r} "
                            f"(has {', '.join(self.lattices)})") from None

    def snapshot(self, lattice: str | None, field: str, index: int,
                 z: int | slice = slice(None)) -> np.ndarray:
        """One field of one lattice at snapshot `index` (negative from the end);
        only plane(s) `z` of it if given, read without loading the rest.

        Only snapshots in the time index as of the last :meth:`refresh` exist,
        so a snapshot still being written is never returned.
        """
        meta = self.lattice(lattice)
        if field == ORGAN:
            return meta.organ[z]
        if field not in self.fields:
            raise UserError(f"{self.path}: no field {field!r} (has organ, "
                            f"{', '.join(self.fields)})")
        n = self.n_snapshots
        if not -n <= index < n:
            raise UserError(f"{self.path}: snapshot {index} out of range (has {n})")
        ds = self._f[field_path(meta.name, field)]
        ds.refresh()
        return ds[index % n, z]

    def index_of_step(self, step: int) -> int:
        """The snapshot index holding model step `step`."""
        hit = np.flatnonzero(self.steps == int(step))
        if not len(hit):
            raise UserError(f"{self.path}: no snapshot at step {step} (snapshots at steps "
                            f"{_ranges(self.steps)})")
        return int(hit[0])

    def counts(self) -> np.ndarray:
        """Every counts row flushed so far (structured array, one row per step)."""
        ds = self._f[COUNTS]
        ds.refresh()
        return ds[()]

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _open_swmr(path):
    """Open for SWMR reading; without file locks where the file system has none
    (common on cluster file systems) or this process holds the file already."""
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError as exc:
        if "lock" not in str(exc).lower():
            raise
        return h5py.File(path, "r", swmr=True, locking=False)


def _ranges(steps) -> str:
    steps = list(map(int, steps))
    if len(steps) <= 6:
        return ", ".join(map(str, steps)) or "none"
    return f"{steps[0]}, {steps[1]}, ..., {steps[-1]}"
