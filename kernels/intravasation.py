"""Vessel invasion (intravasation): motile tumour cells enter blood and lymph vessels.

A motile tumour cell (`motile` = 1, `kernels.migration`) that touches a vessel across a
face may cross its wall and leave the lattice for the circulation.  Which vessels it
touches sets its rate:

* a perfused mature blood vessel (VESSEL, `sprout_age` = 0: there before the run, with
  pericytes and a basement membrane) — k_m = `intravasation.mature_blood_per_h`;
* a perfused new blood vessel (VESSEL with `sprout_age` > 0: lumenised from a sprout
  during the run, `kernels.angiogenesis` keeps the sprout's age when a tip fuses or a
  stalk gets its lumen) — leaky, with few pericytes and no basement membrane yet,
  k_s = `intravasation.sprout_blood_per_h`;
* a lymphatic vessel (LYMPH; initial lymphatics have open junctions and no continuous
  basement membrane) — k_l = `intravasation.lymph_per_h`.

Unperfused blood vessels, stalks and tips (no lumen, no flow) offer no way in.

1. `choose_vessel_entry` — each motile tumour cell with the set V of vessel classes
   around it enters *on its own draw* with

       P = 1 − exp(−k Δt),   k = max_{v ∈ V} k_v,

   the highest rate of the vessels it touches (the most permeable wall it can reach
   decides; the walls are not independent exits, so the rates are not summed).  The
   host tabulates P as a uint32 threshold per set V (`intravasation_thr`, 8 rows: bit 0
   mature blood, bit 1 new blood, bit 2 lymph); the cell compares word 0 of its Philox
   draw of stream `intravasate` (counter: global index, step, lattice id).  Its route
   is blood if V holds blood vessels only, lymph if lymph only, and if both are
   adjacent, blood when word 1 < 2³² · k_b / (k_b + k_l) (k_b: the highest blood rate
   in V; `blood_route_thr`, uint64 so that certainty is exact).  Under anti-metastatic
   exposure E the entry rates are × (1 − E) (`intravasation_thr` handed over per step,
   `kernels/antimetastatic.py`; the route shares are unchanged).
   *Collective entry*: a motile tumour cell that does not enter on its own draw is
   carried along when a face neighbour of the same lineage (clone) that is itself a
   motile tumour cell enters on its own draw: it takes the route of the first such
   neighbour in direction order −x, +x, −y, +y, −z, +z.  A cell reads only its
   neighbours' draws and the vessels around them (reads reach two voxels), and writes
   only its own `departure` (0 stays, 1 blood, 2 lymph): a gather, no races.  Carrying
   reaches one face step from a cell that enters on its own: a cluster grows along the
   vessel wall, where several cells enter on their own draws, not deep into the tissue.
2. `leave_lattice` — every departing voxel becomes empty matrix and forgets its cell
   (traits, clock, hypoxia, lineage, motile → 0; not a vacancy: organ cells do not refill
   it).

`intravasate` runs 1, gathers the departing cells on the host (the Departures record, a
DEPARTURE_DTYPE array in global index order: position, route, vessel kind, lineage,
traits, and their clusters: departing cells of one route and one lineage joined through
faces), then runs 2, and returns the record (`Simulation.departures` keeps the last
step's for the circulation pool).  Events: `intravasated_blood`, `intravasated_lymph`
(cells, carried ones included).  Stream: `intravasate` (11: word 0 entry, word 1 route).

Scale check: the quickstart sheds about 123 cells in its first 48 h from a tumour of
about 1.2e4 voxels of (20 µm)³, some 7e5 cells per gram per day
(`shedding_per_g_per_day`); Butler & Gullino (1975, Cancer Res 35:512) measured about
3e6 cells per gram per day in the efferent blood of rat mammary carcinomas: the
guessed rates give the right order of magnitude, not a fit.

Limit: a stalk laid in the very step its sprout is lumenised by a neighbouring fusion
keeps `sprout_age` 0 (a tip moves in its first step with age 0), so that rare voxel
counts as mature.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .lattice import EMPTY, LYMPH, N_TRAITS, TUMOR, VESSEL, clear_cell, global_index, neighbour
from .philox import rate_threshold, voxel_draw
from .process import Array, Param, Process
from .twin import kernel

STAY, BLOOD, LYMPHATIC = 0, 1, 2           # departure codes (routes)
MATURE_BIT, NEW_BIT, LYMPH_BIT = 1, 2, 4    # vessel classes around a cell
N_VESSEL_SETS = 8

INTRAVASATION = Process(
    "intravasation", "intravasation.cu",
    arrays={"departure": Array(np.uint8, "work: a cell's route out this step (0 stays, 1 blood, "
                                         "2 lymph)", work=True)},
    params={"intravasation": {
        "mature_blood_per_h": Param(
            "float", 0.02, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) a guess: no per-cell rate has been measured; intravital imaging "
                   "shows entry into mature vessels is rare and needs help (perivascular "
                   "macrophages, Harney et al. 2015); a motile cell beside a perfused mature "
                   "capillary enters in about 2 days; bound: a guard"),
        "sprout_blood_per_h": Param(
            "float", 0.15, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) 7.5 × mature, a guess: tumour neovessels are leaky, with sparse, "
                   "loosely attached pericytes and a defective basement membrane (Hashizume "
                   "et al. 2000, Am J Pathol 156:1363; Morikawa et al. 2002); bound: a guard"),
        "lymph_per_h": Param(
            "float", 0.05, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) a guess: initial lymphatics have no continuous basement "
                   "membrane and open button-like junctions (Baluk et al. 2007, J Exp Med "
                   "204:2349), so entry is easier than into mature blood vessels; bound: a guard"),
    }},
    events=("intravasated_blood", "intravasated_lymph"),
    streams={"intravasate": 11})     # word 0: enter, word 1: route (blood or lymph)
INTRAVASATED_BLOOD, INTRAVASATED_LYMPH = range(2)
STREAM_INTRAVASATE = INTRAVASATION.streams["intravasate"]


def vessel_set_rates(scenario) -> tuple[np.ndarray, np.ndarray]:
    """(k_b, k_l) per vessel set V (0..7): the highest blood rate and the lymph rate (1/h)
    of the vessels present, 0 where none."""
    p = scenario.values["intravasation"]
    sets = np.arange(N_VESSEL_SETS)
    blood = np.maximum(np.where(sets & MATURE_BIT, p["mature_blood_per_h"], 0.0),
                       np.where(sets & NEW_BIT, p["sprout_blood_per_h"], 0.0))
    lymph = np.where(sets & LYMPH_BIT, p["lymph_per_h"], 0.0)
    return blood, lymph


def entry_rates(scenario) -> np.ndarray:
    """k = max(k_b, k_l) per vessel set V (1/h, float64): the rate intravasation_thr is
    made of (anti-metastatic therapy scales it, `kernels/antimetastatic.py`)."""
    return np.maximum(*vessel_set_rates(scenario))


@INTRAVASATION.rules_from
def intravasation_rules(scenario) -> dict:
    """intravasation_thr (uint32 [vessel set]: P = 1 − exp(−max(k_b, k_l) Δt)) and
    blood_route_thr (uint64 [vessel set]: 2³² · k_b/(k_b + k_l), used where both are
    adjacent)."""
    blood, lymph = vessel_set_rates(scenario)
    total = blood + lymph
    share = np.divide(blood, total, out=np.zeros_like(total), where=total > 0)
    return {"intravasation_thr": rate_threshold(entry_rates(scenario), scenario["time.step_h"]),
            "blood_route_thr": np.array([round(s * 2.0**32) for s in share], dtype=np.uint64)}


# -- 1. choose a vessel to enter (a gather over two voxels) -------------------------------

@numba.njit(inline="always", cache=True)
def vessels_around(kind, perfused, sprout_age, z, y, x, nz, ny, nx):
    """The set V of vessel classes at the cell's faces: bit 0 perfused mature blood
    vessel, bit 1 perfused new blood vessel, bit 2 lymphatic."""
    found = 0
    for d in range(1, 7):
        zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
        if not inside:
            continue
        k = kind[zz, yy, xx]
        if k == VESSEL and perfused[zz, yy, xx] != 0:
            found |= NEW_BIT if sprout_age[zz, yy, xx] > 0 else MATURE_BIT
        elif k == LYMPH:
            found |= LYMPH_BIT
    return found


@numba.njit(inline="always", cache=True)
def is_mover(kind, motile, z, y, x):
    """A motile tumour cell: the only cells that cross a vessel wall."""
    return kind[z, y, x] == TUMOR and motile[z, y, x] != 0


@numba.njit(inline="always", cache=True)
def enters_on_own(kind, perfused, sprout_age, motile, z, y, x, intravasation_thr,
                  blood_route_thr, step, nz, ny, nx, z0, ny_global, nx_global, lattice_id,
                  k0, k1):
    """The route (BLOOD or LYMPHATIC) by which the cell at (z, y, x) enters a vessel on its
    own draw this step, or STAY."""
    if not is_mover(kind, motile, z, y, x):
        return STAY
    found = vessels_around(kind, perfused, sprout_age, z, y, x, nz, ny, nx)
    if found == 0:
        return STAY
    g = global_index(z, y, x, z0, ny_global, nx_global)
    draw = voxel_draw(g, step, STREAM_INTRAVASATE, lattice_id, k0, k1)
    if draw[0] >= intravasation_thr[found]:
        return STAY
    if (found & LYMPH_BIT) == 0:
        return BLOOD
    if (found & (MATURE_BIT | NEW_BIT)) == 0:
        return LYMPHATIC
    return BLOOD if np.uint64(draw[1]) < blood_route_thr[found] else LYMPHATIC


@INTRAVASATION.entry("choose_vessel_entry")
@numba.njit(parallel=True, cache=True)
def _choose_vessel_entry(kind, perfused, sprout_age, motile, lineage, departure,
                         intravasation_thr, blood_route_thr, step, events,
                         nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                departure[z, y, x] = STAY
                if not is_mover(kind, motile, z, y, x):
                    continue
                route = enters_on_own(kind, perfused, sprout_age, motile, z, y, x,
                                      intravasation_thr, blood_route_thr, step, nz, ny, nx,
                                      z0, ny_global, nx_global, lattice_id, k0, k1)
                d = 1
                while route == STAY and d <= 6:            # carried along by a clone mate
                    zz, yy, xx, inside = neighbour(z, y, x, d, nz, ny, nx)
                    if inside and lineage[zz, yy, xx] == lineage[z, y, x]:
                        route = enters_on_own(kind, perfused, sprout_age, motile, zz, yy, xx,
                                              intravasation_thr, blood_route_thr, step,
                                              nz, ny, nx, z0, ny_global, nx_global,
                                              lattice_id, k0, k1)
                    d += 1
                if route != STAY:
                    departure[z, y, x] = route
                    events[INTRAVASATED_BLOOD if route == BLOOD else INTRAVASATED_LYMPH, z] += 1


# -- 2. leave the lattice -----------------------------------------------------------------

@INTRAVASATION.entry("leave_lattice")
@numba.njit(parallel=True, cache=True)
def _leave_lattice(kind, traits, clock, hypoxia, lineage, motile, vacancy, departure,
                   nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                if departure[z, y, x] == STAY:
                    continue
                kind[z, y, x] = EMPTY                     # matrix, not a vacancy
                clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                vacancy[z, y, x] = 0


# -- the departing cells, on the host -----------------------------------------------------

DEPARTURE_DTYPE = np.dtype([("z", np.int32), ("y", np.int32), ("x", np.int32),
                            ("route", np.uint8), ("vessel", np.uint8), ("lineage", np.uint16),
                            ("traits", np.uint8, (N_TRAITS,)), ("cluster", np.int32),
                            ("cluster_size", np.int32)])


def host_copier(lattice):
    """Copies arrays of the lattice's backend to the host (NumPy)."""
    from engine.backend import architecture
    return architecture(lattice.backend).to_host


def entries_counted(lattice) -> int:
    """Cells counted so far in the intravasation events (a few int64 to the host), on
    every slab of the lattice."""
    events = host_copier(lattice)(lattice.events[lattice.event_rows(INTRAVASATION)])
    return lattice.domain.sum(int(events[:, lattice.domain.interior].sum()))


def departures_of(lattice) -> np.ndarray:
    """The cells marked in `departure`, as a DEPARTURE_DTYPE array sorted by global index
    (only the few departing voxels travel to the host; on an MPI slab those of its own
    planes, then every slab's in rank order, which is global index order)."""
    out = lattice.domain.concatenate(owned_departures(lattice))
    label_clusters(out)
    return out


def owned_departures(lattice) -> np.ndarray:
    """The departing cells of the planes this slab owns, without clusters."""
    to_host = host_copier(lattice)
    owned = lattice.domain.interior
    marked = lattice.departure[owned]
    where = marked.nonzero()                            # C order: global index order
    out = np.zeros(len(where[0]), dtype=DEPARTURE_DTYPE)
    if len(out) == 0:
        return out
    at = (where[0] + owned.start, where[1], where[2])    # local planes, on the device
    z, y, x = (to_host(w) for w in at)
    out["z"], out["y"], out["x"] = z + lattice.z0, y, x
    out["route"] = to_host(lattice.departure[at])
    out["vessel"] = np.where(out["route"] == BLOOD, VESSEL, LYMPH)
    out["lineage"] = to_host(lattice.lineage[at])
    out["traits"] = to_host(lattice.traits[(slice(None),) + at]).T
    return out


def label_clusters(cells: np.ndarray) -> None:
    """Fill `cluster` and `cluster_size`: departing cells of one route and one lineage
    joined through faces form one cluster (union–find), numbered 0.. in the order of each
    cluster's lowest global index (cells sorted by global index)."""
    parent = list(range(len(cells)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row = {(int(c["z"]), int(c["y"]), int(c["x"])): i for i, c in enumerate(cells)}
    for i, c in enumerate(cells):
        z, y, x = int(c["z"]), int(c["y"]), int(c["x"])
        for other in ((z + 1, y, x), (z, y + 1, x), (z, y, x + 1)):
            j = row.get(other)
            if (j is not None and cells["route"][j] == c["route"]
                    and cells["lineage"][j] == c["lineage"]):
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)
    roots = [root(i) for i in range(len(cells))]
    number = {}
    for r in roots:                                  # first seen = lowest global index
        number.setdefault(r, len(number))
    cells["cluster"] = [number[r] for r in roots]
    sizes = np.bincount(cells["cluster"], minlength=len(number))
    cells["cluster_size"] = sizes[cells["cluster"]]


def shedding_per_g_per_day(departures, tumour_cells, voxel_um, step_h) -> float:
    """Cells shed into vessels per gram of tumour per day in one step:
    n / (N_tumour · h³ · 1 g/cm³) · (24 h / Δt), one tumour cell per voxel of edge h."""
    if tumour_cells <= 0:
        raise ValueError("shedding rate of a lattice without tumour cells")
    grams = tumour_cells * (voxel_um * 1e-4) ** 3 * 1.0       # cm³ × 1 g/cm³
    return len(departures) / grams * (24.0 / step_h)


# -- the pass -----------------------------------------------------------------------------

@kernel(reads=("kind", "perfused", "sprout_age", "motile", "lineage"), writes=("departure",),
        process=INTRAVASATION)
def intravasate(lattice, rules, step):
    """Motile tumour cells beside a perfused blood vessel or a lymphatic enter it with P = 1 − exp(−k Δt) (k: the most permeable wall they touch; × (1 − E) under anti-metastatic exposure E), carrying clone mates along.

    Returns the departing cells (`Departures`, DEPARTURE_DTYPE)."""
    from .antimetastatic import blocked_intravasation     # E = 0: no overrides
    before = entries_counted(lattice)
    _choose_vessel_entry(lattice, rules, step, **blocked_intravasation(rules, step))
    if entries_counted(lattice) == before:
        return np.zeros(0, dtype=DEPARTURE_DTYPE)
    departures = departures_of(lattice)
    _leave_lattice(lattice, rules, step)
    return departures
