"""Census: integer counts of voxels by kind and organ, of hypoxic cells, of motile tumour
cells and of perfused vessels, and the largest VEGF concentration (a maximum is exact
in any order).

Per z plane the kernel counts voxels of each (kind, organ) and live cells of each
kind whose pO2 is below the hypoxia threshold; the host sums the planes in
order (on an MPI slab its own planes, then over the ranks).  Integer sums are exact, so counts agree on every backend and thread count.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import N_KINDS, is_live
from .process import Process
from .twin import kernel

CENSUS = Process("census", "census.cu")


@numba.njit(inline="always", cache=True)
def float_bits(f):
    """The bits of a float32 (non-negative floats order like their bits)."""
    cell = np.empty(1, dtype=np.float32)
    cell[0] = f
    return cell.view(np.uint32)[0]


@kernel(reads=("kind", "organ", "oxygen", "perfused", "vegf", "motile"), writes=(),
        process=CENSUS)
def take_census(lattice, rules, step):
    """Count voxels by (kind, organ), hypoxic live cells by kind and motile cells; returns
    (by_kind_organ, hypoxic by kind, perfused vessel voxels, largest VEGF, motile cells)."""
    from engine.backend import architecture
    arch = architecture(lattice.backend)
    n_labels = rules.cycle_rate.shape[0]          # one row per organ label (0 = none)
    nz = lattice.nz
    counters = {"by_kind_organ": np.zeros((nz, N_KINDS, n_labels), dtype=np.int64),
                "hypoxic": np.zeros((nz, N_KINDS), dtype=np.int64),
                "perfused_count": np.zeros(nz, dtype=np.int64),
                "motile_count": np.zeros(nz, dtype=np.int64),
                "vegf_max_bits": np.zeros(nz, dtype=np.uint32)}
    counters = {name: arch.to_device(a) for name, a in counters.items()}
    _take_census(lattice, rules, step, n_labels=np.int32(n_labels), **counters)
    owned, domain = lattice.domain.interior, lattice.domain     # a slab's own planes
    out = {name: arch.to_host(a)[owned] for name, a in counters.items()}
    return (domain.sum(out["by_kind_organ"].sum(axis=0)), domain.sum(out["hypoxic"].sum(axis=0)),
            domain.sum(int(out["perfused_count"].sum())),
            float(domain.max(out["vegf_max_bits"].max()).view(np.float32)),
            domain.sum(int(out["motile_count"].sum())))


@CENSUS.entry("take_census")
@numba.njit(parallel=True, cache=True)
def _take_census(kind, organ, oxygen, perfused, vegf, motile, hypoxic_mmHg, n_labels,
                 by_kind_organ, hypoxic, perfused_count, vegf_max_bits, motile_count,
                 nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        top = np.float32(0.0)
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                by_kind_organ[z, k, organ[z, y, x]] += 1
                if is_live(k) and oxygen[z, y, x] < hypoxic_mmHg:
                    hypoxic[z, k] += 1
                perfused_count[z] += perfused[z, y, x] != 0
                motile_count[z] += motile[z, y, x] != 0
                top = max(top, vegf[z, y, x])
        vegf_max_bits[z] = float_bits(top)
