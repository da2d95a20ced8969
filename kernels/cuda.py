"""Launching the CUDA C kernels: on a GPU through CuPy, or on the CPU through the host harness.

Every `.cu` file in this folder is one process's CUDA twin.  Its entry points are
written once (see `cuda_common.cuh`) and become either CUDA `__global__` kernels
(CuPy `RawModule`, NVRTC with `-fmad=false`) or, compiled by the machine's C++
compiler with `-DOL_HOST_HARNESS -ffp-contract=off`, plain C functions that loop
over every voxel, loaded with ctypes.  The two launchers take the same argument
tuples, so one Python driver per kernel serves both: the `cupy` backend on a GPU,
and the `cuda-host` backend that proves the CUDA logic bit for bit against Numba
on machines without one (CI).
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

KERNEL_DIR = Path(__file__).resolve().parent
SOURCES = tuple(sorted(p.name for p in KERNEL_DIR.glob("*.cu")))
HEADERS = tuple(sorted(p.name for p in KERNEL_DIR.glob("*.cuh")))
NVRTC_OPTIONS = ("-fmad=false", "-std=c++17", f"-I{KERNEL_DIR}")
HOST_FLAGS = ("-x", "c++", "-std=c++17", "-O2", "-ffp-contract=off", "-fno-fast-math",
              "-fPIC", "-shared", "-DOL_HOST_HARNESS")
THREADS_PER_BLOCK = 256

_CTYPES = {np.dtype(np.uint8): ctypes.c_uint8, np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
           np.dtype(np.int64): ctypes.c_int64, np.dtype(np.float32): ctypes.c_float}


def slab_args(lattice, rules) -> tuple:
    """The OL_SLAB_PARAMS every entry point ends with (declared in cuda_common.cuh)."""
    from .process import slab_values
    return slab_values(lattice, rules)


def source_text(name: str) -> str:
    """A `.cu` file as it is compiled: the constants generated from its process's
    declaration (events, streams; `kernels.process`), then the file itself."""
    from .process import c_header_for
    module = f"kernels.{Path(name).stem}"          # its process module, declared there
    if importlib.util.find_spec(module) is not None:
        importlib.import_module(module)
    return ('#include "cuda_common.cuh"\n' + c_header_for(name)
            + f'#line 1 "{name}"\n' + (KERNEL_DIR / name).read_text())


class CupyLauncher:
    """Compiles each source once with NVRTC and launches one thread per voxel."""

    name = "cupy"

    def __init__(self):
        import cupy
        self.cp = cupy
        self.modules = {}
        self.tables = {}

    def module(self, source):
        if source not in self.modules:
            self.modules[source] = self.cp.RawModule(code=source_text(source),
                                                     options=NVRTC_OPTIONS)
        return self.modules[source]

    def launch(self, source, entry, threads, args, block=THREADS_PER_BLOCK):
        if threads == 0:
            return
        kernel = self.module(source).get_function(entry)
        kernel(((int(threads) + block - 1) // block,), (block,), args)

    def table(self, host_array):
        """A rule table on the device (uploaded once per table)."""
        key = id(host_array)
        if key not in self.tables:
            self.tables[key] = (host_array, self.cp.asarray(host_array))
        return self.tables[key][1]

    def zeros(self, shape, dtype):
        return self.cp.zeros(shape, dtype=dtype)

    def upload(self, host_array):
        return self.cp.asarray(host_array)

    def to_host(self, array):
        return self.cp.asnumpy(array)


class HostLauncher:
    """Runs the same entry points on the CPU from a shared library built by the C++ compiler."""

    name = "cuda-host"

    def __init__(self):
        self.lib = ctypes.CDLL(str(build_host_harness()))

    def launch(self, source, entry, threads, args, block=THREADS_PER_BLOCK):
        getattr(self.lib, entry)(*[self._c(a) for a in args])

    @staticmethod
    def _c(a):
        if isinstance(a, np.ndarray):
            if not a.flags.c_contiguous:
                raise ValueError("kernel arrays must be C-contiguous")
            return ctypes.c_void_p(a.ctypes.data)
        return _CTYPES[np.asarray(a).dtype](a)

    def table(self, host_array):
        return np.ascontiguousarray(host_array)

    def zeros(self, shape, dtype):
        return np.zeros(shape, dtype=dtype)

    def upload(self, host_array):
        return np.ascontiguousarray(host_array)

    def to_host(self, array):
        return np.asarray(array)


def compiler() -> str | None:
    """The C++ compiler for the host harness ($CXX, else c++ or g++ on PATH)."""
    for candidate in (os.environ.get("CXX"), "c++", "g++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def private_cache_dir() -> Path:
    """The per-user directory the host harness is built into and loaded from:
    $ONCOLATTICE_CACHE, else $XDG_CACHE_HOME/oncolattice, else ~/.cache/oncolattice;
    created with mode 0700.  A shared library is loaded from it, so it must be the
    user's own and writable by nobody else (never a predictable path in /tmp)."""
    if os.environ.get("ONCOLATTICE_CACHE"):
        cache = Path(os.environ["ONCOLATTICE_CACHE"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        cache = Path(base) / "oncolattice"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_private(cache)
    return cache


def _check_private(path: Path) -> None:
    """Refuse `path` unless the current user owns it and nobody else may write it."""
    st = os.stat(path, follow_symlinks=False)
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise RuntimeError(f"{path}: not private to this user (owner uid {st.st_uid}, mode "
                           f"{st.st_mode & 0o777:o}); refusing to load the CUDA host harness "
                           f"from it (set ONCOLATTICE_CACHE to a directory of your own)")


def build_host_harness() -> Path:
    """Compile every .cu into one shared library (cached by a hash of sources and flags
    in :func:`private_cache_dir`; built under a temporary name, then renamed into place)."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found for the CUDA host harness (set CXX)")
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + source_text(name).encode())
    for name in HEADERS:
        digest.update(name.encode() + b"\0" + (KERNEL_DIR / name).read_bytes())
    digest.update(" ".join((cxx,) + HOST_FLAGS).encode())
    cache = private_cache_dir()
    lib = cache / f"cuda_host_{digest.hexdigest()[:16]}.so"
    if lib.exists():
        _check_private(lib)
        return lib
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        unit = Path(tmp) / "harness.cpp"
        for s in SOURCES:
            (Path(tmp) / s).write_text(source_text(s))
        unit.write_text("".join(f'#include "{Path(tmp) / s}"\n' for s in SOURCES))
        partial = Path(tmp) / lib.name
        proc = subprocess.run([cxx, *HOST_FLAGS, f"-I{KERNEL_DIR}", str(unit), "-o", str(partial)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building the CUDA host harness failed:\n{proc.stderr}")
        os.replace(partial, lib)
    return lib


def draw_words(backend: str, lattice, rules, step: int, stream: int) -> np.ndarray:
    """The four Philox words of every voxel of `lattice` as computed by `backend`'s
    CUDA code: uint32 array (nz, ny, nx, 4) on the host."""
    launch = launcher(backend)
    out = launch.zeros(lattice.shape + (4,), np.uint32)
    launch.launch("rng.cu", "draw_words", lattice.voxels,
                  (out, np.uint32(step), np.uint32(stream), *slab_args(lattice, rules)))
    return launch.to_host(out)


@lru_cache(maxsize=None)
def launcher(backend: str):
    """The launcher of a CUDA backend ('cupy' or 'cuda-host'), created once."""
    return {"cupy": CupyLauncher, "cuda-host": HostLauncher}[backend]()
