"""Cell fate: hypoxic necrosis and apoptosis of live cells.

For every live cell (functional or tumour), once per step (a dormant cell is not live:
it neither necroses nor dies by apoptosis here; `kernels/dormancy.py` has its fate):

* Necrosis.  A cell whose pO2 is below `necrosis_mmHg` counts one more step of
  hypoxia (`hypoxia` saturates at 255); pO2 at or above the threshold resets the
  count.  When the count reaches `necrosis_steps` (the scenario's necrosis
  delay in hours divided by the step) the cell becomes necrotic debris.
* Apoptosis.  Otherwise the cell dies cleanly with probability
  P = 1 − exp(−k_apo · Δt · m(level)), where k_apo is the baseline rate of its
  cell type and m the apoptosis-resistance multiplier of its trait level (tumour
  cells evade apoptosis).  The host turns P into a uint32 threshold per
  (cell type, level); the cell dies when its Philox word is below it.  Under apoptosis
  reactivation at exposure E the tumour's multiplier is 1 − r·level·(1 − E), its row of
  thresholds handed over per step (`kernels/apoptosis_reactivation.py`).  The voxel
  becomes empty; the space a functional cell leaves is marked as a vacancy
  (`vacancy` = 1) that neighbouring functional cells of its organ refill.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import (APOPTOSIS_RESISTANCE, EMPTY, NECROTIC, TRAIT_LEVELS, TUMOR, clear_cell,
                      global_index, is_live, table_row)
from .philox import rate_threshold, voxel_draw
from .process import Array, Param, Process, float32_of, nonnegative, positive, steps_of
from .twin import kernel

FATE = Process(
    "fate", "fate.cu",
    arrays={"hypoxia": Array(np.uint8, "live cell: consecutive steps below the necrosis pO2"),
            "vacancy": Array(np.uint8, "1: empty space a functional cell left, which its organ "
                                       "refills")},
    params={
        "cells": {
            "necrosis_mmHg": nonnegative(2.5, "mmHg",
                                         "PhysiCell maximal necrosis; clinical cut-off 2.5 mmHg; "
                                         "bound: 1 atm", hi=760.0),
            "necrosis_delay_h": positive(12.0, "h", "(approx.) hours of anoxia before necrosis",
                                         hi=254.0 * 24),
        },
        "tumor": {"apoptosis_per_h": nonnegative(
            0.00319, "1/h", "PhysiCell cancer cell apoptosis 5.31667e-5 /min; bound: a guard "
            "(certain death within a step)", hi=1e3)},
        "tumor.traits": {"apoptosis_resistance_per_level": Param(
            "float", 0.06, lo=0.0, hi=1.0 / 15, unit="per level",
            source="apoptosis rate × (1 − r·level)")},
        "organs": {"apoptosis_per_h": nonnegative(
            0.0005, "1/h", "(approx.) slow physiological turnover; bound: a guard "
            "(certain death within a step)", hi=1e3)},
    },
    events=("apoptosis_tumor", "apoptosis_functional", "necrosis_tumor", "necrosis_functional"),
    streams={"apoptosis": 1})
APOPTOSIS_TUMOR, APOPTOSIS_FUNCTIONAL, NECROSIS_TUMOR, NECROSIS_FUNCTIONAL = range(4)
STREAM_APOPTOSIS = FATE.streams["apoptosis"]


def resistance_multiplier(r: float, reactivation: float = 0.0) -> np.ndarray:
    """m(level) = max(1 − r · level · (1 − E), 0) for levels 0..15 (float64): the tumour's
    apoptosis multiplier, with resistance lowered by apoptosis reactivation at exposure E
    (`kernels/apoptosis_reactivation.py`; E = 0 gives 1 − r · level exactly)."""
    return np.maximum(1.0 - r * np.arange(TRAIT_LEVELS) * (1.0 - reactivation), 0.0)


@FATE.rules_from
def fate_rules(scenario) -> dict:
    """necrosis_mmHg (float32), necrosis_steps (steps of anoxia, 1..255) and
    apoptosis_thr (uint32 [row, resistance level]; row 0 tumour, 1.. organs)."""
    dt, tumor = scenario["time.step_h"], scenario.values["tumor"]
    multiplier = resistance_multiplier(scenario["tumor.traits.apoptosis_resistance_per_level"])
    rates = [[tumor["apoptosis_per_h"] * m for m in multiplier]]
    rates += [[o["apoptosis_per_h"]] * TRAIT_LEVELS for o in scenario.organs]
    return {"necrosis_mmHg": float32_of(scenario["cells.necrosis_mmHg"]),
            "necrosis_steps": steps_of(scenario["cells.necrosis_delay_h"], dt, hi=255),
            "apoptosis_thr": rate_threshold(np.array(rates), dt)}


@FATE.entry("decide_fate")
@numba.njit(parallel=True, cache=True)
def _decide_fate(kind, organ, traits, clock, hypoxia, lineage, motile, vacancy, oxygen,
                 necrosis_mmHg,
                 necrosis_steps, apoptosis_thr, step, events,
                 nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                k = kind[z, y, x]
                if not is_live(k):
                    continue
                tumour = k == TUMOR
                h = np.int64(hypoxia[z, y, x])
                if oxygen[z, y, x] < necrosis_mmHg:
                    h = min(h + 1, 255)
                else:
                    h = 0
                hypoxia[z, y, x] = h
                if h >= necrosis_steps:
                    kind[z, y, x] = NECROTIC
                    keep = lineage[z, y, x]
                    clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                    lineage[z, y, x] = keep
                    events[NECROSIS_TUMOR if tumour else NECROSIS_FUNCTIONAL, z] += 1
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                r = voxel_draw(g, step, STREAM_APOPTOSIS, lattice_id, k0, k1)[0]
                level = traits[APOPTOSIS_RESISTANCE, z, y, x]
                if r < apoptosis_thr[table_row(k, organ[z, y, x]), level]:
                    kind[z, y, x] = EMPTY
                    clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                    if not tumour:
                        vacancy[z, y, x] = 1
                    events[APOPTOSIS_TUMOR if tumour else APOPTOSIS_FUNCTIONAL, z] += 1


@kernel(reads=("kind", "organ", "oxygen", "hypoxia", "traits.apoptosis_resistance"),
        writes=("kind", "hypoxia"), process=FATE)
def decide_fate(lattice, rules, step):
    """Hypoxic necrosis and apoptosis of every live cell for one step (tumour resistance × (1 − E) under apoptosis reactivation E)."""
    from .apoptosis_reactivation import reactivated_apoptosis     # E = 0: no overrides
    _decide_fate(lattice, rules, step, **reactivated_apoptosis(rules, step))
