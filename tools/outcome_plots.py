"""Figures of treatment outcomes (:mod:`tools.outcomes`): one run's outcomes for the
report's *Outcomes* section, and the arms of ``oncolattice compare`` side by side
(burden with its spread over replicates, progression-free curves, toxicity,
metastases by class).  Matplotlib through its object API only (:mod:`tools.report_plots`).
"""
from __future__ import annotations

import numpy as np

from tools.outcomes import CLASSES, kaplan_meier
from tools.report_plots import _figure, plain
from tools.report_series import time_unit, to_unit

ARM_COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
               "#666666")
CLASS_COLOURS = {"local": "#7fbc41", "regional": "#4393c3", "distant": "#d6604d"}
PFS_OFFSET = 0.008                  # arm i's curve is drawn i × this lower
LATTICE_COLOURS = ("#b2182b", "#2166ac", "#1b7837", "#762a83", "#e08214", "#35978f",
                   "#8c510a", "#c51b7d")

CAPTIONS = {
    "outcomes": "Outcomes of the run. Top left: tumour burden (tumour + dormant cells) per "
                "lattice and in total. Top right: the primary lesion's equivalent-sphere "
                "diameter (necrotic core of tumour origin included), the sum of target "
                "diameters, and the RECIST-like progression threshold above its nadir "
                "(dashed); a vertical line marks progression. Bottom left: functional "
                "tissue preserved per organ (fraction of its initial cells). Bottom right: "
                "normal-tissue harm, functional cells killed by therapy, cumulative.",
    "compare_burden": "Tumour burden per arm: the median over replicates (line) and their "
                      "range (band, min–max). Left: tumour + dormant cells in the whole body "
                      "(log scale). Right: the primary lesion's equivalent-sphere diameter.",
    "compare_pfs": "Progression-free fraction per arm (Kaplan–Meier estimate over the "
                   "replicates; a replicate that never progressed is censored at the end of "
                   "its run; tick), by the RECIST-like rule. Each arm's curve is drawn "
                   "slightly lower than the one before (0.008 per arm) so that identical "
                   "curves stay visible.",
    "compare_toxicity": "Toxicity per arm, median and range over replicates. Left: "
                        "functional cells killed by therapy, cumulative. Right: functional "
                        "tissue of the primary organ preserved.",
    "compare_metastases": "Metastatic colonies by class at the end of the run, per arm "
                          "(bar: median over replicates; whiskers: range): colonies founded "
                          "(light) and still alive (dark).",
}


def _style(ax, unit=None):
    ax.grid(True, color="0.88", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if unit:
        ax.set_xlabel(f"model time ({unit})")


def _mark(n):
    return {"marker": "o", "markersize": 3} if n < 30 else {}


def plot_outcomes(o):
    """The four panels of one run's outcomes (:class:`tools.outcomes.Outcomes`)."""
    if not len(o.time_h):
        return None
    unit = time_unit(o.time_h)
    t = to_unit(o.time_h, unit)
    mark = _mark(len(t))
    fig = _figure(10.0, 7.0)
    (ax_b, ax_d), (ax_f, ax_h) = fig.subplots(2, 2)
    for i, lat in enumerate(o.lattices):
        if np.any(lat.cells > 0) or lat.role == "primary":
            ax_b.plot(t, lat.cells, color=LATTICE_COLOURS[i % len(LATTICE_COLOURS)],
                      linewidth=1.5, label=plain(lat.name), **mark)
    if len(o.lattices) > 1:
        ax_b.plot(t, o.burden_cells, color="black", linewidth=2, label="total", **mark)
    ax_b.set_yscale("log", nonpositive="mask")
    ax_b.set_ylabel("tumour + dormant cells")
    ax_b.set_title("Tumour burden")
    ax_b.legend(frameon=False, fontsize=8)
    ax_d.plot(t, o.primary_diameter_mm, color="#b2182b", linewidth=2,
              label="primary lesion", **mark)
    if o.target_colonies:
        ax_d.plot(t, o.sum_diameters_mm, color="black", linewidth=1.5,
                  label="sum of target diameters", **mark)
    rule = o.rule
    threshold = o.nadir_mm + np.maximum(rule.relative_increase * o.nadir_mm, rule.floor_mm)
    ax_d.plot(t, threshold, color="0.4", linestyle="--", linewidth=1,
              label="progression threshold")
    if o.progression["progressed"] and o.progression["time_h"] is not None:
        ax_d.axvline(to_unit(o.progression["time_h"], unit), color="#d6604d", linewidth=1.2,
                     label=f"progression ({o.progression['reason']})")
    ax_d.set_ylabel("diameter (mm)")
    ax_d.set_ylim(bottom=0)
    ax_d.set_title("Lesion diameter (RECIST-like)")
    ax_d.legend(frameon=False, fontsize=8)
    n = 0
    for lat in o.lattices:
        for organ, f in lat.functional.items():
            label = organ if lat.role != "site" else f"{lat.name}: {organ}"
            ax_f.plot(t, f, color=LATTICE_COLOURS[n % len(LATTICE_COLOURS)], linewidth=1.5,
                      label=plain(label.replace("_", " ")), **mark)
            n += 1
    ax_f.set_ylabel("fraction of initial functional cells")
    ax_f.set_title("Functional tissue preserved")
    if n:
        ax_f.legend(frameon=False, fontsize=8)
    n = 0
    for lat in o.lattices:
        for column, h in lat.harm.items():
            if np.any(h > 0) or lat.role == "primary":
                ax_h.plot(t, h, color=LATTICE_COLOURS[n % len(LATTICE_COLOURS)], linewidth=1.5,
                          label=plain(f"{lat.name}: {column}"), **mark)
                n += 1
    ax_h.set_ylabel("functional cells killed (cumulative)")
    ax_h.set_title("Normal-tissue harm")
    if n:
        ax_h.legend(frameon=False, fontsize=8)
    else:
        ax_h.text(0.5, 0.5, "no therapy harm column in this run", transform=ax_h.transAxes,
                  ha="center", va="center", color="0.4")
    for ax in (ax_b, ax_d, ax_f, ax_h):
        _style(ax, unit)
    return fig


# -- the arms of a comparison -------------------------------------------------------------

def arm_colour(i: int) -> str:
    return ARM_COLOURS[i % len(ARM_COLOURS)]


def spread(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, minimum and maximum over replicates, row by row (curves cut to the
    shortest)."""
    n = min(len(c) for c in curves)
    a = np.vstack([np.asarray(c[:n], dtype=np.float64) for c in curves])
    return np.median(a, axis=0), a.min(axis=0), a.max(axis=0)


def _band(ax, t, curves, colour, label, mark):
    median, lo, hi = spread(curves)
    t = t[:len(median)]
    ax.fill_between(t, lo, hi, color=colour, alpha=0.2, linewidth=0)
    ax.plot(t, median, color=colour, linewidth=2, label=label, **mark)


def plot_compare_burden(arms: dict):
    """`arms`: name -> list of Outcomes (replicates)."""
    first = next(iter(arms.values()))[0]
    unit = time_unit(first.time_h)
    fig = _figure(10.0, 4.2)
    ax_b, ax_d = fig.subplots(1, 2)
    for i, (name, reps) in enumerate(arms.items()):
        t = to_unit(reps[0].time_h, unit)
        mark = _mark(len(t))
        _band(ax_b, t, [o.burden_cells for o in reps], arm_colour(i), plain(name), mark)
        _band(ax_d, t, [o.primary_diameter_mm for o in reps], arm_colour(i), plain(name), mark)
    ax_b.set_yscale("log", nonpositive="mask")
    ax_b.set_ylabel("tumour + dormant cells (body)")
    ax_b.set_title("Tumour burden")
    ax_d.set_ylabel("primary lesion diameter (mm)")
    ax_d.set_title("Primary lesion")
    for ax in (ax_b, ax_d):
        _style(ax, unit)
        ax.legend(frameon=False, fontsize=8)
    return fig


def plot_compare_pfs(arms: dict):
    first = next(iter(arms.values()))[0]
    unit = time_unit(first.time_h)
    end = max(float(o.time_h[-1]) for reps in arms.values() for o in reps if len(o.time_h))
    fig = _figure(7.5, 4.2)
    ax = fig.add_subplot()
    for i, (name, reps) in enumerate(arms.items()):
        times, events = pfs_data(reps)
        xs, ys = kaplan_meier(times, events)
        xs = np.append(xs, end)
        ys = np.append(ys, ys[-1])
        ys = ys - PFS_OFFSET * i            # identical curves stay visible side by side
        ax.step(to_unit(xs, unit), ys, where="post", color=arm_colour(i), linewidth=2,
                label=plain(name))
        censored = [t for t, e in zip(times, events) if not e]
        if censored:
            y_at = [ys[np.searchsorted(xs, c, side="right") - 1] for c in censored]
            ax.plot(to_unit(np.array(censored), unit), y_at, "|", color=arm_colour(i),
                    markersize=10)
    ax.set_ylim(-0.03, 1.05)
    ax.set_ylabel("progression-free fraction")
    ax.set_title("Progression-free (RECIST-like rule)")
    _style(ax, unit)
    ax.legend(frameon=False, fontsize=8)
    return fig


def pfs_data(reps) -> tuple[list[float], list[bool]]:
    """Each replicate's time of progression, or of censoring (its last row), and whether it
    progressed."""
    times, events = [], []
    for o in reps:
        p = o.progression
        if p["progressed"] and p["time_h"] is not None:
            times.append(float(p["time_h"]))
            events.append(True)
        else:
            times.append(float(p["censored_h"] if p["censored_h"] is not None else 0.0))
            events.append(False)
    return times, events


def plot_compare_toxicity(arms: dict):
    first = next(iter(arms.values()))[0]
    unit = time_unit(first.time_h)
    fig = _figure(10.0, 4.2)
    ax_h, ax_f = fig.subplots(1, 2)
    for i, (name, reps) in enumerate(arms.items()):
        t = to_unit(reps[0].time_h, unit)
        mark = _mark(len(t))
        _band(ax_h, t, [o.harm_total for o in reps], arm_colour(i), plain(name), mark)
        organ = primary_organ(reps[0])
        if organ is not None:
            _band(ax_f, t, [o.primary.functional.get(organ, np.full(len(o.time_h), np.nan))
                            for o in reps], arm_colour(i), plain(name), mark)
    ax_h.set_ylabel("functional cells killed by therapy (cumulative)")
    ax_h.set_title("Normal-tissue harm")
    organ = primary_organ(first)
    ax_f.set_ylabel("fraction of initial functional cells")
    ax_f.set_title(plain(f"Functional tissue preserved: {organ or 'primary organ'}"
                         .replace("_", " ")))
    for ax in (ax_h, ax_f):
        _style(ax, unit)
        ax.legend(frameon=False, fontsize=8)
    return fig


def primary_organ(o) -> str | None:
    """The primary organ of a run: the first organ of its primary lattice."""
    return next(iter(o.primary.functional), None)


def plot_compare_metastases(arms: dict):
    fig = _figure(8.0, 4.0)
    ax = fig.add_subplot()
    names = list(arms)
    width = 0.8 / len(CLASSES)
    x = np.arange(len(names))
    for k, cls in enumerate(CLASSES):
        for j, what in enumerate(("founded", "alive")):
            values = [[o.metastases()[cls][what] for o in arms[a]] for a in names]
            med = np.array([np.median(v) for v in values])
            lo = med - np.array([min(v) for v in values])
            hi = np.array([max(v) for v in values]) - med
            ax.bar(x + (k - 1) * width, med, width * (0.9 if j == 0 else 0.55),
                   color=CLASS_COLOURS[cls], alpha=0.35 if j == 0 else 1.0,
                   label=f"{cls}, {what}", yerr=np.vstack([lo, hi]), capsize=3,
                   error_kw={"elinewidth": 0.8, "ecolor": "0.3"})
    ax.set_xticks(x, [plain(n) for n in names])
    ax.set_ylabel("colonies at the end of the run")
    ax.set_title("Metastases by class")
    _style(ax)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return fig


def build_compare_figures(arms: dict) -> dict:
    return {"compare_burden": plot_compare_burden(arms), "compare_pfs": plot_compare_pfs(arms),
            "compare_toxicity": plot_compare_toxicity(arms),
            "compare_metastases": plot_compare_metastases(arms)}
