"""Lysis of necrotic debris: a necrotic core turns back into matrix over days.

Cells that die of hypoxia swell, lyse and are cleared, in tissue mostly by
macrophages.  The model clears the debris of each necrotic voxel at a constant rate
k: every step a necrotic voxel becomes empty matrix with probability

    P = 1 − exp(−k Δt)

(the host turns P into a uint32 threshold; the voxel lyses when its Philox word of
stream `lysis` is below it).  The clone id it kept is forgotten.  The freed voxel is
plain matrix (not a vacancy), which tumour daughters can fill, so a tumour's core can
turn over and its rim refill it.

Default k = 1/1440 /h: PhysiCell's necrosis model (Ghaffarizadeh et al. 2018, PLoS
Comput Biol 14:e1005991) removes a lysed necrotic cell 60 days after it lyses.  In
vascularised tissue macrophages clear debris faster, so this is an upper bound on how
long debris persists (approx.).
"""
from __future__ import annotations

import numba
from numba import prange

from .lattice import EMPTY, NECROTIC, global_index
from .philox import rate_threshold, voxel_draw
from .process import Param, Process
from .twin import kernel

LYSIS = Process(
    "lysis", "lysis.cu", events=("debris_lysed",), streams={"lysis": 8},
    params={"cells": {"debris_clearance_per_h": Param(
        "float", 1.0 / 1440.0, lo=0.0, hi=1e3, unit="1/h",
        source="PhysiCell necrosis model: lysed cells removed after 60 days (approx.)")}})
DEBRIS_LYSED = 0
STREAM_LYSIS = LYSIS.streams["lysis"]


@LYSIS.rules_from
def lysis_rules(scenario) -> dict:
    """lysis_thr: P(lysis within one step) as a uint32 threshold."""
    k, dt = scenario["cells.debris_clearance_per_h"], scenario["time.step_h"]
    return {"lysis_thr": rate_threshold(k, dt)}


@LYSIS.entry("lyse_debris")
@numba.njit(parallel=True, cache=True)
def _lyse_debris(kind, lineage, lysis_thr, step, events,
                 nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != NECROTIC:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                if voxel_draw(g, step, STREAM_LYSIS, lattice_id, k0, k1)[0] < lysis_thr:
                    kind[z, y, x] = EMPTY
                    lineage[z, y, x] = 0
                    events[DEBRIS_LYSED, z] += 1


@kernel(reads=("kind",), writes=(), process=LYSIS)
def lyse_debris(lattice, rules, step):
    """Necrotic debris lyses and is cleared back to matrix at a constant rate."""
    _lyse_debris(lattice, rules, step)
