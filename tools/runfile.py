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

Damaged files.  Every failure to read a run file, whatever the cause (missing,
a folder, not HDF5, truncated, corrupt metadata, a group or attribute missing
or of the wrong type or shape, a time index longer than the data it indexes),
raises :class:`engine.errors.RunFileError`, one line: ``<path>: <what is
wrong>``.  The structure is checked when the file is opened, so later reads
meet only checked datasets; data that fail to decode later (a corrupt chunk)
raise the same error.  Reading never hangs: HDF5's SWMR mode re-reads metadata
whose checksum fails (a live writer may be mid-flush), up to 100 times with a
growing sleep, which on a corrupt file never ends in practice; the reader
bounds those re-reads (:data:`METADATA_READ_ATTEMPTS`).

    with RunFile("quickstart.h5") as run:
        kind = run.snapshot("primary", "kind", -1)     # (nz, ny, nx) uint8
        kinds = run.lattice("primary").kinds           # code <-> name, as stored
        counts = run.counts()                          # structured, one row per step

The body (:mod:`engine.runformat`): a primary lattice and site lattices, each
:class:`LatticeMeta` with ``role`` (``primary``/``site``), ``site_organ``,
``site_class`` (``regional``/``distant``) and ``lattice_id`` as stored.  A file
that stores no roles (one written before bodies) reads as one primary lattice
(the one named ``primary``, else the first; any others have role None), exactly
as before.  :attr:`RunFile.primary`, :meth:`RunFile.sites` and
:attr:`RunFile.has_body` describe the body; :meth:`RunFile.counts` takes a
lattice (a site's own table, None where it has none); :meth:`RunFile.body`,
:meth:`RunFile.colonies`, :meth:`RunFile.colony_sizes` and :meth:`RunFile.ctcs`
return those tables, None where the file lacks them.  The tables are checked
on opening like the counts (one axis, named columns of numbers, or of text
too for the registry and records; their key columns present).

        with RunFile("body.h5") as run:
            for site in run.sites():
                print(site.name, site.site_organ, site.site_class, run.counts(site.name))
            colonies = run.colonies()                  # None in a file without a body
"""
from __future__ import annotations

import ctypes
import functools
import math
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
from h5py import h5f, h5p

from engine.errors import RunFileError, UserError
from engine.runformat import (hdf5_library, BODY, CHECKUPS, COLONIES, COLONY_SIZES, COUNTS, CTCS,
                              DECISIONS, THERAPY,
                              DEFAULT_KIND_CODES, FORMAT, FORMAT_ATTR, KIND, LATTICE_ATTRS,
                              LATTICE_ID_ATTR, LATTICES, ORGAN, PRIMARY, ROLE_ATTR, RUNNING,
                              SITE, SITE_CLASS_ATTR, SITE_ORGAN_ATTR, SNAPSHOT_STEP,
                              SNAPSHOT_TIME, STATUS_ATTR, UNITS_ATTR, KindCodes, counts_path,
                              read_kind_codes)

# Metadata re-reads after a checksum failure in SWMR mode (HDF5's default is
# 100 with a sleep doubling each time, hours on a corrupt file).  20 re-reads
# wait a few milliseconds in all: ample for a writer's flush to land.
METADATA_READ_ATTEMPTS = 20
# The body tables (engine.runformat), each with the columns a reader requires.
BODY_TABLES = {BODY: ("step",), COLONIES: ("id",), COLONY_SIZES: ("step", "colony"), CTCS: (),
               THERAPY: ("step", "therapy", "kind"), CHECKUPS: ("step", "time_h"),
               DECISIONS: ("step", "action", "therapy")}
# What h5py and numpy raise on a damaged file; anything else is a bug.
READ_ERRORS = (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError, OverflowError)
MESSAGE_CHARS = 300         # longest reason quoted from a library's message


@dataclass(frozen=True)
class LatticeMeta:
    """The static description of one lattice in a run file."""

    name: str
    shape: tuple[int, int, int]       # (nz, ny, nx)
    voxel_um: float
    organ_names: tuple[str, ...]      # index = organ label; 0 is "none"
    organ: np.ndarray                 # uint8 (nz, ny, nx)
    kinds: KindCodes                  # voxel kind codes, as stored with the kind field
    role: str | None = PRIMARY        # "primary", "site"; None: unstated (RunFile.primary)
    site_organ: str | None = None     # a site lattice's organ (attr site_organ)
    site_class: str | None = None     # a site lattice's class: "regional" or "distant"
    lattice_id: int | None = None     # attr lattice_id, where stored

    @property
    def is_site(self) -> bool:
        return self.role == SITE

    @property
    def organ_label(self) -> str:
        """The organ the lattice stands for: its site organ, else its first organ
        name, else its name."""
        if self.site_organ:
            return self.site_organ
        return self.organ_names[1] if len(self.organ_names) > 1 else self.name


def _text(v) -> str:
    """An attribute as text (undecodable bytes replaced, never an error)."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _plain(v):
    """An attribute as a plain Python value (text, number or list), as JSON takes it."""
    if isinstance(v, (bytes, str)):
        return _text(v)
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()] if v.ndim else _plain(v[()])
    if isinstance(v, np.generic):
        return _plain(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (bool, int, float, list)) or v is None else _text(v)


def one_line(text, limit: int = MESSAGE_CHARS) -> str:
    """`text` on one line (whitespace runs collapsed), at most `limit` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def reason(exc: BaseException) -> str:
    """A library's exception as a short one-line reason."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
    return one_line(text) or type(exc).__name__


class RunFile:
    """A run file opened for reading; safe while the writer is still appending.

    ``lattices`` maps lattice names to :class:`LatticeMeta`; ``fields`` maps each
    snapshot field (``kind``, ``oxygen``, ``vegf``, ...) to its units.
    Any file that cannot be read as an oncolattice run, on opening or later,
    raises :class:`RunFileError` (a :class:`UserError`) naming the file and
    what is wrong (see the module docstring).
    """

    def __init__(self, path):
        self.path = Path(path)
        self._f = open_hdf5(self.path)
        try:
            with self._reading("its layout"):
                self._describe()
        except BaseException:
            self._f.close()
            raise

    # -- errors ------------------------------------------------------------------

    def damaged(self, what: str) -> RunFileError:
        """The error for a file whose structure is wrong: `what` is wrong."""
        return RunFileError(f"{self.path}: damaged run file: {one_line(what)}")

    @contextmanager
    def _reading(self, what: str):
        """Turn a failed read of `what` into :class:`RunFileError` naming the file."""
        try:
            yield
        except UserError:
            raise
        except READ_ERRORS as exc:
            raise self.damaged(f"cannot read {what} ({reason(exc)})") from None

    # -- the layout, checked on opening ---------------------------------------------

    def _describe(self):
        """Read and check everything but the snapshot data (module docstring)."""
        f = self._f
        fmt = _text(f.attrs.get(FORMAT_ATTR, "missing"))
        if fmt != FORMAT:
            raise RunFileError(f"{self.path}: not an oncolattice run file (format "
                               f"{one_line(repr(fmt), 80)}, expected {FORMAT!r})")
        self._attrs = {k: _plain(v) for k, v in f.attrs.items()}
        if not isinstance(self._attrs.get(STATUS_ATTR, RUNNING), str):
            raise self.damaged(f"status attribute {self._attrs[STATUS_ATTR]!r} is not text")
        lattices = self._group(LATTICES)
        if not len(lattices):
            raise self.damaged(f"group {LATTICES!r} holds no lattice")
        self.lattices: dict[str, LatticeMeta] = {}
        self.fields: dict[str, str] = {}
        self._data: dict[tuple[str, str], h5py.Dataset] = {}     # (lattice, field) -> dataset
        for name in lattices:
            self.lattices[name] = self._read_lattice(name, lattices[name])
        self._assign_roles()
        # a body lists its lattices by lattice_id (HDF5 lists groups by name); a file
        # without ids keeps HDF5's order
        order = sorted(self.lattices.values(),
                       key=lambda m: (m.lattice_id is None, m.lattice_id or 0))
        self.lattices = {m.name: m for m in order}
        self._step = self._dataset(SNAPSHOT_STEP, ndim=1, kinds="iu")
        self._time = self._dataset(SNAPSHOT_TIME, ndim=1, kinds="iuf")
        self._counts = self._dataset(COUNTS, ndim=1)
        check_counts_dtype(self._counts.dtype, self.damaged)
        self._site_counts: dict[str, h5py.Dataset] = {}     # site lattice -> its counts
        for meta in self.lattices.values():
            path = counts_path(meta.name, meta.role)
            if path != COUNTS and path in self._f:
                ds = self._dataset(path, ndim=1)
                check_counts_dtype(ds.dtype, self.damaged, path)
                self._site_counts[meta.name] = ds
        self._tables: dict[str, h5py.Dataset] = {}           # body tables present
        for path, required in BODY_TABLES.items():
            if path in self._f:
                self._tables[path] = self._read_table(path, required)
        self.refresh()

    def _assign_roles(self) -> None:
        """Check the lattices' roles: at most one primary; a file that stores no roles
        (written before bodies of lattices) has one primary lattice, the one named
        ``primary`` else the first, and the others have no role (None)."""
        primaries = [m.name for m in self.lattices.values() if m.role == PRIMARY]
        if not any(m.role for m in self.lattices.values()):
            first = "primary" if "primary" in self.lattices else next(iter(self.lattices))
            for name, meta in self.lattices.items():
                self.lattices[name] = replace(meta, role=PRIMARY if name == first else None)
        elif len(primaries) > 1:
            raise self.damaged(f"lattices {', '.join(map(repr, primaries))} all have "
                               f"{ROLE_ATTR} {PRIMARY!r}; a body has one primary lattice")

    def _read_table(self, path: str, required: tuple[str, ...]) -> h5py.Dataset:
        """A body table: one axis, named columns of numbers or text (a record's column may
        hold a fixed-size array of numbers: traits, path), `required` present."""
        ds = self._dataset(path, ndim=1)
        dtype = ds.dtype
        if dtype.names is None:
            raise self.damaged(f"{path!r} has dtype {dtype}, expected a table of named columns")
        for name in dtype.names:
            col = dtype.fields[name][0]
            numeric = path == BODY
            if (col.shape and (numeric or col.base.kind not in "biuf")) \
                    or col.base.kind not in ("biuf" if numeric else "biufSO"):
                raise self.damaged(f"{path!r} column {name!r} has dtype {col}, expected a "
                                   f"{'number' if numeric else 'number or text'}")
        missing = [c for c in required if c not in dtype.names]
        if missing:
            raise self.damaged(f"{path!r} lacks column {', '.join(map(repr, missing))}")
        return ds

    def _group(self, path: str) -> h5py.Group:
        obj = self._f.get(path)
        if not isinstance(obj, h5py.Group):
            raise self.damaged(f"no group {path!r}" if obj is None else f"{path!r} is not a group")
        return obj

    def _dataset(self, path: str, ndim: int, kinds: str | None = None,
                 shape: tuple | None = None) -> h5py.Dataset:
        """Dataset `path`, checked: `ndim` axes, dtype kind in `kinds` (numpy's
        letters, or ``uint8``), trailing axes `shape`."""
        ds = self._f.get(path)
        if not isinstance(ds, h5py.Dataset):
            raise self.damaged(f"no dataset {path!r}" if ds is None
                               else f"{path!r} is not a dataset")
        if ds.ndim != ndim:
            raise self.damaged(f"{path!r} has {ds.ndim} axes, expected {ndim}")
        if kinds == "uint8" and ds.dtype != np.uint8 or kinds is not None and (
                ds.dtype.kind not in kinds or ds.dtype.shape):
            raise self.damaged(f"{path!r} has dtype {ds.dtype}, expected "
                               f"{_KIND_WORDS.get(kinds, kinds)}")
        if shape is not None and tuple(ds.shape[ndim - len(shape):]) != tuple(shape):
            raise self.damaged(f"{path!r} has shape {ds.shape}, expected (..., "
                               f"{', '.join(map(str, shape))}) as the lattice's shape says")
        return ds

    def _read_lattice(self, name: str, g) -> LatticeMeta:
        """One lattice's description, with its attributes, organ map and fields checked."""
        where = f"{LATTICES}/{name}"
        if not isinstance(g, h5py.Group):
            raise self.damaged(f"{where!r} is not a group")
        missing = [a for a in LATTICE_ATTRS if a not in g.attrs]
        if missing:
            raise self.damaged(f"lattice {name!r} lacks attribute {', '.join(missing)}")
        shape = lattice_shape(g.attrs["shape"])
        voxel_um = positive_number(g.attrs["voxel_um"])
        organ_names = text_list(g.attrs["organ_names"])
        if shape is None:
            raise self.damaged(f"lattice {name!r}: shape attribute "
                               f"{one_line(g.attrs['shape'], 60)} is not 3 positive integers")
        if voxel_um is None:
            raise self.damaged(f"lattice {name!r}: voxel_um {one_line(g.attrs['voxel_um'], 60)} "
                               f"is not a positive number")
        if organ_names is None:
            raise self.damaged(f"lattice {name!r}: organ_names is not a list of names")
        organ = self._dataset(f"{where}/{ORGAN}", ndim=3, kinds="uint8", shape=shape)
        kinds = DEFAULT_KIND_CODES
        for field in g:
            if field not in (ORGAN, COUNTS):
                kinds = self._read_field(name, field) or kinds
        role, site_organ, site_class = (self._text_attr(name, g, a) for a in
                                        (ROLE_ATTR, SITE_ORGAN_ATTR, SITE_CLASS_ATTR))
        if role is not None and role not in (PRIMARY, SITE):
            raise self.damaged(f"lattice {name!r}: {ROLE_ATTR} {one_line(repr(role), 60)} is "
                               f"not {PRIMARY!r} or {SITE!r}")
        lattice_id = None
        if LATTICE_ID_ATTR in g.attrs:
            a = np.asarray(g.attrs[LATTICE_ID_ATTR])
            if a.shape not in ((), (1,)) or a.dtype.kind not in "iu":
                raise self.damaged(f"lattice {name!r}: {LATTICE_ID_ATTR} "
                                   f"{one_line(g.attrs[LATTICE_ID_ATTR], 60)} is not an integer")
            lattice_id = int(a.reshape(-1)[0])
        return LatticeMeta(name=name, shape=shape, voxel_um=voxel_um, organ_names=organ_names,
                           organ=organ[()], kinds=kinds, role=role, site_organ=site_organ,
                           site_class=site_class, lattice_id=lattice_id)

    def _text_attr(self, lattice: str, g, attr: str) -> str | None:
        """Text attribute `attr` of a lattice group (None if absent; damaged if not text)."""
        if attr not in g.attrs:
            return None
        value = g.attrs[attr]
        if isinstance(value, np.ndarray) and value.shape in ((), (1,)):
            value = value.reshape(-1)[0]
        if not isinstance(value, (str, bytes)):
            raise self.damaged(f"lattice {lattice!r}: {attr} {one_line(repr(_plain(value)), 60)} "
                               f"is not text")
        return _text(value)

    def _read_field(self, lattice: str, field: str) -> KindCodes | None:
        """Check one snapshot field; note it and its units; the kind codes if it is `kind`."""
        meta_shape = lattice_shape(self._f[f"{LATTICES}/{lattice}"].attrs["shape"])
        path = f"{LATTICES}/{lattice}/{field}"
        ds = self._dataset(path, ndim=4, kinds="uint8" if field == KIND else "iuf",
                           shape=meta_shape)
        self._data[lattice, field] = ds
        self.fields.setdefault(field, _text(ds.attrs.get(UNITS_ATTR, "")))
        if field != KIND:
            return None
        try:
            return read_kind_codes(ds.attrs)
        except ValueError as exc:
            raise RunFileError(f"{self.path}: lattice {lattice!r}: {one_line(exc)}") from None

    # -- the time index --------------------------------------------------------

    def refresh(self) -> int:
        """Re-read the time index of a live file; return the snapshots complete.

        Every field the index covers must hold that many snapshots (the writer
        stores data before their index entry), else the file is damaged."""
        with self._reading("the snapshot index"):
            self._step.refresh()
            n = int(self._step.shape[0])
            for (lattice, field), ds in [(("", SNAPSHOT_TIME), self._time),
                                         *self._data.items()]:
                ds.refresh()
                if ds.shape[0] < n:
                    what = f"{LATTICES}/{lattice}/{field}" if lattice else field
                    raise self.damaged(f"the snapshot index lists {n} snapshots but "
                                       f"{what!r} holds {ds.shape[0]}")
            self.steps = self._step[:n].astype(np.int64)
            self.times_h = self._time[:n].astype(np.float64)
        return n

    @property
    def n_snapshots(self) -> int:
        """Snapshots complete as of the last :meth:`refresh`."""
        return len(self.steps)

    @property
    def status(self) -> str:
        """``running`` while the writer has the file open (or was killed),
        else ``complete``, ``interrupted`` or ``failed``."""
        with self._reading("the status attribute"):
            return _text(self._f.attrs.get(STATUS_ATTR, RUNNING))

    @property
    def attrs(self) -> dict:
        """The run's root attributes (scenario text, seed, backend, ...) as
        plain values (text, numbers, lists), read when the file was opened."""
        return dict(self._attrs)

    # -- data --------------------------------------------------------------------

    def lattice(self, name: str | None = None) -> LatticeMeta:
        """A lattice by name; the primary tumour's (else the first) if `name` is None."""
        if name is None:
            return self.primary
        try:
            return self.lattices[name]
        except KeyError:
            raise UserError(f"{self.path}: no lattice {name!r} "
                            f"(has {', '.join(self.lattices)})") from None

    def choose_lattice(self, name: str | None, option: str = "--lattice") -> LatticeMeta:
        """:meth:`lattice` for a name the user gave with `option`: an unknown name is
        one line naming the option, the value and the file's lattices (exit 2)."""
        if name is None or name in self.lattices:
            return self.lattice(name)
        raise UserError(f"{option} {one_line(repr(name), 80)}: no such lattice in "
                        f"{self.path} (it has {', '.join(self.lattices)})")

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
        ds = self._data.get((meta.name, field))
        if ds is None:
            raise self.damaged(f"lattice {meta.name!r} has no field {field!r}, "
                               f"which other lattices have")
        n = self.n_snapshots
        if not -n <= index < n:
            raise UserError(f"{self.path}: snapshot {index} out of range (has {n})")
        with self._reading(f"snapshot {index % n} of {field!r} in lattice {meta.name!r}"):
            ds.refresh()
            return ds[index % n, z]

    def index_of_step(self, step: int) -> int:
        """The snapshot index holding model step `step`."""
        hit = np.flatnonzero(self.steps == int(step))
        if not len(hit):
            raise UserError(f"{self.path}: no snapshot at step {step} (snapshots at steps "
                            f"{_ranges(self.steps)})")
        return int(hit[0])

    def counts(self, lattice: str | None = None) -> np.ndarray | None:
        """Every counts row flushed so far (structured array, one row per step) of
        `lattice` (None: the primary lattice, /counts); for a lattice other than the
        primary its own table (:func:`engine.runformat.counts_path`), None if the file
        has none."""
        meta = self.lattice(lattice)
        ds = self._counts if meta.role == PRIMARY else self._site_counts.get(meta.name)
        if ds is None:
            return None
        with self._reading(f"the counts table of lattice {meta.name!r}"):
            ds.refresh()
            return ds[()]

    # -- the body: primary and site lattices, circulation, colonies -------------------

    @property
    def primary(self) -> LatticeMeta:
        """The primary lattice (role ``primary``; in a file without roles, the lattice
        named ``primary``, else the first)."""
        for meta in self.lattices.values():
            if meta.role == PRIMARY:
                return meta
        return self.lattices.get("primary") or next(iter(self.lattices.values()))

    def sites(self) -> list[LatticeMeta]:
        """The site lattices (role ``site``), by lattice_id; empty for a file of one
        tumour lattice."""
        return [m for m in self.lattices.values() if m.role == SITE]

    @property
    def has_body(self) -> bool:
        """Whether the file holds a body: a site lattice, or a colony registry or body
        table.  A file of one lattice (or one written before bodies) has none."""
        return bool(self.sites()) or COLONIES in self._tables or BODY in self._tables

    def _table(self, path: str) -> np.ndarray | None:
        ds = self._tables.get(path)
        if ds is None:
            return None
        with self._reading(f"the {path} table"):
            ds.refresh()
            return ds[()]

    def body(self) -> np.ndarray | None:
        """The /body table (one row per step: circulation and colony counts), or None."""
        return self._table(BODY)

    def colonies(self) -> np.ndarray | None:
        """The colony registry /colonies (one row per colony), or None.  Text columns
        (lattice, organ, class, stage) are bytes as stored: see :func:`text_column`."""
        return self._table(COLONIES)

    def colony_sizes(self) -> np.ndarray | None:
        """/colony_sizes (step, colony, cells, diameter_um per live colony per step), or None."""
        return self._table(COLONY_SIZES)

    def ctcs(self) -> np.ndarray | None:
        """/ctcs, one record per cell that left a lattice, or None."""
        return self._table(CTCS)

    def therapy(self) -> np.ndarray | None:
        """/therapy, one row per therapy delivery given (the therapy record), or None."""
        return self._table(THERAPY)

    def checkups(self) -> np.ndarray | None:
        """/checkups, one row per check-up of an adaptive protocol (what it measured), or None."""
        return self._table(CHECKUPS)

    def decisions(self) -> np.ndarray | None:
        """/decisions, one row per schedule edit a protocol's rule made, or None."""
        return self._table(DECISIONS)

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


# -- checks of attribute values -------------------------------------------------------

_KIND_WORDS = {"iu": "integers", "iuf": "numbers"}


def lattice_shape(value) -> tuple[int, int, int] | None:
    """A ``shape`` attribute as (nz, ny, nx), or None unless 3 positive integers."""
    a = np.asarray(value)
    if a.shape != (3,) or a.dtype.kind not in "iu" or (a < 1).any():
        return None
    return tuple(int(n) for n in a)


def positive_number(value) -> float | None:
    """A scalar attribute as a finite positive float, or None."""
    a = np.asarray(value)
    if a.shape not in ((), (1,)) or a.dtype.kind not in "iuf":
        return None
    x = float(a.reshape(-1)[0])
    return x if math.isfinite(x) and x > 0 else None


def text_list(value) -> tuple[str, ...] | None:
    """A 1-D array of strings as a tuple of text, or None."""
    a = np.asarray(value)
    if a.ndim != 1 or not len(a) or a.dtype.kind not in "OSU":
        return None
    items = a.tolist()
    if not all(isinstance(s, (str, bytes)) for s in items):
        return None
    return tuple(_text(s) for s in items)


def check_counts_dtype(dtype: np.dtype, damaged, path: str = COUNTS) -> None:
    """A counts table must be a table of named numeric columns (else `damaged(what)`)."""
    if dtype.names is None:
        raise damaged(f"{path!r} has dtype {dtype}, expected a table of named columns")
    for name in dtype.names:
        col = dtype.fields[name][0]
        if col.kind not in "biuf" or col.shape:
            raise damaged(f"{path!r} column {name!r} has dtype {col}, expected a number")


def text_column(table: np.ndarray, name: str, default: str = "") -> list[str]:
    """Column `name` of a table as text (bytes decoded, undecodable bytes replaced);
    `default` for every row where the table lacks the column."""
    if table is None:
        return []
    if name not in (table.dtype.names or ()):
        return [default] * len(table)
    return [_text(v) for v in table[name].tolist()]


def number_column(table: np.ndarray, name: str, default: float = math.nan) -> np.ndarray:
    """Column `name` of a table as float64; `default` throughout where it is missing."""
    if table is None:
        return np.zeros(0)
    if name not in (table.dtype.names or ()):
        return np.full(len(table), default, dtype=np.float64)
    return np.asarray(table[name], dtype=np.float64)


def _ranges(steps) -> str:
    steps = list(map(int, steps))
    if len(steps) <= 6:
        return ", ".join(map(str, steps)) or "none"
    return f"{steps[0]}, {steps[1]}, ..., {steps[-1]}"


# -- opening ---------------------------------------------------------------------------

def open_hdf5(path: Path) -> h5py.File:
    """`path` opened for SWMR reading, its metadata re-reads bounded; or
    :class:`RunFileError` saying why not (missing, a folder, unreadable, not HDF5)."""
    check_regular_file(path)
    try:
        try:
            return _open(path, locking=True)
        except OSError as exc:
            if "lock" not in str(exc).lower():
                raise
            # no file locks on this file system, or this process holds the file already
            return _open(path, locking=False)
    except READ_ERRORS as exc:
        raise RunFileError(f"{path}: not a readable HDF5 run file ({reason(exc)})") from None


def check_regular_file(path: Path) -> None:
    """A run file must be a readable regular file (a FIFO would block the reader)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RunFileError(f"{path}: no such run file") from None
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise RunFileError(f"{path}: is a folder, not a run file")
    if not stat.S_ISREG(mode):
        raise RunFileError(f"{path}: not a regular file")
    if not os.access(path, os.R_OK):
        raise RunFileError(f"{path}: permission denied")


def _open(path: Path, locking: bool) -> h5py.File:
    """Open read-only in SWMR mode with at most METADATA_READ_ATTEMPTS
    metadata reads.  Where that bound cannot be set, a file no writer holds
    (its superblock says so) is opened without SWMR, which reads once."""
    fapl = h5p.create(h5p.FILE_ACCESS)
    if not locking:
        fapl.set_file_locking(False, True)
    name = os.fsencode(path)
    if not bound_read_attempts(fapl):
        try:
            return h5py.File(h5f.open(name, h5f.ACC_RDONLY, fapl=fapl))
        except OSError as exc:
            if "already open for write" not in str(exc):
                raise
    return h5py.File(h5f.open(name, h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, fapl=fapl))


def bound_read_attempts(fapl, attempts: int = METADATA_READ_ATTEMPTS) -> bool:
    """Set HDF5's metadata read attempts on file-access list `fapl`; False
    where this HDF5 library's setter cannot be reached."""
    setter = _read_attempts_setter()
    return setter is not None and setter(fapl.id, attempts) >= 0


@functools.cache
def _read_attempts_setter():
    """``H5Pset_metadata_read_attempts`` of the HDF5 library h5py runs on
    (h5py has no binding for it), or None where it cannot be found."""
    try:
        setter = hdf5_library().H5Pset_metadata_read_attempts
    except AttributeError:                  # no library found, or too old to have it
        return None
    setter.argtypes = (ctypes.c_int64, ctypes.c_uint)     # hid_t, unsigned
    setter.restype = ctypes.c_int                         # herr_t
    return setter
