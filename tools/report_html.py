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
from engine.runformat import atomic_path
from tools.report_plots import CAPTIONS, FIGURES, build_figures, kind_label, png_bytes
from tools.report_series import load_series, summarise

DISCLAIMER = "research tool, not clinical advice"


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


def render_html(summary: dict, scenario_toml: str, images: dict[str, bytes],
                notes: list[str]) -> str:
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
    for name in FIGURES:
        if name in images:
            data = base64.b64encode(images[name]).decode("ascii")
            parts.append(f'<figure id="{name}"><img alt="{name} plot" '
                         f'src="data:image/png;base64,{data}">'
                         f"<figcaption>{e(CAPTIONS[name])}</figcaption></figure>")
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
        meta = run.lattice(lattice)          # UserError naming an unknown lattice
        s = load_series(run, meta.name)
        if not len(s.counts) and run.n_snapshots == 0:
            raise UserError(f"{run.path}: no steps recorded yet (status {run.status}); "
                            f"nothing to report")
        figures = build_figures(run, meta.name, s)
        summary = summarise(run, s, meta.name)
        scenario_toml = run.attrs.get("scenario_toml", "")      # attrs decodes text
    images = {}
    for name, fig in figures.items():
        if fig is not None:
            images[name] = png_bytes(fig)
    notes = []
    if not len(s.counts):
        notes.append("No counts rows have been written yet, so there are no curves.")
    if summary["snapshots"] == 0:
        notes.append("No snapshot has been written yet, so there are no slices.")
    if len(run.lattices) > 1:
        notes.append(f"The run has {len(run.lattices)} lattices; counts are for the whole run, "
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
    page = render_html(summary, scenario_toml, images, notes).encode("utf-8")
    out = _prepare_out(out)
    for name, data in images.items():
        _write_atomic(out / f"{name}.png", data)
    _write_atomic(out / "summary.json",
                  (json.dumps(summary, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    _write_atomic(out / "index.html", page)
    return summary
