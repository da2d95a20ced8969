"""The lattice state: one array per quantity (struct of arrays), C order [z, y, x].

Every voxel array is declared once, by the process that owns it (`Process(arrays=...)`
in its module under `kernels/`; the arrays every cell carries by `kernels.lattice`),
with the one thing it means.  `VOXEL_ARRAYS` gathers them in step order; the README's
state table is generated from it (`state_table`, checked by a test), and the bytes per
voxel, the memory check and the benchmark's byte counts follow from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np
from numba import prange

from kernels.lattice import LATTICE
from kernels.process import PROCESSES

from .schedule import PASSES


def _owners():
    """The lattice's own arrays, then each process's in the order the step first runs it,
    then those of processes outside the step."""
    order = [LATTICE] + [p.process for p in PASSES if p.process is not None]
    order += list(PROCESSES.values())
    seen = []
    for process in order:
        if process not in seen:
            seen.append(process)
    return seen


# (name, dtype, values per voxel, is work buffer, meaning, owning process)
VOXEL_ARRAYS = tuple((name, a.dtype, a.planes, a.work, a.meaning, p.name)
                     for p in _owners() for name, a in p.arrays.items())
STATE_BYTES_PER_VOXEL = sum(np.dtype(t).itemsize * n for _, t, n, work, *_ in VOXEL_ARRAYS
                            if not work)
WORK_BYTES_PER_VOXEL = sum(np.dtype(t).itemsize * n for _, t, n, work, *_ in VOXEL_ARRAYS if work)
BYTES_PER_VOXEL = STATE_BYTES_PER_VOXEL + WORK_BYTES_PER_VOXEL
# What a snapshot stores, with its dtype and units; it is staged on the host.
SNAPSHOT_FIELDS = {"kind": (np.uint8, "code"), "oxygen": (np.float32, "mmHg"),
                   "vegf": (np.float32, "ng/mL")}
HOST_SNAPSHOT_BYTES_PER_VOXEL = sum(np.dtype(t).itemsize for t, _ in SNAPSHOT_FIELDS.values())


@dataclass
class Lattice:
    """One tissue lattice (or an MPI slab of one) with its arrays on one backend."""

    name: str
    lattice_id: int
    backend: str
    shape: tuple[int, int, int]        # local (nz, ny, nx)
    z0: int = 0                        # global z of local plane 0
    arrays: dict = field(default_factory=dict)
    event_layout: dict = field(default_factory=dict)
    domain: object = None              # engine.domain: Whole, or this rank's Slab

    def __post_init__(self):
        if self.domain is None:
            from .domain import Whole
            self.domain = Whole(self.shape[0])

    def event_rows(self, process) -> slice:
        """Rows of `process`'s counters in `events` (see engine.schedule)."""
        return self.event_layout[process.name]

    def __getattr__(self, name):
        try:
            return self.__dict__["arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def nz(self):
        return self.shape[0]

    @property
    def ny(self):
        return self.shape[1]

    @property
    def nx(self):
        return self.shape[2]

    @property
    def voxels(self):
        return self.shape[0] * self.shape[1] * self.shape[2]


@numba.njit(parallel=True, cache=True)
def _zero_planes(planes):
    for i in prange(planes.shape[0]):
        planes[i, :] = 0


def touched_zeros(shape, dtype) -> np.ndarray:
    """A zeroed host array whose every page is written now, one z plane per parallel
    iteration (first touch, as the passes split the work).  `np.zeros` leaves pages
    unmapped until written, so an array a pass only reads sparsely (a sprout's age and
    trail, read at endothelium) stays on the shared zero page: on the development VM
    that made `propose_sprouting` 2.8× slower in a run (15.5 against 5.6 ms at 96³);
    on a multi-socket node first touch also puts each plane near the threads using it."""
    a = np.empty(shape, dtype=dtype)
    if a.size:
        _zero_planes(a.reshape(-1, shape[-2] * shape[-1]).view(np.uint8))
    return a


def allocate(name, lattice_id, backend, shape) -> Lattice:
    """Zeroed host arrays (first touched, `touched_zeros`) for every voxel quantity plus
    the per-plane work rows and the event table (one row per event of the schedule,
    one column per z plane)."""
    from .schedule import EVENT_NAMES, event_layout
    arrays = {}
    for key, dtype, n, *_ in VOXEL_ARRAYS:
        arrays[key] = touched_zeros(((n,) if n > 1 else ()) + tuple(shape), dtype)
    arrays["events"] = np.zeros((len(EVENT_NAMES), shape[0]), dtype=np.int64)
    arrays["plane_max"] = np.zeros(shape[0], dtype=np.float32)
    return Lattice(name=name, lattice_id=lattice_id, backend=backend, shape=tuple(shape),
                   arrays=arrays, event_layout=event_layout())


def state_table() -> str:
    """The voxel arrays as a Markdown table (the README shows exactly this)."""
    rows = ["| array | dtype | bytes | process | meaning |", "|---|---|---|---|---|"]
    for name, dtype, n, _, meaning, owner in VOXEL_ARRAYS:
        kind = np.dtype(dtype).name if n == 1 else f"{n} × {np.dtype(dtype).name}"
        rows.append(f"| {name} | {kind} | {np.dtype(dtype).itemsize * n} | {owner} | {meaning} |")
    rows.append(f"| **total** | | **{BYTES_PER_VOXEL}** | | {STATE_BYTES_PER_VOXEL} state + "
                f"{WORK_BYTES_PER_VOXEL} work |")
    return "\n".join(rows) + "\n"


def run_bytes(shape) -> dict[str, int]:
    """Memory a lattice needs: on the compute device and staged on the host."""
    voxels = int(np.prod(shape, dtype=np.int64))
    return {"voxels": voxels,
            "device_bytes": voxels * BYTES_PER_VOXEL,
            "host_bytes": voxels * HOST_SNAPSHOT_BYTES_PER_VOXEL}


def host_bytes_per_voxel(backend: str) -> int:
    """Host memory a run needs per voxel: the initial tissue as it is built (every
    array), a staged snapshot, and on the CPU backends a second allowance for the
    running state (conservative: Numba runs on the arrays it built)."""
    per_voxel = BYTES_PER_VOXEL + HOST_SNAPSHOT_BYTES_PER_VOXEL
    return per_voxel if backend == "cupy" else per_voxel + BYTES_PER_VOXEL


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
