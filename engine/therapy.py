"""Therapies: scheduled interventions on the body (`[[therapy]]` tables of a scenario).

Each entry names a therapy, its kind, the lattice it treats (the primary or a site of
the body), when it starts, how many deliveries (fractions, cycles, doses) it gives and
how far apart, and the dose and target its kind needs.  The mechanism of each kind is
a process under `kernels/` (radiotherapy: `kernels/radiation.py`; anti-angiogenic
therapy: `kernels/antiangiogenic.py`; chemotherapy: `kernels/chemotherapy.py`; hormone
therapy and growth-signal inhibition: `kernels/receptor_blockade.py`; apoptosis
reactivation: `kernels/apoptosis_reactivation.py`; anti-metastatic therapy:
`kernels/antimetastatic.py`; checkpoint blockade, dendritic-cell vaccination and adoptive
T-cell transfer: `kernels/immunotherapy.py`; the drugs' plasma levels from `engine.pharmacokinetics`),
which reads the
schedule from `Scenario.therapies`; this module holds the schedule's schema, checks
and the schedule as it will run (`oncolattice check` prints it).

Delivery k (k = 0 .. count − 1) of a therapy falls at time start_h + k · interval_h and
so at step t / step_h rounded half up (at least step 1: the first step that acts);
a delivery beyond the run's duration is not given (the printed schedule says so).
"""
from __future__ import annotations

import math

import numpy as np

from kernels.process import REQUIRED, Param

# kind -> the keys a therapy of that kind must give (besides the common ones)
THERAPY_KINDS: dict[str, tuple[str, ...]] = {
    "radiotherapy": ("dose_Gy",),
    "anti_angiogenic": ("dose_mg_per_kg",),
    "chemotherapy": ("dose_mg_per_m2",),
    "hormone_therapy": ("dose_mg",),
    "growth_signal_inhibitor": ("dose_mg_per_kg",),
    "apoptosis_reactivator": ("dose_mg",),
    "anti_metastatic": ("dose_mg",),
    "checkpoint_blockade": ("dose_mg",),
    "dc_vaccine": ("dose_million_cells",),
    "adoptive_t_cells": ("dose_million_cells",),
}
# kind -> (the largest dose of one delivery, in its dose unit; the source of that bound):
# each kind's own range within the schema's range of its dose key
DOSE_LIMITS: dict[str, tuple[float, str]] = {
    "chemotherapy": (350.0, "paclitaxel 175 mg/m2 over 3 h every 3 weeks, 135 mg/m2, 80 "
                            "mg/m2 weekly (label); twice the highest labelled dose"),
    "anti_angiogenic": (30.0, "bevacizumab 5-15 mg/kg every 2-3 weeks (label); twice the "
                              "highest labelled dose"),
    "hormone_therapy": (80.0, "tamoxifen 20-40 mg daily (label); twice the highest labelled "
                              "daily dose"),
    "growth_signal_inhibitor": (16.0, "trastuzumab 8 mg/kg loading, then 6 mg/kg every 3 weeks "
                                      "or 2 mg/kg weekly (label); twice the loading dose"),
    "apoptosis_reactivator": (800.0, "venetoclax 400 mg daily, ramp-up from 20 mg, 600 mg in "
                                     "some regimens (label); twice the labelled daily dose"),
    "anti_metastatic": (2000.0, "(approx.) no approved migrastatic drug: the range of oral "
                                "small-molecule daily doses"),
    "checkpoint_blockade": (800.0, "pembrolizumab 200 mg every 3 weeks or 400 mg every 6 "
                                   "weeks (label); twice the highest labelled dose"),
    "dc_vaccine": (10000.0, "(approx.) sipuleucel-T: at least 50 million activated CD54+ cells "
                            "per infusion (label); bound: 200 times that"),
    "adoptive_t_cells": (144000.0, "lifileucel 7.5-72 x 10^9 viable cells (label); twice the "
                                   "highest labelled dose"),
}
# kinds aimed at a target on one lattice; every other kind is a drug that reaches every
# lattice of the body through the plasma (engine.pharmacokinetics)
LOCAL_KINDS = ("radiotherapy",)
REGIONS = ("lattice", "sphere", "box")
IDENTIFIER = r"[A-Za-z][A-Za-z0-9_]{0,63}"
MAX_THERAPIES = 64
MAX_DELIVERIES = 10_000

THERAPY_SCHEMA: dict[str, Param] = {
    "name": Param("str", REQUIRED, pattern=IDENTIFIER,
                  pattern_text="an identifier: a letter, then up to 63 letters, digits or _",
                  source="names the therapy in the schedule and the therapy record"),
    "kind": Param("str", REQUIRED, choices=tuple(THERAPY_KINDS),
                  source="the mechanism (a process under kernels/)"),
    "lattice": Param("str", "primary", pattern=IDENTIFIER,
                     pattern_text="primary or the name of a site",
                     source="the lattice of the body it treats"),
    "start_h": Param("float", REQUIRED, lo=0.0, hi=1e6, unit="h",
                     source="time of the first delivery from the start of the run"),
    "count": Param("int", 1, lo=1, hi=MAX_DELIVERIES, unit="deliveries",
                   source="fractions, cycles or doses"),
    "interval_h": Param("float", 24.0, lo=0.0, hi=1e6, lo_open=True, unit="h",
                        source="time between deliveries"),
    "dose_Gy": Param("float", None, lo=0.0, hi=30.0, lo_open=True, unit="Gy per fraction",
                     source="radiotherapy: 1.8–2 Gy conventional fractions, up to about "
                            "20–30 Gy in single-fraction radiosurgery; bound: that"),
    "dose_mg_per_kg": Param("float", None, lo=0.0, hi=30.0, lo_open=True, unit="mg/kg per dose",
                            source="anti_angiogenic: bevacizumab 5–15 mg/kg every 2–3 weeks "
                                   "(label); growth_signal_inhibitor: trastuzumab 2–8 mg/kg "
                                   "(label); bound: twice the highest labelled dose; each "
                                   "kind's own bound: DOSE_LIMITS"),
    "dose_mg": Param("float", None, lo=0.0, hi=2000.0, lo_open=True, unit="mg per dose",
                     source="oral daily doses: hormone_therapy tamoxifen 20 mg, "
                            "apoptosis_reactivator venetoclax 400 mg (labels), anti_metastatic "
                            "(approx.); intravenous: checkpoint_blockade pembrolizumab 200 mg "
                            "every 3 weeks (label); bound: the largest kind's; each kind's own bound: "
                            "DOSE_LIMITS"),
    "dose_million_cells": Param("float", None, lo=0.0, hi=150000.0, lo_open=True,
                                unit="million cells per infusion",
                                source="dc_vaccine: sipuleucel-T at least 50 million activated "
                                       "cells per infusion (label); adoptive_t_cells: TIL about "
                                       "10^10 cells, lifileucel 7.5-72 x 10^9 (label); each "
                                       "kind's own bound: DOSE_LIMITS"),
    "held": Param("bool", False, source="true: given only when a protocol rule starts it "
                                        "(engine.protocol)"),
    "max_cumulative": Param("float", None, lo=0.0, hi=1e6, lo_open=True,
                            unit="the dose's unit, summed over the run",
                            source="tolerability limit: a delivery that would exceed it is not "
                                   "given (e.g. doxorubicin 450-550 mg/m² lifetime, label)"),
    "dose_mg_per_m2": Param("float", None, lo=0.0, hi=350.0, lo_open=True, unit="mg/m² per dose",
                            source="chemotherapy (paclitaxel): 175 mg/m² over 3 h every 3 "
                                   "weeks, 135 mg/m² (label), 80 mg/m² weekly; bound: twice "
                                   "the highest labelled dose"),
    "region": Param("str", "lattice", choices=REGIONS,
                    source="the target volume: the whole lattice, a sphere or a box"),
    "center_um": Param("vec3", None, lo=0.0, unit="µm (z, y, x); default: lattice centre",
                       source="sphere: its centre"),
    "radius_um": Param("float", None, lo=0.0, hi=1e6, lo_open=True, unit="µm",
                       source="sphere: its radius"),
    "box_from_um": Param("vec3", None, lo=0.0, unit="µm (z, y, x)", source="box: one corner"),
    "box_to_um": Param("vec3", None, lo=0.0, unit="µm (z, y, x)",
                       source="box: the opposite corner (each coordinate above box_from_um)"),
}


def delivery_steps(therapy: dict, step_h: float) -> list[int]:
    """The steps of a therapy's deliveries: (start_h + k · interval_h) / step_h rounded
    half up, at least 1 (the first step a run takes), in order."""
    return [max(1, math.floor((therapy["start_h"] + k * therapy["interval_h"]) / step_h + 0.5))
            for k in range(therapy["count"])]


def check_therapies(scenario, fail) -> None:
    """Each therapy gives what its kind needs, names a lattice of the body, and has a
    well-formed target; `fail(key, message)` raises the one-line error."""
    lattices = {"primary"} | {site["name"] for site in scenario.sites}
    for i, therapy in enumerate(scenario.therapies):
        at = f"therapy[{i}]"
        for key in THERAPY_KINDS[therapy["kind"]]:
            if therapy[key] is None:
                fail(at, f"{at}.{key} is missing: a {therapy['kind']} therapy needs it")
        key = dose_key(therapy)
        for other in DOSE_UNITS:
            if other != key and therapy.get(other) is not None:
                fail(f"{at}.{other}", f"{at}.{other}: a {therapy['kind']} therapy is dosed in "
                                      f"{key} ({DOSE_UNITS[key]}), not {other}")
        limit, why = DOSE_LIMITS.get(therapy["kind"], (None, ""))
        if limit is not None and therapy[key] > limit:
            fail(f"{at}.{key}", f"{at}.{key} = {therapy[key]:g} {DOSE_UNITS[key]} is above "
                                f"{limit:g} {DOSE_UNITS[key]}, the most a {therapy['kind']} "
                                f"dose may be ({why})")
        if therapy["kind"] not in LOCAL_KINDS and (therapy["lattice"] != "primary"
                                                   or therapy["region"] != "lattice"):
            fail(at, f"{at}: kind \"{therapy['kind']}\" is a drug that reaches every lattice of "
                     "the body through the plasma; lattice and region name the target of "
                     "radiotherapy only")
        if therapy["lattice"] not in lattices:
            fail(f"{at}.lattice", f"{at}.lattice = \"{therapy['lattice']}\" is not a lattice of "
                                  f"the body ({', '.join(sorted(lattices))})")
        if therapy["region"] == "sphere" and therapy["radius_um"] is None:
            fail(at, f"{at}.radius_um is missing: a sphere region needs it")
        if therapy["region"] == "box":
            corners = therapy["box_from_um"], therapy["box_to_um"]
            if None in corners:
                fail(at, f"{at}.box_from_um and box_to_um are needed for a box region")
            if not all(a < b for a, b in zip(*corners)):
                fail(f"{at}.box_to_um", f"{at}.box_to_um must exceed box_from_um on every axis")
    step_h = scenario["time.step_h"]
    dosed: dict[tuple[str, int], str] = {}
    for i, therapy in enumerate(scenario.therapies):
        if therapy["kind"] in LOCAL_KINDS or therapy["held"]:
            continue
        for step in delivery_steps(therapy, step_h):
            other = dosed.setdefault((therapy["kind"], step), therapy["name"])
            if other != therapy["name"]:
                fail(f"therapy[{i}].start_h",
                     f"therapy[{i}] \"{therapy['name']}\" doses {therapy['kind']} at step {step}, "
                     f"as \"{other}\" does: overlapping schedules of one drug (merge them, or "
                     "let a rule switch between them)")
    names = [t["name"] for t in scenario.therapies]
    for i, name in enumerate(names):
        if name in names[:i]:
            fail(f"therapy[{i}].name", f"therapy[{i}].name = \"{name}\" repeats "
                                       f"therapy[{names.index(name)}].name")


def where(therapy: dict) -> str:
    """The lattice a therapy treats, or "body" for a drug (it reaches every lattice)."""
    return therapy["lattice"] if therapy["kind"] in LOCAL_KINDS else "body"


RECORD_DTYPE = np.dtype([("step", np.int64), ("time_h", np.float64), ("therapy", "S64"),
                         ("kind", "S32"), ("lattice", "S64"), ("delivery", np.int32),
                         ("count", np.int32), ("dose", np.float64), ("dose_unit", "S16")])
DOSE_UNITS = {"dose_Gy": "Gy", "dose_mg_per_kg": "mg/kg", "dose_mg_per_m2": "mg/m2",
              "dose_mg": "mg", "dose_million_cells": "1e6 cells"}


def dose_key(therapy: dict) -> str:
    """The key of a therapy's dose (its kind's first required key)."""
    return THERAPY_KINDS[therapy["kind"]][0]


def _course(therapy: dict, offset: int, factor: float, step_h: float) -> list[tuple]:
    """The deliveries of one course of `therapy` starting `offset` steps into the run."""
    dose = therapy[dose_key(therapy)] * factor
    return [(offset + step, (offset + step) * step_h, therapy["name"], therapy["kind"],
             where(therapy), k + 1, therapy["count"], dose, DOSE_UNITS[dose_key(therapy)])
            for k, step in enumerate(delivery_steps(therapy, step_h))]


def deliveries(scenario) -> np.ndarray:
    """Every delivery of the schedule, in time order (at one step, in file order): the
    courses of the therapies that are not held, edited by the protocol's decisions so far
    (`Scenario.decisions`, engine.protocol: start, stop, reduce — each from the step after
    its check-up on), and cut at each therapy's `max_cumulative` dose.  The therapy
    record a run writes is this schedule up to the step it reached."""
    step_h = scenario["time.step_h"]
    by_name = {t["name"]: t for t in scenario.therapies}
    rows = [row for t in scenario.therapies if not t["held"] for row in _course(t, 0, 1.0, step_h)]
    factor = dict.fromkeys(by_name, 1.0)
    for d in scenario.decisions:
        if d.verb == "start":
            rows += _course(by_name[d.therapy], d.step, factor[d.therapy], step_h)
        elif d.verb == "stop":
            rows = [r for r in rows if r[2] != d.therapy or r[0] <= d.step]
        else:                                           # reduce
            factor[d.therapy] *= d.factor
            rows = [r[:7] + (r[7] * d.factor if r[2] == d.therapy and r[0] > d.step else r[7],)
                    + r[8:] for r in rows]
    record = np.array(rows, dtype=RECORD_DTYPE)
    record = record[np.argsort(record["step"], kind="stable")]
    return record[within_limits(record, by_name)]


def within_limits(record: np.ndarray, by_name: dict) -> np.ndarray:
    """Mask of the deliveries given: each therapy's until the one that would take its
    cumulative dose beyond `max_cumulative` (that one and every later one dropped)."""
    keep = np.ones(len(record), dtype=bool)
    total, stopped = {}, set()
    for i, row in enumerate(record):
        name = row["therapy"].decode()
        limit = by_name[name]["max_cumulative"]
        if name in stopped or (limit is not None and total.get(name, 0.0) + row["dose"] > limit * (1 + 1e-12)):
            keep[i] = False
            stopped.add(name)
            continue
        total[name] = total.get(name, 0.0) + float(row["dose"])
    return keep


def deliveries_at(scenario, step: int) -> np.ndarray:
    """The therapy record of one step: every delivery the schedule gives at `step`."""
    record = deliveries(scenario)
    return record[record["step"] == step]


def schedule_lines(scenario, steps: int) -> list[str]:
    """The schedule as it will run, one line per delivery, in time order, then a line
    for each therapy its dose limit cuts short."""
    by_name = {therapy["name"]: therapy for therapy in scenario.therapies}
    record = deliveries(scenario)
    lines = []
    for row in record:
        therapy = by_name[row["therapy"].decode()]
        key = dose_key(therapy)
        target = ("systemic: every lattice" if therapy["kind"] not in LOCAL_KINDS
                  else f"sphere r = {therapy['radius_um']:g} µm" if therapy["region"] == "sphere"
                  else therapy["region"])
        given = "" if row["step"] <= steps else "  (after the run ends: not given)"
        lines.append(f"  step {row['step']:>6} (day {row['time_h'] / 24:6.2f})  "
                     f"{therapy['name']} {row['delivery']}/{row['count']}  "
                     f"{therapy['kind']} on {where(therapy)} ({target}), "
                     f"{key} = {row['dose']:g}{given}")
    for t in scenario.therapies:
        given = int((record["therapy"] == t["name"].encode()).sum())
        if t["max_cumulative"] is not None and not t["held"] and given < t["count"]:
            lines.append(f"  {t['name']}: {given} of {t['count']} deliveries: the next would exceed "
                         f"max_cumulative = {t['max_cumulative']:g} {DOSE_UNITS[dose_key(t)]}")
    return lines
