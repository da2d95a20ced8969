"""Census: integer counts of voxels by kind and organ, of hypoxic cells and of perfused
vessels, and the largest VEGF concentration (a maximum is exact in any order).

Per z plane the kernel counts voxels of each (kind, organ) and live cells of each
kind whose pO2 is below the hypoxia threshold; the host sums the planes in
order.  Integer sums are exact, so counts agree on every backend and thread count.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .cuda import slab_args
from .lattice import is_live
from .twin import kernel


@numba.njit(parallel=True, cache=True)
def _census_numba(kind, organ, oxygen, perfused, vegf, hypoxic_mmHg, by_kind_organ, hypoxic,
                  perfused_count, vegf_max):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for a in range(by_kind_organ.shape[1]):
            for b in range(by_kind_organ.shape[2]):
                by_kind_organ[z, a, b] = 0
        for a in range(hypoxic.shape[1]):
            hypoxic[z, a] = 0
        perfused_count[z] = 0
        top = np.float32(0.0)
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                by_kind_organ[z, k, organ[z, y, x]] += 1
                if is_live(k) and oxygen[z, y, x] < hypoxic_mmHg:
                    hypoxic[z, k] += 1
                perfused_count[z] += perfused[z, y, x]
                top = max(top, vegf[z, y, x])
        vegf_max[z] = top


@kernel(reads=("kind", "organ", "oxygen", "perfused", "vegf"), writes=())
def take_census(lattice, rules, step):
    """Count voxels by (kind, organ) and hypoxic live cells by kind."""


@take_census.on("numba")
def _take_census(lattice, rules, step):
    n_kinds, n_organs = rules.o2_coeff.shape
    nz = lattice.nz
    by_kind_organ = np.zeros((nz, n_kinds, n_organs), dtype=np.int64)
    hypoxic = np.zeros((nz, n_kinds), dtype=np.int64)
    perfused = np.zeros(nz, dtype=np.int64)
    vegf_max = np.zeros(nz, dtype=np.float32)
    _census_numba(lattice.kind, lattice.organ, lattice.oxygen, lattice.perfused, lattice.vegf,
                  rules.hypoxic_mmHg, by_kind_organ, hypoxic, perfused, vegf_max)
    return (by_kind_organ.sum(axis=0), hypoxic.sum(axis=0), int(perfused.sum()),
            float(vegf_max.max()))


@take_census.cuda
def _take_census_cuda(launch, lattice, rules, step):
    n_kinds, n_labels = rules.o2_coeff.shape
    by_kind_organ = launch.zeros((lattice.nz, n_kinds, n_labels), np.int64)
    hypoxic = launch.zeros((lattice.nz, n_kinds), np.int64)
    perfused = launch.zeros(lattice.nz, np.int64)
    vegf_max_bits = launch.zeros(1, np.uint32)
    launch.launch("census.cu", "take_census", lattice.voxels,
                  (lattice.kind, lattice.organ, lattice.oxygen, lattice.perfused, lattice.vegf,
                   rules.hypoxic_mmHg, np.int32(n_labels), by_kind_organ, hypoxic, perfused,
                   vegf_max_bits, *slab_args(lattice, rules)))
    return (launch.to_host(by_kind_organ).sum(axis=0), launch.to_host(hypoxic).sum(axis=0),
            int(launch.to_host(perfused).sum()),
            float(launch.to_host(vegf_max_bits).view(np.float32)[0]))
