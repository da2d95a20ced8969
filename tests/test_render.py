"""The headless renderer (`oncolattice render`) on a synthetic run whose
geometry is known: a tumour ball, a vessel line and functional tissue, drawn
straight down the z axis with an orthographic camera, so each scene point has
a known pixel (``_display.top_view_pixel``).  Also: the movie, atomic writes
and one-line errors for bad options.  Skipped when no headless OpenGL works.
"""
import argparse

import imageio.v2 as imageio
import imageio.v3 as iio
import numpy as np
import pytest

from _display import (BALLS, KINDS, STEPS, VESSEL_Y, centroid, kind_array, make_run, mask_of,
                      rgb255, top_view_pixel)
from engine.errors import UserError
from tools import render, scene, scene_geometry, scene_options

W, H, ZOOM = 400, 300, 1.5
TOP = ["--camera", f"0,90,{ZOOM}", "--fov", "0", "--size", f"{W}x{H}", "--no-legend"]




@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("render") / "run.h5", n=2)


def cli(*argv):
    parser = argparse.ArgumentParser()
    render.add_arguments(parser)
    return render.command(parser.parse_args([str(a) for a in argv]))


def draw(run, tmp_path, *options, name="frame.png", size=(W, H)):
    out = tmp_path / name
    assert cli(run, "--out", out, *TOP, *options, "--size", f"{size[0]}x{size[1]}") == 0
    img = iio.imread(out)
    assert img.shape == (size[1], size[0], 3)
    return img


def px(img, x, y, depth=24):
    """The pixel showing scene point (x, y) in a top view of `depth` layers."""
    col, row = top_view_pixel(x, y, img.shape[1], img.shape[0], ZOOM, depth)
    return img[row, col].astype(int)


def test_top_view_clip_shows_tumour_vessel_tissue_and_background(gl, run, tmp_path):
    img = draw(run, tmp_path, "--clip", "z=12", "--step", STEPS[0])
    (cx, cy, _), r = BALLS[0]
    # the cut face at z = 12 crosses the ball's centre and the vessel line
    for dx, dy in ((0, 0), (3, 0), (-3, 0), (0, 3), (0, -3)):
        assert np.abs(px(img, cx + dx, cy + dy, 12) - rgb255("tumor")).max() <= 6
    for x in (1.5, 6.5, 12.5, 18.5, 22.5):
        assert np.abs(px(img, x, VESSEL_Y + 0.5, 12) - rgb255("vessel")).max() <= 6
    for x, y in ((3, 3), (4, 14), (20, 15), (22, 2)):
        assert np.abs(px(img, x, y, 12) - rgb255("functional")).max() <= 6
    bg = np.round(np.array(scene.BACKGROUND) * 255)
    for col, row in ((W - 3, H // 2), (W // 2, H - 3), (3, H // 2)):
        assert np.abs(img[row, col] - bg).max() <= 2
    tumor = mask_of(img, "tumor")
    got = centroid(tumor)
    want = top_view_pixel(cx, cy, W, H, ZOOM, depth=12)
    assert abs(got[0] - want[0]) < 4 and abs(got[1] - want[1]) < 4
    # the disc's area is that of the tumour voxels in the top kept layer (z = 11)
    voxels = int((kind_array(0)[11] == KINDS.code("tumor")).sum())
    scale = min(W, H) / (np.sqrt(2 * 24 ** 2 + 12 ** 2) * 1.02 / ZOOM)    # pixels per voxel
    assert 70 < voxels < 85
    assert tumor.sum() == pytest.approx(voxels * scale * scale, rel=0.05)


def test_unclipped_top_view_shows_only_the_outside(gl, run, tmp_path):
    img = draw(run, tmp_path, "--clip", "none")     # last snapshot, the whole block
    assert mask_of(img, "tumor").sum() == 0         # the ball is inside the tissue
    assert mask_of(img, "vessel").sum() == 0
    assert mask_of(img, "functional").sum() > 0.4 * W * H


def test_default_view_clips_through_the_tumour_centre(gl, run, tmp_path):
    """Without --clip the view opens on the tumour's mid-plane (y through its centre),
    not on the organ's outer face: seen along +y, the cut face shows the tumour."""
    from tools.runfile import RunFile
    with RunFile(run) as r:
        for index, ((_, cy, _), _) in enumerate(BALLS[:2]):
            view = scene_options.resolve_view(r, argparse.Namespace(), index)
            assert view["clip"] and view["plane"].axis == "y" and view["plane"].keep == "<"
            assert abs(view["plane"].pos - (cy + 1)) <= 1
    img = draw(run, tmp_path, "--camera", f"180,0,{ZOOM}", "--step", STEPS[1])   # from +y
    assert mask_of(img, "tumor", tol=25).sum() > 1000     # (a side face: lit a little dimmer)
    assert mask_of(draw(run, tmp_path, "--camera", f"180,0,{ZOOM}", "--step", STEPS[1],
                        "--clip", "none"), "tumor", tol=25).sum() == 0


def test_toggled_off_kinds_are_absent(gl, run, tmp_path):
    img = draw(run, tmp_path, "--clip", "z=12", "--hide", "tumor")
    assert mask_of(img, "tumor").sum() == 0
    assert mask_of(img, "vessel").sum() > 100
    (cx, cy, _), _ = BALLS[1]
    # where the ball was, the camera looks into the hole onto tissue below
    assert np.abs(px(img, cx, cy, 12) - rgb255("functional")).max() <= 6
    img = draw(run, tmp_path, "--kind", "tumor,vessel", "--clip", "none")   # the ball shows
    assert mask_of(img, "functional").sum() == 0
    assert mask_of(img, "tumor").sum() > 1000 and mask_of(img, "vessel").sum() > 100


def test_step_selects_the_snapshot(gl, run, tmp_path):
    for t in (0, 1):
        img = draw(run, tmp_path, "--kind", "tumor", "--step", STEPS[t], "--clip", "none")
        got = centroid(mask_of(img, "tumor"))
        want = top_view_pixel(*BALLS[t][0][:2], W, H, ZOOM)
        assert abs(got[0] - want[0]) < 4 and abs(got[1] - want[1]) < 4


def test_field_slice_and_colour_bar(gl, run, tmp_path):
    w = 600                                 # room for the colour bar beside the lattice
    img = draw(run, tmp_path, "--clip", "z=12", "--field", "oxygen", size=(w, H))
    # oxygen rises with x: the slice runs from viridis' dark purple to its yellow
    left, right = px(img, 0.5, 12, 12), px(img, 23.5, 12, 12)
    assert left[2] > left[1] and left.sum() < 250           # dark, blue-purple
    assert right[0] > 180 and right[1] > 180 and right[2] < 90      # yellow
    middle = px(img, 12, 12, 12)
    assert left.sum() < middle.sum() < right.sum()
    # the colour bar at the right edge: yellow on top, purple below
    bar = img[:, w - 97:w - 87].astype(int)
    bg = np.round(np.array(scene.BACKGROUND) * 255)
    filled = (np.abs(bar - bg).max(axis=-1) > 30).all(axis=1) & (bar.std(axis=1).max(axis=1) < 3)
    rows = np.flatnonzero(filled)                   # rows of one even colour: the bar
    assert len(rows) > 100 and rows[-1] - rows[0] == len(rows) - 1
    top, bottom = bar[rows[1]].mean(axis=0), bar[rows[-2]].mean(axis=0)
    assert top[0] > 180 and top[1] > 180 and bottom[2] > bottom[1] and bottom.sum() < 250
    vol = draw(run, tmp_path, "--kind", "tumor", "--field", "oxygen", "--field-mode", "volume",
               name="vol.png")
    assert not np.array_equal(vol, img)


def test_movie_has_one_frame_per_snapshot(gl, run, tmp_path):
    movie = tmp_path / "run.mp4"
    assert cli(run, "--movie", movie, "--size", "160x120", "--kind", "tumor",
               "--camera", "0,90,1.5", "--fov", "0") == 0
    reader = imageio.get_reader(movie)
    try:
        assert reader.count_frames() == 2
        frames = [reader.get_data(i) for i in range(2)]
    finally:
        reader.close()
    assert frames[0].shape == (120, 160, 3)
    assert not np.array_equal(frames[0], frames[1])     # the tumour moved
    assert [p.name for p in tmp_path.iterdir()] == ["run.mp4"]


def test_failed_render_leaves_no_file(gl, run, tmp_path, monkeypatch):
    out = tmp_path / "frame.png"
    out.write_bytes(b"old")

    def broken(self):
        raise RuntimeError("GL fell over")

    monkeypatch.setattr(scene.LatticeScene, "render", broken)
    with pytest.raises(RuntimeError):
        cli(run, "--out", out, *TOP)
    with pytest.raises(RuntimeError):
        cli(run, "--movie", tmp_path / "run.mp4", *TOP)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["frame.png"]


@pytest.mark.parametrize("argv, word", [
    (["--kind", "tumour"], "'tumour'"),
    (["--hide", "blood"], "'blood'"),
    (["--step", "3"], "--step 3"),
    (["--field", "glucose"], "'glucose'"),
    (["--camera", "10,x"], "'10,x'"),
    (["--camera", "10,95"], "elevation 95"),
    (["--camera", "10,20,0"], "zoom 0"),
    (["--clip", "w=3"], "'w=3'"),
    (["--clip", "x=99"], "'x=99'"),
    (["--size", "big"], "'big'"),
    (["--fov", "200"], "--fov 200"),
    (["--lattice", "liver"], "'liver'"),
    (["--clip", "x=3", "--slice", "z=4"], "--slice"),
])
def test_bad_options_name_the_value(run, tmp_path, argv, word):
    with pytest.raises(UserError, match=word):
        cli(run, "--out", tmp_path / "f.png", *argv)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths(run, tmp_path):
    with pytest.raises(UserError, match="missing.h5"):
        cli(tmp_path / "missing.h5", "--out", tmp_path / "f.png")
    with pytest.raises(UserError, match="--out"):
        cli(run)
    with pytest.raises(UserError, match="frame.txt"):
        cli(run, "--out", tmp_path / "frame.txt")
    with pytest.raises(UserError, match="nowhere"):
        cli(run, "--movie", tmp_path / "nowhere" / "run.mp4")


def test_no_backend_is_a_one_line_error(monkeypatch):
    monkeypatch.delenv("ONCOLATTICE_GL", raising=False)
    monkeypatch.setattr(render, "_chosen_backend", None)
    monkeypatch.setattr(render, "probe_backend", lambda name: (False, f"{name} is broken"))
    import sys
    monkeypatch.delitem(sys.modules, "vispy.app._default_app", raising=False)
    with pytest.raises(UserError, match="libosmesa6") as err:
        render.use_headless_backend()
    assert "egl is broken" in str(err.value) and "\n" not in str(err.value)
    monkeypatch.setenv("ONCOLATTICE_GL", "opengl")
    with pytest.raises(UserError, match="ONCOLATTICE_GL"):
        render.use_headless_backend()


def test_plane_and_kind_parsing():
    opts = scene_options
    assert opts.parse_plane("x=50%", (24, 24, 40)) == opts.Plane("x", 20, "<")
    assert opts.parse_plane("z>3", (24, 24, 40)) == opts.Plane("z", 3, ">")
    assert opts.Plane("y", 5).kept(24) == (0, 5)
    assert opts.Plane("y", 5, ">").kept(24) == (5, 24)
    known = ("functional", "tumor", "vessel", "macrophage")               # the file's kinds
    assert opts.parse_kinds("vessel,tumor", known) == ("tumor", "vessel")   # the file's order
    assert opts.parse_kinds("all", known) == known
    assert opts.parse_kinds("macrophage", known) == ("macrophage",)
    with pytest.raises(UserError, match="'tip'"):
        opts.parse_kinds("tip", known)
    assert opts.parse_camera("30,-10") == opts.Camera(30.0, -10.0, 1.0)


def test_surface_skips_hidden_faces_and_blocks_keep_thin_kinds():
    kind = np.ones((8, 8, 8), np.uint8)
    kind[3:5, 3:5, 3:5] = 2                           # a buried cube
    kind[4, 4, 4] = 0                                 # an enclosed pocket
    geo = scene_geometry
    faces = geo.surface_faces(kind)
    assert sum(map(len, faces.values())) == 6 * 64   # only the outer surface
    assert all(code == 1 for code, _ in faces)
    faces = geo.surface_faces(geo.drawn_codes(kind, [2]))     # tissue hidden
    assert sum(map(len, faces.values())) == 6 * 4 - 0            # the 2x2x2 cube's outside
    kind = np.ones((16, 16, 16), np.uint8)
    kind[:, 7, 7] = 4                                 # a one-voxel vessel
    coarse = geo.block_codes(kind, 2)
    assert coarse.shape == (8, 8, 8)
    assert (coarse[:, 3, 3] == 4).all() and (coarse == 4).sum() == 8


def flood_fill_open(solid):
    """Reference for scene_geometry.open_space: a plain breadth-first flood fill
    from the non-solid voxels on the lattice edge."""
    from collections import deque
    nz, ny, nx = solid.shape
    seen = np.zeros(solid.shape, bool)
    queue = deque()
    for z, y, x in np.argwhere(~solid):
        if min(z, y, x) == 0 or z == nz - 1 or y == ny - 1 or x == nx - 1:
            seen[z, y, x] = True
            queue.append((z, y, x))
    while queue:
        z, y, x = queue.popleft()
        for dz, dy, dx in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            p = (z + dz, y + dy, x + dx)
            if all(0 <= c < n for c, n in zip(p, solid.shape)) and not solid[p] and not seen[p]:
                seen[p] = True
                queue.append(p)
    return seen


def test_open_space_matches_a_flood_fill():
    rng = np.random.default_rng(7)
    for shape in ((1, 1, 1), (3, 1, 7), (1, 6, 5), (9, 8, 7), (12, 13, 14)):
        for p in (0.0, 0.3, 0.6, 0.7, 0.8, 1.0):
            solid = rng.random(shape) < p
            np.testing.assert_array_equal(scene_geometry.open_space(solid),
                                          flood_fill_open(solid), err_msg=f"{shape} {p}")
    # a winding corridor (every turn a new round of joins) and a sealed chamber
    solid = np.ones((3, 21, 21), bool)
    solid[1, 1:-1:2, 1:-1] = False                    # rows of corridor ...
    for i, y in enumerate(range(2, 19, 2)):           # ... joined alternately at either end
        solid[1, y, 1 if i % 2 else 19] = False
    solid[1, 1, 0] = False                            # the corridor's one door to the edge
    solid[1, 19, 5:8] = True                          # a chamber cut off at the far end
    is_open = scene_geometry.open_space(solid)
    np.testing.assert_array_equal(is_open, flood_fill_open(solid))
    assert is_open[1, 17, 1] and is_open[1, 19, 10] and not is_open[1, 19, 2]
