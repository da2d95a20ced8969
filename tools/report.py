"""`oncolattice report RUN.h5 --out DIR`: plots and a self-contained HTML page.

The report reads a run file, finished or still being written, and writes into
DIR:

    counts.png        cells (voxels) by kind over time, log scale
    functional.png    functional tissue left, overall and per organ
    tumour.png        tumour volume (mm³) and equivalent-sphere radius (µm)
    vessels.png       vessel density and perfused fraction, above hypoxic
                      tumour cells and peak VEGF (vessel growth follows hypoxia)
    slices.png        axial mid-plane through the tumour at a few snapshot
                      times, coloured by kind; oxygen and VEGF at the last one
    summary.json      the headline numbers
    index.html        all of the above in one file (PNG data URIs, inline CSS)

Derived quantities (one cell or structure per voxel):

* tumour volume = (tumour + necrotic voxels) x voxel volume; the
  equivalent-sphere radius is that of a ball of the same volume;
* vessel density = blood-vessel length per tissue volume, in mm/mm³, with
  each vessel, sprout or tip voxel counted as one voxel edge of vessel length
  (lymphatics excluded) and the tissue volume the voxels inside an organ
  (the whole lattice if no voxel has an organ label);
* functional fraction = functional cells relative to the first counts row,
  overall and per organ (``functional_<organ>``).  The run's own
  ``functional_fraction`` column (primary organ only) is reported as well.

Everything is rendered before anything is written; each output file goes to
a temporary name first and is renamed into place, ``index.html`` last, so a
report that fails part-way never leaves a half-written page.
Matplotlib is imported only when a report is made (``import tools.report``
stays cheap) and only through its object API with the Agg canvas, so the
report never touches pyplot's global state.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.errors import UserError

HELP = "write plots, summary.json and a self-contained index.html for a run file"

DISCLAIMER = "research tool, not clinical advice"

# Kinds plotted as cell counts: every kind but the matrix ("empty").
COUNT_KINDS = ("functional", "tumor", "necrotic", "vessel", "lymph_vessel", "sprout", "tip")
BLOOD_VESSEL_KINDS = ("vessel", "sprout", "tip")
KIND_LABELS = {"empty": "matrix (empty)", "functional": "functional", "tumor": "tumour",
               "necrotic": "necrotic", "vessel": "blood vessel", "lymph_vessel": "lymph vessel",
               "sprout": "sprout stalk", "tip": "tip cell"}
MATRIX_RGB = (0.97, 0.97, 0.95)     # background of the kind slices (matrix is never drawn)
UNKNOWN_RGB = (0.5, 0.5, 0.5)       # a kind code this version does not know
MAX_KIND_SLICES = 4
ZOOM_MARGIN = 1.8                   # slice window half-width / tumour reach
ZOOM_LEAST_VOXELS = 16              # and at least this many voxels
DPI = 110
DAYS_ABOVE_H = 72.0                 # time axes in days once a run is longer than this
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


# -- the command line -------------------------------------------------------------

def add_arguments(parser) -> None:
    """The `report` sub-command's arguments."""
    parser.add_argument("run", type=Path, metavar="RUN.h5",
                        help="run file written by `oncolattice run` (may still be running)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for index.html, summary.json and the PNG plots "
                             "(created if needed; files of the same name are replaced)")
    parser.add_argument("--lattice", metavar="NAME",
                        help="lattice for slices and voxel size (default: the first)")


def command(args) -> int:
    summary = write_report(args.run, args.out, lattice=args.lattice)
    print(f"report: {summary['report']['index']} (run status {summary['status']}, "
          f"{summary['steps']} steps, {summary['snapshots']} snapshots)")
    return 0


# -- data -------------------------------------------------------------------------

@dataclass
class Series:
    """The counts of a run with everything the plots derive from them."""

    counts: np.ndarray               # structured, one row per step
    time_h: np.ndarray
    voxel_um: float
    tissue_voxels: int               # voxels inside an organ (or the whole lattice)
    organs: tuple[str, ...]          # organ names with a functional_<organ> column
    derived: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.counts.dtype.names or ()

    def has(self, *cols) -> bool:
        return all(c in self.names for c in cols)

    def col(self, name) -> np.ndarray:
        return self.counts[name].astype(np.float64)

    @property
    def voxel_mm3(self) -> float:
        return (self.voxel_um / 1000.0) ** 3

    @property
    def tissue_mm3(self) -> float:
        return self.tissue_voxels * self.voxel_mm3

    @property
    def time_unit(self) -> str:
        return time_unit(self.time_h)

    @property
    def t(self) -> np.ndarray:
        """Times in :attr:`time_unit`."""
        return to_unit(self.time_h, self.time_unit)


def time_unit(times_h) -> str:
    times_h = np.asarray(times_h, dtype=np.float64)
    return "days" if len(times_h) and float(np.nanmax(times_h)) > DAYS_ABOVE_H else "h"


def to_unit(times_h, unit: str):
    return np.asarray(times_h, dtype=np.float64) / (24.0 if unit == "days" else 1.0)


def fmt_time(time_h: float, unit: str) -> str:
    if unit == "days":
        return f"{time_h / 24.0:.3g} d"
    return f"{time_h:.4g} h"


def load_series(run, lattice: str | None = None) -> Series:
    """The counts of `run` (a :class:`tools.runfile.RunFile`) and derived curves."""
    meta = run.lattice(lattice)
    counts = run.counts()
    names = counts.dtype.names or ()
    if "time_h" in names:
        time_h = counts["time_h"].astype(np.float64)
    elif "step" in names:
        time_h = counts["step"].astype(np.float64) * float(run.attrs.get("step_h", 1.0))
    else:
        time_h = np.arange(len(counts), dtype=np.float64) * float(run.attrs.get("step_h", 1.0))
    tissue = int(np.count_nonzero(meta.organ))
    s = Series(counts=counts, time_h=time_h, voxel_um=meta.voxel_um,
               tissue_voxels=tissue or int(np.prod(meta.shape)),
               organs=tuple(o for o in meta.organ_names[1:] if f"functional_{o}" in names))
    d = s.derived
    if s.has("tumor", "necrotic"):
        mass = s.col("tumor") + s.col("necrotic")
        d["tumour_volume_mm3"] = mass * s.voxel_mm3
        d["necrotic_volume_mm3"] = s.col("necrotic") * s.voxel_mm3
        d["radius_um"] = (3.0 * mass * s.voxel_um ** 3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    if s.has(*BLOOD_VESSEL_KINDS):
        voxels = sum(s.col(k) for k in BLOOD_VESSEL_KINDS)
        d["vessel_length_mm"] = voxels * s.voxel_um / 1000.0
        d["vessel_density_mm_per_mm3"] = d["vessel_length_mm"] / s.tissue_mm3
    if s.has("functional") and len(counts):
        d["functional_overall"] = _relative(s.col("functional"))
        for organ in s.organs:
            d[f"functional_{organ}"] = _relative(s.col(f"functional_{organ}"))
    return s


def _relative(a: np.ndarray) -> np.ndarray:
    """`a` relative to its first value (NaN throughout if that is zero)."""
    return a / a[0] if a[0] else np.full_like(a, np.nan)


# -- figures ----------------------------------------------------------------------

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
    from tools.palette import kind_colour
    kinds = [k for k in COUNT_KINDS if s.has(k) and np.any(s.counts[k] != 0)]
    if not kinds:
        return None
    fig = _figure(8.0, 4.6)
    ax = fig.add_subplot()
    for k in kinds:
        ax.plot(s.t, s.col(k), color=kind_colour(k), label=KIND_LABELS[k], linewidth=2,
                **_marker(s))
    ax.set_yscale("log", nonpositive="mask")
    ax.set_ylabel("count (voxels; one cell per voxel)")
    ax.set_title("Cells and vessel voxels by kind")
    _style(ax, s)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    return fig


def plot_functional(s: Series):
    """Functional cells relative to the first step, overall and per organ."""
    from tools.palette import kind_colour
    if "functional_overall" not in s.derived:
        return None
    fig = _figure(8.0, 4.2)
    ax = fig.add_subplot()
    ax.plot(s.t, s.derived["functional_overall"], color=kind_colour("functional"),
            linewidth=3, label="all functional tissue", **_marker(s))
    organ_colours = ("#1f6f8b", "#b5651d", "#6a3d9a", "#33a02c", "#e31a1c", "#777777")
    for i, organ in enumerate(s.organs):
        ax.plot(s.t, s.derived[f"functional_{organ}"], color=organ_colours[i % len(organ_colours)],
                linewidth=1.5, linestyle="--", label=organ.replace("_", " "), **_marker(s))
    ax.set_ylabel("functional cells (fraction of initial)")
    ax.set_title("Functional tissue remaining")
    ax.yaxis.get_major_formatter().set_useOffset(False)
    _style(ax, s)
    ax.legend(loc="best", frameon=False)
    return fig


def plot_tumour(s: Series):
    """Tumour volume (mm³) and equivalent-sphere radius (µm) over time."""
    from tools.palette import kind_colour
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
    from tools.palette import kind_colour
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


def slice_indices(n: int, most: int = MAX_KIND_SLICES) -> list[int]:
    """Snapshot indices to show: the first, evenly spaced middle ones, the last."""
    if n <= 0:
        return []
    return sorted({round(x) for x in np.linspace(0, n - 1, min(n, most))})


def tumour_mask(kind: np.ndarray) -> np.ndarray:
    """Tumour and necrotic voxels (the tumour mass)."""
    from tools.palette import kind_code
    return (kind == kind_code("tumor")) | (kind == kind_code("necrotic"))


def tumour_plane(kind: np.ndarray) -> int | None:
    """The z index nearest the centroid of the tumour (tumour + necrotic voxels)."""
    return _centroid_index(np.count_nonzero(tumour_mask(kind), axis=(1, 2)))


def _centroid_index(per_z: np.ndarray) -> int | None:
    total = int(per_z.sum())
    if not total:
        return None
    return round(float((per_z * np.arange(len(per_z))).sum() / total))


def snapshot_plane(run, meta, field: str, index: int, z: int) -> np.ndarray:
    """Plane `z` of `field` at snapshot `index`, read without the rest of the
    volume (a report of a large lattice never loads whole float fields)."""
    return run.snapshot(meta.name, field, index, z=z)


def snapshot_tumour_plane(run, meta, index: int) -> int | None:
    """:func:`tumour_plane` of a snapshot's kinds, read in slabs of z planes."""
    from engine.output import CHUNK_EDGE
    nz = meta.shape[0]
    per_z = np.zeros(nz, dtype=np.int64)
    for z0 in range(0, nz, CHUNK_EDGE):
        slab = run.snapshot(meta.name, "kind", index, z=slice(z0, z0 + CHUNK_EDGE))
        per_z[z0:z0 + CHUNK_EDGE] = np.count_nonzero(tumour_mask(slab), axis=(1, 2))
    return _centroid_index(per_z)


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


def kind_rgb(plane: np.ndarray) -> np.ndarray:
    """An RGB image (..., 3) of kind codes in the palette's colours."""
    from kernels.lattice import KIND_NAMES
    from tools.palette import kind_colour
    lut = np.tile(np.array(UNKNOWN_RGB, dtype=np.float64), (256, 1))
    for code, name in enumerate(KIND_NAMES):
        lut[code] = MATRIX_RGB if name == "empty" else kind_colour(name)
    return lut[plane]


def plot_slices(run, lattice: str | None = None):
    """Kind slices at a few snapshot times, oxygen and VEGF at the last one.

    Every panel shows the same (y, x) window: around the tumour in the last
    snapshot (see :func:`slice_window`), in lattice coordinates (µm).
    """
    from matplotlib.patches import Patch

    from kernels.lattice import KIND_NAMES
    from tools.palette import kind_colour
    n = run.n_snapshots
    if n == 0 or "kind" not in run.fields:
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
        planes.append((i, z, note, snapshot_plane(run, meta, "kind", i, z)))
    last_z = planes[-1][1]
    wy, wx = slice_window(tumour_mask(planes[-1][3]))
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
        ax.imshow(kind_rgb(window), origin="lower", extent=extent, interpolation="nearest")
        ax.set_title(f"t = {fmt_time(run.times_h[i], unit)}, z = {(z + 0.5) * v:.0f} µm{note}",
                     fontsize=9)
        frame(ax, j == 0)
    for ax in kind_axes[len(planes):]:
        ax.axis("off")
    where = (f"window {extent[1] - extent[0]:.0f} × {extent[3] - extent[2]:.0f} µm around the "
             f"tumour" if zoomed else "whole plane")
    top.suptitle(f"Voxel kinds in the axial plane through the tumour centroid ({where}; "
                 f"lattice {meta.name!r}, {nx}×{ny}×{nz} voxels of {v:g} µm)", fontsize=10)

    bottom_axes = bottom.subplots(1, cols, squeeze=False)[0]
    tumour = tumour_mask(planes[-1][3])[wy, wx]
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
        bottom.colorbar(im, ax=ax, label=f"{label} ({run.fields[name] or default_units})",
                        shrink=0.92)
        ax.set_title(f"{label}, t = {fmt_time(run.times_h[-1], unit)}, "
                     f"z = {(last_z + 0.5) * v:.0f} µm", fontsize=9)
        frame(ax, j == 0)
    for ax in bottom_axes[len(fields):]:
        ax.axis("off")
    handles = []
    for code, name in enumerate(KIND_NAMES):
        if code in shown:
            colour = MATRIX_RGB if name == "empty" else kind_colour(name)
            handles.append(Patch(facecolor=colour, edgecolor="0.4", linewidth=0.5,
                                 label=KIND_LABELS.get(name, name)))
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


# -- summary ----------------------------------------------------------------------

def _num(x):
    """A JSON-safe number: NaN and infinities become None."""
    if x is None:
        return None
    x = x.item() if isinstance(x, np.generic) else x
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def scenario_name(attrs: dict, fallback: str) -> str:
    import tomllib
    try:
        return str(tomllib.loads(attrs.get("scenario_toml", ""))["scenario"]["name"])
    except (tomllib.TOMLDecodeError, KeyError, TypeError):
        return fallback


def summarise(run, s: Series, lattice: str | None = None) -> dict:
    """The headline numbers of a run."""
    meta = run.lattice(lattice)
    attrs = run.attrs
    c = s.counts

    def first(k):
        return _num(c[k][0]) if s.has(k) and len(c) else None

    def last(k):
        return _num(c[k][-1]) if s.has(k) and len(c) else None
    d = s.derived

    def ends(key):
        a = d.get(key)
        return (None, None) if a is None or not len(a) else (_num(float(a[0])), _num(float(a[-1])))

    t0, t1 = first("tumor"), last("tumor")
    vol0, vol1 = ends("tumour_volume_mm3")
    out = {
        "run": str(run.path),
        "scenario": scenario_name(attrs, run.path.stem),
        "seed": _num(attrs.get("seed")),
        "backend": attrs.get("backend"),
        "version": attrs.get("version"),
        "created_utc": attrs.get("created_utc"),
        "status": run.status,
        "lattice": meta.name,
        "shape_zyx": list(meta.shape),
        "voxel_um": meta.voxel_um,
        "steps": int(c["step"][-1]) if s.has("step") and len(c) else max(len(c) - 1, 0),
        "steps_planned": _num(attrs.get("steps_planned")),
        "counts_rows": len(c),
        "model_time_h": _num(float(s.time_h[-1])) if len(c) else None,
        "snapshots": run.n_snapshots,
        "snapshot_times_h": [float(t) for t in run.times_h],
        "tumor_cells_initial": t0,
        "tumor_cells_final": t1,
        "tumor_growth_factor": _num(t1 / t0) if t0 else None,
        "necrotic_cells_final": last("necrotic"),
        "tumour_volume_mm3_initial": vol0,
        "tumour_volume_mm3_final": vol1,
        "tumour_radius_um_final": ends("radius_um")[1],
        "functional_fraction": last("functional_fraction"),
        "functional_fraction_organ": meta.organ_names[1] if len(meta.organ_names) > 1 else None,
        "functional_fraction_overall": ends("functional_overall")[1],
        "functional_fraction_by_organ": {o: ends(f"functional_{o}")[1] for o in s.organs},
        "vessel_density_mm_per_mm3_initial": ends("vessel_density_mm_per_mm3")[0],
        "vessel_density_mm_per_mm3_final": ends("vessel_density_mm_per_mm3")[1],
        "perfused_fraction_final": last("perfused_fraction"),
        "hypoxic_tumor_cells_final": last("hypoxic_tumor"),
        "vegf_max_ng_per_mL_peak": (_num(float(np.max(c["vegf_max_ng_per_mL"])))
                                    if s.has("vegf_max_ng_per_mL") and len(c) else None),
        "new_vessel_length_mm_total": (_num(float(np.sum(c["new_vessel_length_um"])) / 1000.0)
                                       if s.has("new_vessel_length_um") and len(c) else None),
        "assumptions": {
            "vessel_length": "each vessel, sprout or tip voxel is one voxel edge of vessel length",
            "tissue_volume_mm3": s.tissue_mm3,
            "tumour_volume": "(tumour + necrotic voxels) x voxel volume",
        },
    }
    return out


# -- HTML -------------------------------------------------------------------------

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
"""


def _fmt(x, spec=".4g", unit=""):
    if x is None:
        return "–"
    return f"{x:{spec}}{unit}"


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
    parts += ["<h2>Summary</h2>", f"<table>\n{table}\n</table>", "<h2>Plots</h2>"]
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


# -- writing ----------------------------------------------------------------------

def _write_atomic(path: Path, data: bytes) -> None:
    from engine.output import atomic_path
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
