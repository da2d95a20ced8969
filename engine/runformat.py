"""The run file format: the contract between the engine that writes run files
(:mod:`engine.output`, :mod:`engine.run`) and the tools that read them
(:mod:`tools.runfile`, ``view``, ``render``, ``report``).

Everything both sides must agree on is defined here, once: the format name,
the group and dataset names, the attributes a reader requires, how the voxel
kind codes are stored and read back, the chunk edge readers may rely on, and
the atomic-write helper every output file goes through.

Layout of ``RUN.h5`` (format ``oncolattice-run-1``)::

    /                          attrs: format, status (+ the writer's own: seed, ...)
    /lattices/<name>/          attrs: voxel_um, shape (nz, ny, nx), organ_names
    /lattices/<name>/organ     uint8 (nz, ny, nx), static organ label per voxel
    /lattices/<name>/<field>   (T, nz, ny, nx) one per snapshot field; attr units
    /lattices/<name>/kind      uint8 (T, nz, ny, nx); attr codes = "0=empty,1=functional,..."
    /snapshots/step            int64 (T,), the time index: a snapshot exists once listed here
    /snapshots/time_h          float64 (T,)
    /counts                    structured (N,), one row per step (the primary lattice)
    /lattices/<site>/counts    structured (N,), one row per step of each site lattice
    /body                      structured (N,), one row per step: circulation and colonies
    /colonies                  structured (C,), the colony registry (one row per colony)
    /colony_sizes              structured, (step, colony, cells, diameter_um) per step
    /ctcs                      structured (R,), one record per cell that left a lattice
    /therapy                   structured, one row per therapy delivery given (step,
                               time_h, therapy, kind, lattice, delivery, count, dose,
                               dose_unit)

A body of lattices: the primary lattice (attr role = "primary") and its site
lattices (role = "site", with site_organ, site_class "regional" or "distant", and
block_fraction_of_organ: every arrival into the organ is placed in its block, so the
block's density of disseminated cells is the organ's divided by this fraction);
every lattice group has attr lattice_id.  Tables written through the run
(/body, /colony_sizes) grow by appended rows; /colonies and /ctcs are records
that change, rewritten whole at each snapshot and at close (never shrinking).

Kind codes are stored with the data, as the ``codes`` attribute of each
lattice's ``kind`` dataset: ``CODE=NAME`` pairs joined by commas.  Readers
decode kinds from that attribute only, never from the engine's current
numbering, so a file keeps its meaning when kinds are added or renumbered and
a file with a kind this version does not know still shows that kind's name.
A ``kind`` dataset without the attribute (written directly through
``RunWriter`` without codes; ``oncolattice run`` always stores them) is read
with :data:`DEFAULT_KIND_CODES`, the table this format was published with.

Imports only the standard library, numpy and h5py (never numba or kernels/),
so the tools can read run files without loading the simulation.
"""
from __future__ import annotations

import ctypes
import functools
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

FORMAT = "oncolattice-run-1"

# -- root attributes ------------------------------------------------------------
FORMAT_ATTR = "format"
STATUS_ATTR = "status"
WRITER_ATTRS = (FORMAT_ATTR, STATUS_ATTR)       # set by the writer, never by its caller
RUNNING = "running"                             # while the writer has the file open (or died)
FINAL_STATUSES = ("complete", "interrupted", "failed")

# -- groups and datasets --------------------------------------------------------
LATTICES = "lattices"                           # /lattices/<name>/
ORGAN = "organ"                                 # static dataset of every lattice
KIND = "kind"                                   # the voxel-kind snapshot field
SNAPSHOT_STEP = "snapshots/step"                # the time index
SNAPSHOT_TIME = "snapshots/time_h"
COUNTS = "counts"
LATTICE_ATTRS = ("voxel_um", "shape", "organ_names")    # required on every lattice group
ROLE_ATTR, PRIMARY, SITE = "role", "primary", "site"     # a lattice's role in the body
SITE_ORGAN_ATTR, SITE_CLASS_ATTR, LATTICE_ID_ATTR = "site_organ", "site_class", "lattice_id"
BLOCK_FRACTION_ATTR = "block_fraction_of_organ"  # a site block's share of its organ
BODY = "body"                                   # per-step circulation and colony counts
COLONIES = "colonies"                           # the colony registry
COLONY_SIZES = "colony_sizes"                   # colony sizes over time
CTCS = "ctcs"                                   # circulating and disseminated cell records
THERAPY = "therapy"                             # the therapy record: every delivery given
CHECKUPS = "checkups"                           # what each check-up of a protocol measured
DECISIONS = "decisions"                         # what the protocol's rules decided
UNITS_ATTR = "units"                            # on each snapshot field (optional)
CODES_ATTR = "codes"                            # on the kind field

# Snapshot fields are chunked at most this many voxels along each axis (one
# snapshot per chunk in time), so readers read z slabs of this depth.
CHUNK_EDGE = 64


def lattice_path(lattice: str) -> str:
    """The group of lattice `lattice`."""
    return f"{LATTICES}/{lattice}"


def json_number(x):
    """A JSON-safe number: NaN and infinities become None; integral floats stay floats."""
    if x is None:
        return None
    x = x.item() if isinstance(x, np.generic) else x
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def plain_rows(rows) -> list[dict]:
    """The rows of a structured table (the registry, the therapy record) as JSON-ready
    dicts: text columns, stored as bytes, decoded; numbers (and fixed-size arrays of
    them) as Python numbers."""
    def plain(v):
        return v.decode() if isinstance(v, bytes) else v.tolist()
    return [{name: plain(row[name]) for name in rows.dtype.names} for row in rows]


def counts_path(lattice: str, role: str) -> str:
    """The per-step counts table of a lattice: /counts for the primary lattice (as in
    files of one lattice), /lattices/<name>/counts for a site lattice."""
    return COUNTS if role == PRIMARY else f"{LATTICES}/{lattice}/{COUNTS}"


def field_path(lattice: str, field: str) -> str:
    """The dataset of `field` (a snapshot field or ``organ``) of `lattice`."""
    return f"{LATTICES}/{lattice}/{field}"


# -- voxel kind codes -------------------------------------------------------------

EMPTY_KIND = "empty"        # the kind name of matrix voxels (no cell); never drawn


class KindCodes:
    """The voxel kinds of one lattice of a run file: code (uint8) <-> name.

    ``names`` lists the names in code order; :meth:`name` of a code the table
    lacks is ``code_<N>``, so stray values still have a printable name.
    """

    def __init__(self, by_code: Mapping[int, str]):
        table = {}
        for code, name in sorted((int(c), str(n)) for c, n in by_code.items()):
            if not 0 <= code <= 255:
                raise ValueError(f"kind code {code} of {name!r} is not a uint8 value")
            if not name or name != name.strip() or any(ch in name for ch in ",="):
                raise ValueError(f"kind name {name!r} (code {code}) is empty or contains "
                                 f"',', '=' or surrounding spaces")
            if name in table.values():
                raise ValueError(f"kind name {name!r} has two codes")
            table[code] = name
        self._names = table
        self._codes = {name: code for code, name in table.items()}

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "KindCodes":
        """Codes 0, 1, 2, ... for `names` in order."""
        return cls(dict(enumerate(names)))

    @classmethod
    def parse(cls, text) -> "KindCodes":
        """Decode a stored ``codes`` attribute, ``"0=empty,1=functional,..."``."""
        if isinstance(text, bytes):
            text = text.decode()
        table = {}
        for item in str(text).split(","):
            code, sep, name = item.partition("=")
            try:
                value = int(code)
            except ValueError:
                value = None
            if not sep or value is None:
                raise ValueError(f"kind codes {text!r}: {item.strip()!r} is not CODE=NAME")
            if value in table:
                raise ValueError(f"kind codes {text!r}: code {value} appears twice")
            table[value] = name.strip()
        return cls(table)

    def encode(self) -> str:
        """The attribute text: ``CODE=NAME`` pairs joined by commas."""
        return ",".join(f"{code}={name}" for code, name in self._names.items())

    @property
    def names(self) -> tuple[str, ...]:
        """Kind names in code order."""
        return tuple(self._names.values())

    @property
    def codes(self) -> tuple[int, ...]:
        return tuple(self._names)

    def items(self):
        """(code, name) pairs in code order."""
        return self._names.items()

    def name(self, code: int) -> str:
        """The name of `code`; ``code_<N>`` for a code the table lacks."""
        return self._names.get(int(code), f"code_{int(code)}")

    def code(self, name: str) -> int:
        """The code of kind `name` (KeyError if this table has no such kind)."""
        return self._codes[name]

    def __contains__(self, name) -> bool:
        return name in self._codes

    def __len__(self) -> int:
        return len(self._names)

    def __eq__(self, other) -> bool:
        return isinstance(other, KindCodes) and self._names == other._names

    def __hash__(self) -> int:
        return hash(tuple(self._names.items()))

    def __repr__(self) -> str:
        return f"KindCodes({self.encode()!r})"


# The codes format oncolattice-run-1 was published with; used only for a kind
# field without a ``codes`` attribute.  Never change it: new or renumbered
# kinds reach readers through the stored attribute.
DEFAULT_KIND_CODES = KindCodes.from_names(
    ("empty", "functional", "tumor", "necrotic", "vessel", "lymph_vessel", "sprout", "tip"))


def kind_codes_attr(kinds: KindCodes | Iterable[str]) -> str:
    """The ``codes`` attribute to store for `kinds` (a table, or names for codes 0, 1, ...)."""
    if not isinstance(kinds, KindCodes):
        kinds = KindCodes.from_names(kinds)
    return kinds.encode()


def read_kind_codes(attrs: Mapping) -> KindCodes:
    """The kind table of a ``kind`` dataset, from its attributes (``ds.attrs``);
    :data:`DEFAULT_KIND_CODES` if it has no ``codes``.  ValueError if malformed."""
    text = attrs.get(CODES_ATTR)
    return DEFAULT_KIND_CODES if text is None else KindCodes.parse(text)


# -- atomic files -----------------------------------------------------------------

@contextmanager
def atomic_path(dest):
    """Yield a temporary path beside `dest` (same suffix, so writers that pick a
    format by extension still can); if the block succeeds, flush it to disk and
    rename it to `dest`, else delete it.  A reader of `dest` sees the old file or
    the whole new one, never a half-written one."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".tmp{dest.suffix}",
                               dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)                 # mkstemp made it 0600; give it the usual mode
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

# -- appended by the hardening work (issue 10) ------------------------------------
STATUS_REASON_ATTR = "status_reason"            # why a run ended `failed` or `interrupted`
LOCK_SUFFIX = ".lock"                           # RUN.h5.lock: flock'd by the live writer


def lock_path(run_path) -> Path:
    """The sidecar a live writer holds locked: ``RUN.h5.lock``, with its PID and host."""
    run_path = Path(run_path)
    return run_path.with_name(run_path.name + LOCK_SUFFIX)


@functools.cache
def hdf5_library():
    """The HDF5 C library h5py runs on (a `ctypes.CDLL`), for the few calls h5py does
    not bind (capping metadata re-reads, clearing a killed writer's flags), or None
    where it cannot be found: the libhdf5 bundled with h5py's wheel (loaded in this
    process, or in the wheel's folder), else the only libhdf5 this process has loaded
    (Linux lists them in /proc/self/maps)."""
    import h5py
    libs = set()
    try:
        with open("/proc/self/maps") as fh:
            libs = {line.split()[-1] for line in fh if "/libhdf5" in line}
    except OSError:
        pass
    package = Path(h5py.__file__).resolve().parent
    wheel = (package.parent / "h5py.libs", package / ".dylibs")
    for folder in wheel:
        libs.update(str(p) for p in folder.glob("libhdf5*") if p.is_file())
    libs = {p for p in libs if not Path(p).name.startswith("libhdf5_hl")}
    own = sorted(p for p in libs if Path(p).resolve().parent in wheel)
    for lib in own or (sorted(libs) if len(libs) == 1 else []):
        try:
            return ctypes.CDLL(lib)
        except OSError:
            continue
    return None
