"""Choosing the compute backend: Numba on the CPU, CuPy on a CUDA GPU.

`auto` takes CuPy where a GPU is usable, else Numba.  Asking for `cupy` where it
cannot run is a `BackendUnavailable` error naming the reason.
"""
from __future__ import annotations

import numpy as np

from .errors import BackendUnavailable

BACKENDS = ("auto", "numba", "cupy")


def gpu_status() -> tuple[bool, str]:
    """(usable, reason): whether CuPy can see a CUDA device."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False, "CuPy is not installed (pip install 'oncolattice[gpu]')"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        return False, f"no usable CUDA device ({str(exc).splitlines()[0]})"
    if count < 1:
        return False, "no CUDA device found"
    return True, f"{count} CUDA device(s)"


def select_backend(requested: str) -> str:
    """The backend a run will use, or a one-line error why `requested` cannot run."""
    if requested not in BACKENDS:
        raise BackendUnavailable(f"--backend {requested!r}: choose one of {', '.join(BACKENDS)}")
    if requested == "numba":
        return "numba"
    usable, why = gpu_status()
    if requested == "auto":
        return "cupy" if usable else "numba"
    if not usable:
        raise BackendUnavailable(f"--backend cupy: {why}")
    return "cupy"


def gpu_free_bytes() -> int | None:
    """Free memory of the current CUDA device, or None where there is no GPU."""
    usable, _ = gpu_status()
    if not usable:
        return None
    import cupy
    return int(cupy.cuda.runtime.memGetInfo()[0])


class Architecture:
    """Where a backend keeps its arrays: moving them there and back to the host."""

    def __init__(self, name, to_device, to_host):
        self.name, self.to_device, self.to_host = name, to_device, to_host

    def place(self, lattice):
        """Move a host-built lattice onto this backend."""
        lattice.arrays = {key: self.to_device(a) for key, a in lattice.arrays.items()}
        lattice.backend = self.name
        return lattice


def architecture(name: str) -> Architecture:
    """numba and cuda-host (the CUDA C kernels run on the CPU) keep NumPy arrays;
    cupy keeps CuPy arrays on the GPU."""
    if name == "cupy":
        import cupy
        return Architecture("cupy", cupy.asarray, cupy.asnumpy)
    if name in ("numba", "cuda-host"):
        return Architecture(name, np.ascontiguousarray, np.asarray)
    raise BackendUnavailable(f"unknown backend {name!r}")


def cpu_threads() -> int:
    """Threads Numba runs its parallel loops on (NUMBA_NUM_THREADS, else all cores)."""
    import numba
    return numba.get_num_threads()
