"""Domain decomposition: a lattice split into z slabs, one per MPI rank.

Rank r of R holds the global planes [lo, hi) of a lattice of nz planes (the first
nz mod R ranks one plane more), plus up to HALO + GUARD planes of each neighbour's
slab (fewer at the lattice's own faces).  Its arrays are a lattice of their own whose
plane 0 sits at global plane z0 = lo − (halo below); kernels compute every plane they
hold with the global voxel index in their Philox counters, so a voxel's random
numbers do not depend on the split.

Why slabs along z: arrays are C order [z, y, x], so a slab and its halo planes are
contiguous blocks of every array (no packing for single-plane arrays), the CUDA
kernels and Numba plane loops need no change, and a rank exchanges with at most two
neighbours.  A pencil or block split would exchange less per voxel on very many
ranks (surface/volume), at the cost of strided halos on six faces; with one rank per
GPU and lattices of 256–1024 planes the slab is at least 32 planes thick on 8–32 GPUs
(BENCHMARKS.md: bytes per step against interconnect bandwidth).

The rule that makes every slab compute exactly what the whole lattice would: every
kernel entry is a gather with a dependency radius of one voxel and writes at most one
voxel beyond its own (a daughter, a swap), so after an entry its results are exact
on every plane at distance ≥ 2 from a cut; the planes an entry writes (the non-const
pointers of its `.cu` prototype that are lattice arrays) are then refreshed from
their owners (`exchange`), before the next entry reads them.  HALO = 2 covers
radius 1 + reach 1.  Beyond the halo each slab holds one GUARD plane that is never
refreshed: a claim refreshed from its owner may point one plane further out (a mover
the owner holds), and the guard keeps every such pointer inside the slab's arrays;
the guard itself holds only what the slab computed there, whose pointers stay inside.  Loops inside a pass (field sweeps, flood fills, sub-steps)
exchange after each entry call and reduce their stopping tests over all ranks, so
they stop after the same sweep everywhere.  Event counters, the census, departures
and the residuals count only owned planes, then are summed over ranks (integers:
exact) or maximised (exact).  Host code that needs a whole lattice (extravasation,
colonies, adoptive transfer, snapshots) gathers it; every rank then takes the same
decision and writes the voxels it holds.

`Whole` is the decomposition of a lattice held by one process: every method is the
identity, and no MPI is imported.
"""
from __future__ import annotations

import os

import numpy as np

from .errors import UserError

HALO = 2          # planes of each neighbour's slab a rank refreshes (radius 1 + reach 1)
GUARD = 1         # one more plane beyond them, computed locally and never refreshed
# What MPI launchers (mpiexec, srun) set in every rank's environment: MPICH, Intel MPI and
# Slurm's PMI-2 (PMI_*), PMIx, Open MPI, MVAPICH2.
LAUNCHER_RANK = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
LAUNCHER_SIZE = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_by_mpi() -> bool:
    """Whether this process was started by mpiexec/srun with an MPI launcher's
    environment (then mpi4py is required; without it a plain process)."""
    return any(v in os.environ for v in LAUNCHER_RANK + LAUNCHER_SIZE)


def launcher_rank() -> int:
    """This process's rank as its launcher says (0 without a launcher), readable before
    MPI is initialised."""
    return next((int(os.environ[v]) for v in LAUNCHER_RANK
                 if os.environ.get(v, "").isdigit()), 0)


def launched_size() -> int | None:
    """Ranks the launcher says it started (None: unknown or no launcher)."""
    return next((int(os.environ[v]) for v in LAUNCHER_SIZE
                 if os.environ.get(v, "").isdigit()), None)


def world():
    """The MPI world communicator where this process is one of several ranks, else None.

    A process started by mpiexec without mpi4py installed is a one-line error (unless
    the launcher says it started one rank): it would otherwise do the whole work once
    per rank, every rank writing the same files."""
    if not launched_by_mpi():
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        size = launched_size()
        if size == 1:
            return None
        ranks = f"one of {size}" if size else "one of several"
        raise UserError(f"launched as {ranks} MPI ranks but mpi4py is not installed: pip "
                        f"install mpi4py (mpi4py mpich on a laptop), or run without "
                        f"mpiexec") from None
    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


COLLECTIVE = {"comm": None}    # set once the ranks of an MPI run depend on each other


def depend_on_each_other(comm) -> None:
    """From here on the ranks wait for each other: every rank has passed the checks
    that every rank makes alike (so a bad input ended them all with one line), and a
    failure on one rank must now abort all (`engine.cli.main`)."""
    comm.Barrier()
    COLLECTIVE["comm"] = comm


def split(nz: int, ranks: int) -> list[tuple[int, int]]:
    """[lo, hi) planes of each rank: nz // R each, the first nz mod R ranks one more."""
    base, extra = divmod(nz, ranks)
    bounds, lo = [], 0
    for r in range(ranks):
        hi = lo + base + (1 if r < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def check_split(key: str, nz: int, ranks: int) -> None:
    """Refuse a lattice too thin for its ranks: each slab needs HALO + GUARD planes (the
    planes a neighbour refreshes come from one slab)."""
    least = HALO + GUARD
    if ranks > 1 and nz < ranks * least:
        raise UserError(f"{key}: {nz} planes along z cannot be split over {ranks} MPI ranks "
                        f"(each rank needs at least {least} planes; use at most "
                        f"{max(1, nz // least)} ranks)")


class Whole:
    """A lattice held whole by one process: no halos, no neighbours, no reductions."""

    rank, size = 0, 1
    below = above = 0
    root = True
    bytes_exchanged = messages = 0
    exchange_s = 0.0

    def __init__(self, nz: int):
        self.nz = nz
        self.lo, self.hi = 0, nz

    @property
    def z0(self) -> int:
        return self.lo - self.below

    @property
    def local_nz(self) -> int:
        return self.hi - self.lo + self.below + self.above

    @property
    def interior(self) -> slice:
        """Local planes this rank owns."""
        return slice(self.below, self.below + self.hi - self.lo)

    def holds(self, z: int) -> bool:
        """Whether global plane z is among this rank's local planes (owned or halo)."""
        return self.z0 <= z < self.z0 + self.local_nz

    def owns(self, z: int) -> bool:
        return self.lo <= z < self.hi

    def exchange(self, lattice, names, depth: int = HALO) -> None:
        """Refresh the `depth` planes beyond the slab of the named arrays from their
        owners."""

    def sum(self, value):
        return value

    def max(self, value):
        return value

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def gather(self, array, to_all: bool = True):
        """The whole lattice of a voxel array on the host (z is its third-last axis);
        with to_all False only the root gets it (others None)."""
        return array

    def concatenate(self, rows: np.ndarray) -> np.ndarray:
        """Every rank's rows, in rank order (= global z order)."""
        return rows

    def __reduce__(self):                 # pickled (a checkpoint): the whole lattice
        return (Whole, (self.nz,))


class Slab(Whole):
    """Rank `comm.rank`'s slab of a lattice of `nz` planes, with halos of HALO planes."""

    def __init__(self, nz: int, comm):
        super().__init__(nz)
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.root = self.rank == 0
        self.bounds = split(nz, self.size)
        self.lo, self.hi = self.bounds[self.rank]
        self.below = min(HALO + GUARD, self.lo)        # local planes under the slab
        self.above = min(HALO + GUARD, nz - self.hi)   # and over it
        self.cuda_aware = cuda_aware_mpi()
        self.bytes_exchanged = 0       # halo bytes this rank sent (the MPI benchmark)
        self.messages = 0
        self.exchange_s = 0.0

    # -- halos ------------------------------------------------------------------------

    def exchange(self, lattice, names, depth: int = HALO) -> None:
        import time
        started = time.perf_counter()
        for name in names:
            self._exchange_array(lattice.arrays[name], depth)
        self.exchange_s += time.perf_counter() - started

    def _planes(self, a, start, stop):
        return a[..., start:stop, :, :]

    def _exchange_array(self, a, depth: int) -> None:
        """Send my first and last `depth` owned planes to the neighbours below and above;
        receive theirs into the `depth` planes next to my own (host buffers).  Depth
        HALO refreshes the halo; HALO + GUARD the guard too (only for arrays that hold
        no directions: `flood`)."""
        start, stop = self.interior.start, self.interior.stop
        down = self.rank - 1 if self.lo > 0 else None
        up = self.rank + 1 if self.hi < self.nz else None
        up_n, down_n = min(depth, self.above), min(depth, self.below)
        for dest, source, sent, into in (
                (up, down, (stop - up_n, stop), (start - down_n, start)),        # upward
                (down, up, (start, start + down_n), (stop, stop + up_n))):       # downward
            self._shift(a, dest, sent, source, into)

    def _shift(self, a, dest, sent, source, into) -> None:
        """One step of the exchange: planes `sent` to rank `dest`, planes `into` from
        rank `source` (None: no such neighbour)."""
        from mpi4py import MPI
        xp = np if isinstance(a, np.ndarray) or not self.cuda_aware else _cupy()
        to_host, to_device = _movers(a) if xp is np else ((lambda v: v), (lambda v: v))
        send = (xp.ascontiguousarray(to_host(self._planes(a, *sent))) if dest is not None
                else xp.zeros(0, np.uint8))
        recv = (xp.empty(self._planes(a, *into).shape, dtype=a.dtype) if source is not None
                else xp.zeros(0, np.uint8))
        if xp is not np:                # device buffers: the copies must be done first
            xp.cuda.get_current_stream().synchronize()
        self.comm.Sendrecv(send, dest=MPI.PROC_NULL if dest is None else dest, sendtag=7,
                           recvbuf=recv, source=MPI.PROC_NULL if source is None else source,
                           recvtag=7)
        self.bytes_exchanged += send.nbytes
        self.messages += dest is not None
        if source is not None:
            self._planes(a, *into)[...] = to_device(recv)

    # -- reductions -------------------------------------------------------------------

    def sum(self, value):
        """Sum over ranks (integers and integer arrays: exact in any order)."""
        from mpi4py import MPI
        if isinstance(value, np.ndarray):
            out = np.empty_like(value)
            self.comm.Allreduce(np.ascontiguousarray(value), out, op=MPI.SUM)
            return out
        return type(value)(self.comm.allreduce(value, op=MPI.SUM))

    def max(self, value):
        from mpi4py import MPI
        return type(value)(self.comm.allreduce(value, op=MPI.MAX))

    def any(self, flag: bool) -> bool:
        from mpi4py import MPI
        return bool(self.comm.allreduce(int(bool(flag)), op=MPI.MAX))

    # -- gathers ----------------------------------------------------------------------

    def gather(self, array, to_all: bool = True):
        to_host, _ = _movers(array)
        own = to_host(self._planes(array, self.interior.start, self.interior.stop))
        z_first = np.ascontiguousarray(np.moveaxis(own, -3, 0))
        shape = (self.nz,) + z_first.shape[1:]
        per_plane = int(np.prod(z_first.shape[1:], dtype=np.int64))
        counts = [(hi - lo) * per_plane for lo, hi in self.bounds]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
        if not to_all and not self.root:
            self.comm.Gatherv(z_first, None, root=0)
            return None
        whole = np.empty(shape, dtype=z_first.dtype)
        spec = [whole, (counts, offsets)]
        if to_all:
            self.comm.Allgatherv(z_first, spec)
        else:
            self.comm.Gatherv(z_first, spec, root=0)
        return np.moveaxis(whole, 0, -3)

    def concatenate(self, rows: np.ndarray) -> np.ndarray:
        parts = self.comm.allgather(rows)
        return np.concatenate(parts) if parts else rows



# The switches that turn on GPU buffers in the common MPI libraries (Cray MPICH, MPICH,
# Open MPI, MVAPICH2); mpi4py has no portable query for CUDA support.
CUDA_AWARE_ENV = {"MPICH_GPU_SUPPORT_ENABLED": "1", "MPIR_CVAR_ENABLE_GPU": "1",
                  "OMPI_MCA_opal_cuda_support": "true", "MV2_USE_CUDA": "1"}


def cuda_aware_mpi() -> bool:
    """Whether halos may go to MPI as GPU buffers: the MPI library's own GPU switch is
    set (CUDA_AWARE_ENV) and ONCOLATTICE_HOST_HALOS is not 1.  The PyPI wheels are not
    CUDA-aware; then halos go through host buffers."""
    if os.environ.get("ONCOLATTICE_HOST_HALOS") == "1":
        return False
    return any(os.environ.get(k, "").lower() == v for k, v in CUDA_AWARE_ENV.items())


def _cupy():
    import cupy
    return cupy


def use_rank_gpu(comm) -> int:
    """One GPU per rank: the ranks of a node take its visible devices in turn (rank on
    the node mod device count; with CUDA_VISIBLE_DEVICES set per rank, device 0)."""
    from mpi4py import MPI
    cupy = _cupy()
    local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
    device = local % cupy.cuda.runtime.getDeviceCount()
    cupy.cuda.Device(device).use()
    return device


def _movers(a):
    """(to host, to the array's device) for a NumPy or CuPy array."""
    if isinstance(a, np.ndarray):
        return (lambda v: v), (lambda v: v)
    import cupy
    return cupy.asnumpy, cupy.asarray


def decomposition(nz: int, comm=None) -> Whole:
    """The decomposition of a lattice of nz planes over `comm` (None: whole)."""
    return Whole(nz) if comm is None else Slab(nz, comm)
