"""The report folder: the self-contained ``index.html`` (inline CSS, plots as
PNG data URIs, no external resources) and :func:`write_report`, which writes
it with the PNG plots and ``summary.json``.

Everything is rendered before anything is written; each output file goes to
a temporary name first and is renamed into place
(:func:`engine.runformat.atomic_path`), ``index.html`` last, so a report that
fails part-way never leaves a half-written page.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path

from engine.errors import UserError
from engine.runformat import atomic_path, plain_rows
from tools.report_plots import (CAPTIONS, FIGURES, METASTASIS_FIGURES, build_body_figures,
                                build_figures, kind_label, png_bytes)
from tools.report_series import load_body, load_series, summarise, summarise_body
from tools.outcome_plots import CAPTIONS as OUTCOME_CAPTIONS, plot_outcomes
from tools.outcomes import run_outcomes

DISCLAIMER = "research tool, not clinical advice"
# every section that shows treatment outcomes carries this (the README's wording)
TREATMENT_DISCLAIMER = (
    f"oncolattice is a {DISCLAIMER}. Simulated treatment outcomes are not a promise of cure "
    "or a prediction for any patient; whether and which therapy is appropriate must always "
    "be decided individually by a physician.")


# -- the page ----------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0; background: #f4f4f1; color: #222; line-height: 1.45; }
main { max-width: 1100px; margin: 0 auto; padding: 1.2em 1.5em 3em; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
.disclaimer { background: #fff4d6; border: 1px solid #e0b84c; padding: 0.5em 0.9em;
              border-radius: 4px; font-weight: 600; }
.status { display: inline-block; padding: 0.1em 0.6em; border-radius: 3px; color: #fff;
          font-weight: 600; }
.status.complete { background: #2e7d32; }
.status.running { background: #1565c0; }
.status.interrupted, .status.failed, .status.unknown { background: #c62828; }
.note { background: #e8eef7; border-left: 4px solid #1565c0; padding: 0.4em 0.8em; }
table { border-collapse: collapse; background: #fff; }
td, th { padding: 0.3em 0.9em; border-bottom: 1px solid #e3e3e3; text-align: left;
         vertical-align: top; }
th { font-weight: 600; color: #444; white-space: nowrap; }
figure { background: #fff; margin: 1em 0; padding: 0.8em; border: 1px solid #ddd;
         border-radius: 4px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 0.92em; color: #444; margin-top: 0.5em; }
pre { background: #fff; border: 1px solid #ddd; padding: 0.8em; overflow-x: auto;
      font-size: 0.85em; }
footer { margin-top: 2.5em; font-size: 0.85em; color: #666; }
.swatch { display: inline-block; width: 1em; height: 1em; border: 1px solid #888;
          vertical-align: middle; }
td.num { text-align: right; }
"""


def _fmt(x, spec=".4g", unit=""):
    """`x` formatted by `spec`; as it is where `spec` does not fit it (a
    count column a damaged file stores as floats); "–" for None."""
    if x is None:
        return "–"
    try:
        return f"{x:{spec}}{unit}"
    except (TypeError, ValueError):
        return f"{x}{unit}"


def _status_text(summary: dict) -> str:
    status = summary["status"]
    if status == "running":
        return ("the run file is still open for writing, or its writer stopped without "
                "closing it; this report shows the steps and snapshots written so far")
    if status == "interrupted":
        return "the run was interrupted; this report shows the steps and snapshots it wrote"
    if status == "failed":
        return "the run failed; this report shows the steps and snapshots it wrote"
    return ""


def _kinds_section(summary: dict) -> list[str]:
    """The voxel kinds of the lattice as the run file names them, with their
    colours and voxel counts in the last snapshot."""
    kinds = summary.get("kinds") or []
    if not kinds:
        return []
    e = html.escape
    rows = []
    for k in kinds:
        voxels = k["voxels_last_snapshot"]
        note = [] if k["stored"] else ["code not named in the file"]
        if k["drawn"] and not k["designed_colour"]:
            note.append("colour derived from the name")
        rows.append(f'<tr><td><span class="swatch" style="background:{e(k["colour"])}"></span>'
                    f'</td><td>{e(kind_label(k["name"]))}</td><td>{e(k["name"])}</td>'
                    f'<td class="num">{k["code"]}</td>'
                    f'<td class="num">{"–" if voxels is None else f"{voxels:,}"}</td>'
                    f"<td>{e('; '.join(note))}</td></tr>")
    head = ("<tr><th></th><th>kind</th><th>stored name</th><th>code</th>"
            "<th>voxels, last snapshot</th><th></th></tr>")
    return ["<h2>Voxel kinds</h2>",
            "<p>As the run file names them (the kind codes stored with its snapshots).</p>",
            f"<table>\n{head}\n" + "\n".join(rows) + "\n</table>"]


def _figure_html(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="{name}"><img alt="{name} plot" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(CAPTIONS.get(name) or OUTCOME_CAPTIONS[name])}"
            f"</figcaption></figure>")


def _registry_rows(colonies: list[dict]) -> list[str]:
    """One table row per colony of the registry."""
    e = html.escape

    def cell(v, spec="d", num=True):
        text = "–" if v is None else _fmt(v, spec)
        return f'<td class="num">{e(text)}</td>' if num else f"<td>{e(text)}</td>"
    rows = []
    for c in colonies:
        site = c["lattice"] or "–"
        if c["organ"] and c["organ"] != c["lattice"]:
            site += f" ({c['organ'].replace('_', ' ')})"
        growth = c["first_growth_step"]
        rows.append(f'<tr class="colony"><td class="num">{e(_fmt(c["id"], "d"))}</td>'
                    f"<td>{e(site)}</td><td>{e(c['class'] or '–')}</td>"
                    + cell(c["founder_clone"]) + cell(c["arrival_step"])
                    + ('<td class="num">not yet</td>' if growth is not None and growth < 0
                       else cell(growth))
                    + cell(c["cells"]) + cell(c["diameter_um"], ".4g")
                    + f"<td>{e(c['stage'] or '–')}</td></tr>")
    return rows


def metastasis_section(m: dict, colonies: list[dict], images: dict[str, bytes]) -> list[str]:
    """The metastasis page: the body's headline numbers, its figures and the colony
    registry (`m`: summary.json's ``metastasis`` block)."""
    e = html.escape
    sites = ", ".join(f"{lat['name']} ({lat['organ']}, {lat['class'] or lat['role'] or '?'})"
                      for lat in m["lattices"] if lat["role"] == "site") or "none"
    by_class = ", ".join(f"{k} {v}" for k, v in m["colonies_by_class"].items())
    by_stage = ", ".join(f"{k} {v}" for k, v in m["colonies_by_stage"].items())
    facts = [
        ("Site lattices", sites),
        ("Colonies in the registry", f"{m['colonies']} ({by_class}; {by_stage})"),
        ("Largest colony", _fmt(m["largest_colony_diameter_um"], ".4g", " µm")),
        ("Cells shed, total", _fmt(m["shed_cells_total"], ",")),
        ("CTCs in blood, final / peak",
         f"{_fmt(m['ctc_in_blood_final'], ',')} / {_fmt(m['ctc_in_blood_peak'], ',')}"),
        ("CTCs in lymph, final", _fmt(m["ctc_in_lymph_final"], ",")),
        ("CTCs per 7.5 mL blood, final / peak",
         f"{_fmt(m['ctc_per_7_5_mL_final'], '.3g')} / {_fmt(m['ctc_per_7_5_mL_peak'], '.3g')}"),
        ("CTC records", _fmt(m["ctc_records"], ",")),
    ]
    facts += [(f"{k.replace('_', ' ')}, total", _fmt(v, ",")) for k, v in m["events_total"].items()]
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    parts = ['<section id="metastasis">', "<h2>Metastasis</h2>",
             "<p>The body of lattices: the primary tumour, its site lattices (regional lymph "
             "node, distant organs), the circulation between them and the colonies seeded.</p>",
             f"<table>\n{table}\n</table>"]
    parts += [_figure_html(name, images[name]) for name in METASTASIS_FIGURES if name in images]
    head = ("<tr><th>id</th><th>site</th><th>class</th><th>founder clone</th>"
            "<th>arrival (step)</th><th>first growth (step)</th><th>cells</th>"
            "<th>diameter (µm)</th><th>stage</th></tr>")
    parts += ['<h3 id="colony-registry">Colony registry</h3>']
    if colonies:
        parts.append(f'<table class="registry">\n{head}\n' + "\n".join(_registry_rows(colonies))
                     + "\n</table>")
    else:
        parts.append("<p>No colony has been registered yet.</p>")
    parts.append("</section>")
    return parts


def therapy_section(record: list[dict]) -> list[str]:
    """The therapy record: every delivery the run gave, with the research-tool caveat."""
    e = html.escape
    head = "<tr><th>step</th><th>day</th><th>therapy</th><th>kind</th><th>target</th>" \
           "<th>delivery</th><th>dose</th></tr>"
    rows = [f"<tr><td>{r['step']}</td><td>{r['time_h'] / 24.0:.2f}</td><td>{e(r['therapy'])}</td>"
            f"<td>{e(r['kind'])}</td><td>{e(r['lattice'])}</td>"
            f"<td>{r['delivery']}/{r['count']}</td><td>{r['dose']:g} {e(r['dose_unit'])}</td></tr>"
            for r in record]
    return ['<section id="therapy">', "<h2>Therapy record</h2>",
            f"<p>Every delivery the run gave ({len(record)}).</p>",
            f'<p class="disclaimer">{e(TREATMENT_DISCLAIMER)}</p>',
            f"<table>\n{head}\n" + "\n".join(rows) + "\n</table>", "</section>"]


def outcomes_section(o: dict, images: dict[str, bytes]) -> list[str]:
    """The Outcomes section (`o`: summary.json's ``outcomes`` block, from
    :meth:`tools.outcomes.Outcomes.summary`), with the research-tool disclaimer."""
    e = html.escape
    p = o["progression"]
    if p["progressed"]:
        progression = (f"at {_fmt(p['time_h'], '.4g')} h ({_fmt(p['time_h'] / 24.0, '.3g')} "
                       f"days, step {p['step']}): {p['reason']}")
    else:
        progression = f"none (censored at {_fmt(p['censored_h'], '.4g')} h)"
    organs = ", ".join(f"{k.replace('_', ' ')} {_fmt(v, '.4f')}"
                       for k, v in o["functional_preserved"].items()) or "–"
    harm = "; ".join(f"{name}: {col} {_fmt(v, ',.0f')}"
                     for name, lat in o["lattices"].items()
                     for col, v in lat["harm_cells"].items()) or "no harm column in this run"
    mets = ", ".join(f"{c} {m['founded']} founded / {m['alive']} alive / {m['measurable']} "
                     f"measurable" for c, m in o["metastases"].items())
    given = "; ".join(f"{name} ({g['kind']}): {g['deliveries']} deliveries, "
                      f"{g['total_dose']:g} {g['dose_unit']} in all"
                      for name, g in o["therapy_given"].items()) or "none"
    facts = [
        ("Tumour burden, initial → final (cells, body)",
         f"{_fmt(o['burden_cells_initial'], ',.0f')} → {_fmt(o['burden_cells_final'], ',.0f')}"),
        ("Tumour burden volume, final", _fmt(o["burden_volume_mm3_final"], ".4g", " mm³")),
        ("Primary lesion diameter, initial → final",
         f"{_fmt(o['primary_diameter_mm_initial'], '.4g')} → "
         f"{_fmt(o['primary_diameter_mm_final'], '.4g', ' mm')}"),
        ("Sum of target diameters: nadir / final",
         f"{_fmt(o['nadir_mm'], '.4g')} / {_fmt(o['sum_diameters_mm_final'], '.4g', ' mm')}"),
        ("Progression (RECIST-like)", progression),
        ("New lesions", str(len(o["new_lesions"]))),
        ("Metastases by class", mets),
        ("Functional tissue preserved", organs),
        ("Normal-tissue harm (functional cells killed by therapy)", harm),
        ("Therapy given", given),
        ("Protocol decisions at check-ups",
         "; ".join(f"day {d['time_h'] / 24.0:.3g}: {d['action']} {d['therapy']}"
                   + (f" × {d['factor']:g}" if d.get("factor") not in (None, 0, 1) else "")
                   for d in o["decisions"]) or "none"),
    ]
    table = "\n".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in facts)
    parts = ['<section id="outcomes">', "<h2>Outcomes</h2>",
             f'<p class="disclaimer">{e(TREATMENT_DISCLAIMER)}</p>',
             f"<p>Computed from the run file (tools/outcomes.py). Progression rule: "
             f"{e(o['recist_rule'])}.</p>",
             f"<table>\n{table}\n</table>"]
    if "outcomes" in images:
        parts.append(_figure_html("outcomes", images["outcomes"]))
    parts.append("</section>")
    return parts


def render_html(summary: dict, scenario_toml: str, images: dict[str, bytes],
                notes: list[str], metastasis: list[str] | None = None,
                therapy: list[str] | None = None, outcomes: list[str] | None = None) -> str:
    """The self-contained page: inline CSS, PNGs as data URIs, no external resources."""
    e = html.escape
    status = summary["status"]
    known = ("complete", "running", "interrupted", "failed")
    status_class = status if status in known else "unknown"
    th_h = summary["model_time_h"]
    model_time = "–" if th_h is None else f"{th_h:.4g} h ({th_h / 24.0:.3g} days)"
    steps = f"{summary['steps']}"
    if summary.get("steps_planned") is not None:
        steps += f" of {summary['steps_planned']} planned"
    growth = summary["tumor_growth_factor"]
    organs = ", ".join(f"{e(o.replace('_', ' '))} {_fmt(f, '.4f')}"
                       for o, f in summary["functional_fraction_by_organ"].items())
    primary = summary["functional_fraction_organ"] or "primary organ"
    rows = [
        ("Scenario", e(summary["scenario"])),
        ("Status", f'<span class="status {status_class}">{e(status)}</span>'),
        ("Seed", e(str(summary["seed"]))),
        ("Backend", e(str(summary["backend"]))),
        ("Version", e(str(summary["version"]))),
        ("Run created (UTC)", e(str(summary["created_utc"] or "–"))),
        ("Lattice", e(f"{summary['lattice']}: {' × '.join(map(str, summary['shape_zyx']))} "
                      f"voxels (z × y × x) of {summary['voxel_um']:g} µm")),
        ("Steps", e(steps)),
        ("Model time", e(model_time)),
        ("Snapshots", e(str(summary["snapshots"]))),
        ("Tumour cells, initial → final", e(f"{_fmt(summary['tumor_cells_initial'], 'd')} → "
                                            f"{_fmt(summary['tumor_cells_final'], 'd')}")),
        ("Tumour growth factor", e("–" if growth is None else f"× {growth:.3g}")),
        ("Necrotic cells, final", e(_fmt(summary["necrotic_cells_final"], "d"))),
        ("Tumour volume, final", e(_fmt(summary["tumour_volume_mm3_final"], ".4g", " mm³"))),
        ("Equivalent-sphere radius, final",
         e(_fmt(summary["tumour_radius_um_final"], ".4g", " µm"))),
        (f"Functional fraction, {e(primary.replace('_', ' '))} (the run's own figure)",
         e(_fmt(summary["functional_fraction"], ".4f"))),
        ("Functional fraction, all tissue / per organ",
         f"{e(_fmt(summary['functional_fraction_overall'], '.4f'))}"
         + (f" ({organs})" if organs else "")),
        ("Vessel density, initial → final",
         e(f"{_fmt(summary['vessel_density_mm_per_mm3_initial'], '.4g')} → "
           f"{_fmt(summary['vessel_density_mm_per_mm3_final'], '.4g', ' mm/mm³')}")),
        ("Perfused fraction, final", e(_fmt(summary["perfused_fraction_final"], ".3f"))),
        ("Hypoxic tumour cells, final", e(_fmt(summary["hypoxic_tumor_cells_final"], "d"))),
        ("Peak VEGF", e(_fmt(summary["vegf_max_ng_per_mL_peak"], ".3g", " ng/mL"))),
        ("New vessel length laid", e(_fmt(summary["new_vessel_length_mm_total"], ".4g", " mm"))),
        ("Run file", e(summary["run"])),
    ]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    status_note = _status_text(summary)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>oncolattice report: {e(summary['scenario'])}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body><main>",
        f"<h1>oncolattice report: {e(summary['scenario'])}</h1>",
        (f'<p class="disclaimer">oncolattice is a {DISCLAIMER}. The numbers below are outputs '
         "of a simulation model, not measurements or predictions for any patient.</p>"),
        f'<p>Run status: <span class="status {status_class}">{e(status)}</span>'
        + (f" — {e(status_note)}." if status_note else "") + "</p>",
    ]
    parts += [f'<p class="note">{e(n)}</p>' for n in notes]
    parts += ["<h2>Summary</h2>", f"<table>\n{table}\n</table>"]
    parts += _kinds_section(summary)
    parts += ["<h2>Plots</h2>"]
    parts += [_figure_html(name, images[name]) for name in FIGURES if name in images]
    parts += outcomes or []
    parts += therapy or []
    parts += metastasis or []
    parts += [
        "<h2>Resolved parameters</h2>",
        "<p>The scenario as the run resolved it, with units in the key names.</p>",
        f"<pre>{e(scenario_toml) if scenario_toml else '(not recorded in the run file)'}</pre>",
        (f"<footer>Report written {e(summary['report']['written_utc'])} by oncolattice "
         f"report from {e(summary['run'])}. oncolattice is a {DISCLAIMER}.</footer>"),
        "</main></body>",
        "</html>",
        "",
    ]
    return "\n".join(parts)


# -- writing --------------------------------------------------------------------

def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _prepare_out(out: Path) -> Path:
    """Create the report folder (write_report has checked it is not a file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    return out


def write_report(run_path, out, *, lattice: str | None = None) -> dict:
    """Write the report of run file `run_path` into folder `out`; return the summary."""
    from tools.runfile import RunFile
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    with RunFile(run_path) as run:
        meta = run.choose_lattice(lattice)   # UserError naming an unknown lattice
        s = load_series(run, meta.name)
        if not len(s.counts) and run.n_snapshots == 0:
            raise UserError(f"{run.path}: no steps recorded yet (status {run.status}); "
                            f"nothing to report")
        figures = build_figures(run, meta.name, s)
        summary = summarise(run, s, meta.name)
        scenario_toml = run.attrs.get("scenario_toml", "")      # attrs decodes text
        body = load_body(run) if run.has_body else None
        if body is not None:
            figures.update(build_body_figures(body))
            summary["metastasis"] = summarise_body(body)
        if len(run.counts()):
            outcomes = run_outcomes(run)
            figures["outcomes"] = plot_outcomes(outcomes)
            summary["outcomes"] = outcomes.summary()
        has_body, n_lattices = run.has_body, len(run.lattices)
        delivered = run.therapy()
    if delivered is not None and len(delivered):
        summary["therapy"] = plain_rows(delivered)
    images = {}
    for name, fig in figures.items():
        if fig is not None:
            images[name] = png_bytes(fig)
    notes = []
    if not len(s.counts):
        notes.append("No counts rows have been written yet, so there are no curves.")
    if summary["snapshots"] == 0:
        notes.append("No snapshot has been written yet, so there are no slices.")
    if has_body:
        notes.append(f"The run is a body of {n_lattices} lattices; counts, slices and voxel "
                     f"size above are for lattice {meta.name!r}; the metastasis section "
                     f"covers the whole body.")
    elif n_lattices > 1:
        notes.append(f"The run has {n_lattices} lattices; counts are for the whole run, "
                     f"slices and voxel size for lattice {meta.name!r}.")
    skipped = [n for n in FIGURES if n not in images and n != "slices"]
    if skipped and len(s.counts):
        notes.append("Not plotted (the counts table lacks their columns or they are empty): "
                     + ", ".join(skipped) + ".")
    written = {name: str(out / f"{name}.png") for name in images}
    summary["report"] = {
        "index": str(out / "index.html"),
        "summary": str(out / "summary.json"),
        "images": written,
        "written_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    metastasis = (metastasis_section(summary["metastasis"], body.colonies, images)
                  if body is not None else None)
    therapy = therapy_section(summary["therapy"]) if "therapy" in summary else None
    outcomes = outcomes_section(summary["outcomes"], images) if "outcomes" in summary else None
    page = render_html(summary, scenario_toml, images, notes, metastasis,
                       therapy, outcomes).encode("utf-8")
    out = _prepare_out(out)
    for name, data in images.items():
        _write_atomic(out / f"{name}.png", data)
    _write_atomic(out / "summary.json",
                  (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    _write_atomic(out / "index.html", page)
    return summary
