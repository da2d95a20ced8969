"""One public function per kernel, with one implementation per backend.

Model code calls `relax_oxygen(lattice, rules, step)` and never asks which
backend it runs on: the lattice knows (`lattice.backend`), and the kernel
forwards the call to the implementation registered for it.  This is the only
place where the backend is looked at.
"""
from __future__ import annotations

import functools


class Kernel:
    """A biological pass with twin implementations (Numba CPU, CuPy CUDA)."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.name = fn.__name__
        self.implementations = {}

    def on(self, backend: str):
        """Register `impl(lattice, rules, step)` as this kernel on `backend`."""
        def register(impl):
            self.implementations[backend] = impl
            return impl
        return register

    def __call__(self, lattice, rules, step):
        try:
            impl = self.implementations[lattice.backend]
        except KeyError:
            raise NotImplementedError(
                f"kernel {self.name!r} has no {lattice.backend!r} implementation") from None
        return impl(lattice, rules, step)


def kernel(fn):
    """Declare a kernel: `fn` carries the name and the docstring (the rule)."""
    return Kernel(fn)
