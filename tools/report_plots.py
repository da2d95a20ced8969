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
               "sprout": "sprout stalk", "tip": "tip cell", "dormant": "dormant tumour cell"}
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
