"""Dormancy: solitary tumour cells that neither cycle nor die, until they wake.

A dormant tumour cell (voxel kind DORMANT, `kernels/lattice.py`) is non-cycling and
apoptosis-resistant.  It does not divide (`division` takes live cells only), does not
migrate (`migration` moves motile TUMOR cells only), is not killed by the fate pass
(no apoptosis, no hypoxic necrosis: `fate` takes live cells only) and takes up no more
oxygen than matrix (approx.: quiescent cells respire far less than cycling ones; the
oxygen field gives the voxel the background decay only).  Dividing cells, displaced
functional cells, movers and sprouts never enter its voxel: it is an obstacle, like a
vessel.  The census counts it in its own column, `dormant`.

`stay_dormant_or_wake` — once per step each dormant cell leaves dormancy by one of two
competing risks, waking (rate k_w = `dormancy.wake_per_h`) or dying (rate
k_d = `dormancy.death_per_h`):

    P_wake = k_w/(k_w + k_d) · (1 − exp(−(k_w + k_d) Δt)),
    P_die  = k_d/(k_w + k_d) · (1 − exp(−(k_w + k_d) Δt)).

The host computes both in float64 and tabulates the uint32 thresholds
wake_thr = P_wake · 2³² and wake_or_death_thr = (P_wake + P_die) · 2³² (the two added
before rounding, so the sum never overflows).  The cell draws word 0 of its Philox draw
of stream `dormancy` (12): word < wake_thr → it wakes: it becomes a TUMOR cell with
cycle clock 0 (it re-enters the cycle at its start), keeping its traits and lineage
(event `woke`); else word < wake_or_death_thr → it dies: the voxel becomes empty
matrix and the cell's arrays are cleared (event `dormant_died`; not a vacancy, as for a
tumour cell's apoptosis); else it stays dormant.  So dormant cells before a step equal
dormant cells after it plus `woke` plus `dormant_died`.

Defaults (approx.).  Luzzi et al. 1998 (Am J Pathol 153:865) followed B16F1 cells
injected into the mouse liver's circulation: most arrested and extravasated, only about
1 in 40 extravasated cells had begun to divide by day 3, and about a third of the injected
cells remained as solitary, non-dividing cells at day 13 (most of the loss came early,
around arrest and extravasation).  Naumov et al. 2002 (Cancer Res 62:2162) found solitary
mammary carcinoma cells persisting, non-dividing, in mouse liver for weeks (11 weeks).
Clinically dormancy lasts months to years.  The guesses: k_w = 1e-4 /h (mean dormancy
1e4 h ≈ 14 months) and k_d = 5e-4 /h (a dormant cell's mean survival ≈ 12 weeks; about
40 % survive 11 weeks and 85 % 13 days), so about one dormant cell in six wakes before
it dies.

Arrival: a disseminated cell that extravasates into a site lattice (`engine.body`)
starts dividing at once with probability `dormancy.proliferating_on_arrival` (Luzzi et
al. 1998: about 1 in 40 extravasated cells had begun to divide by day 3) — it settles
as a TUMOR cell with clock 0 — and settles as a DORMANT cell otherwise; one word of
the host's Philox draw of stream `arrival` (15; counter: record id, step, lattice id)
decides (`arrives_dividing`).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import DORMANT, EMPTY, TUMOR, clear_cell, global_index
from .philox import probability_threshold, step_probability, voxel_draw
from .process import Param, Process
from .twin import kernel

DORMANCY = Process(
    "dormancy", "dormancy.cu",
    params={"dormancy": {
        "wake_per_h": Param(
            "float", 1e-4, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) guess: mean dormancy 1e4 h ≈ 14 months; solitary cells stay "
                   "non-dividing for weeks in mice (Luzzi et al. 1998, Am J Pathol 153:865; "
                   "Naumov et al. 2002, Cancer Res 62:2162), months to years clinically; "
                   "bound: a guard"),
        "death_per_h": Param(
            "float", 5e-4, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) mean survival ≈ 12 weeks: most solitary cells persist, some are "
                   "lost (Luzzi et al. 1998; Naumov et al. 2002: persisting at 11 weeks); "
                   "bound: a guard"),
        "proliferating_on_arrival": Param(
            "float", 0.025, lo=0.0, hi=1.0, unit="probability",
            source="a disseminated cell that divides at once: about 1 in 40 extravasated "
                   "cells had begun to divide by day 3 (Luzzi et al. 1998, mouse liver)"),
    }},
    events=("woke", "dormant_died"),
    streams={"dormancy": 12,      # word 0: wake, die or stay
             "arrival": 15})      # host, per arriving cell: word 0 divides at once
STREAM_ARRIVAL = DORMANCY.streams["arrival"]
WOKE, DORMANT_DIED = range(2)

STREAM_DORMANCY = DORMANCY.streams["dormancy"]


def leave_probabilities(wake_per_h, death_per_h, step_h) -> tuple[float, float]:
    """(P_wake, P_die) of one step under the competing risks (float64):
    P_x = k_x/(k_w + k_d) · (1 − exp(−(k_w + k_d) Δt))."""
    total = float(wake_per_h) + float(death_per_h)
    if total <= 0.0:
        return 0.0, 0.0
    leave = float(step_probability(total, step_h))
    return wake_per_h / total * leave, death_per_h / total * leave


@DORMANCY.rules_from
def dormancy_rules(scenario) -> dict:
    """wake_thr = P_wake and wake_or_death_thr = P_wake + P_die as uint32 thresholds;
    arrival_dividing_thr: the threshold of `proliferating_on_arrival` (host draws)."""
    p_wake, p_die = leave_probabilities(scenario["dormancy.wake_per_h"],
                                        scenario["dormancy.death_per_h"], scenario["time.step_h"])
    return {"wake_thr": np.uint32(probability_threshold(p_wake)),
            "wake_or_death_thr": np.uint32(probability_threshold(p_wake + p_die)),
            "arrival_dividing_thr": np.uint32(probability_threshold(
                scenario["dormancy.proliferating_on_arrival"]))}


@DORMANCY.entry("stay_dormant_or_wake")
@numba.njit(parallel=True, cache=True)
def _stay_dormant_or_wake(kind, traits, clock, hypoxia, lineage, motile, wake_thr,
                          wake_or_death_thr, step, events,
                          nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if kind[z, y, x] != DORMANT:
                    continue
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_DORMANCY, lattice_id, k0, k1)[0]
                if word < wake_thr:                      # re-enters the cycle at its start
                    kind[z, y, x] = TUMOR
                    clock[z, y, x] = 0
                    events[WOKE, z] += 1
                elif word < wake_or_death_thr:           # dies
                    kind[z, y, x] = EMPTY
                    clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                    events[DORMANT_DIED, z] += 1


@kernel(reads=("kind",), writes=(), process=DORMANCY)
def wake_dormant(lattice, rules, step):
    """Dormant tumour cells wake (TUMOR, clock 0) or die at competing rates k_w, k_d; the rest stay dormant.

    P_wake = k_w/(k_w + k_d) · (1 − exp(−(k_w + k_d) Δt)), P_die likewise with k_d
    (k_w = `dormancy.wake_per_h`, k_d = `dormancy.death_per_h`)."""
    _stay_dormant_or_wake(lattice, rules, step)
