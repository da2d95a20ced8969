"""One snapshot of a run drawn as a vispy scene: the drawing logic shared by
``oncolattice view`` (interactive, Qt) and ``oncolattice render`` (headless).

What is drawn:

* Voxel kinds, each in its fixed palette colour (:mod:`tools.palette`) and each
  switchable on and off.  Only the visible surface is drawn: the faces of shown
  voxels that touch open space (space connected to the lattice edge, after
  hiding switched-off kinds and clipped voxels) or the edge itself, as flat
  quads, one mesh per kind and face direction.  Faces between two shown voxels
  or toward an enclosed pocket could never be seen and are skipped.  A face is
  shaded by how squarely it faces the camera (times a slight fixed tone per
  axis), so a z face seen head-on shows the exact palette colour.
* When those faces exceed a budget the lattice is drawn in blocks of b**3
  voxels, each block showing the kind that dominates it, counts weighted by
  rarity (so thin vessels and small tumours survive); the title says so.
* A plane along x, y or z: as a clip it hides the voxels on one side, exposing
  the inside of the tumour; a field (oxygen, VEGF, ...) is drawn on it as a
  slice image, or as a translucent volume of the kept side, with a colour bar
  stating its units.
* A title (lattice, step, time), a legend of the kinds drawn with their voxel
  counts, and a turntable camera (mouse orbit and zoom) set by azimuth,
  elevation, zoom and field of view.

Scene units are voxels.  Arrays are (nz, ny, nx); voxel (z, y, x) fills the cube
[x, x+1] x [y, y+1] x [z, z+1].  vispy is imported only when a scene is made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numba
import numpy as np

from engine.errors import UserError
from kernels.lattice import KIND_NAMES
from tools.palette import DRAWN_KINDS, KIND_COLOURS

# spatial axis -> array axis of a (nz, ny, nx) array
AXES = {"x": 2, "y": 1, "z": 0}
# the six face directions as (array axis, sign): -x, +x, -y, +y, -z, +z
DIRECTIONS = ((2, -1), (2, 1), (1, -1), (1, 1), (0, -1), (0, 1))
FACE_BUDGET = 600_000           # faces drawn before the lattice is drawn in blocks
OUTSIDE = 255                   # neighbour code beyond the lattice edge
BACKGROUND = (0.07, 0.08, 0.10)
TEXT_COLOUR = (0.92, 0.93, 0.95)
FIELD_MODES = ("slice", "volume")
FIELD_CMAP = "viridis"


# -- small value types ----------------------------------------------------------

@dataclass(frozen=True)
class Camera:
    """A turntable view: angles in degrees; zoom 1 fits the lattice (the part a
    clip keeps) seen from any angle; fov 0 is orthographic.  Azimuth 0 and
    elevation 0 look along +y; elevation 90 looks down the z axis with +x to
    the right and +y up; the default sees the +x, +y and +z faces.  The camera
    orbits the centre of the kept part."""

    azimuth: float = 135.0
    elevation: float = 25.0
    zoom: float = 1.0
    fov: float = 30.0


@dataclass(frozen=True)
class Plane:
    """A plane normal to `axis` at voxel coordinate `pos`.

    As a clip it keeps the voxels with index < pos (``keep="<"``) or >= pos
    (``keep=">"``) along that axis; a field slice shows the last kept layer,
    drawn flush with the cut face.
    """

    axis: str
    pos: int
    keep: str = "<"

    def kept(self, n: int) -> tuple[int, int]:
        """The index range [lo, hi) kept along an axis of length n."""
        p = min(max(int(self.pos), 0), n)
        return (0, p) if self.keep == "<" else (p, n)

    def slice_index(self, n: int) -> int:
        """The layer a field slice shows: the last one the clip keeps."""
        p = self.pos - 1 if self.keep == "<" else self.pos
        return min(max(int(p), 0), n - 1)


@dataclass
class Snapshot:
    """The data of one snapshot of one lattice, as the scene draws it."""

    lattice: str
    index: int
    step: int
    time_h: float
    voxel_um: float
    kind: np.ndarray                                # uint8 (nz, ny, nx)
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)


def load_snapshot(run, lattice: str | None, index: int, fields=()) -> Snapshot:
    """Read snapshot `index` of `lattice` from a :class:`tools.runfile.RunFile`,
    with the kind array and each named field."""
    meta = run.lattice(lattice)
    n = run.n_snapshots
    if not -n <= index < n:
        raise UserError(f"{run.path}: snapshot {index} out of range (has {n})")
    index %= n
    data = {f: np.asarray(run.snapshot(meta.name, f, index), dtype=np.float32) for f in fields}
    return Snapshot(lattice=meta.name, index=index, step=int(run.steps[index]),
                    time_h=float(run.times_h[index]), voxel_um=meta.voxel_um,
                    kind=run.snapshot(meta.name, "kind", index), fields=data,
                    units={f: run.fields.get(f, "") for f in fields})


def field_names(run) -> list[str]:
    """The snapshot fields that can be shown as a scalar field (all but kind)."""
    return [f for f in run.fields if f != "kind"]


# -- parsing of the shared command-line options ---------------------------------

def parse_kinds(text: str, option: str = "--kind") -> tuple[str, ...]:
    """Comma-separated kind names (or ``all``) -> names in palette order."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError(f"{option} {text!r}: give kind names separated by commas")
    chosen = set()
    for name in names:
        if name == "all":
            chosen.update(DRAWN_KINDS)
        elif name in DRAWN_KINDS:
            chosen.add(name)
        else:
            raise UserError(f"{option} {name!r}: unknown kind (known: all, "
                            f"{', '.join(DRAWN_KINDS)})")
    return tuple(k for k in DRAWN_KINDS if k in chosen)


def parse_camera(text: str, option: str = "--camera") -> Camera:
    """``AZIMUTH,ELEVATION[,ZOOM]`` in degrees -> :class:`Camera` (fov unchanged)."""
    parts = [s.strip() for s in text.split(",")]
    try:
        values = [float(s) for s in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or not all(map(math.isfinite, values)):
        raise UserError(f"{option} {text!r}: expected AZIMUTH,ELEVATION[,ZOOM] in degrees, "
                        f"e.g. 135,25,1.2")
    if not -90 <= values[1] <= 90:
        raise UserError(f"{option} {text!r}: elevation {values[1]:g} must be in -90..90")
    if len(values) == 3 and values[2] <= 0:
        raise UserError(f"{option} {text!r}: zoom {values[2]:g} must be > 0")
    return Camera(azimuth=values[0], elevation=values[1],
                  zoom=values[2] if len(values) == 3 else 1.0)


def parse_plane(text: str, shape, option: str = "--clip") -> Plane:
    """``AXIS=POS`` or ``AXIS<POS`` (keep below), ``AXIS>POS`` (keep above).

    POS is a voxel index, or a percentage of the axis length (``x=50%``).
    """
    text = text.strip()
    for op in ("=", "<", ">"):
        axis, sep, value = text.partition(op)
        if sep:
            break
    axis = axis.strip().lower()
    if not sep or axis not in AXES:
        raise UserError(f"{option} {text!r}: expected AXIS=POS with AXIS x, y or z "
                        f"(e.g. x=48 or z=50%)")
    n = int(shape[AXES[axis]])
    value = value.strip()
    try:
        pos = float(value[:-1]) * n / 100 if value.endswith("%") else float(value)
    except ValueError:
        pos = math.nan
    if not (math.isfinite(pos) and 0 <= pos <= n):
        raise UserError(f"{option} {text!r}: position must be a voxel index in 0..{n} "
                        f"or a percentage")
    return Plane(axis=axis, pos=int(round(pos)), keep=">" if sep == ">" else "<")


def parse_size(text: str, option: str = "--size") -> tuple[int, int]:
    """``WIDTHxHEIGHT`` in pixels -> (width, height)."""
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h))
    except ValueError:
        size = (0, 0)
    if not sep or not (16 <= size[0] <= 8192 and 16 <= size[1] <= 8192):
        raise UserError(f"{option} {text!r}: expected WIDTHxHEIGHT in pixels, "
                        f"each 16..8192 (e.g. 1024x768)")
    return size


# -- geometry: visible surfaces and block downsampling ---------------------------

def neighbour_codes(kind: np.ndarray, axis: int, sign: int, outside=OUTSIDE) -> np.ndarray:
    """Each voxel's neighbour one step along `axis` in direction `sign`
    (`outside` beyond the lattice edge)."""
    nb = np.full_like(kind, outside)
    dst = [slice(None)] * 3
    src = [slice(None)] * 3
    if sign > 0:
        dst[axis], src[axis] = slice(0, -1), slice(1, None)
    else:
        dst[axis], src[axis] = slice(1, None), slice(0, -1)
    nb[tuple(dst)] = kind[tuple(src)]
    return nb


@numba.njit(cache=True)
def open_space(solid: np.ndarray) -> np.ndarray:
    """The non-solid voxels connected (through faces) to the lattice edge: the
    space a camera outside could see into.  Enclosed pockets are not open."""
    nz, ny, nx = solid.shape
    is_open = np.zeros(solid.shape, np.bool_)
    stack = np.empty(solid.size, np.int32)       # each voxel is pushed at most once
    top = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                edge = z == 0 or y == 0 or x == 0 or z == nz - 1 or y == ny - 1 or x == nx - 1
                if edge and not solid[z, y, x]:
                    is_open[z, y, x] = True
                    stack[top] = (z * ny + y) * nx + x
                    top += 1
    while top > 0:
        top -= 1
        i = stack[top]
        z, rest = divmod(i, ny * nx)
        y, x = divmod(rest, nx)
        for dz, dy, dx in ((-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)):
            zz, yy, xx = z + dz, y + dy, x + dx
            if 0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx:
                if not solid[zz, yy, xx] and not is_open[zz, yy, xx]:
                    is_open[zz, yy, xx] = True
                    stack[top] = (zz * ny + yy) * nx + xx
                    top += 1
    return is_open


def drawn_codes(kind: np.ndarray, visible_codes, plane: "Plane | None" = None) -> np.ndarray:
    """`kind` with every voxel not drawn set to 0: voxels of hidden kinds and
    voxels the clip `plane` hides (None: no clip)."""
    lut = np.zeros(256, np.uint8)
    for code in visible_codes:
        lut[code] = code
    out = lut[kind]
    if plane is not None:
        axis = AXES[plane.axis]
        lo, hi = plane.kept(kind.shape[axis])
        for part in (slice(0, lo), slice(hi, None)):
            cut = [slice(None)] * 3
            cut[axis] = part
            out[tuple(cut)] = 0
    return out


def surface_faces(drawn: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """(code, direction) -> (n, 3) int32 (z, y, x) indices of drawn voxels whose
    face in that direction touches open space or the lattice edge.

    Faces between two drawn voxels, or toward an enclosed pocket, can never be
    seen from outside and are left out.
    """
    is_open = open_space(drawn != 0)
    out = {}
    for d, (axis, sign) in enumerate(DIRECTIONS):
        exposed = (drawn != 0) & neighbour_codes(is_open, axis, sign, outside=True)
        idx = np.argwhere(exposed).astype(np.int32)
        codes = drawn[idx[:, 0], idx[:, 1], idx[:, 2]]
        order = np.argsort(codes, kind="stable")
        idx, codes = idx[order], codes[order]
        present, starts = np.unique(codes, return_index=True)
        for code, lo, hi in zip(present, starts, list(starts[1:]) + [len(codes)]):
            out[int(code), d] = idx[lo:hi]
    return out


def block_codes(kind: np.ndarray, b: int) -> np.ndarray:
    """Downsample by blocks of b**3 voxels: each block takes the code with the
    most voxels, counts of non-empty codes weighted by 1/sqrt(their fraction of
    the lattice), so that rare kinds (vessels, tips, a small tumour) survive
    while scattered matrix voxels inside tissue do not punch holes."""
    if b == 1:
        return kind
    pad = [(0, -n % b) for n in kind.shape]
    k = np.pad(kind, pad)                        # pads with 0 (empty)
    nz, ny, nx = (n // b for n in k.shape)
    cells = k.reshape(nz, b, ny, b, nx, b).transpose(0, 2, 4, 1, 3, 5).reshape(-1, b ** 3)
    total = np.bincount(kind.ravel(), minlength=256).astype(np.float64)
    present = np.flatnonzero(total)
    weights = np.ones(256)
    weights[present] = 1.0 / np.sqrt(total[present] / kind.size)
    weights[0] = 1.0
    best = np.zeros(len(cells), np.uint8)
    best_score = np.zeros(len(cells))
    for code in present:
        score = np.count_nonzero(cells == code, axis=1) * weights[code]
        better = score > best_score
        best[better], best_score[better] = code, score[better]
    return best.reshape(nz, ny, nx)


def choose_block(drawn: np.ndarray, budget: int = FACE_BUDGET):
    """The smallest block edge b whose downsampled lattice has at most `budget`
    surface faces (b stops growing once the lattice is 8 blocks across).
    Returns (b, faces of the downsampled lattice)."""
    b = 1
    limit = max(1, max(drawn.shape) // 8)
    faces = surface_faces(drawn)
    while (n := sum(map(len, faces.values()))) > budget and b < limit:
        # a surface's face count falls about as 1/b**2: aim there, at least b + 1
        b = min(limit, max(b + 1, math.ceil(b * math.sqrt(n / budget))))
        faces = surface_faces(block_codes(drawn, b))
    return b, faces


def _face_corners() -> np.ndarray:
    """(6, 4, 3) unit-quad corners (x, y, z) per direction, counter-clockwise
    seen from outside the voxel, so back faces can be culled."""
    corners = np.zeros((6, 4, 3), np.float32)
    for d, (axis, sign) in enumerate(DIRECTIONS):
        n = 2 - axis                             # normal as an (x, y, z) index
        u, v = (n + 1) % 3, (n + 2) % 3          # (u, v, n) right-handed
        quad = [(0, 0), (1, 0), (1, 1), (0, 1)]
        if sign < 0:
            quad = quad[::-1]
        for i, (a, c) in enumerate(quad):
            corners[d, i, n] = 1.0 if sign > 0 else 0.0
            corners[d, i, u], corners[d, i, v] = a, c
    return corners


FACE_CORNERS = _face_corners()
FACE_NORMALS = np.array([[(s if 2 - a == i else 0) for i in range(3)] for a, s in DIRECTIONS],
                        np.float32)
# a slight fixed tone per axis so that faces equally lit still differ (z faces exact)
FACE_TONES = np.array([{2: 0.86, 1: 0.93, 0: 1.0}[a] for a, _ in DIRECTIONS])


def face_mesh(zyx: np.ndarray, direction: int, b: int, extent_xyz) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (4n, 3) and triangles (2n, 3) for the faces of `zyx` voxels of a
    lattice downsampled by b, clamped to the lattice extent (x, y, z)."""
    base = zyx[:, ::-1].astype(np.float32) * b
    verts = base[:, None, :] + FACE_CORNERS[direction][None] * b
    verts = np.minimum(verts, np.asarray(extent_xyz, np.float32)).reshape(-1, 3)
    first = np.arange(len(zyx), dtype=np.uint32)[:, None] * 4
    tris = np.concatenate([first + [0, 1, 2], first + [0, 2, 3]], axis=1).reshape(-1, 3)
    return verts, tris


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

    def __init__(self, canvas, *, kinds=DRAWN_KINDS, camera: Camera = Camera(),
                 face_budget: int = FACE_BUDGET, legend: bool = True):
        from vispy import scene
        self._scene = scene
        self.canvas = canvas
        self.view = canvas.central_widget.add_view()
        self.view.camera = scene.TurntableCamera()
        self.camera_params = camera
        self.face_budget = int(face_budget)
        self.visible = set(kinds)
        self.plane: Plane | None = None
        self.clip = False
        self.field: str | None = None
        self.field_mode = "slice"
        self.clim: tuple[float, float] | None = None
        self.snapshot: Snapshot | None = None
        self.block = 1
        self.kind_counts: dict[str, int] = {}
        self._meshes = {}                       # (code, direction) -> Mesh
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
        shown = [k for k in DRAWN_KINDS if k in self.visible and self.kind_counts.get(k)]
        if not (self.legend_on and shown):
            self._legend_text.visible = self._legend_swatches.visible = False
            return
        y0, dy = 48, 20
        pos = np.array([(20, y0 + i * dy) for i in range(len(shown))], np.float32)
        self._legend_swatches.set_data(pos, face_color=[KIND_COLOURS[k] for k in shown],
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
        counts = np.bincount(snapshot.kind.ravel(), minlength=len(KIND_NAMES))
        self.kind_counts = {k: int(counts[i]) for i, k in enumerate(KIND_NAMES)}
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
        codes = [KIND_NAMES.index(k) for k in self.visible]
        drawn = drawn_codes(s.kind, codes, self.plane if self.clip else None)
        self.block, faces = choose_block(drawn, self.face_budget)
        extent = s.kind.shape[::-1]
        for key, mesh in self._meshes.items():
            if key not in faces:
                mesh.visible = False
        for (code, d), zyx in faces.items():
            name = KIND_NAMES[code] if code < len(KIND_NAMES) else None
            if name not in KIND_COLOURS or name == "empty":
                continue                         # unknown codes are not drawn
            verts, tris = face_mesh(zyx, d, self.block, extent)
            mesh = self._meshes.get((code, d))
            if mesh is None:
                mesh = self._scene.visuals.Mesh(parent=self.view.scene)
                mesh.set_gl_state("opaque", cull_face=True)
                self._meshes[code, d] = mesh
            mesh.set_data(vertices=verts, faces=tris, color=(*KIND_COLOURS[name], 1.0))
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
            rgb = tuple(round(c * float(shades[d]), 4) for c in KIND_COLOURS[KIND_NAMES[code]])
            if self._shaded.get((code, d)) != rgb:
                self._shaded[code, d] = rgb
                mesh.color = (*rgb, 1.0)

    # -- kinds, plane, field, camera -----------------------------------------------

    def set_kind_visible(self, name: str, on: bool) -> None:
        """Show or hide kind `name` (a name in the palette)."""
        self.set_visible_kinds(self.visible | {name} if on else self.visible - {name})

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


# -- options shared by `oncolattice render` and `oncolattice view` ------------------

def resolve_view(run, args) -> dict:
    """Check the view options of ``render`` and ``view`` against the run file and
    return them resolved; an option a command lacks takes its default."""
    def opt(name, default=None):
        return getattr(args, name, default)

    meta = run.lattice(opt("lattice"))
    kinds = parse_kinds(opt("kind", "all"), "--kind")
    if opt("hide"):
        hidden = parse_kinds(opt("hide"), "--hide")
        kinds = tuple(k for k in kinds if k not in hidden)
    fields = field_names(run)
    field_name = opt("field")
    if field_name is not None and field_name not in fields:
        raise UserError(f"--field {field_name!r}: no such field in {run.path} "
                        f"(has {', '.join(fields) or 'none'})")
    mode = opt("field_mode", "slice")
    if mode not in FIELD_MODES:
        raise UserError(f"--field-mode {mode!r}: expected one of {', '.join(FIELD_MODES)}")
    if opt("clip") and opt("slice"):
        raise UserError("--clip and --slice both set the plane; give one "
                        "(the clip plane also holds the field slice)")
    plane, clip = None, False
    if opt("clip"):
        plane, clip = parse_plane(opt("clip"), meta.shape, "--clip"), True
    elif opt("slice"):
        plane = parse_plane(opt("slice"), meta.shape, "--slice")
    fov = opt("fov", Camera.fov)
    if not (math.isfinite(fov) and 0 <= fov < 180):
        raise UserError(f"--fov {fov:g}: must be in 0..180 degrees (0 = orthographic)")
    cam = parse_camera(opt("camera")) if opt("camera") else Camera()
    budget = FACE_BUDGET if opt("max_faces") is None else opt("max_faces")
    if budget < 1000:
        raise UserError(f"--max-faces {budget}: must be at least 1000")
    return dict(lattice=meta.name, kinds=kinds, field=field_name, field_mode=mode,
                plane=plane, clip=clip, camera=replace(cam, fov=fov), max_faces=budget,
                legend=not opt("no_legend", False))


def resolve_index(run, step: int | None) -> int:
    """The snapshot index of model step `step` (None: the last snapshot)."""
    if run.n_snapshots == 0:
        raise UserError(f"{run.path}: has no snapshots yet")
    if step is None:
        return run.n_snapshots - 1
    try:
        return run.index_of_step(step)
    except UserError as exc:
        raise UserError(f"--step {step}: {exc}") from None
