"""Radiotherapy: fractions of ionising radiation kill cells by linear–quadratic survival,
less where tissue is hypoxic.

A fraction of physical dose D (Gy) is delivered to a region of the lattice at one step.
Every cell in the region survives it with the linear–quadratic probability

    S = exp(−α D_eff − β D_eff²),        P_kill = 1 − S,

(Thames 1990; Carlone et al. 2004; radiobiology texts) where α, β belong to the cell's
type and D_eff is the dose the cell's oxygen makes effective (the oxygen effect, in the
form of Alper & Howard-Flanders 1956):

    D_eff = D · (m·p + K) / (m·(p + K)),

p the voxel's pO2 (mmHg), m the oxygen enhancement ratio (OER) and K the pO2 at which the
effect is half-maximal.  A fully oxic cell (p ≫ K) takes the full dose D; an anoxic cell
(p = 0) takes D/m; at p = K the dose factor is (1 + 1/m)/2, half-way between.

Parameters (`[radiotherapy]`, and two per organ):

* tumour cells (table row 0): α = `radiotherapy.tumor_alpha_per_Gy` = 0.3 /Gy and
  α/β = `radiotherapy.tumor_alpha_beta_Gy` = 10 Gy (a typical tumour; radiobiology texts,
  approx.).  Dormant tumour cells use the tumour's values (approx.: non-cycling cells are
  often more resistant; the model does not distinguish them);
* functional cells of organ n (row n): `organs.radiation_alpha_per_Gy` = 0.15 /Gy and
  `organs.radiation_alpha_beta_Gy` = 3 Gy (late-responding normal tissue; Thames 1990,
  radiobiology texts, approx.; acutely responding tissue such as bone marrow ≈ 0.3 /Gy and
  10 Gy);
* m = `radiotherapy.oer` = 3 (x-rays 2.5–3, ICRP; radiobiology texts) and
  K = `radiotherapy.oer_half_mmHg` = 3 mmHg (half-maximal around 3 mmHg, approx.).
  β = α / (α/β).

No exp in the kernel.  The host tabulates, in float64, for every distinct fraction dose
of the schedule (index d), every cell-type row r and every pO2 bin b of width
O2_BIN_MMHG = 0.25 mmHg (b = 0 .. N_O2_BINS − 1 covering 0 to 100 mmHg; pO2 above
100 mmHg falls in the last bin), the uint32 threshold of P_kill evaluated at the bin's
lower edge p_b = b · 0.25 mmHg, so D_eff is exact there and the table never interpolates.
The kernel's bin is floor(p · 4) (a float32 product by a power of two, so exact),
clamped to [0, N_O2_BINS − 1].  Above 100 mmHg D_eff differs from D by less than
K(m − 1)/(m(p + K)) < 2 %.  The binning error is largest where the oxygen effect is
steepest: at 2 Gy the kill probabilities of adjacent bins differ by 13 % (relative) between
0 and 0.25 mmHg, about 2 % near 3 mmHg, 0.3 % near 10 mmHg and < 0.1 % above 20 mmHg.

`irradiate` (stream `radiation`, 16): at a step where a fraction is due, every TUMOR,
FUNCTIONAL or DORMANT cell inside the fraction's region draws word 0 of its Philox draw
and is killed if the word is below kill_thr[d, row, bin].  Lethally irradiated cells die
mostly by mitotic catastrophe, after one or a few attempted divisions; as a documented
simplification (approx.) a killed cell dies at once and leaves necrotic debris, as in
fate's necrosis: the voxel becomes NECROTIC, the cell's arrays are cleared, its clone id
is kept (so later lysis clears it), and — as for a functional cell's necrosis in fate —
no vacancy is marked: the voxel holds debris, not free space (the organ does not refill it
until the debris lyses, and then as plain matrix).  Events: `irradiated_tumor_killed`,
`irradiated_functional_killed`, `irradiated_dormant_killed` (a dormant kill counts in its
own column so that the census identities stay exact: dormant cells are not TUMOR voxels).

Region of a fraction: the whole lattice, a sphere (centre, radius µm) or a box (from, to
µm).  The host turns it into global voxel index ranges [z0, z1) × [y0, y1) × [x0, x1)
(a box: the voxels whose centres lie within [from, to] on every axis; otherwise the whole
lattice) and, for a sphere, the centre and squared radius in voxel units (float32): a
voxel is inside if ((gz + ½ − cz)² + (y + ½ − cy)²) + (x + ½ − cx)² ≤ r², summed in that
order in float32.

The schedule (`radiation_rules`): the deliveries of kind "radiotherapy" on this
scenario's `lattice_name` in the schedule `engine.therapy.deliveries` (fraction i of an
entry at step floor((start_h + i·interval_h)/step_h + ½), at least step 1, as edited by
any protocol decisions), each with its entry's region and its own dose (a rule may
reduce it).  Two fractions at one step of a lattice in the static schedule are refused
(`@RADIATION.checks`); should a rule start a second course onto a running one, the
first delivery of that step in time order is given (approx.: the record lists both).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from engine.therapy import REGIONS, deliveries, delivery_steps

from .lattice import DORMANT, FUNCTIONAL, NECROTIC, TUMOR, clear_cell, global_index
from .philox import probability_threshold, voxel_draw
from .process import Param, Process, float32_of, positive
from .twin import kernel

RADIATION = Process(
    "radiation", "radiation.cu",
    params={
        "radiotherapy": {
            "tumor_alpha_per_Gy": Param(
                "float", 0.3, lo=0.0, hi=10.0, unit="1/Gy",
                source="linear-quadratic α of a typical tumour, about 0.3 /Gy (radiobiology "
                       "texts, approx.); bound: a guard"),
            "tumor_alpha_beta_Gy": positive(
                10.0, "Gy", "α/β about 10 Gy for most tumours (Thames 1990; Carlone 2004); "
                            "bound: a guard", hi=1e3),
            "oer": Param(
                "float", 3.0, lo=1.0, hi=10.0, unit="ratio",
                source="oxygen enhancement ratio of x-rays 2.5-3 (ICRP; radiobiology texts); "
                       "1: no oxygen effect; bound: a guard"),
            "oer_half_mmHg": positive(
                3.0, "mmHg", "oxygen effect half-maximal around 3 mmHg (radiobiology texts, "
                             "approx.); bound: 1 atm", hi=760.0),
        },
        "organs": {
            "radiation_alpha_per_Gy": Param(
                "float", 0.15, lo=0.0, hi=10.0, unit="1/Gy",
                source="linear-quadratic α of late-responding normal tissue (radiobiology texts, "
                       "approx.); bound: a guard"),
            "radiation_alpha_beta_Gy": positive(
                3.0, "Gy", "α/β about 3 Gy for late-responding tissue, 10 Gy for early-"
                           "responding (Thames 1990); bound: a guard", hi=1e3),
        },
    },
    events=("irradiated_tumor_killed", "irradiated_functional_killed",
            "irradiated_dormant_killed"),
    streams={"radiation": 16})          # word 0: killed or not
IRRADIATED_TUMOR_KILLED, IRRADIATED_FUNCTIONAL_KILLED, IRRADIATED_DORMANT_KILLED = range(3)
STREAM_RADIATION = RADIATION.streams["radiation"]

O2_BIN_MMHG = 0.25                      # a power of two: the kernel's floor(p · 4) is exact
O2_TABLE_TOP_MMHG = 100.0
N_O2_BINS = int(O2_TABLE_TOP_MMHG / O2_BIN_MMHG) + 1     # 401: 0, 0.25, ..., 100 mmHg
THERAPY_KEY = "therapy"                 # errors name therapy[i].start_h (the schema's list)


@dataclass(frozen=True)
class Fraction:
    """One fraction at one step, as the kernel takes it: the dose's table index, the
    global voxel ranges it may reach, and for a sphere its centre and squared radius in
    voxel units."""

    dose_Gy: float
    dose_index: int
    box: tuple[int, int, int, int, int, int]        # z0, z1, y0, y1, x0, x1 (half-open)
    sphere: int                                     # 1: also test the sphere
    centre: tuple[np.float32, np.float32, np.float32]
    r2: np.float32


def effective_dose(dose_Gy, p_mmHg, oer, half_mmHg):
    """D_eff = D (m p + K) / (m (p + K)) (float64, elementwise)."""
    p = np.asarray(p_mmHg, dtype=np.float64)
    return dose_Gy * (oer * p + half_mmHg) / (oer * (p + half_mmHg))


def kill_probability(dose_Gy, alpha_per_Gy, alpha_beta_Gy, p_mmHg, oer, half_mmHg):
    """P_kill = 1 − exp(−α D_eff − β D_eff²), β = α/(α/β) (float64, elementwise)."""
    d = effective_dose(dose_Gy, p_mmHg, oer, half_mmHg)
    beta = alpha_per_Gy / alpha_beta_Gy
    return -np.expm1(-(alpha_per_Gy * d + beta * d * d))


def cell_type_parameters(scenario) -> list[tuple[float, float]]:
    """(α /Gy, α/β Gy) per table row: 0 the tumour (dormant cells too), 1.. the organs."""
    rows = [(scenario["radiotherapy.tumor_alpha_per_Gy"], scenario["radiotherapy.tumor_alpha_beta_Gy"])]
    rows += [(o["radiation_alpha_per_Gy"], o["radiation_alpha_beta_Gy"]) for o in scenario.organs]
    return rows


def _region(entry: dict, scenario) -> tuple:
    """(box, sphere, centre, r2) of an entry's region, in global voxel units."""
    shape, h = scenario.shape, float(scenario["lattice.voxel_um"])
    full = (0, shape[0], 0, shape[1], 0, shape[2])
    none = (np.float32(0.0),) * 3
    region = entry["region"]
    if region == "lattice":
        return full, 0, none, np.float32(0.0)
    if region == "sphere":
        centre = entry["center_um"]
        if centre is None:
            centre = [n * h / 2.0 for n in shape]
        c = tuple(float32_of(float(v) / h) for v in centre)
        return full, 1, c, float32_of((float(entry["radius_um"]) / h) ** 2)
    if region == "box":
        lo, hi = entry["box_from_um"], entry["box_to_um"]
        box = []
        for axis in range(3):   # voxels whose centres (i + ½) h lie in [from, to]
            first = math.ceil(float(lo[axis]) / h - 0.5)
            last = math.floor(float(hi[axis]) / h - 0.5)
            box += [min(max(first, 0), shape[axis]), min(max(last + 1, 0), shape[axis])]
        box[1::2] = [max(b, a) for a, b in zip(box[0::2], box[1::2])]
        return tuple(box), 0, none, np.float32(0.0)
    raise ValueError(f"radiotherapy region {region!r} is not one of {', '.join(REGIONS)}")


@RADIATION.rules_from
def radiation_rules(scenario) -> dict:
    """fraction_steps (frozenset of the steps at which a fraction is due),
    radiation_fractions (step → Fraction), radiation_kill_thr (uint32 [dose index, row,
    pO2 bin]; one row of zeros when no fraction is scheduled), radiation_rows,
    radiation_bins (int) and radiation_bins_per_mmHg (float32, 1 / bin width)."""
    by_name = {t["name"]: t for t in scenario.therapies}
    record = deliveries(scenario)
    given = record[(record["kind"] == b"radiotherapy")
                   & (record["lattice"] == scenario.lattice_name.encode())]
    doses = sorted({float(row["dose"]) for row in given})
    fractions = {}
    for row in given:           # time order; a clash: refused by the check (static schedule)
        box, sphere, centre, r2 = _region(by_name[row["therapy"].decode()], scenario)
        dose = float(row["dose"])
        fractions.setdefault(int(row["step"]), Fraction(
            dose, doses.index(dose), box, sphere, centre, r2))
    oer, half = scenario["radiotherapy.oer"], scenario["radiotherapy.oer_half_mmHg"]
    rows = cell_type_parameters(scenario)
    p = np.arange(N_O2_BINS, dtype=np.float64) * O2_BIN_MMHG
    table = np.zeros((max(len(doses), 1), len(rows), N_O2_BINS), dtype=np.uint32)
    for d, dose in enumerate(doses):
        for r, (alpha, ratio) in enumerate(rows):
            kill = kill_probability(dose, alpha, ratio, p, oer, half)
            table[d, r] = [probability_threshold(k) for k in kill]
    return {"fraction_steps": frozenset(fractions), "radiation_fractions": fractions,
            "radiation_kill_thr": table, "radiation_rows": np.int32(len(rows)),
            "radiation_bins": np.int32(N_O2_BINS),
            "radiation_bins_per_mmHg": float32_of(1.0 / O2_BIN_MMHG)}


@RADIATION.checks
def radiation_checks(scenario) -> list[tuple[str, str]]:
    """Two fractions due at the same step of one lattice are refused (naming the later
    entry's start)."""
    step_h = scenario["time.step_h"]
    by_lattice: dict[str, dict[int, int]] = {}
    for i, t in enumerate(scenario.therapies):
        if t["kind"] != "radiotherapy":
            continue
        taken = by_lattice.setdefault(t["lattice"], {})
        for step in delivery_steps(t, step_h):
            if step in taken:
                other = taken[step]
                key = f"{THERAPY_KEY}[{i}].start_h"
                return [(key, f"{key}: two radiotherapy fractions at step {step} "
                         f"(t = {step * step_h:g} h) of lattice {t['lattice']!r}"
                         + (f" ({THERAPY_KEY}[{other}] delivers one there too)" if other != i else
                            " (interval_h shorter than a step)"))]
            taken[step] = i
    return []


@RADIATION.entry("irradiate")
@numba.njit(parallel=True, cache=True)
def _irradiate(kind, organ, traits, clock, hypoxia, lineage, motile, oxygen,
               radiation_kill_thr, radiation_rows, radiation_bins, radiation_bins_per_mmHg,
               dose_index, box_z0, box_z1, box_y0, box_y1, box_x0, box_x1,
               sphere, centre_z, centre_y, centre_x, radius2, step, events,
               nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1):
    half = np.float32(0.5)
    top = np.float32(radiation_bins - 1)
    for z in prange(nz):
        gz = z0 + z
        if gz < box_z0 or gz >= box_z1:
            continue
        dz = np.float32(gz) + half - centre_z
        for y in range(max(box_y0, 0), min(box_y1, ny)):
            dy = np.float32(y) + half - centre_y
            for x in range(max(box_x0, 0), min(box_x1, nx)):
                k = kind[z, y, x]
                if k != TUMOR and k != FUNCTIONAL and k != DORMANT:
                    continue
                if sphere != 0:
                    dx = np.float32(x) + half - centre_x
                    if (dz * dz + dy * dy) + dx * dx > radius2:
                        continue
                q = oxygen[z, y, x] * radiation_bins_per_mmHg
                b = 0
                if q >= top:
                    b = radiation_bins - 1
                elif q > np.float32(0.0):
                    b = np.int64(q)
                row = np.int64(organ[z, y, x]) if k == FUNCTIONAL else 0
                g = global_index(z, y, x, z0, ny_global, nx_global)
                word = voxel_draw(g, step, STREAM_RADIATION, lattice_id, k0, k1)[0]
                if word < radiation_kill_thr[dose_index, row, b]:
                    kind[z, y, x] = NECROTIC
                    keep = lineage[z, y, x]
                    clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile)
                    lineage[z, y, x] = keep
                    if k == TUMOR:
                        events[IRRADIATED_TUMOR_KILLED, z] += 1
                    elif k == FUNCTIONAL:
                        events[IRRADIATED_FUNCTIONAL_KILLED, z] += 1
                    else:
                        events[IRRADIATED_DORMANT_KILLED, z] += 1


@kernel(reads=("kind", "organ", "oxygen"), writes=(), process=RADIATION)
def irradiate(lattice, rules, step):
    """A radiotherapy fraction kills each cell in its region with P = 1 − exp(−α D_eff − β D_eff²), D_eff = D (m p + K)/(m (p + K)).

    α, β of the cell's type (dormant cells: the tumour's); m the OER, K its half-maximal
    pO2; killed cells become necrotic debris.  No fraction at this step: nothing."""
    fraction = rules.radiation_fractions.get(int(step))
    if fraction is None:
        return
    z0, z1, y0, y1, x0, x1 = fraction.box
    _irradiate(lattice, rules, step, dose_index=fraction.dose_index,
               box_z0=z0, box_z1=z1, box_y0=y0, box_y1=y1, box_x0=x0, box_x1=x1,
               sphere=fraction.sphere, centre_z=fraction.centre[0], centre_y=fraction.centre[1],
               centre_x=fraction.centre[2], radius2=fraction.r2)
