"""``oncolattice render``: draw a run's snapshot to a PNG, or every snapshot to
an MP4, on a machine with no display.

The drawing is :class:`tools.scene.LatticeScene`, the same as the viewer's.
OpenGL comes from a headless vispy backend, chosen automatically: EGL with
Mesa's surfaceless platform first, then OSMesa.  Each is first tried in a
child process, so a broken driver cannot crash this one.  ``ONCOLATTICE_GL=egl``
or ``=osmesa`` skips the trial of the other.  Outputs are written to a
temporary file beside the target and renamed into place, so a failed render
never leaves a partial file under the requested name.
"""
from __future__ import annotations

import argparse
import ctypes.util
import os
import subprocess
import sys
from pathlib import Path

from engine.errors import UserError
from engine.runformat import atomic_path

HELP = "draw a snapshot to PNG (or every snapshot to MP4) without a display"

HEADLESS_BACKENDS = ("egl", "osmesa")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MOVIE_SUFFIXES = (".mp4",)
INSTALL_HINT = ("install Mesa's EGL (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri) or "
                "OSMesa (Debian: libosmesa6)")

_chosen_backend: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``oncolattice render``."""
    parser.add_argument("run", type=Path, metavar="RUN.h5", help="run file to draw")
    parser.add_argument("--out", type=Path, metavar="FRAME.png",
                        help="write one snapshot as an image (.png or .jpg)")
    parser.add_argument("--movie", type=Path, metavar="RUN.mp4",
                        help="write every snapshot as one frame of an MP4 movie")
    parser.add_argument("--step", type=int, metavar="K",
                        help="model step of the snapshot for --out (default: the last)")
    parser.add_argument("--lattice", metavar="NAME", help="lattice to draw (default: the first)")
    parser.add_argument("--kind", default="all", metavar="KINDS",
                        help="kinds to draw, comma-separated, e.g. tumor,necrotic,vessel "
                             "(default: all)")
    parser.add_argument("--hide", metavar="KINDS", help="kinds not to draw, comma-separated")
    parser.add_argument("--field", metavar="NAME",
                        help="also show a field: oxygen, vegf, ... (any float field in the file)")
    parser.add_argument("--field-mode", default="slice", metavar="{slice,volume}",
                        help="show the field as a slice on the plane or as a translucent "
                             "volume (default: slice)")
    parser.add_argument("--clip", metavar="AXIS=POS",
                        help="hide the voxels at and beyond POS along AXIS (x, y or z); POS in "
                             "voxels or percent (z=50%%); AXIS>POS hides those below instead; "
                             "none: the whole block (default: through the tumour's centre)")
    parser.add_argument("--slice", metavar="AXIS=POS",
                        help="plane of the field slice without clipping (default: the clip "
                             "plane, else the middle of z)")
    parser.add_argument("--camera", metavar="AZ,EL[,ZOOM]",
                        help="azimuth and elevation in degrees, zoom (1 fits the lattice); "
                             "default 135,25,1")
    parser.add_argument("--fov", type=float, default=30.0,
                        help="field of view in degrees; 0 = orthographic (default: 30)")
    parser.add_argument("--size", default="1024x768", metavar="WxH",
                        help="image size in pixels (default: 1024x768)")
    parser.add_argument("--fps", type=float, default=4.0,
                        help="movie frames per second (default: 4)")
    parser.add_argument("--max-faces", type=int, metavar="N",
                        help="draw in blocks of voxels when the visible surface has more "
                             "faces than this (default: 600,000)")
    parser.add_argument("--no-legend", action="store_true", help="leave out the legend of kinds")


def command(args) -> int:
    """Render as asked; print each file written."""
    from tools.runfile import RunFile
    from tools.scene_options import resolve_index, resolve_view
    outputs = check_outputs(args.out, args.movie)
    size = _parse_size(args.size, even=args.movie is not None)
    if not (args.fps > 0):
        raise UserError(f"--fps {args.fps:g}: must be > 0")
    with RunFile(args.run) as run:
        index = resolve_index(run, args.step)
        view = resolve_view(run, args, index)
        use_headless_backend()
        canvas, scene = make_scene(view, size)
        try:
            if args.out is not None:
                scene.set_field(view["field"], view["field_mode"])
                snap = load(run, view, index)
                scene.show(snap)
                write_image(outputs["out"], scene.render())
                print(f"wrote {args.out} ({size[0]}x{size[1]}, step {snap.step})")
            if args.movie is not None:
                frames = write_movie(outputs["movie"], run, view, scene, args.fps)
                print(f"wrote {args.movie} ({frames} frames, {size[0]}x{size[1]}, "
                      f"{args.fps:g} fps)")
        finally:
            canvas.close()
    return 0


# -- argument checks ----------------------------------------------------------------

def check_outputs(out: Path | None, movie: Path | None) -> dict[str, Path]:
    """Check --out / --movie names and folders; at least one is needed."""
    if out is None and movie is None:
        raise UserError("render: give --out FRAME.png and/or --movie RUN.mp4")
    found = {}
    for option, path, suffixes in (("--out", out, IMAGE_SUFFIXES),
                                   ("--movie", movie, MOVIE_SUFFIXES)):
        if path is None:
            continue
        if path.suffix.lower() not in suffixes:
            raise UserError(f"{option} {path}: the name must end in {' or '.join(suffixes)}")
        if not path.parent.resolve().is_dir():
            raise UserError(f"{option} {path}: folder {path.parent} does not exist")
        if path.is_dir():
            raise UserError(f"{option} {path}: is a folder")
        found[option.lstrip("-")] = path
    return found


def _parse_size(text: str, even: bool) -> tuple[int, int]:
    from tools.scene_options import parse_size
    w, h = parse_size(text)
    return (w + w % 2, h + h % 2) if even else (w, h)   # video encoders want even sizes


# -- drawing ------------------------------------------------------------------------

def make_scene(view: dict, size):
    """A hidden canvas of `size` with the scene set up as `view` says."""
    from tools.scene import LatticeScene, make_canvas
    canvas = make_canvas(size=size)
    scene = LatticeScene(canvas, kinds=view["kinds"], camera=view["camera"],
                         face_budget=view["max_faces"], legend=view["legend"])
    scene.set_plane(view["plane"], clip=view["clip"])
    return canvas, scene


def load(run, view: dict, index: int):
    """Snapshot `index` with the field the view shows."""
    from tools.scene import load_snapshot
    return load_snapshot(run, view["lattice"], index, [view["field"]] if view["field"] else [])


def field_range(run, view: dict) -> tuple[float, float] | None:
    """Colour limits of the view's field over all snapshots (one scale per movie)."""
    import numpy as np
    from tools.scene import robust_clim
    if not view["field"]:
        return None
    lo, hi = np.inf, -np.inf
    for i in range(run.n_snapshots):
        a, b = robust_clim(np.asarray(run.snapshot(view["lattice"], view["field"], i)))
        lo, hi = min(lo, a), max(hi, b)
    return lo, hi


def write_image(path: Path, rgb) -> None:
    """Write an image atomically."""
    import imageio.v3 as iio
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb)


def write_movie(path: Path, run, view: dict, scene, fps: float) -> int:
    """Write every snapshot as one movie frame, atomically; return the frame count."""
    import imageio.v2 as imageio
    scene.set_field(view["field"], view["field_mode"], clim=field_range(run, view))
    n = run.n_snapshots
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264",
                                    quality=8, macro_block_size=2,
                                    ffmpeg_log_level="error")
        try:
            for i in range(n):
                scene.show(load(run, view, i))
                writer.append_data(scene.render())
        finally:
            writer.close()
    return n


# -- the headless OpenGL backend ------------------------------------------------------

_PROBE = """
import sys
import vispy
vispy.use(app=sys.argv[1])
from vispy import scene
canvas = scene.SceneCanvas(size=(32, 32), bgcolor=(1.0, 0.0, 0.0), show=False)
img = canvas.render(alpha=False)
ok = img.shape == (32, 32, 3) and tuple(int(c) for c in img[16, 16]) == (255, 0, 0)
print("rendered" if ok else f"wrong pixels: {img.shape} {img[16, 16]}")
sys.exit(0 if ok else 3)
"""


def backend_env(name: str) -> dict[str, str]:
    """Environment a headless backend needs (the caller's settings win)."""
    if name == "egl":
        env = {"EGL_PLATFORM": "surfaceless"}
    elif name == "osmesa":
        lib = ctypes.util.find_library("OSMesa") or "libOSMesa.so"
        env = {"PYOPENGL_PLATFORM": "osmesa", "OSMESA_LIBRARY": lib}
    else:
        raise ValueError(f"unknown headless backend {name!r}")
    return {k: os.environ.get(k, v) for k, v in env.items()}


def probe_backend(name: str, timeout: float = 60.0) -> tuple[bool, str]:
    """Try backend `name` in a child process: (works, why not)."""
    env = dict(os.environ, **backend_env(name))
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, name], env=env, timeout=timeout,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return False, f"no answer in {timeout:g} s"
    if done.returncode == 0:
        return True, ""
    lines = (done.stderr.strip() or done.stdout.strip() or f"exit status {done.returncode}")
    return False, lines.splitlines()[-1][:200]


def find_headless_backend() -> tuple[str | None, dict[str, str]]:
    """The first headless backend that renders (probing in child processes):
    (name or None, {name: why not} for those that failed)."""
    forced = os.environ.get("ONCOLATTICE_GL", "").strip().lower()
    if forced and forced not in HEADLESS_BACKENDS:
        raise UserError(f"ONCOLATTICE_GL={forced!r}: expected one of "
                        f"{', '.join(HEADLESS_BACKENDS)}")
    failures = {}
    for name in ([forced] if forced else HEADLESS_BACKENDS):
        ok, why = probe_backend(name)
        if ok:
            return name, failures
        failures[name] = why
    return None, failures


def use_headless_backend() -> str:
    """Select a working headless vispy backend for this process (once)."""
    global _chosen_backend
    if _chosen_backend is not None:
        return _chosen_backend
    # vispy can pick an app only once per process, and OSMesa must be set before
    # vispy.gloo loads a GL library: so look without importing vispy.app
    app_module = sys.modules.get("vispy.app._default_app")
    if app_module is not None and app_module.default_app is not None:
        _chosen_backend = app_module.default_app.backend_name
        return _chosen_backend
    name, failures = find_headless_backend()
    if name is None:
        why = "; ".join(f"{k}: {v}" for k, v in failures.items())
        raise UserError(f"render: no headless OpenGL ({why}); {INSTALL_HINT}")
    os.environ.update(backend_env(name))
    import vispy
    vispy.use(app=name)
    _chosen_backend = name
    return name
