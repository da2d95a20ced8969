"""Outcomes of one run, computed from its run file alone (:class:`tools.runfile.RunFile`):
what a treatment did to the tumour and to the healthy tissue.

* **Tumour burden** over time, per lattice and in total: cells (tumour + dormant), and
  volume = (tumour + dormant cells + the tumour's own necrotic debris) × voxel volume
  (one cell per voxel).  The **primary lesion's diameter** is that of a ball of the
  primary lattice's burden volume, necrotic core included: d = (6 V / π)^(1/3).

  The counts table holds all necrotic debris, and debris is also what normal cells
  leave when they die of hypoxia or are killed by therapy (radiotherapy turns a killed
  cell into debris at once): counting all of it would make an irradiated breast look
  like a growing tumour.  The debris of normal cells is therefore tracked as a pool F
  (approx.): it grows by ``necrosis_functional`` and by the harm columns (below) each
  step, and loses its share of the debris removed that step (``debris_lysed`` +
  ``debris_cleared``, which act on debris whatever its origin):
  F(t) = (F(t−1) + new_F(t)) · N(t) / (N(t) + removed(t)), N the necrotic voxels,
  kept within [0, N(t)].  The tumour's debris is N − F.

* **Metastases by class** (local / regional / distant) from the colony registry
  (``/colonies``) and the colonies' sizes over time (``/colony_sizes``): colonies
  founded, alive at the end, and alive over time.

* **Functional tissue preserved** per organ of each lattice: ``functional_<organ>``
  relative to its first row.

* **Normal-tissue harm**: functional cells killed by therapy, cumulative.  Naming rule:
  a counts column counts such cells when its name, split at ``_``, has both the words
  ``functional`` and ``killed`` (``irradiated_functional_killed``,
  ``chemo_killed_functional``, ...): a new therapy's column joins by its name alone.
  A harm column that is another harm column plus ``_<organ>`` (an organ of that
  lattice) is that column's breakdown by organ and is not added to the total again.
  Hypoxic necrosis, apoptosis, compression and the debris a sprout clears are the
  disease's and the body's own doing, not therapy's, and are not harm.

* **Time to progression**, by a RECIST-like rule (RECIST 1.1, Eisenhauer et al. 2009)
  on the simulated diameters (:class:`RecistRule`): the target lesions are the
  primary lesion and every colony already measurable at the first row (baseline); the
  sum of their diameters is assessed at every counts row; progression is an increase
  of the sum by at least 20 % above its nadir (the smallest sum so far, baseline
  included) *and* by at least an absolute floor, or a **new lesion**: a colony that
  was not a target reaching the measurable size.  RECIST's absolute floor (5 mm) is
  half its smallest measurable lesion (10 mm); on a lattice of a few mm both are
  scaled down the same way: a lesion is measurable from 0.2 mm (the AJCC boundary
  between isolated tumour cells and a micrometastasis, which the colony registry
  stages by), and the floor is half that, 0.1 mm (5 voxels of 20 µm).  A run that
  never progresses is censored at its last row.

* **The therapy record** (``/therapy``): every delivery given, and per therapy the
  deliveries and the total dose; with an adaptive protocol also the decisions its rules
  took at check-ups (``/decisions``: start, stop, reduce, switch).

Tables are read by column name; a column a file lacks is left out, never guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.errors import RunFileError
from engine.runformat import json_number, plain_rows

BURDEN_KINDS = ("tumor", "dormant")         # cells of the tumour burden
NECROTIC = "necrotic"
DEBRIS_REMOVED = ("debris_lysed", "debris_cleared")  # remove debris whatever its origin
NORMAL_DEBRIS = ("necrosis_functional",)    # debris of normal cells, besides the harm columns
CLASSES = ("local", "regional", "distant")
HARM_WORDS = ("functional", "killed")


def harm_columns(names, organs=()) -> tuple[list[str], dict[str, list[str]]]:
    """The harm columns among counts column `names` (module docstring): (columns that add
    up to the total, {total column: its per-organ breakdown columns})."""
    harm = [n for n in names if set(HARM_WORDS) <= set(n.split("_"))]
    breakdown = {n: [] for n in harm}
    totals = []
    for n in harm:
        parent = next((p for p in harm if p != n and any(n == f"{p}_{o}" for o in organs)),
                      None)
        if parent is None:
            totals.append(n)
        else:
            breakdown[parent].append(n)
    return totals, {n: b for n, b in breakdown.items() if n in totals and b}


@dataclass(frozen=True)
class RecistRule:
    """The RECIST-like progression rule (module docstring), in simulated diameters."""

    relative_increase: float = 0.20     # RECIST 1.1: +20 % over the nadir
    floor_mm: float = 0.1               # RECIST's 5 mm, scaled: half the measurable size
    measurable_mm: float = 0.2          # RECIST's 10 mm, scaled: AJCC ITC/micro boundary

    def describe(self) -> str:
        return (f"progression when the sum of target-lesion diameters rises at least "
                f"{self.relative_increase:.0%} and at least {self.floor_mm:g} mm above its "
                f"nadir (smallest sum so far, baseline included), or when a new lesion "
                f"(a colony not measurable at baseline) reaches {self.measurable_mm:g} mm")


RECIST = RecistRule()


def ball_diameter_mm(voxels, voxel_um: float):
    """Diameter (mm) of a ball of `voxels` voxels of edge `voxel_um`: h (6 n / π)^(1/3)."""
    v = np.maximum(np.asarray(voxels, dtype=np.float64), 0.0)
    return voxel_um / 1000.0 * np.cbrt(6.0 * v / math.pi)


def normal_debris(counts, harm: list[str]) -> np.ndarray:
    """The necrotic voxels left by normal cells, row by row (module docstring; approx.)."""
    names = counts.dtype.names or ()
    n = len(counts)
    if NECROTIC not in names or not n:
        return np.zeros(n)
    necrotic = counts[NECROTIC].astype(np.float64)
    new = sum((counts[c].astype(np.float64) for c in (*NORMAL_DEBRIS, *harm) if c in names),
              np.zeros(n))
    removed = sum((counts[c].astype(np.float64) for c in DEBRIS_REMOVED if c in names),
                  np.zeros(n))
    pool = np.zeros(n)
    f = 0.0                              # the first row is the tissue as built: no debris yet
    for i in range(1, n):
        f += new[i]
        total = necrotic[i] + removed[i]
        f = f * necrotic[i] / total if total > 0 else 0.0
        f = min(max(f, 0.0), necrotic[i])
        pool[i] = f
    return pool


@dataclass
class LatticeOutcome:
    """The outcomes of one lattice of the body, on the primary's time axis."""

    name: str
    role: str | None
    organ: str                       # the organ it stands for
    site_class: str | None
    voxel_um: float
    cells: np.ndarray                # tumour + dormant cells
    tumour_debris: np.ndarray        # necrotic voxels of tumour origin (estimated)
    functional: dict[str, np.ndarray]        # organ -> fraction of its first row
    harm: dict[str, np.ndarray]              # harm column -> cumulative cells killed
    harm_by_organ: dict[str, dict[str, np.ndarray]]     # column -> organ -> cumulative

    @property
    def volume_mm3(self) -> np.ndarray:
        return (self.cells + self.tumour_debris) * (self.voxel_um / 1000.0) ** 3

    @property
    def harm_total(self) -> np.ndarray:
        return sum(self.harm.values(), np.zeros(len(self.cells)))


@dataclass
class Outcomes:
    """Everything :func:`run_outcomes` reads from a run file."""

    run: str
    status: str
    seed: int | None
    time_h: np.ndarray
    steps: np.ndarray
    lattices: list[LatticeOutcome]
    primary_diameter_mm: np.ndarray
    sum_diameters_mm: np.ndarray
    nadir_mm: np.ndarray
    target_colonies: list[int]
    new_lesions: list[dict]          # colony, lattice, class, step, time_h, diameter_mm
    progression: dict                # progressed, time_h, step, reason, censored_h
    colonies: list[dict]             # the registry, as stored
    colonies_alive: dict[str, np.ndarray]    # class -> live colonies per row
    therapy: list[dict]
    decisions: list[dict] = field(default_factory=list)     # a protocol's schedule edits
    rule: RecistRule = field(default_factory=RecistRule)

    @property
    def primary(self) -> LatticeOutcome:
        return self.lattices[0]

    @property
    def burden_cells(self) -> np.ndarray:
        return sum((lat.cells for lat in self.lattices), np.zeros(len(self.time_h)))

    @property
    def burden_volume_mm3(self) -> np.ndarray:
        return sum((lat.volume_mm3 for lat in self.lattices), np.zeros(len(self.time_h)))

    @property
    def harm_total(self) -> np.ndarray:
        return sum((lat.harm_total for lat in self.lattices), np.zeros(len(self.time_h)))

    def metastases(self) -> dict:
        """Colonies by class: founded (in the registry), alive at the end, measurable at
        the end (diameter at least the rule's measurable size)."""
        out = {}
        for c in CLASSES + tuple(sorted({r["class"] for r in self.colonies} - set(CLASSES))):
            mine = [r for r in self.colonies if r["class"] == c]
            out[c] = {"founded": len(mine),
                      "alive": sum(1 for r in mine if r["cells"] > 0),
                      "measurable": sum(1 for r in mine if r["cells"] > 0
                                        and r["diameter_um"] / 1000.0 >= self.rule.measurable_mm)}
        return out

    def therapy_given(self) -> dict:
        """Per therapy: its kind, deliveries and total dose (with unit)."""
        given = {}
        for r in self.therapy:
            g = given.setdefault(r["therapy"], {"kind": r["kind"], "deliveries": 0,
                                                "total_dose": 0.0, "dose_unit": r["dose_unit"]})
            g["deliveries"] += 1
            g["total_dose"] += float(r["dose"])
        return given

    def summary(self) -> dict:
        """The headline outcomes, JSON-ready."""
        def last(a):
            return json_number(a[-1]) if len(a) else None
        return {
            "run": self.run, "status": self.status, "seed": self.seed,
            "time_h": last(self.time_h),
            "burden_cells_initial": json_number(self.burden_cells[0]) if len(self.time_h) else None,
            "burden_cells_final": last(self.burden_cells),
            "burden_volume_mm3_final": last(self.burden_volume_mm3),
            "primary_diameter_mm_initial": (json_number(self.primary_diameter_mm[0])
                                            if len(self.time_h) else None),
            "primary_diameter_mm_final": last(self.primary_diameter_mm),
            "sum_diameters_mm_final": last(self.sum_diameters_mm),
            "nadir_mm": last(self.nadir_mm),
            "progression": self.progression,
            "recist_rule": self.rule.describe(),
            "new_lesions": self.new_lesions,
            "lattices": {lat.name: {
                "role": lat.role, "organ": lat.organ, "class": lat.site_class,
                "cells_final": last(lat.cells), "volume_mm3_final": last(lat.volume_mm3),
                "functional_preserved": {o: last(f) for o, f in lat.functional.items()},
                "harm_cells": {c: last(h) for c, h in lat.harm.items()},
                "harm_cells_by_organ": {c: {o: last(h) for o, h in b.items()}
                                        for c, b in lat.harm_by_organ.items()},
            } for lat in self.lattices},
            "functional_preserved": self.functional_preserved(),
            "harm_cells_total": last(self.harm_total),
            "metastases": self.metastases(),
            "therapy_given": self.therapy_given(),
            "decisions": self.decisions,
        }

    def functional_preserved(self) -> dict[str, float | None]:
        """Fraction of each organ's initial functional cells left at the end, keyed
        ``<organ>`` on the primary lattice and ``<lattice>/<organ>`` on a site."""
        out = {}
        for lat in self.lattices:
            for organ, f in lat.functional.items():
                key = organ if lat.role != "site" else f"{lat.name}/{organ}"
                out[key] = json_number(f[-1]) if len(f) else None
        return out


def _aligned(table, steps: np.ndarray, column, fill: float = 0.0) -> np.ndarray:
    """Column `column` of a per-step table (or `column` itself: an array with one value per
    row of `table`) on the rows of `steps`, matched by the table's step column (row by
    row where it has none); `fill` where a step or the column is missing."""
    names = table.dtype.names or ()
    if isinstance(column, str):
        if column not in names:
            return np.full(len(steps), fill)
        column = table[column]
    values = np.asarray(column, dtype=np.float64)
    if "step" not in names:
        out = np.full(len(steps), fill)
        n = min(len(values), len(steps))
        out[:n] = values[:n]
        return out
    index = {int(s): i for i, s in enumerate(table["step"].tolist())}
    return np.array([values[index[int(s)]] if int(s) in index else fill for s in steps])


def _lattice_outcome(run, meta, steps: np.ndarray) -> LatticeOutcome | None:
    counts = run.counts(meta.name)
    if counts is None or not len(counts):
        return None
    names = counts.dtype.names or ()
    organs = tuple(o for o in meta.organ_names[1:] if f"functional_{o}" in names)
    totals, breakdown = harm_columns(names, organs)

    def col(c):
        return _aligned(counts, steps, c)

    cells = sum((col(k) for k in BURDEN_KINDS if k in names), np.zeros(len(steps)))
    debris = _aligned(counts, steps, NECROTIC) - _aligned(counts, steps,
                                                          normal_debris(counts, totals))
    functional = {}
    for organ in organs:
        f = col(f"functional_{organ}")
        functional[organ] = f / f[0] if len(f) and f[0] > 0 else np.full(len(f), np.nan)
    harm = {c: np.cumsum(col(c)) for c in totals}
    by_organ = {c: {b[len(c) + 1:]: np.cumsum(col(b)) for b in cols}
                for c, cols in breakdown.items()}
    return LatticeOutcome(name=meta.name, role=meta.role, organ=meta.organ_label,
                          site_class=meta.site_class, voxel_um=meta.voxel_um, cells=cells,
                          tumour_debris=np.maximum(debris, 0.0), functional=functional,
                          harm=harm, harm_by_organ=by_organ)


def _colony_rows(run) -> list[dict]:
    registry = run.colonies()
    if registry is None or not len(registry):
        return []
    rows = plain_rows(registry)
    return [{"id": int(r.get("id", i)), "lattice": r.get("lattice", ""),
             "class": r.get("class", ""), "cells": int(r.get("cells", 0)),
             "diameter_um": float(r.get("diameter_um", 0.0) or 0.0),
             "stage": r.get("stage", ""), "arrival_step": int(r.get("arrival_step", -1))}
            for i, r in enumerate(rows)]


def progression(steps, time_h, sums, colony_sizes, colonies, targets, rule=RECIST):
    """Nadir, new lesions and the time to progression (module docstring).

    `sums`: the sum of target diameters (mm) at each row; `colony_sizes`: rows (step,
    colony, diameter_um) of the colonies; `targets`: colony ids measurable at baseline.
    Returns (nadir per row, new lesions, progression dict)."""
    n = len(sums)
    nadir = np.minimum.accumulate(sums) if n else np.zeros(0)
    grown = np.flatnonzero((sums - nadir >= rule.relative_increase * nadir)
                           & (sums - nadir >= rule.floor_mm)) if n else np.zeros(0, int)
    by_id = {c["id"]: c for c in colonies}
    new = []
    if colony_sizes is not None and len(colony_sizes):
        step_time = dict(zip(map(int, steps), map(float, time_h)))
        big = colony_sizes[colony_sizes["diameter_um"] / 1000.0 >= rule.measurable_mm]
        order = np.lexsort((big["colony"], big["step"]))
        seen = set(targets)
        for r in big[order]:
            cid, step = int(r["colony"]), int(r["step"])
            if cid in seen:
                continue
            seen.add(cid)
            c = by_id.get(cid, {})
            new.append({"colony": cid, "lattice": c.get("lattice"), "class": c.get("class"),
                        "step": step, "time_h": step_time.get(step),
                        "diameter_mm": float(r["diameter_um"]) / 1000.0})
    candidates = []
    if len(grown):
        candidates.append((int(steps[grown[0]]), float(time_h[grown[0]]), "growth"))
    if new:
        first = new[0]
        t = first["time_h"] if first["time_h"] is not None else math.nan
        candidates.append((first["step"], t, "new lesion"))
    censored = float(time_h[-1]) if n else None
    if not candidates:
        return nadir, new, {"progressed": False, "step": None, "time_h": None,
                            "reason": None, "censored_h": censored}
    step, t, why = min(candidates, key=lambda c: (c[0], c[2] != "growth"))
    if any(c[0] == step and c[2] != why for c in candidates):
        why = "growth and new lesion"
    return nadir, new, {"progressed": True, "step": step, "time_h": json_number(t),
                        "reason": why, "censored_h": None}


def run_outcomes(run, rule: RecistRule = RECIST) -> Outcomes:
    """The outcomes of run `run` (an open :class:`tools.runfile.RunFile`)."""
    counts = run.counts()
    names = counts.dtype.names or ()
    step_h = float(run.attrs.get("step_h", 1.0) or 1.0)
    steps = (counts["step"].astype(np.int64) if "step" in names
             else np.arange(len(counts), dtype=np.int64))
    time_h = (counts["time_h"].astype(np.float64) if "time_h" in names
              else steps * step_h)
    order = [run.primary] + [m for m in run.sites()]
    lattices = [o for o in (_lattice_outcome(run, m, steps) for m in order) if o is not None]
    if not lattices or lattices[0].name != run.primary.name:
        raise RunFileError(f"{run.path}: no counts rows of the primary lattice yet; no "
                           f"outcomes to compute")
    primary = lattices[0]
    diameter = ball_diameter_mm(primary.cells + primary.tumour_debris, primary.voxel_um)
    colonies = _colony_rows(run)
    sizes = run.colony_sizes()
    targets, target_sums = [], np.zeros(len(steps))
    if sizes is not None and len(sizes) and len(steps):
        at0 = sizes[(sizes["step"] == steps[0])
                    & (sizes["diameter_um"] / 1000.0 >= rule.measurable_mm)]
        targets = sorted(int(c) for c in at0["colony"])
        for cid in targets:
            mine = sizes[sizes["colony"] == cid]
            target_sums += _aligned(mine, steps, "diameter_um") / 1000.0
    sums = diameter + target_sums
    nadir, new, prog = progression(steps, time_h, sums, sizes, colonies, targets, rule)
    alive = {c: np.zeros(len(steps)) for c in CLASSES}
    if sizes is not None and len(sizes):
        cls = {c["id"]: c["class"] for c in colonies}
        row = {int(s): i for i, s in enumerate(steps.tolist())}
        for r in sizes[sizes["cells"] > 0]:
            i = row.get(int(r["step"]))
            c = cls.get(int(r["colony"]))
            if i is not None and c is not None:
                alive.setdefault(c, np.zeros(len(steps)))[i] += 1
    record = run.therapy()
    therapy = plain_rows(record) if record is not None and len(record) else []
    edits = run.decisions()
    decisions = plain_rows(edits) if edits is not None and len(edits) else []
    seed = run.attrs.get("seed")
    return Outcomes(run=str(run.path), status=run.status,
                    seed=int(seed) if isinstance(seed, (int, float)) else None,
                    time_h=time_h, steps=steps, lattices=lattices,
                    primary_diameter_mm=diameter, sum_diameters_mm=sums, nadir_mm=nadir,
                    target_colonies=targets, new_lesions=new, progression=prog,
                    colonies=colonies, colonies_alive=alive, therapy=therapy,
                    decisions=decisions, rule=rule)


def read_outcomes(path, rule: RecistRule = RECIST) -> Outcomes:
    """:func:`run_outcomes` of the run file at `path`."""
    from tools.runfile import RunFile
    with RunFile(path) as run:
        return run_outcomes(run, rule)


def kaplan_meier(times_h, progressed) -> tuple[np.ndarray, np.ndarray]:
    """The progression-free fraction over time (Kaplan–Meier product-limit estimate):
    `times_h` each replicate's time of progression or of censoring (its last row),
    `progressed` whether it progressed.  Returns (times, fraction) of a step function
    starting at (0, 1): the fraction holds from each time until the next."""
    times = np.asarray(times_h, dtype=np.float64)
    events = np.asarray(progressed, dtype=bool)
    xs, ys = [0.0], [1.0]
    at_risk = len(times)
    s = 1.0
    for t in np.unique(times):
        d = int(np.sum(events & (times == t)))
        if d and at_risk:
            s *= 1.0 - d / at_risk
            xs.append(float(t))
            ys.append(s)
        at_risk -= int(np.sum(times == t))
    return np.array(xs), np.array(ys)


def median_time(times, fraction) -> float | None:
    """The first time the progression-free fraction falls to 0.5 or below; None if it
    never does (median not reached)."""
    hit = np.flatnonzero(np.asarray(fraction) <= 0.5)
    return float(times[hit[0]]) if len(hit) else None
