"""The report's figures, drawn with matplotlib from the data of
:mod:`tools.report_series`: cells by kind, functional tissue, tumour size,
vessels beside hypoxia and VEGF, and slices through the tumour coloured by
kind (with oxygen and VEGF).

Kinds are plotted under the names their run file stores, in the colours of
:mod:`tools.palette` (a kind without a designed colour gets its fallback
colour and its stored name).  Matplotlib is imported only when a figure is
made, and only through its object API with the Agg canvas, so the report
never touches pyplot's global state.

Names read from the run file (kinds, organs, lattices, units) reach the
figures only through :func:`plain`, so a ``$`` in one is drawn as a dollar
sign, never parsed as mathtext.
"""
from __future__ import annotations

import io
import math
import sys

import numpy as np

from engine.runformat import EMPTY_KIND, KIND, KindCodes
from tools.palette import drawn_kinds, kind_colour
from tools.report_series import (Series, fmt_time, load_series, snapshot_plane,
                                 snapshot_tumour_plane, time_unit, tumour_mask)

KIND_LABELS = {"empty": "matrix (empty)", "functional": "functional", "tumor": "tumour",
               "necrotic": "necrotic", "vessel": "blood vessel", "lymph_vessel": "lymph vessel",
               "sprout": "sprout stalk", "tip": "tip cell", "dormant": "dormant tumour cell",
               "t_cell": "cytotoxic T cell", "nk_cell": "NK cell"}
MATRIX_RGB = (0.97, 0.97, 0.95)     # background of the kind slices (matrix is never drawn)
UNKNOWN_RGB = (0.5, 0.5, 0.5)       # a code the file's kind codes do not name
MAX_KIND_SLICES = 4
ZOOM_MARGIN = 1.8                   # slice window half-width / tumour reach
ZOOM_LEAST_VOXELS = 16              # and at least this many voxels
DPI = 110
FIGURES = ("counts", "functional", "tumour", "vessels", "slices")
CAPTIONS = {
    "counts": "Voxels of each kind over time (one cell or vessel segment per voxel; log scale). "
              "Kinds that are zero throughout, and the matrix, are not shown; a gap "
              "in a curve is a step where that count was zero.",
    "functional": "Functional (organ) cells left, relative to the first step: overall and per "
                  "organ. Cells are lost to tumour displacement, compression and necrosis.",
    "tumour": "Tumour volume = (tumour + necrotic voxels) × voxel volume, and the radius of a "
              "sphere of the same volume.",
    "vessels": "Top: blood-vessel density (vessel + sprout + tip voxels, each counted as one "
               "voxel edge of vessel length, per tissue volume) and the perfused fraction of "
               "vessel voxels. Bottom: hypoxic tumour cells and the peak VEGF concentration "
               "that drives sprouting.",
    "slices": "Top: the axial plane (constant z) through the tumour's centroid at the first, "
              "some middle and the last snapshot, coloured by kind, in a window around the "
              "final tumour (coordinates are lattice µm). Bottom: oxygen and VEGF in the "
              "last of those planes (white line: tumour boundary).",
}


def plain(text) -> str:
    """`text` (read from a run file) for a matplotlib label: dollar signs
    escaped, so it is never parsed as mathtext (``$\\frac{$`` is drawn as is)."""
    return str(text).replace("$", r"\$")


def kind_label(name: str) -> str:
    """How the report names kind `name` (its stored name, spaced, if unknown)."""
    return KIND_LABELS.get(name, name.replace("_", " "))


# -- figures over time ---------------------------------------------------------------

def _matplotlib():
    """Import matplotlib lazily, headless unless pyplot is already in use."""
    import matplotlib
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    from matplotlib.figure import Figure
    return matplotlib, Figure


def _figure(width, height):
    _, Figure = _matplotlib()
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def _style(ax, s: Series | None = None, xlabel=True):
    ax.grid(True, color="0.88", linewidth=0.7)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if s is not None and xlabel:
        ax.set_xlabel(f"model time ({s.time_unit})")


def _marker(s: Series) -> dict:
    """Point markers when a curve has few points (so one row still shows)."""
    return {"marker": "o", "markersize": 3} if len(s.counts) < 30 else {}


def plot_counts(s: Series):
    """Voxels of each kind over time (log y); kinds zero throughout are left out."""
    kinds = [k for k in drawn_kinds(s.kinds) if s.has(k) and np.any(s.counts[k] != 0)]
    if not kinds:
        return None
    fig = _figure(8.0, 4.6)
    ax = fig.add_subplot()
    for k in kinds:
        ax.plot(s.t, s.col(k), color=kind_colour(k), label=plain(kind_label(k)),
                linewidth=2,
                **_marker(s))
    ax.set_yscale("log", nonpositive="mask")
    ax.set_ylabel("count (voxels; one cell per voxel)")
    ax.set_title("Cells and vessel voxels by kind")
    _style(ax, s)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def plot_functional(s: Series):
    """Functional cells relative to the first step, overall and per organ."""
    if "functional_overall" not in s.derived:
        return None
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(s.t, s.derived["functional_overall"], color=kind_colour("functional"),
            linewidth=3, label="all functional tissue", **_marker(s))
    organ_colours = ("#1f6f8b", "#b5651d", "#6a3d9a", "#33a02c", "#e31a1c", "#777777")
    for i, organ in enumerate(s.organs):
        ax.plot(s.t, s.derived[f"functional_{organ}"], color=organ_colours[i % len(organ_colours)],
                linewidth=1.5, linestyle="--", label=plain(organ.replace("_", " ")),
                **_marker(s))
    ax.set_ylabel("functional cells (fraction of initial)")
    ax.set_title("Functional tissue remaining")
    ax.yaxis.get_major_formatter().set_useOffset(False)
    _style(ax, s)
    ax.legend(loc="best", frameon=False)
    return fig


def plot_tumour(s: Series):
    """Tumour volume (mm³) and equivalent-sphere radius (µm) over time."""
    if "tumour_volume_mm3" not in s.derived:
        return None
    fig = _figure(9.0, 4.0)
    ax_v, ax_r = fig.subplots(1, 2)
    ax_v.plot(s.t, s.derived["tumour_volume_mm3"], color=kind_colour("tumor"), linewidth=2,
              label="tumour + necrotic", **_marker(s))
    if np.any(s.derived["necrotic_volume_mm3"] > 0):
        ax_v.plot(s.t, s.derived["necrotic_volume_mm3"], color=kind_colour("necrotic"),
                  linewidth=1.5, linestyle="--", label="necrotic core", **_marker(s))
    ax_v.set_ylabel("tumour volume (mm³)")
    ax_v.set_title("Tumour volume")
    ax_v.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    ax_v.legend(loc="upper left", frameon=False)
    ax_r.plot(s.t, s.derived["radius_um"], color=kind_colour("tumor"), linewidth=2,
              label="equivalent-sphere radius", **_marker(s))
    ax_r.set_ylabel("equivalent-sphere radius (µm)")
    ax_r.set_title("Tumour radius")
    for ax in (ax_v, ax_r):
        _style(ax, s)
    return fig


def plot_vessels(s: Series):
    """Vessel density and perfused fraction; hypoxic tumour cells and peak VEGF below."""
    top = "vessel_density_mm_per_mm3" in s.derived
    bottom = s.has("hypoxic_tumor") or s.has("vegf_max_ng_per_mL")
    if not (top or bottom):
        return None
    fig = _figure(8.0, 6.4 if top and bottom else 3.6)
    axes = list(np.atleast_1d(fig.subplots(int(top) + int(bottom), 1, sharex=True)))
    if top:
        ax = axes.pop(0)
        ax.plot(s.t, s.derived["vessel_density_mm_per_mm3"], color=kind_colour("vessel"),
                linewidth=2, label="vessel density", **_marker(s))
        ax.set_ylabel("vessel density (mm/mm³)")
        ax.yaxis.get_major_formatter().set_useOffset(False)
        ax.set_title(f"Blood vessels (1 voxel = {s.voxel_um:g} µm of vessel length; "
                     f"tissue {s.tissue_mm3:.3g} mm³)")
        handles = ax.get_lines()[:]
        if s.has("perfused_fraction"):
            tw = ax.twinx()
            tw.plot(s.t, s.col("perfused_fraction"), color="#3a6ea5", linewidth=1.5,
                    linestyle="--", label="perfused fraction", **_marker(s))
            tw.set_ylabel("perfused fraction of vessel voxels", color="#3a6ea5")
            tw.set_ylim(-0.02, 1.02)
            tw.spines["top"].set_visible(False)
            handles += tw.get_lines()
        _style(ax, s, xlabel=not bottom)
        ax.spines["right"].set_visible(True)
        ax.legend(handles=handles, loc="lower left", frameon=False)
    if bottom:
        ax = axes.pop(0)
        handles = []
        if s.has("hypoxic_tumor"):
            ax.plot(s.t, s.col("hypoxic_tumor"), color=kind_colour("tumor"), linewidth=2,
                    label="hypoxic tumour cells", **_marker(s))
            ax.set_ylabel("hypoxic tumour cells (count)")
            handles += ax.get_lines()
        if s.has("vegf_max_ng_per_mL"):
            tw = ax.twinx() if s.has("hypoxic_tumor") else ax
            tw.plot(s.t, s.col("vegf_max_ng_per_mL"), color="#d48a00", linewidth=1.5,
                    linestyle="--", label="peak VEGF", **_marker(s))
            tw.set_ylabel("peak VEGF (ng/mL)", color="#d48a00")
            tw.set_ylim(bottom=0)
            if tw is not ax:
                tw.spines["top"].set_visible(False)
                handles += tw.get_lines()
            else:
                handles = ax.get_lines()[:]
        ax.set_ylim(bottom=0)
        quiet = [what for col, what in (("hypoxic_tumor", "no hypoxic tumour cells"),
                                        ("vegf_max_ng_per_mL", "no VEGF"))
                 if s.has(col) and not np.any(s.counts[col] > 0)]
        if quiet:
            ax.text(0.5, 0.5, " and ".join(quiet) + " in this run", transform=ax.transAxes,
                    ha="center", va="center", color="0.45", fontsize=10)
        ax.set_title("Hypoxia and the angiogenic signal")
        _style(ax, s)
        ax.spines["right"].set_visible(True)
        ax.legend(handles=handles, loc="upper left", frameon=False)
    return fig


# -- slices ---------------------------------------------------------------------------

def slice_indices(n: int, most: int = MAX_KIND_SLICES) -> list[int]:
    """Snapshot indices to show: the first, evenly spaced middle ones, the last."""
    if n <= 0:
        return []
    return sorted({round(x) for x in np.linspace(0, n - 1, min(n, most))})


def slice_window(mask: np.ndarray, margin: float = ZOOM_MARGIN,
                 least: int = ZOOM_LEAST_VOXELS) -> tuple[slice, slice]:
    """(y, x) slices of a square window around the tumour in one plane.

    Centred on the tumour's centroid, with a half-width of `margin` times its
    largest distance from it (at least `least` voxels), clipped to the plane;
    the whole plane if it has no tumour or the window would cover most of it.
    """
    ny, nx = mask.shape
    whole = (slice(0, ny), slice(0, nx))
    ys, xs = np.nonzero(mask)
    if not len(ys):
        return whole
    cy, cx = ys.mean(), xs.mean()
    reach = float(np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2).max()) + 1.0
    half = math.ceil(max(margin * reach, least))
    if 2 * half >= 0.8 * max(ny, nx):
        return whole

    def span(c, n):
        lo = round(c) - half
        lo = min(max(lo, 0), max(n - 2 * half, 0))
        return slice(lo, min(lo + 2 * half, n))
    return span(cy, ny), span(cx, nx)


def kind_rgb(plane: np.ndarray, kinds: KindCodes) -> np.ndarray:
    """An RGB image (..., 3) of kind codes in the palette's colours, the codes
    read by the kind codes `kinds` of their file."""
    lut = np.tile(np.array(UNKNOWN_RGB, dtype=np.float64), (256, 1))
    for code, name in kinds.items():
        lut[code] = MATRIX_RGB if name == EMPTY_KIND else kind_colour(name)
    return lut[plane]


def plot_slices(run, lattice: str | None = None):
    """Kind slices at a few snapshot times, oxygen and VEGF at the last one.

    Every panel shows the same (y, x) window: around the tumour in the last
    snapshot (see :func:`slice_window`), in lattice coordinates (µm).
    """
    from matplotlib.patches import Patch

    n = run.n_snapshots
    if n == 0 or KIND not in run.fields:
        return None
    meta = run.lattice(lattice)
    nz, ny, nx = meta.shape
    v = meta.voxel_um
    unit = time_unit(run.times_h)
    picks = slice_indices(n)
    planes = []                                  # (snapshot index, z, note, kind plane)
    for i in picks:
        z = snapshot_tumour_plane(run, meta, i)
        note = ""
        if z is None:
            z, note = nz // 2, " (no tumour: mid-plane)"
        planes.append((i, z, note, snapshot_plane(run, meta, KIND, i, z)))
    last_z = planes[-1][1]
    wy, wx = slice_window(tumour_mask(planes[-1][3], meta.kinds))
    extent = (wx.start * v, wx.stop * v, wy.start * v, wy.stop * v)
    zoomed = (wy.stop - wy.start, wx.stop - wx.start) != (ny, nx)
    fields = [f for f in ("oxygen", "vegf") if f in run.fields]
    cols = max(len(picks), 3)
    fig = _figure(3.1 * cols + 0.4, 7.4)
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.0, 1.05), hspace=0.04)

    def frame(ax, first):
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)" if first else "")
        ax.tick_params(labelsize=8)

    shown = set()
    kind_axes = top.subplots(1, cols, squeeze=False)[0]
    for j, (i, z, note, plane) in enumerate(planes):
        window = plane[wy, wx]
        shown.update(int(c) for c in np.unique(window))
        ax = kind_axes[j]
        ax.imshow(kind_rgb(window, meta.kinds), origin="lower", extent=extent,
                  interpolation="nearest")
        ax.set_title(f"t = {fmt_time(run.times_h[i], unit)}, z = {(z + 0.5) * v:.0f} µm{note}",
                     fontsize=9)
        frame(ax, j == 0)
    for ax in kind_axes[len(planes):]:
        ax.axis("off")
    where = (f"window {extent[1] - extent[0]:.0f} × {extent[3] - extent[2]:.0f} µm around the "
             f"tumour" if zoomed else "whole plane")
    top.suptitle(f"Voxel kinds in the axial plane through the tumour centroid ({where}; "
                 f"lattice {plain(repr(meta.name))}, {nx}×{ny}×{nz} voxels of {v:g} µm)",
                 fontsize=10)

    bottom_axes = bottom.subplots(1, cols, squeeze=False)[0]
    tumour = tumour_mask(planes[-1][3], meta.kinds)[wy, wx]
    styles = {"oxygen": ("Oxygen", "viridis", "mmHg"), "vegf": ("VEGF", "magma", "ng/mL")}
    for j, name in enumerate(fields):
        label, cmap, default_units = styles[name]
        data = snapshot_plane(run, meta, name, picks[-1], last_z)[wy, wx].astype(np.float64)
        ax = bottom_axes[j]
        hi = float(np.nanmax(data)) if data.size else 0.0
        im = ax.imshow(data, origin="lower", extent=extent, interpolation="nearest", cmap=cmap,
                       vmin=0.0, vmax=hi if hi > 0 else 1.0)
        if tumour.any() and not tumour.all():
            ax.contour(tumour.astype(np.float32), levels=[0.5], colors="white",
                       linewidths=1.0, extent=extent, origin="lower")
        if hi <= 0:
            ax.text(0.5, 0.08, "zero everywhere in this plane", transform=ax.transAxes,
                    ha="center", color="white", fontsize=8)
        units = plain(run.fields[name]) or default_units
        bottom.colorbar(im, ax=ax, label=f"{label} ({units})",
                        shrink=0.92)
        ax.set_title(f"{label}, t = {fmt_time(run.times_h[-1], unit)}, "
                     f"z = {(last_z + 0.5) * v:.0f} µm", fontsize=9)
        frame(ax, j == 0)
    for ax in bottom_axes[len(fields):]:
        ax.axis("off")
    handles = []
    for code in sorted(shown):
        name = meta.kinds.name(code)
        colour = (MATRIX_RGB if name == EMPTY_KIND else kind_colour(name) if name in meta.kinds
                  else UNKNOWN_RGB)
        handles.append(Patch(facecolor=colour, edgecolor="0.4", linewidth=0.5,
                             label=plain(kind_label(name))))
    if handles:
        bottom_axes[len(fields)].legend(handles=handles, loc="center", frameon=False,
                                        title="voxel kind (top row)", fontsize=9)
    return fig


def build_figures(run, lattice: str | None = None, series: Series | None = None) -> dict:
    """name -> matplotlib Figure (or None where the run has no data for it)."""
    s = series if series is not None else load_series(run, lattice)
    if not len(s.counts):
        return {name: None for name in FIGURES[:-1]} | {"slices": plot_slices(run, lattice)}
    return {"counts": plot_counts(s), "functional": plot_functional(s),
            "tumour": plot_tumour(s), "vessels": plot_vessels(s),
            "slices": plot_slices(run, lattice)}


def png_bytes(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


# -- the metastasis page (files with a body) -------------------------------------------

METASTASIS_FIGURES = ("metastasis_timeline", "body_map", "colony_sizes")
CAPTIONS.update({
    "metastasis_timeline": "The body over time, from the run's /body table. Circulating tumour "
                           "cells (CTCs) in blood and lymph, and per 7.5 mL of blood (right "
                           "axis); cells shed by the primary tumour; the circulation's events "
                           "as the file records them per step (entering blood or lymph, "
                           "arrest, extravasation, death); colonies by class (solid) and by "
                           "stage (dashed).",
    "body_map": "Where the tumour is at the last step: the primary and each site lattice at its "
                "organ's place on a schematic body (front view; the body's right is on the "
                "left). Each disc's area is proportional to the lattice's tumour burden "
                "(tumour + dormant cells); an empty ring marks a site with none. Labels give "
                "the burden and the colonies the registry records there (live of all). "
                "Organs without a place on the figure are listed at its right edge.",
    "colony_sizes": "Every colony's diameter over time, coloured by class (local: in the "
                    "primary lattice; regional: lymph node; distant: other organs), log "
                    "scale. Dotted lines: 0.2 mm (isolated tumour cells up to it) and 2 mm "
                    "(micrometastasis up to it, macrometastasis beyond).",
})
CLASS_COLOURS = {"local": "#c0392b", "regional": "#e08214", "distant": "#6a3d9a"}
OTHER_CLASS_COLOUR = "#777777"
# Organ -> position on the body map (data units: the body is about 2.3 high, centred on
# x = 0, front view so the body's right side is at negative x); first match wins.
ORGAN_PLACES = (
    (("brain", "cereb", "cns"), (0.0, 2.09)),
    (("lymph", "node", "axill"), (-0.47, 1.70)),
    (("breast", "mammar"), (-0.24, 1.44)),
    (("lung", "pulmon", "pleura"), (0.20, 1.62)),
    (("heart", "cardi"), (0.06, 1.44)),
    (("liver", "hepat"), (-0.20, 1.13)),
    (("stomach", "gastr"), (0.20, 1.16)),
    (("spleen",), (0.33, 1.20)),
    (("pancrea",), (0.05, 1.05)),
    (("kidney", "renal", "adrenal"), (0.26, 1.00)),
    (("marrow", "bone", "skelet", "spine", "pelvi"), (0.26, 0.80)),
    (("colon", "bowel", "intestin", "rect", "gut", "periton"), (-0.05, 0.92)),
    (("prostat", "bladder", "ovar", "uter", "cervi"), (0.0, 0.78)),
    (("skin", "melan", "derm"), (0.56, 1.30)),
)
BODY_MAP_MAX_RADIUS = 0.15          # data units: the disc of the largest burden
EMPTY_RING_RADIUS = 0.035


def organ_place(organ: str) -> tuple[float, float] | None:
    """Where organ `organ` sits on the body map (None for an organ without a place)."""
    key = str(organ).lower()
    for words, xy in ORGAN_PLACES:
        if any(w in key for w in words):
            return xy
    return None


def class_colour(cls) -> str:
    return CLASS_COLOURS.get(cls, OTHER_CLASS_COLOUR)


def body_map_layout(lattices: list[dict]) -> list[dict]:
    """Each lattice of the body (:func:`tools.report_series.lattice_burden`) with its place
    on the body map and its disc: ``radius`` with area proportional to ``burden``
    (the largest burden gets :data:`BODY_MAP_MAX_RADIUS`; 0 for no burden)."""
    top = max([lat["burden_cells"] or 0 for lat in lattices] + [0])
    used, unplaced, out = {}, 0, []
    for lat in lattices:
        xy = organ_place(lat["organ"])
        placed = xy is not None
        if not placed:                   # a column at the figure's right edge
            xy = (1.15, 2.0 - 0.32 * unplaced)
            unplaced += 1
        n = used.get(xy, 0)
        used[xy] = n + 1
        x, y = xy[0] + 0.2 * n * (1 if xy[0] >= 0 else -1), xy[1] - 0.06 * n
        burden = int(lat["burden_cells"] or 0)
        radius = BODY_MAP_MAX_RADIUS * math.sqrt(burden / top) if top and burden else 0.0
        cls = "local" if lat["role"] == "primary" else lat["class"]
        out.append({"name": lat["name"], "organ": lat["organ"], "role": lat["role"],
                    "class": cls, "x": x, "y": y, "placed": placed, "burden": burden,
                    "radius": radius, "colour": class_colour(cls),
                    "colonies": lat["colonies"], "colonies_live": lat["colonies_live"]})
    return out


def _body_outline(ax):
    """A simple front-view body silhouette."""
    from matplotlib.patches import Circle, FancyBboxPatch, Rectangle
    style = dict(facecolor="#efe9e1", edgecolor="#b8ada0", linewidth=1.2, zorder=0)
    rounded = "round,pad=0.04"
    ax.add_patch(Circle((0.0, 2.09), 0.17, **style))
    ax.add_patch(Rectangle((-0.06, 1.86), 0.12, 0.08, **style))
    ax.add_patch(FancyBboxPatch((-0.40, 0.74), 0.80, 1.10, boxstyle=rounded, **style))
    for x in (-0.60, 0.48):                                    # arms
        ax.add_patch(FancyBboxPatch((x, 0.86), 0.12, 0.94, boxstyle=rounded, **style))
    for x in (-0.34, 0.06):                                    # legs
        ax.add_patch(FancyBboxPatch((x, 0.04), 0.28, 0.64, boxstyle=rounded, **style))


def plot_body_map(b):
    """The primary and its sites on a schematic body, discs by tumour burden."""
    from matplotlib.patches import Circle
    layout = body_map_layout(b.lattices)
    if not layout:
        return None
    fig = _figure(8.0, 6.8)
    ax = fig.add_subplot()
    _body_outline(ax)
    sides = {-1: [], 1: []}
    for item in layout:
        x, y = item["x"], item["y"]
        if item["radius"] > 0:
            ax.add_patch(Circle((x, y), item["radius"], facecolor=item["colour"], alpha=0.75,
                                edgecolor="black", linewidth=0.8, zorder=3))
        else:
            ax.add_patch(Circle((x, y), EMPTY_RING_RADIUS, facecolor="none",
                                edgecolor=item["colour"], linewidth=1.2, linestyle="--",
                                zorder=3))
        ax.plot([x], [y], marker="+", color="black", markersize=5, zorder=4)
        sides[1 if x >= 0 else -1].append(item)
    for side, items in sides.items():       # labels in a column each side, kept apart
        y_label = 2.35
        for item in sorted(items, key=lambda i: -i["y"]):
            y_label = min(item["y"], y_label - 0.24)
            role = "primary tumour" if item["role"] == "primary" else (item["class"] or "site")
            text = (f"{plain(item['name'])} ({plain(str(item['organ']).replace('_', ' '))}, "
                    f"{plain(role)})\n{item['burden']:,} cells · "
                    f"{item['colonies_live']} of {item['colonies']} colonies live"
                    + ("" if item["placed"] else "\n(organ not on the map)"))
            ax.annotate(text, xy=(item["x"], item["y"]), xytext=(side * 0.82, y_label),
                        ha="left" if side > 0 else "right", va="center", fontsize=8,
                        arrowprops=dict(arrowstyle="-", color="0.45", linewidth=0.7),
                        zorder=5)
    unplaced = [i for i in layout if not i["placed"]]
    ax.set_xlim(-2.1, 2.1 if not unplaced else 2.4)
    ax.set_ylim(-0.05, 2.45)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Tumour burden by site at the last step (disc area ∝ tumour + dormant cells)",
                 fontsize=10)
    return fig


def _body_style(ax, b, xlabel=True):
    _style(ax)
    if xlabel:
        ax.set_xlabel(f"model time ({b.time_unit})")


def plot_metastasis_timeline(b):
    """CTCs, shedding, circulation events and colonies over time (panels with data only)."""
    from tools.report_series import COLONY_CLASSES, to_unit
    if b.body is None or not len(b.body):
        return None
    t = to_unit(b.time_h, b.time_unit)
    mark = {"marker": "o", "markersize": 3} if len(t) < 30 else {}
    panels = []
    if b.has("in_blood") or b.has("in_lymph") or b.has("ctc_per_7_5_mL"):
        panels.append("ctc")
    if b.has("shed_cells") or b.has("shedding_per_g_per_day"):
        panels.append("shed")
    if b.event_columns:
        panels.append("events")
    classes = [c for c in COLONY_CLASSES if b.has(f"colonies_{c}")]
    stages = [s for s in ("itc", "micrometastasis", "macrometastasis") if b.has(s)]
    if classes or stages or b.has("disseminated_dormant") or b.has("disseminated_tumor"):
        panels.append("colonies")
    if not panels:
        return None
    fig = _figure(8.5, 2.6 * len(panels) + 0.4)
    axes = list(np.atleast_1d(fig.subplots(len(panels), 1, sharex=True)))
    for n, (panel, ax) in enumerate(zip(panels, axes)):
        handles = []
        if panel == "ctc":
            for col, colour, label in (("in_blood", "#b2182b", "CTCs in blood"),
                                       ("in_lymph", "#2166ac", "CTCs in lymph")):
                if b.has(col):
                    handles += ax.plot(t, b.col(col), color=colour, linewidth=2, label=label,
                                       **mark)
            ax.set_ylabel("cells in circulation")
            if b.has("ctc_per_7_5_mL"):
                tw = ax.twinx()
                handles += tw.plot(t, b.col("ctc_per_7_5_mL"), color="#d48a00", linewidth=1.5,
                                   linestyle="--", label="CTCs per 7.5 mL blood", **mark)
                tw.set_ylabel("CTCs per 7.5 mL", color="#d48a00")
                tw.set_ylim(bottom=0)
                tw.spines["top"].set_visible(False)
            ax.set_title("Circulating tumour cells")
        elif panel == "shed":
            if b.has("shed_cells"):
                handles += ax.plot(t, b.col("shed_cells"), color=kind_colour("tumor"),
                                   linewidth=2, label="cells shed per step", **mark)
                ax.set_ylabel("cells shed per step")
            if b.has("shedding_per_g_per_day"):
                tw = ax.twinx() if b.has("shed_cells") else ax
                handles += tw.plot(t, b.col("shedding_per_g_per_day"), color="#555555",
                                   linewidth=1.5, linestyle="--",
                                   label="shedding rate (cells/g/day)", **mark)
                tw.set_ylabel("cells per g tumour per day")
                if tw is not ax:
                    tw.spines["top"].set_visible(False)
            ax.set_title("Shedding from the primary tumour")
        elif panel == "events":
            palette = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02",
                       "#a6761d", "#666666")
            for i, col in enumerate(b.event_columns):
                handles += ax.plot(t, b.col(col), color=palette[i % len(palette)],
                                   linewidth=1.5, label=plain(col.replace("_", " ")), **mark)
            ax.set_ylabel("events per step")
            ax.set_title("Circulation events (entering, arrest, extravasation, death)")
        else:
            for c in classes:
                handles += ax.plot(t, b.col(f"colonies_{c}"), color=class_colour(c),
                                   linewidth=2, label=f"{c} colonies", **mark)
            for s, style in zip(stages, (":", "--", "-.")):
                handles += ax.plot(t, b.col(s), color="0.35", linewidth=1.2, linestyle=style,
                                   label=s.replace("itc", "ITC"), **mark)
            for col, colour in (("disseminated_dormant", "#4d9221"),
                                ("disseminated_tumor", "#c51b7d")):
                if b.has(col):
                    handles += ax.plot(t, b.col(col), color=colour, linewidth=1.0,
                                       alpha=0.8, label=col.replace("_", " ") + " cells",
                                       **mark)
            ax.set_ylabel("colonies (cells: disseminated)")
            ax.set_title("Colonies by class and stage")
        ax.set_ylim(bottom=0)
        _body_style(ax, b, xlabel=n == len(panels) - 1)
        ax.legend(handles=handles, loc="upper left", frameon=False, fontsize=8)
    return fig


def plot_colony_sizes(b):
    """Every colony's diameter over time (log y), coloured by class, with the 0.2 mm and
    2 mm stage thresholds."""
    from matplotlib.lines import Line2D
    from tools.report_series import (ITC_MAX_UM, MICROMETASTASIS_MAX_UM, time_unit,
                                     to_unit)
    if not b.sizes:
        return None
    classes = {r["id"]: r["class"] for r in b.colonies}
    all_t = np.concatenate([v[0] for v in b.sizes.values()])
    unit = time_unit(all_t)
    fig = _figure(8.5, 4.8)
    ax = fig.add_subplot()
    seen = {}
    for cid, (t, _, diam) in sorted(b.sizes.items()):
        cls = classes.get(cid)
        ok = np.isfinite(diam) & (diam > 0)
        if not ok.any():
            continue
        ax.plot(to_unit(t[ok], unit), diam[ok], color=class_colour(cls), linewidth=1.3,
                alpha=0.85, marker="o" if ok.sum() < 30 else None, markersize=2.5)
        seen[cls] = seen.get(cls, 0) + 1
    ax.set_yscale("log")
    for y, label in ((ITC_MAX_UM, "0.2 mm: ITC ≤ | micrometastasis"),
                     (MICROMETASTASIS_MAX_UM, "2 mm: micrometastasis ≤ | macrometastasis")):
        ax.axhline(y, color="0.3", linestyle=":", linewidth=1.2)
        ax.annotate(label, xy=(0.01, y), xycoords=("axes fraction", "data"), fontsize=8,
                    color="0.3", va="bottom")
    lo, hi = ax.get_ylim()
    ax.set_ylim(min(lo, ITC_MAX_UM / 3), max(hi, MICROMETASTASIS_MAX_UM * 2))
    ax.set_xlabel(f"model time ({unit})")
    ax.set_ylabel("colony diameter (µm)")
    ax.set_title(f"Colony sizes over time ({len(b.sizes)} colonies)")
    _style(ax)
    handles = [Line2D([], [], color=class_colour(c), linewidth=2,
                      label=f"{plain(c or 'unknown class')} ({n})") for c, n in seen.items()]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="class (colonies)")
    return fig


def build_body_figures(b) -> dict:
    """name -> Figure (or None) of the metastasis page, for a :class:`report_series.Body`."""
    return {"metastasis_timeline": plot_metastasis_timeline(b), "body_map": plot_body_map(b),
            "colony_sizes": plot_colony_sizes(b)}
