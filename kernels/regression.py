"""Vessel regression: co-opted vessels inside dense tumour, and vessels without flow, die back.

A tumour grows around the vessels it meets (co-option: daughters never take a vessel
voxel).  A blood vessel voxel is threatened while at least `compressing_neighbours`
of its six face neighbours are tumour cells (compression), or while it carries no
blood (a lumen formed this step carries blood: `lumen`); `vessel_threat` counts its
consecutive threatened steps and resets otherwise.  After
`regression_delay_h` under threat the vessel regresses to empty matrix, which the
tumour can then fill.  Perfusion is recomputed in a step where a vessel regressed,
so flow downstream of a regressed segment stops too: large tumours end with a
hypoxic, necrotic core and a vascular rim.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import EMPTY, TUMOR, VESSEL, neighbour
from .process import Array, Param, Process, positive, steps_of
from .twin import kernel

REGRESSION = Process(
    "regression", "regression.cu", events=("vessel_regressed",),
    arrays={"vessel_threat": Array(np.uint16, "vessel: consecutive steps compressed or without "
                                              "blood")},
    params={"vessels": {
        "compressing_tumor_neighbours": Param(
            "int", 4, lo=1, hi=6, unit="face neighbours",
            source="(approx.) tumour cells that collapse a vessel"),
        "regression_delay_h": positive(
            72.0, "h", "(approx.) co-opted vessels regress within days (Holash 1999)",
            hi=65535.0)}})
VESSEL_REGRESSED = 0


THREAT_NEVER = 65536     # steps the uint16 vessel_threat (saturating at 65535) never reaches


@REGRESSION.rules_from
def regression_rules(scenario) -> dict:
    """regression_compressing (face neighbours) and regression_steps (steps under threat)."""
    return {"regression_compressing": int(scenario["vessels.compressing_tumor_neighbours"]),
            "regression_steps": steps_of(scenario["vessels.regression_delay_h"],
                                         scenario["time.step_h"], hi=THREAT_NEVER)}


@numba.njit(inline="always", cache=True)
def tumour_neighbours(kind, z, y, x, nz, ny, nx):
    n = 0
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if inside and kind[zz, yy, xx] == TUMOR:
            n += 1
    return n


@REGRESSION.entry("regress_vessels")
@numba.njit(parallel=True, cache=True)
def _regress_vessels(kind, perfused, lumen, vessel_threat, regression_compressing,
                     regression_steps, events,
                     nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != VESSEL:
                    continue
                threatened = ((perfused[z, y, x] == 0 and lumen[z, y, x] == 0)
                              or tumour_neighbours(kind, z, y, x, nz, ny, nx)
                              >= regression_compressing)
                if not threatened:
                    vessel_threat[z, y, x] = 0
                    continue
                t = min(np.int64(vessel_threat[z, y, x]) + 1, 65535)
                if t >= regression_steps:
                    kind[z, y, x] = EMPTY            # reading neighbours only ever asks
                    perfused[z, y, x] = 0            # "tumour?", which this never changes
                    vessel_threat[z, y, x] = 0
                    events[VESSEL_REGRESSED, z] += 1
                else:
                    vessel_threat[z, y, x] = t


@kernel(reads=("kind", "perfused", "lumen", "vessel_threat"), writes=("vessel_threat",),
        process=REGRESSION)
def regress_vessels(lattice, rules, step):
    """Compressed or unperfused vessels regress after a delay."""
    _regress_vessels(lattice, rules, step)
