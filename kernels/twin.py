"""One public function per kernel, with one implementation per backend.

Model code calls `relax_oxygen(lattice, rules, step)` and never asks which
backend it runs on: the lattice knows (`lattice.backend`), and the kernel
forwards the call to the implementation registered for it: the Numba twin
(`numba`), or one driver of the CUDA C entry points for both `cupy` (GPU) and
`cuda-host` (the same C code compiled for the CPU).  This is the only place where
the backend is looked at.
"""
from __future__ import annotations

import functools


class Kernel:
    """A biological pass with twin implementations (Numba CPU, CuPy CUDA).

    `reads` and `writes` name the voxel arrays every voxel of the pass touches
    (`traits.proliferation` is one trait plane); sparse accesses, such as the
    few voxels where a cell is born, are not listed.  The benchmark turns them
    into bytes moved per voxel."""

    def __init__(self, fn, reads=(), writes=(), process=None):
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.name = fn.__name__
        self.reads, self.writes = tuple(reads), tuple(writes)
        self.process = process
        self.implementations = {}

    def on(self, backend: str):
        """Register `impl(lattice, rules, step)` as this kernel on `backend`."""
        def register(impl):
            self.implementations[backend] = impl
            return impl
        return register

    def cuda(self, driver):
        """Register `driver(launcher, lattice, rules, step)`, which launches this
        kernel's CUDA C entry points, for the `cupy` backend (GPU) and the
        `cuda-host` backend (the same C code on the CPU)."""
        from .cuda import launcher
        for backend in ("cupy", "cuda-host"):
            self.implementations[backend] = (
                lambda lattice, rules, step, b=backend: driver(launcher(b), lattice, rules, step))
        return driver

    def __call__(self, lattice, rules, step):
        impl = self.implementations.get(lattice.backend)
        if impl is None:
            if self.implementations:
                raise NotImplementedError(
                    f"kernel {self.name!r} has no {lattice.backend!r} implementation")
            return self.fn(lattice, rules, step)      # written once over process entries
        return impl(lattice, rules, step)


def kernel(*, reads=(), writes=(), process=None):
    """Declare a pass: the decorated function carries the name and the docstring (the
    rule) and, where it calls its process's entries (`kernels.process`), is the pass
    itself on every backend; `reads`/`writes` list the voxel arrays it streams through;
    `process` is the `Process` whose events and streams it uses."""
    return lambda fn: Kernel(fn, reads, writes, process)
