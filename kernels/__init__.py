"""One module per biological process; each kernel has its Numba (CPU) twin here.

Kernels share the vocabulary in `lattice` and the random numbers in `philox`;
`twin.kernel` gives each process one public function for every backend.
"""
