"""The run file writer: one HDF5 file per run, plus an XDMF sidecar for ParaView.

The layout, the format name, the attributes readers require and how kind
codes are stored are defined in :mod:`engine.runformat`, which the readers
(:mod:`tools.runfile`) share.  In short (format ``oncolattice-run-1``)::

    /                       attrs: caller's attrs, format, status
    /lattices/<name>/       attrs: voxel_um, shape (nz, ny, nx), organ_names
    /lattices/<name>/organ  uint8 (nz, ny, nx), static
    /lattices/<name>/<fld>  (T, nz, ny, nx) time series, one per snapshot field
    /snapshots/step         int64 (T,)   the time index of the series
    /snapshots/time_h       float64 (T,)
    /counts                 structured (N,), one row per step

The file is streamed with HDF5 SWMR (single writer, multiple readers): every
object is created in the constructor, then SWMR mode starts, so readers
(``tools.runfile.RunFile``, opened with ``swmr=True``) can follow a run live.
A snapshot's field data are written and flushed before its time index entry,
which is flushed last, so a reader that trusts ``/snapshots/step`` never sees
a torn snapshot, and a run killed at any moment leaves every snapshot in the
index readable.  ``status`` is ``"running"`` while the run goes on (and stays
so if the process is killed outright); ``close()`` ends SWMR, then reopens the
file to record the final status, so no attribute changes under SWMR.  Only
``close("complete")`` marks a run complete.

``RUN.xdmf`` (XDMF 3) sits next to ``RUN.h5`` and names it relatively; it is
rewritten after every snapshot and at close.

A writer holds :class:`RunLock` (``flock`` on ``RUN.h5.lock``) from before the
file is created until it is closed, so a second writer, or :func:`repair_run_file`,
is refused instead of truncating a live run.  :func:`repair_run_file` makes the
file of a killed writer readable by any HDF5 tool again.

A resumed run (``oncolattice resume``, :mod:`engine.checkpoint`) takes its file over
with a :class:`Cut`: the writer reopens it (clearing a dead writer's open flags),
cuts every table and the snapshot series to their lengths at the checkpoint, marks
it running, and streams on under SWMR as before.
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .errors import RunLocked, UserError, shown
from .runformat import (hdf5_library, CHUNK_EDGE, CODES_ATTR, COUNTS, FINAL_STATUSES, FORMAT, FORMAT_ATTR, KIND,
                        LATTICES, ORGAN, RUNNING, SNAPSHOT_STEP, SNAPSHOT_TIME, STATUS_ATTR,
                        STATUS_REASON_ATTR, WRITER_ATTRS, KindCodes, atomic_path, field_path,
                        lattice_path, lock_path)

STATUS_LOCK_WAIT_S = 10.0   # how long close() waits for a following reader's file lock

STATUSES = FINAL_STATUSES       # what close() may record
WRITER_ATTRS_ALL = WRITER_ATTRS + (STATUS_REASON_ATTR,)
CHUNK_BYTES = 1 << 20           # at most 1 MiB per chunk (and CHUNK_EDGE per axis)
COUNTS_CHUNK_ROWS = 256
_GZIP = dict(compression="gzip", compression_opts=1, shuffle=True)

# numpy dtype -> (XDMF NumberType, Precision)
_XDMF_TYPES = {
    np.dtype(np.uint8): ("UChar", 1), np.dtype(np.int8): ("Char", 1),
    np.dtype(np.uint16): ("UShort", 2), np.dtype(np.int16): ("Short", 2),
    np.dtype(np.uint32): ("UInt", 4), np.dtype(np.int32): ("Int", 4),
    np.dtype(np.uint64): ("UInt", 8), np.dtype(np.int64): ("Int", 8),
    np.dtype(np.float32): ("Float", 4), np.dtype(np.float64): ("Float", 8),
}


@dataclass(frozen=True, eq=False)
class LatticeInfo:
    """The static description of one lattice in a run."""

    name: str                       # e.g. "primary"
    shape: tuple[int, int, int]     # (nz, ny, nx)
    voxel_um: float
    organ: np.ndarray               # uint8 (nz, ny, nx): organ label per voxel
    organ_names: tuple[str, ...]    # index = label; label 0 is "none"
    attrs: dict = field(default_factory=dict)    # more attributes of its group (role, site)

    def __post_init__(self):
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"lattice {self.name!r}: shape must be 3 positive ints, got {self.shape}")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"lattice name {self.name!r} is not a valid HDF5 group name")
        if not self.voxel_um > 0:
            raise ValueError(f"lattice {self.name!r}: voxel_um must be > 0, got {self.voxel_um}")
        organ = np.asarray(self.organ)
        if organ.shape != shape or organ.dtype != np.uint8:
            raise ValueError(f"lattice {self.name!r}: organ must be uint8 {shape}, "
                             f"got {organ.dtype} {organ.shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "organ", organ)
        object.__setattr__(self, "organ_names", tuple(str(s) for s in self.organ_names))


def _chunks(shape, itemsize):
    """Chunk shape for a field: each edge min(n, 64), halved until <= 1 MiB."""
    c = [min(int(n), CHUNK_EDGE) for n in shape]
    while int(np.prod(c)) * itemsize > CHUNK_BYTES:
        i = int(np.argmax(c))
        c[i] = (c[i] + 1) // 2
    return tuple(c)


def _xdmf_type(dtype):
    try:
        return _XDMF_TYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"dtype {np.dtype(dtype)} has no XDMF number type; "
                        f"use an int or float type of 1 to 8 bytes") from None


def _as_field(a, dtype, shape, where):
    """Check one snapshot array and return it as `dtype`, refusing lossy casts."""
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{where}: shape {a.shape}, expected {shape}")
    if a.dtype == dtype:
        return a
    src, dst = a.dtype.kind, dtype.kind
    if dst in "iu" and src in "iub":
        if not np.can_cast(a.dtype, dtype, "safe") and a.size:
            lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
            if a.min() < lo or a.max() > hi:
                raise ValueError(f"{where}: values outside {dtype} range")
    elif not (dst == "f" and src in "iubf"):
        raise TypeError(f"{where}: cannot store {a.dtype} as {dtype}")
    return a.astype(dtype)


class RunLock:
    """An exclusive lock on one run file, for a writer's (or a repair's) whole lifetime.

    ``flock`` on the sidecar ``RUN.h5.lock`` (not on ``RUN.h5``, which HDF5 locks
    itself), which holds the owner's PID and host.  Taken without waiting: a second
    taker gets :class:`RunLocked` naming the file and that PID.  The kernel drops an
    flock when its process dies, so the lock of a killed run never blocks; a released
    lock removes its sidecar (a taker that raced the removal retries on the new one).
    """

    def __init__(self, run_path):
        self.run_path = Path(run_path)
        self.path = lock_path(self.run_path)
        self._file = None

    def acquire(self) -> "RunLock":
        while self._file is None:
            fh = open(self.path, "a+b")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                owner = fh.read(200).decode("utf-8", "replace").split() or ["?", "?"]
                fh.close()
                raise RunLocked(f"{shown(self.run_path)}: in use by oncolattice process "
                                f"PID {owner[0]} on {owner[-1]} (lock {shown(self.path.name)}); "
                                f"wait for it to end or choose another --out") from None
            except BaseException:
                fh.close()
                raise
            if self._is_current(fh):
                self._file = fh
            else:
                fh.close()              # its last holder removed it meanwhile: retry
        self._file.truncate(0)
        self._file.write(f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._file.flush()
        return self

    def _is_current(self, fh) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fh.fileno())
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        """Remove the sidecar (while still holding it), then unlock."""
        if self._file is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            self._file.close()
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


class RunWriter:
    """Writes one run: static lattice data, snapshot series, per-step counts.

    ``arrays`` given to :meth:`write_snapshot` must be host (numpy) arrays.
    As a context manager, a normal exit closes with ``"complete"`` (unless
    already closed), KeyboardInterrupt with ``"interrupted"``, any other
    exception with ``"failed"`` and the exception as ``status_reason``; the
    exception is re-raised.

    The writer holds ``lock`` (a held :class:`RunLock` on `path`; by default it
    takes its own before creating the file) until it is closed.  With `cut` it
    continues the existing file of the same run from that cut instead of creating
    it (`attrs` are then set on it; `field_attrs` are the file's already).
    """

    def __init__(self, path, *, attrs: dict, lattices: list[LatticeInfo],
                 counts_dtype: np.dtype, snapshot_fields: dict[str, np.dtype],
                 field_attrs: dict[str, dict] | None = None, lock: RunLock | None = None,
                 tables: dict[str, np.dtype] | None = None, cut: "Cut | None" = None):
        self.path = Path(path)
        self.xdmf_path = self.path.with_suffix(".xdmf")
        if self.xdmf_path == self.path:
            raise ValueError(f"run file {self.path} would collide with its XDMF sidecar")
        self.lattices = list(lattices)
        self.counts_dtype = np.dtype(counts_dtype)
        self.fields = {k: np.dtype(v) for k, v in snapshot_fields.items()}
        field_attrs = dict(field_attrs or {})
        names = [lat.name for lat in self.lattices]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need at least one lattice, with unique names: {names}")
        if self.counts_dtype.names is None:
            raise TypeError(f"counts_dtype must be a structured dtype, got {self.counts_dtype}")
        for f, dt in self.fields.items():
            if f == ORGAN or not f or "/" in f:
                raise ValueError(f"snapshot field name {f!r} is reserved or invalid")
            _xdmf_type(dt)
        if unknown := set(field_attrs) - set(self.fields):
            raise ValueError(f"field_attrs for unknown fields: {sorted(unknown)}")
        if CODES_ATTR in field_attrs.get(KIND, {}):
            KindCodes.parse(field_attrs[KIND][CODES_ATTR])      # ValueError if malformed
        if reserved := set(WRITER_ATTRS_ALL) & set(attrs):
            raise ValueError(f"attrs may not set {sorted(reserved)}: the writer owns them")

        self.tables = {path: np.dtype(dt) for path, dt in (tables or {}).items()}
        for path, dt in self.tables.items():
            if dt.names is None or path in (COUNTS, SNAPSHOT_STEP, SNAPSHOT_TIME):
                raise ValueError(f"table {path!r}: needs a structured dtype and a free name")
        self._pending = []              # counts rows not yet written to the file
        self._pending_rows = {path: [] for path in self.tables}     # rows of the other tables
        self._whole = {}                # tables rewritten whole at the next flush
        self._closed = False
        self.hdf5_unclosed = False      # HDF5 failed to close the file (after a write error)
        self._lock = lock if lock is not None else RunLock(self.path).acquire()
        if not self._lock.held or self._lock.run_path != self.path:
            raise ValueError(f"lock {self._lock.path} is not a held lock on {self.path}")
        try:
            if cut is not None:
                clear_stale_flags(self.path)
            self._f = h5py.File(self.path, "w" if cut is None else "r+", libver="latest")
        except BaseException:
            self._closed = True
            self._lock.release()
            raise
        try:
            if cut is None:
                self._create(attrs, field_attrs)
            else:
                self._cut(cut, attrs)
            self._f.flush()
            self._f.swmr_mode = True        # no new objects or attributes from here on
            self._write_xdmf()
        except BaseException:
            self._closed = True
            self._close_file()
            self._lock.release()
            raise

    def _create(self, attrs, field_attrs):
        f = self._f
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs[FORMAT_ATTR] = FORMAT
        f.attrs[STATUS_ATTR] = RUNNING
        for lat in self.lattices:
            g = f.create_group(lattice_path(lat.name))
            g.attrs["voxel_um"] = float(lat.voxel_um)
            g.attrs["shape"] = np.array(lat.shape, dtype=np.int64)
            g.attrs["organ_names"] = np.array(lat.organ_names, dtype=h5py.string_dtype())
            g.create_dataset(ORGAN, data=lat.organ, chunks=_chunks(lat.shape, 1),
                             compression="gzip", compression_opts=1)
            for k, v in lat.attrs.items():
                g.attrs[k] = v
            for name, dt in self.fields.items():
                ds = g.create_dataset(name, shape=(0, *lat.shape), maxshape=(None, *lat.shape),
                                      dtype=dt, chunks=(1, *_chunks(lat.shape, dt.itemsize)), **_GZIP)
                for k, v in field_attrs.get(name, {}).items():
                    ds.attrs[k] = v
        for path, dt in ((SNAPSHOT_STEP, np.int64), (SNAPSHOT_TIME, np.float64)):
            f.create_dataset(path, shape=(0,), maxshape=(None,), dtype=dt,
                             chunks=(COUNTS_CHUNK_ROWS,))
        for path, dt in ((COUNTS, self.counts_dtype), *self.tables.items()):
            f.create_dataset(path, shape=(0,), maxshape=(None,), dtype=dt,
                             chunks=(COUNTS_CHUNK_ROWS,), compression="gzip", compression_opts=1)

    def _cut(self, cut: "Cut", attrs: dict) -> None:
        """Take over the file of an earlier writer of this run at `cut` (what it wrote
        after is dropped), marked running again, with `attrs`."""
        f = self._f
        for path, n in cut.lengths.items():
            for ds in self._series() if path == SNAPSHOT_STEP else [f[path]]:
                ds.resize(n, axis=0)
        for path, rows in cut.whole.items():
            ds = f[path]
            ds.resize(len(rows), axis=0)
            ds[:] = rows
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs[STATUS_ATTR] = RUNNING
        if STATUS_REASON_ATTR in f.attrs:
            del f.attrs[STATUS_REASON_ATTR]

    def _series(self) -> list:
        """The snapshot index and every snapshot field series."""
        return [self._f[SNAPSHOT_STEP], self._f[SNAPSHOT_TIME]] + [
            self._f[field_path(lat.name, name)] for lat in self.lattices for name in self.fields]

    def flush(self) -> dict[str, int]:
        """Write every queued row to the file and flush it; returns the length of
        the counts, of every table and of the snapshot index (a checkpoint keeps
        them: the `Cut` of a run resumed from it)."""
        self._check_open()
        self._flush_counts()
        self._f.flush()
        return {path: int(self._f[path].shape[0])
                for path in (COUNTS, *self.tables, SNAPSHOT_STEP)}

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def n_snapshots(self) -> int:
        """Snapshots recorded in the time index."""
        return int(self._f[SNAPSHOT_STEP].shape[0])

    def _check_open(self):
        if self._closed:
            raise RuntimeError(f"run file {self.path} is already closed")

    def write_snapshot(self, step: int, time_h: float,
                       arrays: dict[str, dict[str, np.ndarray]]) -> None:
        """Append one snapshot: ``arrays[lattice][field]`` for every lattice and field.

        All arrays are checked before anything is written; data go in first,
        the time index last, then the file is flushed and the XDMF rewritten.
        """
        self._check_open()
        if set(arrays) != {lat.name for lat in self.lattices}:
            raise ValueError(f"snapshot lattices {sorted(arrays)}, expected "
                             f"{sorted(lat.name for lat in self.lattices)}")
        data = {}
        for lat in self.lattices:
            got = arrays[lat.name]
            if set(got) != set(self.fields):
                raise ValueError(f"lattice {lat.name!r}: snapshot fields {sorted(got)}, "
                                 f"expected {sorted(self.fields)}")
            for name, dt in self.fields.items():
                data[lat.name, name] = _as_field(got[name], dt, lat.shape, f"{lat.name}/{name}")
        t = self.n_snapshots          # slot; overwrites the remains of a torn write
        for (lname, name), a in data.items():
            ds = self._f[field_path(lname, name)]
            ds.resize(t + 1, axis=0)
            ds[t] = a
        self._flush_counts()
        self._f.flush()               # the data reach the file before the index names them
        for path, value in ((SNAPSHOT_TIME, float(time_h)), (SNAPSHOT_STEP, int(step))):
            ds = self._f[path]
            ds.resize(t + 1, axis=0)
            ds[t] = value
            ds.flush()
        self._write_xdmf()

    def append_counts(self, row: np.ndarray) -> None:
        """Queue one row of ``counts_dtype`` (shape () or (1,)); written at the
        next snapshot, every 256 rows, and at close."""
        self._check_open()
        row = np.asarray(row)
        if row.dtype != self.counts_dtype:
            raise TypeError(f"counts row dtype {row.dtype}, expected {self.counts_dtype}")
        if row.ndim > 1:
            raise ValueError(f"counts row must have shape () or (n,), got {row.shape}")
        self._pending.append(row.reshape(-1).copy())
        if sum(len(r) for r in self._pending) >= COUNTS_CHUNK_ROWS:
            self._flush_counts()

    def append_rows(self, path: str, rows: np.ndarray) -> None:
        """Queue rows of table `path` (written with the counts)."""
        self._check_open()
        rows = np.asarray(rows)
        if rows.dtype != self.tables[path]:
            raise TypeError(f"{path} rows dtype {rows.dtype}, expected {self.tables[path]}")
        self._pending_rows[path].append(rows.reshape(-1).copy())

    def write_table(self, path: str, rows: np.ndarray) -> None:
        """Replace the contents of table `path` with `rows` at the next flush (a table of
        records that change, such as the colony registry; it never shrinks)."""
        self._check_open()
        rows = np.asarray(rows)
        if rows.dtype != self.tables[path]:
            raise TypeError(f"{path} rows dtype {rows.dtype}, expected {self.tables[path]}")
        self._whole[path] = rows.reshape(-1).copy()

    def _flush_counts(self):
        """Write the queued counts rows, the other tables' queued rows and the tables
        to be rewritten whole."""
        queued = {COUNTS: self._pending, **self._pending_rows}
        for path, pending in queued.items():
            if pending:
                rows = np.concatenate(pending)
                ds = self._f[path]
                n = ds.shape[0]
                ds.resize(n + len(rows), axis=0)
                ds[n:] = rows
                pending.clear()
        for path, rows in self._whole.items():
            ds = self._f[path]
            if len(rows) < ds.shape[0]:
                raise ValueError(f"table {path} would shrink from {ds.shape[0]} to {len(rows)} rows")
            ds.resize(len(rows), axis=0)
            ds[:] = rows
        self._whole = {}

    def close(self, status: str, reason: str | None = None) -> None:
        """Write pending counts, rewrite the XDMF, close, record the final ``status``
        (and ``reason`` as ``status_reason``), release the lock.  If a write fails
        the file is still closed and the lock released before the error is raised."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        self._check_open()
        self._closed = True
        try:
            try:
                self._flush_counts()
                self._f.flush()
                self._write_xdmf()
            finally:
                self._close_file()
            self._record_status(status, reason)
        finally:
            self._lock.release()

    def _close_file(self) -> None:
        """Close the HDF5 file; if HDF5 cannot (it must write what a failed write left
        dirty), note it in ``hdf5_unclosed`` and raise."""
        try:
            self._f.close()
        except Exception:
            self.hdf5_unclosed = True
            raise

    def _record_status(self, status: str, reason: str | None = None) -> None:
        """Set the final status, out of SWMR (attributes may change now).  A reader that
        follows the run (`view --follow`) holds a shared lock on the file, which an r+
        open must wait for: wait up to STATUS_LOCK_WAIT_S, then write the one attribute
        without file locking rather than leave a finished run marked `running`."""
        def record(f):
            f.attrs[STATUS_ATTR] = status
            if reason:
                f.attrs[STATUS_REASON_ATTR] = reason

        deadline = time.monotonic() + STATUS_LOCK_WAIT_S
        while True:
            try:
                with h5py.File(self.path, "r+") as f:
                    record(f)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.05)
        with h5py.File(self.path, "r+", locking=False) as f:
            record(f)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._closed:
            return False
        if exc_type is None:
            self.close("complete")
            return False
        try:
            if issubclass(exc_type, KeyboardInterrupt):
                self.close("interrupted")
            else:
                self.close("failed", f"{exc_type.__name__}: {exc}")
        except Exception:
            pass                    # never mask the original exception
        return False

    def _write_xdmf(self):
        write_xdmf(self._f, self.path, self.xdmf_path,
                   lattices=[lat.name for lat in self.lattices], fields=list(self.fields))


# -- XDMF sidecar ------------------------------------------------------------------

def write_xdmf(f, h5_path, xdmf_path, lattices=None, fields=None):
    """Rewrite `xdmf_path` (atomically) for the open run file `f` at `h5_path`: one
    temporal grid per lattice from the snapshot index.  `lattices` and `fields` give
    the order (default: the file's lattices, and its datasets other than organ)."""
    times = f[SNAPSHOT_TIME][:]
    h5name = Path(h5_path).name
    root = ET.Element("Xdmf", Version="3.0")
    domain = ET.SubElement(root, "Domain")
    for name in (lattices if lattices is not None else list(f[LATTICES])):
        group = f[lattice_path(name)]
        names = fields if fields is not None else [k for k in group if k != ORGAN]
        lat = (name, tuple(int(n) for n in group.attrs["shape"]), float(group.attrs["voxel_um"]),
               {k: group[k] for k in names})
        if len(times) == 0:     # nothing yet: one static grid with the organs
            _xdmf_grid(domain, lat, h5name, None, None)
            continue
        coll = ET.SubElement(domain, "Grid", Name=name, GridType="Collection",
                             CollectionType="Temporal")
        for t, time_h in enumerate(times):
            _xdmf_grid(coll, lat, h5name, t, float(time_h))
    ET.indent(root)
    with atomic_path(xdmf_path) as tmp:
        ET.ElementTree(root).write(tmp, encoding="utf-8", xml_declaration=True)


def _xdmf_grid(parent, lat, h5name, t, time_h):
    lname, shape, voxel_um, datasets = lat
    dims = " ".join(map(str, shape))
    name = lname if t is None else f"{lname}_{t:06d}"
    grid = ET.SubElement(parent, "Grid", Name=name, GridType="Uniform")
    if t is not None:
        ET.SubElement(grid, "Time", Value=repr(time_h))
    ET.SubElement(grid, "Topology", TopologyType="3DCoRectMesh",
                  Dimensions=" ".join(str(n + 1) for n in shape))
    geo = ET.SubElement(grid, "Geometry", GeometryType="ORIGIN_DXDYDZ")
    v = repr(float(voxel_um))
    for label, text in (("Origin", "0 0 0"), ("Spacing", f"{v} {v} {v}")):
        ET.SubElement(geo, "DataItem", Name=label, Dimensions="3", NumberType="Float",
                      Precision="8", Format="XML").text = text
    attr = ET.SubElement(grid, "Attribute", Name=ORGAN, AttributeType="Scalar", Center="Cell")
    ET.SubElement(attr, "DataItem", Dimensions=dims, NumberType="UChar", Precision="1",
                  Format="HDF").text = f"{h5name}:/{field_path(lname, ORGAN)}"
    if t is None:
        return
    for fname, ds in datasets.items():
        ntype, prec = _xdmf_type(ds.dtype)
        full = ds.shape
        attr = ET.SubElement(grid, "Attribute", Name=fname, AttributeType="Scalar",
                             Center="Cell")
        slab = ET.SubElement(attr, "DataItem", ItemType="HyperSlab", Type="HyperSlab",
                             Dimensions=dims, NumberType=ntype, Precision=str(prec))
        ET.SubElement(slab, "DataItem", Dimensions="3 4", NumberType="Int",
                      Format="XML").text = f"{t} 0 0 0  1 1 1 1  1 {dims}"
        ET.SubElement(slab, "DataItem", Dimensions=" ".join(map(str, full)),
                      NumberType=ntype, Precision=str(prec),
                      Format="HDF").text = f"{h5name}:/{field_path(lname, fname)}"


# -- repairing the file of a killed writer ------------------------------------------

def clear_status_flags(path) -> None:
    """Mark `path` closed, as ``h5clear -s --increment=0`` does.  A writer that dies
    leaves the superblock saying "open for (SWMR) write", so HDF5 (h5py, h5dump,
    ParaView) refuses the file, and its end-of-allocation short of data written
    since.  h5py lacks the calls, so the file-access properties h5clear uses
    (``clear_status_flags``, ``skip_eof_check``) and ``H5Fincrement_filesize`` are
    reached through the libhdf5 h5py loaded; failing that, ``h5clear`` is run."""
    hdf5 = hdf5_library()
    if hdf5 is not None:
        hdf5.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
        hdf5.H5Fincrement_filesize.argtypes = [ctypes.c_int64, ctypes.c_uint64]
        fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        true = ctypes.c_uint32(1)       # an hbool_t: its first byte is read
        if all(hdf5.H5Pset(fapl.id, name, ctypes.byref(true)) >= 0
               for name in (b"clear_status_flags", b"skip_eof_check")):
            fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, fapl=fapl)
            try:
                if hdf5.H5Fincrement_filesize(fid.id, 0) >= 0:     # EOA := EOF
                    return
            finally:
                fid.close()
    if shutil.which("h5clear"):
        subprocess.run(["h5clear", "-s", "--increment=0", os.fspath(path)], check=True,
                       capture_output=True)
        return
    raise UserError(f"{shown(path)}: cannot clear the file's open-for-write flags here; "
                    f"run `h5clear -s --increment=0 {shown(path)}` (HDF5 tools), then repair again")


def clear_stale_flags(path) -> None:
    """Clear the open-for-write flags a writer that died left on `path`, if it has them."""
    try:
        h5py.File(path, "r", locking=False).close()
    except OSError:
        clear_status_flags(path)


@dataclass(frozen=True)
class Cut:
    """Where a resumed run takes over its file: each table (and the snapshot index
    with its field series) is cut to its length in `lengths` (path -> rows, as
    `RunWriter.flush` returned them at the checkpoint), so rows and snapshots a killed
    run wrote after its checkpoint are dropped; the tables rewritten whole (`whole`:
    path -> rows) get the given rows."""

    lengths: dict
    whole: dict = field(default_factory=dict)


def repair_run_file(path) -> str:
    """Make the run file of a killed writer whole: mark it closed (``h5clear -s``),
    cut the snapshot index and the field series to the snapshots fully written
    and the counts to the rows written, say ``interrupted`` where it still says ``running``, rewrite the XDMF.
    Refused while a live writer holds the file's lock.  Returns a one-line report."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such run file")
    with RunLock(path):
        try:
            clear_stale_flags(path)
            f = h5py.File(path, "r+")
        except OSError as exc:
            reason = str(exc).split("(")[-1].rstrip(")") if "(" in str(exc) else str(exc)
            raise UserError(f"{shown(path)}: not a readable HDF5 file ({reason})") from None
        with f:
            if f.attrs.get(FORMAT_ATTR) != FORMAT:
                raise UserError(f"{shown(path)}: not an oncolattice run file")
            series = [f[SNAPSHOT_STEP], f[SNAPSHOT_TIME]] + [
                ds for g in f[LATTICES].values() for k, ds in g.items() if k != ORGAN]
            n = min(ds.shape[0] for ds in series)
            for ds in series:
                ds.resize(n, axis=0)
            counts = f[COUNTS]
            if "step" in (counts.dtype.names or ()):    # a row per step from 0: drop unwritten
                torn = np.flatnonzero(counts["step"] != np.arange(counts.shape[0]))
                counts.resize(int(torn[0]) if len(torn) else counts.shape[0], axis=0)
            status = f.attrs.get(STATUS_ATTR)
            if status == RUNNING:
                status = "interrupted"
                f.attrs[STATUS_ATTR] = status
                f.attrs[STATUS_REASON_ATTR] = "its writer died; repaired by oncolattice repair"
            write_xdmf(f, path, path.with_suffix(".xdmf"))
    return f"{shown(path)}: repaired: {n} snapshots, status {status}"


# -- the summary ------------------------------------------------------------------

def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def write_summary(path, summary: dict) -> None:
    """Write `summary` as JSON (indent 2) atomically (:func:`atomic_path`).

    numpy scalars and arrays are converted to plain numbers and lists.
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2, default=_json_default)
        fh.write("\n")
