"""Choosing the compute backend: Numba on the CPU, CuPy on a CUDA GPU.

`auto` takes CuPy where a GPU is usable and the CUDA kernels are available,
else Numba.  Asking for `cupy` where it cannot run is a `BackendUnavailable`
error naming the reason.
"""
from __future__ import annotations

import os

from .errors import BackendUnavailable

BACKENDS = ("auto", "numba", "cupy")
# Backends whose kernels are implemented in this version.
IMPLEMENTED = ("numba",)


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
        return "cupy" if usable and "cupy" in IMPLEMENTED else "numba"
    if not usable:
        raise BackendUnavailable(f"--backend cupy: {why}")
    if "cupy" not in IMPLEMENTED:
        raise BackendUnavailable("--backend cupy: this version has no CUDA kernels yet; "
                                 "use --backend numba")
    return "cupy"


def cpu_threads() -> int:
    """Threads Numba runs its parallel loops on (NUMBA_NUM_THREADS, else all cores)."""
    import numba
    return numba.get_num_threads() if "NUMBA_NUM_THREADS" in os.environ else numba.config.NUMBA_NUM_THREADS
