"""One snapshot of a run drawn as a vispy scene: the drawing shared by
``oncolattice view`` (interactive, Qt) and ``oncolattice render`` (headless).

What is drawn:

* Voxel kinds, each in its palette colour (:mod:`tools.palette`, by the kind
  names the run file stores with its codes) and each switchable on and off.
  Only the visible surface is drawn (:mod:`tools.scene_geometry`), as flat
  quads, one mesh per kind and face direction.  A face is shaded by how
  squarely it faces the camera (times a slight fixed tone per axis), so a z
  face seen head-on shows the exact palette colour.
* When those faces exceed a budget the lattice is drawn in blocks of b**3
  voxels, each showing the kind that dominates it; the title says so.
* A plane along x, y or z (:class:`tools.scene_options.Plane`): as a clip it
  hides the voxels on one side, exposing the inside of the tumour; a field
  (oxygen, VEGF, ...) is drawn on it as a slice image, or as a translucent
  volume of the kept side, with a colour bar stating its units.
* A title (lattice, step, time), a legend of the kinds drawn with their voxel
  counts, and a turntable camera (mouse orbit and zoom) set by azimuth,
  elevation, zoom and field of view (:class:`tools.scene_options.Camera`).

Scene units are voxels.  Arrays are (nz, ny, nx); voxel (z, y, x) fills the cube
[x, x+1] x [y, y+1] x [z, z+1].  vispy is imported only when a scene is made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.errors import UserError
from engine.runformat import KIND, KindCodes
from tools.palette import drawn_kinds, kind_colour
from tools.scene_geometry import (AXES, FACE_BUDGET, FACE_NORMALS, FACE_TONES, choose_block,
                                  drawn_codes, face_mesh)
from tools.scene_options import FIELD_MODES, Camera, Plane

BACKGROUND = (0.07, 0.08, 0.10)
TEXT_COLOUR = (0.92, 0.93, 0.95)
FIELD_CMAP = "viridis"


# -- the data of one snapshot ---------------------------------------------------------

@dataclass
class Snapshot:
    """The data of one snapshot of one lattice, as the scene draws it."""

    lattice: str
    index: int
    step: int
    time_h: float
    voxel_um: float
    kind: np.ndarray                                # uint8 (nz, ny, nx)
    kinds: KindCodes                                # the lattice's kind codes, from the file
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def load_snapshot(run, lattice: str | None, index: int, fields=()) -> Snapshot:
    """Read snapshot `index` of `lattice` from a :class:`tools.runfile.RunFile`,
    with the kind array, the kind codes stored with it and each named field."""
    meta = run.lattice(lattice)
    n = run.n_snapshots
    if not -n <= index < n:
        raise UserError(f"{run.path}: snapshot {index} out of range (has {n})")
    index %= n
    data = {f: np.asarray(run.snapshot(meta.name, f, index), dtype=np.float32) for f in fields}
    return Snapshot(lattice=meta.name, index=index, step=int(run.steps[index]),
                    time_h=float(run.times_h[index]), voxel_um=meta.voxel_um,
                    kind=run.snapshot(meta.name, KIND, index), kinds=meta.kinds, fields=data,
                    units={f: run.fields.get(f, "") for f in fields})


# -- camera fit, colour limits, labels ------------------------------------------------

def fit_scale(lo, hi) -> float:
    """The view extent (scene units across the shorter side of the canvas) at
    zoom 1: the box's diagonal plus 2%, so it fits seen from any angle."""
    return math.sqrt(sum((b - a) ** 2 for a, b in zip(lo, hi))) * 1.02


def robust_clim(values: np.ndarray) -> tuple[float, float]:
    """Colour limits for a field: its finite min and max (max raised by 1 if
    they are equal, so a field of zeros reads 0..1, not -0.5..0.5)."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        hi = lo + 1.0
    return lo, hi


def format_value(v: float) -> str:
    """A colour-bar tick: 3 significant digits."""
    return f"{v:.3g}"


def describe_time(time_h: float) -> str:
    """``36.0 h (1.5 d)`` for a model time in hours."""
    return f"{time_h:.1f} h ({time_h / 24:.1f} d)" if time_h >= 48 else f"{time_h:.1f} h"


# -- the vispy scene --------------------------------------------------------------

def make_canvas(size=(1024, 768), **kwargs):
    """A vispy SceneCanvas in the scene's background colour (vispy's current app)."""
    from vispy import scene
    kwargs.setdefault("show", False)
    return scene.SceneCanvas(size=size, bgcolor=BACKGROUND, keys=None, **kwargs)


class LatticeScene:
    """A snapshot drawn on a vispy ``SceneCanvas`` (see the module docstring).

    Typical use: ``s = LatticeScene(canvas); s.show(snapshot); img = s.render()``.
    Setters (kinds, plane, field, camera) redraw what they change.
    """

    def __init__(self, canvas, *, kinds=None, camera: Camera = Camera(),
                 face_budget: int = FACE_BUDGET, legend: bool = True):
        """`kinds`: the kind names shown (None: every kind the snapshot has)."""
        from vispy import scene
        self._scene = scene
        self.canvas = canvas
        self.view = canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera()
        self.camera_params = camera
        self.face_budget = int(face_budget)
        self.visible: set[str] | None = None if kinds is None else set(kinds)
        self.plane: Plane | None = None
        self.clip = False
        self.field: str | None = None
        self.field_mode = "slice"
        self.clim: tuple[float, float] | None = None
        self.snapshot: Snapshot | None = None
        self.block = 1
        self.kind_counts: dict[str, int] = {}
        self._meshes = {}                       # (code, direction) -> Mesh
        self._colours = {}                      # (code, direction) -> the kind's palette rgb
        self._shaded = {}                       # (code, direction) -> rgb last set
        self._field_visual = None
        self._make_overlays(legend)
        canvas.events.resize.connect(self._layout)
        canvas.events.draw.connect(self._shade, position="first")

    # -- overlays: title, legend, colour bar ----------------------------------------

    def _make_overlays(self, legend: bool):
        """Title, legend and colour bar: visuals in canvas pixels, drawn on top."""
        scene = self._scene
        self.title = scene.visuals.Text("", color=TEXT_COLOUR, font_size=10, anchor_x="left",
                                        anchor_y="bottom", parent=self.canvas.scene)
        self.legend_on = legend
        self._legend_text = scene.visuals.Text("", color=TEXT_COLOUR, font_size=9,
                                               anchor_x="left", anchor_y="center",
                                               parent=self.canvas.scene)
        self._legend_swatches = scene.visuals.Markers(parent=self.canvas.scene)
        self._legend_swatches.visible = False
        # the colour bar: a gradient image, its label above, ticks at its right
        ramp = np.linspace(1.0, 0.0, 256, dtype=np.float32)[:, None]
        self._bar = scene.visuals.Image(ramp, cmap=FIELD_CMAP, clim=(0.0, 1.0),
                                        parent=self.canvas.scene)
        self._bar_text = scene.visuals.Text("", color=TEXT_COLOUR, font_size=9,
                                            anchor_x="left", anchor_y="center",
                                            parent=self.canvas.scene)
        self._bar_label = scene.visuals.Text("", color=TEXT_COLOUR, font_size=9,
                                             anchor_x="center", anchor_y="bottom",
                                             parent=self.canvas.scene)
        self.colorbar_label = ""
        for v in (self.title, self._legend_text, self._legend_swatches, self._bar,
                  self._bar_text, self._bar_label):
            v.order = 10
            v.set_gl_state(depth_test=False, blend=True)
        self._show_colorbar(False)

    def _layout(self, event=None):
        """Place the overlays in canvas pixels (top-left title and legend,
        colour bar on the right)."""
        w, h = self.canvas.size
        self.title.pos = (12, 22)
        self._update_legend()
        from vispy.visuals.transforms import STTransform
        bar_h, bar_w = max(60, min(320, int(h * 0.45))), 16
        x0, y0 = w - 100, (h - bar_h) / 2
        self._bar.transform = STTransform(scale=(bar_w, bar_h / 256), translate=(x0, y0))
        self._bar_text.pos = [(x0 + bar_w + 6, y0 + f * bar_h) for f in (0.0, 0.5, 1.0)]
        self._bar_label.pos = (x0 + bar_w / 2, y0 - 24)

    def _update_legend(self):
        """Swatch and voxel count of each shown kind present in the snapshot."""
        shown = [k for k in self.shown_kinds() if self.kind_counts.get(k)]
        if not (self.legend_on and shown):
            self._legend_text.visible = self._legend_swatches.visible = False
            return
        y0, dy = 48, 20
        pos = np.array([(20, y0 + i * dy) for i in range(len(shown))], np.float32)
        self._legend_swatches.set_data(pos, face_color=[kind_colour(k) for k in shown],
                                       edge_width=0, size=12, symbol="square")
        self._legend_text.text = [f"{k.replace('_', ' ')}  {self.kind_counts[k]:,}"
                                  for k in shown]
        self._legend_text.pos = pos + [16, 0]
        self._legend_text.visible = self._legend_swatches.visible = True

    def _update_title(self):
        """Lattice, step, time, size; and the block edge when downsampled."""
        s = self.snapshot
        if s is None:
            self.title.text = ""
            return
        nz, ny, nx = s.kind.shape
        text = (f"{s.lattice}  step {s.step}  {describe_time(s.time_h)}   "
                f"{nx}x{ny}x{nz} voxels of {s.voxel_um:g} µm")
        if self.block > 1:
            text += f"   (drawn in {self.block}³ blocks)"
        self.title.text = text

    # -- data and geometry ----------------------------------------------------------

    def show(self, snapshot: Snapshot, fit: bool = False) -> None:
        """Draw `snapshot` (replacing the previous one); the camera is set from
        :attr:`camera_params` the first time or with `fit`, kept otherwise."""
        first = self.snapshot is None or fit
        self.snapshot = snapshot
        counts = np.bincount(snapshot.kind.ravel(), minlength=256)
        self.kind_counts = {snapshot.kinds.name(c): int(counts[c]) for c in np.flatnonzero(counts)}
        self._rebuild_geometry()
        self._rebuild_field()
        if first:
            self.set_camera(self.camera_params)
        self._update_title()
        self._layout()
        self.canvas.update()

    def _rebuild_geometry(self):
        """Recompute the surface of the visible kinds (clipped)."""
        s = self.snapshot
        codes = [s.kinds.code(k) for k in self.shown_kinds()]
        drawn = drawn_codes(s.kind, codes, self.plane if self.clip else None)
        self.block, faces = choose_block(drawn, self.face_budget)
        extent = s.kind.shape[::-1]
        for key, mesh in self._meshes.items():
            if key not in faces:
                mesh.visible = False
        for (code, d), zyx in faces.items():
            rgb = kind_colour(s.kinds.name(code))
            verts, tris = face_mesh(zyx, d, self.block, extent)
            mesh = self._meshes.get((code, d))
            if mesh is None:
                mesh = self._scene.visuals.Mesh(parent=self.view.scene)
                mesh.set_gl_state("opaque", cull_face=True)
                self._meshes[code, d] = mesh
            mesh.set_data(vertices=verts, faces=tris, color=(*rgb, 1.0))
            self._colours[code, d] = rgb
            self._shaded.pop((code, d), None)
            mesh.visible = True
        self._update_title()
        self._shade()

    def _toward_camera(self) -> np.ndarray:
        """Unit vector (x, y, z) from the scene centre toward the camera."""
        tr = self.view.scene.transform
        w, h = self.view.size
        near = tr.imap([w / 2, h / 2, -0.5, 1.0])
        far = tr.imap([w / 2, h / 2, 0.5, 1.0])
        v = near[:3] / near[3] - far[:3] / far[3]
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else np.array([0.0, 0.0, 1.0])

    def _shade(self, event=None):
        """Colour each (kind, direction) mesh: bright when facing the camera."""
        if not self._meshes:
            return
        toward = self._toward_camera()
        light = np.clip(FACE_NORMALS @ toward, 0.0, 1.0)
        shades = (0.3 + 0.7 * np.sqrt(light)) * FACE_TONES
        for (code, d), mesh in self._meshes.items():
            rgb = tuple(round(c * float(shades[d]), 4) for c in self._colours[code, d])
            if self._shaded.get((code, d)) != rgb:
                self._shaded[code, d] = rgb
                mesh.color = (*rgb, 1.0)

    # -- kinds, plane, field, camera -----------------------------------------------

    def shown_kinds(self) -> tuple[str, ...]:
        """The kind names drawn, in the snapshot's code order (none before a
        snapshot is shown); names the snapshot's kind codes lack are skipped."""
        if self.snapshot is None:
            return ()
        names = drawn_kinds(self.snapshot.kinds)
        return names if self.visible is None else tuple(k for k in names if k in self.visible)

    def set_kind_visible(self, name: str, on: bool) -> None:
        """Show or hide kind `name` (a kind name the run file stores)."""
        visible = set(self.shown_kinds()) if self.visible is None else self.visible
        self.set_visible_kinds(visible | {name} if on else visible - {name})

    def set_visible_kinds(self, names) -> None:
        """Show exactly the kinds `names`; the surface is recomputed, since a
        hidden kind uncovers what it enclosed."""
        self.visible = set(names)
        if self.snapshot is not None:
            self._rebuild_geometry()
        self._update_legend()
        self.canvas.update()

    def set_plane(self, plane: Plane | None, clip: bool = True) -> None:
        """Set the plane (None: none) and whether it clips the voxels."""
        self.plane, self.clip = plane, bool(clip and plane is not None)
        if self.snapshot is not None:
            self._rebuild_geometry()
            self._rebuild_field()
            self.canvas.update()

    def set_field(self, name: str | None, mode: str = "slice",
                  clim: tuple[float, float] | None = None) -> None:
        """Show field `name` (None: no field) as a ``slice`` on the plane (at the
        lattice centre along z without one) or as a translucent ``volume``;
        `clim` fixes the colour limits (default: the snapshot's range)."""
        if mode not in FIELD_MODES:
            raise ValueError(f"field mode {mode!r}, expected one of {FIELD_MODES}")
        self.field, self.field_mode, self.clim = name, mode, clim
        if self.snapshot is not None:
            self._rebuild_field()
            self.canvas.update()

    def set_camera(self, cam: Camera) -> None:
        """Aim the turntable camera from `cam` at the centre of the part of the
        lattice the clip keeps; zoom 1 fits that part in view at any angle."""
        self.camera_params = cam
        c = self.view.camera
        lo, hi = self.kept_box()
        c.center = tuple((a + b) / 2 for a, b in zip(lo, hi))
        c.scale_factor = fit_scale(lo, hi) / cam.zoom
        c.fov = cam.fov
        # depth range: perspective near/far = distance / and * sqrt(10 * depth_value);
        # orthographic +-depth_value.  vispy's default (1e6) starves the depth buffer.
        c.depth_value = 10.0 if cam.fov > 0 else 4.0 * max(self._extent())
        c.azimuth, c.elevation = cam.azimuth, cam.elevation
        c.distance = None
        c.view_changed()

    def _extent(self) -> tuple[int, int, int]:
        """The lattice size (nx, ny, nz) in voxels (a unit cube before any data)."""
        if self.snapshot is None:
            return (1, 1, 1)
        nz, ny, nx = self.snapshot.kind.shape
        return (nx, ny, nz)

    def kept_box(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Corners (x, y, z) of the box of voxels the clip keeps (all without one)."""
        lo, hi = [0, 0, 0], list(self._extent())
        if self.clip and self.plane is not None:
            i = 2 - AXES[self.plane.axis]
            lo[i], hi[i] = self.plane.kept(hi[i])
            if hi[i] == lo[i]:                  # nothing kept: frame the plane
                lo[i], hi[i] = max(0, lo[i] - 1), lo[i] + 1
        return tuple(lo), tuple(hi)

    def current_camera(self) -> Camera:
        """The camera as the user has left it (for saving a view)."""
        c = self.view.camera
        zoom = fit_scale(*self.kept_box()) / c.scale_factor
        return Camera(azimuth=c.azimuth, elevation=c.elevation, zoom=zoom, fov=c.fov)

    # -- fields ----------------------------------------------------------------------

    def _rebuild_field(self):
        """(Re)make the field visual and its colour bar for the current state."""
        if self._field_visual is not None:
            self._field_visual.parent = None
            self._field_visual = None
        s = self.snapshot
        if self.field is None or s is None or self.field not in s.fields:
            self._show_colorbar(False)
            return
        data = s.fields[self.field]
        lo, hi = self.clim or robust_clim(data)
        if self.field_mode == "volume":
            self._field_visual = self._make_volume(data, (lo, hi))
        else:
            self._field_visual = self._make_slice(data, (lo, hi))
        units = s.units.get(self.field, "")
        self.colorbar_label = f"{self.field} ({units})" if units else self.field
        self._bar_label.text = self.colorbar_label
        self._bar_text.text = [format_value(v) for v in (hi, (lo + hi) / 2, lo)]
        self._show_colorbar(True)
        self._layout()

    def _show_colorbar(self, on: bool):
        """Show or hide the colour bar's parts."""
        for v in (self._bar, self._bar_text, self._bar_label):
            v.visible = on

    def _slice_plane(self, shape) -> Plane:
        """The plane a field slice lies in: the scene's, else mid-way along z."""
        if self.plane is not None:
            return self.plane
        return Plane(axis="z", pos=shape[0] // 2)

    def _make_slice(self, data, clim):
        """A 2D image of the field in the slice plane, flush with the cut face."""
        from vispy.visuals.transforms import MatrixTransform
        plane = self._slice_plane(data.shape)
        axis = AXES[plane.axis]
        i = plane.slice_index(data.shape[axis])
        img = np.take(data, i, axis=axis)              # rows, cols = the other two axes
        # image column -> first remaining spatial axis, row -> second, in (x, y, z)
        n = 2 - axis
        col_ax, row_ax = [a for a in (0, 1, 2) if a != n]   # (x,y), (x,z) or (y,z)
        m = np.zeros((4, 4))
        m[0, col_ax] = 1.0
        m[1, row_ax] = 1.0
        m[2, n] = 1.0                                   # keeps the matrix invertible
        # a quarter voxel proud of the cut face, so the depth test never mixes them
        m[3, n] = plane.pos + (0.25 if plane.keep == "<" else -0.25)
        m[3, 3] = 1.0
        image = self._scene.visuals.Image(img, cmap=FIELD_CMAP, clim=clim, interpolation="nearest",
                                          parent=self.view.scene)
        image.transform = MatrixTransform(m)
        image.set_gl_state("opaque", depth_test=True)
        return image

    def _make_volume(self, data, clim):
        """A translucent volume of the field over the kept side of the plane."""
        from vispy.visuals.transforms import STTransform
        offset = [0, 0, 0]
        if self.clip:
            axis = AXES[self.plane.axis]
            lo, hi = self.plane.kept(data.shape[axis])
            if hi <= lo:
                return None
            keep = [slice(None)] * 3
            keep[axis] = slice(lo, hi)
            data = data[tuple(keep)]
            offset[2 - axis] = lo
        cmap = _volume_cmap(depth=max(data.shape))
        vol = self._scene.visuals.Volume(np.ascontiguousarray(data, np.float32), clim=clim,
                                         method="translucent", cmap=cmap, parent=self.view.scene)
        vol.transform = STTransform(translate=[o + 0.5 for o in offset])
        return vol

    # -- output ------------------------------------------------------------------------

    def render(self) -> np.ndarray:
        """The canvas as an RGB uint8 array (height, width, 3)."""
        self._shade()
        return self.canvas.render(alpha=False)


def _volume_cmap(depth: int = 64, opaque: bool = False):
    """viridis with opacity rising with the value, thin enough that a ray
    through `depth` voxels is not saturated (``opaque`` for the colour bar)."""
    from vispy.color import Colormap, get_colormap
    t = np.linspace(0.0, 1.0, 32)
    rgba = get_colormap(FIELD_CMAP).map(t)
    if not opaque:
        rgba[:, 3] = np.clip(0.02 + t ** 1.5, 0, 1) * min(1.0, 12.0 / max(depth, 1))
    return Colormap(rgba)
