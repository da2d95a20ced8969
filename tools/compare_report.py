"""The comparison report of ``oncolattice compare``, from the arms' run files alone:

    compare.html             self-contained page (inline CSS, PNGs as data URIs) with the
                             research-tool disclaimer, the arms and seeds, the figures
                             and the table per arm
    compare.json             the same numbers: every replicate's outcomes
                             (:meth:`tools.outcomes.Outcomes.summary`) and each arm's
                             medians and ranges
    compare_burden.png       burden (cells, body) and primary lesion diameter per arm:
                             median over replicates and min–max band
    compare_pfs.png          progression-free fraction per arm (Kaplan–Meier)
    compare_toxicity.png     normal-tissue harm and functional tissue preserved per arm
    compare_metastases.png   colonies by class per arm

Every run must be complete (``status = complete``); otherwise nothing is written and
the error names the arm and replicate.  Files go to temporary names and are renamed
into place, ``compare.html`` last.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

import numpy as np

from engine.errors import UserError
from engine.runformat import atomic_path
from tools.outcome_plots import CAPTIONS, build_compare_figures, pfs_data, primary_organ
from tools.outcomes import RECIST, kaplan_meier, median_time, read_outcomes
from tools.report_html import CSS, TREATMENT_DISCLAIMER, _fmt
from tools.report_plots import png_bytes

FIGURES = ("compare_burden", "compare_pfs", "compare_toxicity", "compare_metastases")
REPORT_OUTPUTS = ("compare.html", "compare.json") + tuple(f"{f}.png" for f in FIGURES)


class IncompleteRun(UserError):
    """A run of the comparison is missing or did not complete: exit 1."""

    exit_status = 1


def stats(values) -> dict:
    """Median, minimum and maximum of `values` (None left out); all None if none is left."""
    v = [float(x) for x in values if x is not None and np.isfinite(x)]
    if not v:
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(v)), "min": min(v), "max": max(v)}


def load_arms(arms: dict[str, list]) -> dict[str, list]:
    """name -> the Outcomes of its replicates; every run file must be complete."""
    out = {}
    for name, paths in arms.items():
        reps = []
        for r, path in enumerate(paths):
            try:
                o = read_outcomes(path)
            except UserError as exc:
                raise IncompleteRun(f"arm {name} replicate {r}: {exc}") from None
            if o.status != "complete":
                raise IncompleteRun(f"arm {name} replicate {r}: {path}: run status "
                                    f"{o.status}, not complete; no report written")
            reps.append(o)
        out[name] = reps
    return out


def arm_summary(reps) -> dict:
    """An arm's medians and ranges over its replicates."""
    times, events = pfs_data(reps)
    xs, ys = kaplan_meier(times, events)
    organ = primary_organ(reps[0])
    summaries = [o.summary() for o in reps]
    therapies = sorted({t for s in summaries for t in s["therapy_given"]})
    classes = list(summaries[0]["metastases"])
    return {
        "burden_cells_final": stats(s["burden_cells_final"] for s in summaries),
        "burden_volume_mm3_final": stats(s["burden_volume_mm3_final"] for s in summaries),
        "primary_diameter_mm_final": stats(s["primary_diameter_mm_final"] for s in summaries),
        "progressed": sum(events),
        "replicates": len(reps),
        "time_to_progression_h": {"median": median_time(xs, ys),
                                  "each": [s["progression"]["time_h"] for s in summaries]},
        "progression_free": {"time_h": xs.tolist(), "fraction": ys.tolist()},
        "primary_organ": organ,
        "functional_preserved": {k: stats(s["functional_preserved"].get(k) for s in summaries)
                                 for k in summaries[0]["functional_preserved"]},
        "harm_cells_total": stats(s["harm_cells_total"] for s in summaries),
        "metastases": {c: {w: stats(s["metastases"].get(c, {}).get(w, 0) for s in summaries)
                           for w in ("founded", "alive", "measurable")} for c in classes},
        "therapy_given": {t: {
            "kind": next(s["therapy_given"][t]["kind"] for s in summaries
                         if t in s["therapy_given"]),
            "dose_unit": next(s["therapy_given"][t]["dose_unit"] for s in summaries
                              if t in s["therapy_given"]),
            "deliveries": stats(s["therapy_given"].get(t, {}).get("deliveries", 0)
                                for s in summaries),
            "total_dose": stats(s["therapy_given"].get(t, {}).get("total_dose", 0.0)
                                for s in summaries)} for t in therapies},
        "decisions": stats(len(s["decisions"]) for s in summaries),
        "runs": summaries,
    }


def _range(st: dict, spec=",.0f", unit="") -> str:
    if st["median"] is None:
        return "–"
    if st["min"] == st["max"]:
        return f"{_fmt(st['median'], spec)}{unit}"
    return (f"{_fmt(st['median'], spec)}{unit} [{_fmt(st['min'], spec)}–"
            f"{_fmt(st['max'], spec)}]")


def _ttp(a: dict) -> str:
    m = a["time_to_progression_h"]["median"]
    text = "not reached" if m is None else f"{m / 24.0:.3g} days"
    return f"{text} ({a['progressed']}/{a['replicates']} progressed)"


def _therapy_text(a: dict) -> str:
    text = "; ".join(f"{name} ({g['kind']}): {_range(g['deliveries'], '.0f')} deliveries, "
                     f"{_range(g['total_dose'], '.3g')} {g['dose_unit']}"
                     for name, g in a["therapy_given"].items()) or "none"
    if a["decisions"]["max"]:
        text += f"; protocol decisions: {_range(a['decisions'], '.0f')}"
    return text


def arm_table(arms: dict) -> str:
    e = html.escape
    head = ("<tr><th>arm</th><th>protocol</th><th>final burden, cells (median [range])</th>"
            "<th>primary lesion, mm</th><th>time to progression (median)</th>"
            "<th>functional tissue preserved</th><th>harm: functional cells killed by therapy"
            "</th><th>metastases alive (local / regional / distant)</th>"
            "<th>therapy given</th></tr>")
    rows = []
    for name, a in arms.items():
        organ = a["primary_organ"]
        preserved = a["functional_preserved"].get(organ) if organ else None
        mets = " / ".join(_range(a["metastases"][c]["alive"], ".0f")
                          for c in ("local", "regional", "distant") if c in a["metastases"])
        rows.append(
            f'<tr class="arm"><th>{e(name)}</th><td>{e(a["protocol"])}</td>'
            f'<td class="num">{e(_range(a["burden_cells_final"]))}</td>'
            f'<td class="num">{e(_range(a["primary_diameter_mm_final"], ".3g"))}</td>'
            f"<td>{e(_ttp(a))}</td>"
            f"<td>{e((organ or '').replace('_', ' '))} "
            f"{e(_range(preserved, '.3f') if preserved else '–')}</td>"
            f'<td class="num">{e(_range(a["harm_cells_total"]))}</td>'
            f"<td>{e(mets)}</td><td>{e(_therapy_text(a))}</td></tr>")
    return f'<table class="arms">\n{head}\n' + "\n".join(rows) + "\n</table>"


def _figure(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="{name}"><img alt="{name} plot" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(CAPTIONS[name])}</figcaption></figure>")


def render_compare(data: dict, images: dict[str, bytes]) -> str:
    e = html.escape
    info = data["info"]
    seeds = info["seeds"]
    arms = ", ".join(f"{n} = {p}" for n, p in info["arms"].items())
    facts = [("Scenario", info["scenario"]), ("Arms (name = protocol)", arms),
             ("Replicates per arm", str(info["replicates"])),
             ("Seeds (replicate r: scenario seed + r, the same in every arm)",
              ", ".join(map(str, seeds))),
             ("Model time per run", f"{info['days']:g} days ({info['steps']} steps)"),
             ("Backend", str(info["backend"])),
             ("Wall time", _fmt(info.get("wall_s"), ".1f", " s")),
             ("Progression rule (RECIST-like)", data["recist_rule"])]
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>oncolattice compare: {e(info['scenario'])}</title>",
        f"<style>{CSS}</style>", "</head>", "<body><main>",
        f"<h1>oncolattice compare: {e(info['scenario'])}</h1>",
        f'<p class="disclaimer">{e(TREATMENT_DISCLAIMER)}</p>',
        "<p>Every arm ran on the same seeds (paired replicates): replicate r of each arm "
        "starts from the same tissue and draws the same random numbers until the treatments "
        "differ. Spread is over replicates: median and range (min–max).</p>",
        f"<table>\n{table}\n</table>",
        '<section id="arms">', "<h2>Arms</h2>", arm_table(data["arms"]), "</section>",
        "<h2>Figures</h2>"]
    parts += [_figure(name, images[name]) for name in FIGURES if name in images]
    runs = "\n".join(
        f"<tr><td>{e(r['arm'])}</td><td class=\"num\">{r['replicate']}</td>"
        f"<td class=\"num\">{r['seed']}</td><td>{e(r['out'])}</td></tr>"
        for r in info.get("runs", []))
    if runs:
        parts += ["<h2>Run files</h2>",
                  "<table>\n<tr><th>arm</th><th>replicate</th><th>seed</th><th>run file</th>"
                  f"</tr>\n{runs}\n</table>"]
    parts += [f"<footer>Comparison written {e(data['written_utc'])} by oncolattice compare. "
              f"{e(TREATMENT_DISCLAIMER)}</footer>", "</main></body>", "</html>", ""]
    return "\n".join(parts)


def _write(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_compare(out, arms: dict[str, list], info: dict) -> dict:
    """Read every arm's run files (`arms`: name -> run file per replicate), write the
    comparison into folder `out`; return the paths written."""
    out = Path(out)
    outcomes = load_arms(arms)
    figures = build_compare_figures(outcomes)
    images = {name: png_bytes(fig) for name, fig in figures.items() if fig is not None}
    summaries = {}
    for name, reps in outcomes.items():
        summaries[name] = {"protocol": info["arms"].get(name, ""), **arm_summary(reps)}
    data = {"info": info, "disclaimer": TREATMENT_DISCLAIMER,
            "recist_rule": RECIST.describe(), "arms": summaries,
            "written_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}
    page = render_compare(data, images).encode("utf-8")
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, png in images.items():
        _write(out / f"{name}.png", png)
        written[name] = str(out / f"{name}.png")
    _write(out / "compare.json",
           (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    _write(out / "compare.html", page)
    return {"html": str(out / "compare.html"), "json": str(out / "compare.json"),
            "images": written}
