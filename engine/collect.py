"""`oncolattice ensemble collect DIR`: the members' summaries merged into two tables.

``DIR/ensemble.csv``: one row per member of the plan (``DIR/ensemble.plan.json``), in
member order: member, sweep point, replicate, seed, the swept keys' values, its state
(complete, failed, running, missing) and the outcome columns (:func:`outcomes`; empty
for a member that is not complete).

``DIR/ensemble.json``: per sweep point its values and, over its complete members, n and
the mean, sample standard deviation (n − 1 in the denominator; null below 2 members),
min and max of each outcome; then the members that are not complete: ``failed`` (with
the error and the command that reruns the member alone) and ``missing`` (not run, still
running, or killed).  Only summaries and status records are read (no run file), so
collecting thousands of members is quick; numbers are written as the summaries hold
them, so the same members give the same tables wherever they ran.
"""
from __future__ import annotations

import csv
import statistics
from pathlib import Path

from .errors import UserError, shown
from .members import RUN_FILE, SUMMARY, member_state, read_json
from .output import write_summary
from .runformat import atomic_path

CSV = "ensemble.csv"
JSON = "ensemble.json"
COLONY_CLASSES = ("local", "regional", "distant")


def outcomes(summary: dict) -> dict:
    """The outcome columns of one run summary (:func:`engine.run.run`): tumour cells at
    the start and at the end, the growth factor (end / start), the functional fraction,
    necrotic and dormant voxels at the end; with metastatic sites also the colonies
    founded by class and the cells that entered the circulation."""
    first, last = summary["counts_initial"], summary["counts"]
    row = {"tumor_initial": first["tumor"], "tumor_final": last["tumor"],
           "tumor_growth": summary["tumor_growth"],
           "functional_fraction": summary["functional_fraction"],
           "necrotic_final": last["necrotic"], "dormant_final": last.get("dormant", 0)}
    body = summary.get("body")
    if body:
        row.update({f"colonies_{c}": body["colonies_by_class"].get(c, 0) for c in COLONY_CLASSES})
        row["circulating_cells"] = body["circulation"]["cells"]
    return row


def stats(values: list[float]) -> dict:
    """n, mean, sample sd (None below 2), min, max."""
    return {"n": len(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None,
            "min": min(values), "max": max(values)}


def read_plan(folder: Path) -> dict:
    plan = read_json(folder / "ensemble.plan.json")
    if plan is None:
        raise UserError(f"{shown(folder)}: not an ensemble folder (no readable "
                        f"ensemble.plan.json)")
    return plan


def member_rows(folder: Path, plan: dict) -> list[dict]:
    """Every member of the plan with its state, status record and outcomes."""
    rows = []
    for entry in plan["members"]:
        values = plan["points"][entry["point"]]
        where = folder / entry["folder"]
        state, status = member_state(where, entry["seed"], values, str(where / RUN_FILE))
        found = outcomes(read_json(where / SUMMARY)) if state == "complete" else {}
        rows.append({"entry": entry, "values": values, "state": state, "outcomes": found,
                     "error": status.get("error")})
    return rows


def write_csv(path: Path, plan: dict, rows: list[dict]) -> None:
    keys = list(plan["sweep"])
    columns = list(dict.fromkeys(c for row in rows for c in row["outcomes"]))
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["member", "point", "replicate", "seed", *keys, "state", *columns])
        for row in rows:
            e = row["entry"]
            out.writerow([e["member"], e["point"], e["replicate"], e["seed"],
                          *(row["values"][k] for k in keys), row["state"],
                          *(row["outcomes"].get(c, "") for c in columns)])


def point_table(plan: dict, rows: list[dict]) -> list[dict]:
    """Per sweep point: its values, its members, and the statistics of each outcome."""
    points = []
    for p, values in enumerate(plan["points"]):
        mine = [r for r in rows if r["entry"]["point"] == p]
        done = [r["outcomes"] for r in mine if r["state"] == "complete"]
        columns = list(dict.fromkeys(c for o in done for c in o))
        points.append({"point": p, "values": values,
                       "members": [r["entry"]["member"] for r in mine], "n": len(done),
                       "outcomes": {c: stats([o[c] for o in done if c in o]) for c in columns}})
    return points


def collect(folder: Path) -> dict:
    """Write DIR/ensemble.csv and DIR/ensemble.json; return the JSON's content."""
    folder = Path(folder)
    plan = read_plan(folder)
    rows = member_rows(folder, plan)
    write_csv(folder / CSV, plan, rows)
    table = {"scenario": plan["scenario"], "scenario_name": plan["scenario_name"],
             "base_seed": plan["base_seed"], "seed_rule": plan["seed_rule"],
             "replicates": plan["replicates"], "sweep": plan["sweep"],
             "members": len(rows), "complete": sum(r["state"] == "complete" for r in rows),
             "points": point_table(plan, rows),
             "failed": [{"member": r["entry"]["member"], "error": r["error"],
                         "rerun": r["entry"]["rerun"]} for r in rows if r["state"] == "failed"],
             "missing": [r["entry"]["member"] for r in rows
                         if r["state"] in ("missing", "running")]}
    write_summary(folder / JSON, table)
    return table
