"""The view options shared by ``oncolattice render`` and ``oncolattice view``:
what to show of a run file and from where.

Value types (:class:`Camera`, :class:`Plane`), parsers for the command-line
options (kinds, camera, clip/slice plane, image size), and
:func:`resolve_view`, which checks them all against a run file: kind names
are those the file stores with its kind codes (:mod:`engine.runformat`), so a
kind this version has never heard of can still be chosen by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engine.errors import UserError
from engine.runformat import KIND
from tools.palette import drawn_kinds
from tools.scene_geometry import AXES, FACE_BUDGET

FIELD_MODES = ("slice", "volume")


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


# -- what a run file offers ------------------------------------------------------

def file_kinds(run) -> tuple[str, ...]:
    """The drawable kind names of a :class:`tools.runfile.RunFile`, from its
    stored kind codes: every lattice's kinds but matrix, in code order, each
    once (lattices of one run normally share one table)."""
    names = {}
    for meta in run.lattices.values():
        names.update(dict.fromkeys(drawn_kinds(meta.kinds)))
    return tuple(names)


def field_names(run) -> list[str]:
    """The snapshot fields that can be shown as a scalar field (all but kind)."""
    return [f for f in run.fields if f != KIND]


# -- parsing of the command-line options --------------------------------------------

def parse_kinds(text: str, known, option: str = "--kind") -> tuple[str, ...]:
    """Comma-separated kind names (or ``all``) -> names in the order of
    `known` (the file's drawable kinds, :func:`file_kinds`)."""
    known = tuple(known)
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names:
        raise UserError(f"{option} {text!r}: give kind names separated by commas")
    chosen = set()
    for name in names:
        if name == "all":
            chosen.update(known)
        elif name in known:
            chosen.add(name)
        else:
            raise UserError(f"{option} {name!r}: unknown kind (this run file has: all, "
                            f"{', '.join(known)})")
    return tuple(k for k in known if k in chosen)


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


# -- the options of `render` and `view`, checked against a run file ---------------------

TUMOUR_KINDS = ("tumor", "necrotic", "dormant")     # what a default view cuts through


def tumour_clip(run, lattice: str, index: int) -> Plane | None:
    """The default view's clip: keep y up to and including a layer through the tumour
    (its live, necrotic and dormant voxels, by the kind names the file stores; a file
    without dormant cells has no such kind) at snapshot `index`, so the view opens on
    the tumour rather than on the organ's outer face.  The layer is the one nearest
    the tumour's centre that holds tumour voxels, so a site lattice with a colony or
    two (far apart, or a single dormant cell) opens on one of them.  None where the
    snapshot holds no tumour (the view then shows the whole block)."""
    meta = run.lattice(lattice)
    codes = [meta.kinds.code(k) for k in TUMOUR_KINDS if k in meta.kinds]
    if not codes or run.n_snapshots == 0:
        return None
    kind = run.snapshot(lattice, KIND, index)
    per_y = np.count_nonzero(np.isin(kind, codes), axis=(0, 2))
    if not per_y.any():
        return None
    ys = np.arange(len(per_y))
    centre = float((per_y * ys).sum() / per_y.sum())
    layer = int(round(centre))              # the centre's layer, as before, if it has any
    if not per_y[layer]:
        held = ys[per_y > 0]
        layer = int(held[np.argmin(np.abs(held - centre))])
    return Plane(axis="y", pos=layer + 1, keep="<")


def resolve_view(run, args, index: int | None = None) -> dict:
    """Check the view options of ``render`` and ``view`` against the run file and
    return them resolved; an option a command lacks takes its default.
    ``all_kinds`` is every drawable kind the file stores, ``kinds`` those shown.
    Without ``--clip`` or ``--slice`` the view clips through the tumour's centre in
    snapshot `index` (`tumour_clip`); ``--clip none`` shows the whole block."""
    def opt(name, default=None):
        return getattr(args, name, default)

    meta = run.choose_lattice(opt("lattice"))
    known = file_kinds(run)
    kinds = parse_kinds(opt("kind", "all"), known, "--kind")
    if opt("hide"):
        hidden = parse_kinds(opt("hide"), known, "--hide")
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
    if opt("clip") == "none":
        pass
    elif opt("clip"):
        plane, clip = parse_plane(opt("clip"), meta.shape, "--clip"), True
    elif opt("slice"):
        plane = parse_plane(opt("slice"), meta.shape, "--slice")
    elif index is not None:
        plane = tumour_clip(run, meta.name, index)
        clip = plane is not None
    fov = opt("fov", Camera.fov)
    if not (math.isfinite(fov) and 0 <= fov < 180):
        raise UserError(f"--fov {fov:g}: must be in 0..180 degrees (0 = orthographic)")
    cam = parse_camera(opt("camera")) if opt("camera") else Camera()
    budget = FACE_BUDGET if opt("max_faces") is None else opt("max_faces")
    if budget < 1000:
        raise UserError(f"--max-faces {budget}: must be at least 1000")
    return dict(lattice=meta.name, all_kinds=known, kinds=kinds, field=field_name,
                field_mode=mode, plane=plane, clip=clip, camera=replace(cam, fov=fov),
                max_faces=budget, legend=not opt("no_legend", False))


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
