"""The run file is the contract (engine.runformat): the tools read kinds from the
codes stored in the file, never from the engine, and never load Numba or kernels/.

A small run is written by the real writer (`python -m engine run`); copies of
it are then edited with h5py as a future or an older version might have
written them: one gains a kind this version does not know ("macrophage",
code 200), one has two kinds' codes swapped.  Every tool must follow the file.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest

from _display import mask_of, top_view_pixel
from conftest import small_scenario_text
from engine.errors import UserError
from engine.output import LatticeInfo, RunWriter
from engine.runformat import (CODES_ATTR, DEFAULT_KIND_CODES, FORMAT, KindCodes, atomic_path,
                              field_path, kind_codes_attr, read_kind_codes)
from tools import render, report_plots, report_series
from tools.palette import KIND_COLOURS, fallback_colour, kind_colour
from tools.report_html import write_report
from tools.runfile import RunFile
from tools.scene import load_snapshot

ROOT = Path(__file__).resolve().parents[1]
EDGE = 24                           # the small scenario's lattice edge (render helpers assume 24)
KIND_DS = field_path("primary", "kind")
TOOL_MODULES = ("engine.runformat", "tools.runfile", "tools.palette", "tools.report",
                "tools.report_series", "tools.report_plots", "tools.report_html",
                "tools.render", "tools.viewer", "tools.scene", "tools.scene_options",
                "tools.scene_geometry")


# -- what the tools import -----------------------------------------------------------

def test_the_tools_import_neither_numba_nor_kernels():
    code = (f"import sys\nfor m in {TOOL_MODULES!r}:\n    __import__(m)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'kernels'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_cli_runs_report_without_numba_or_kernels(macrophage_run, tmp_path):
    code = ("import sys\nfrom engine.cli import build_parser, main\nbuild_parser()\n"
            f"rc = main(['report', {str(macrophage_run)!r}, '--out', {str(tmp_path / 'r')!r}])\n"
            "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'kernels'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stdout
    assert (tmp_path / "r" / "index.html").is_file()


def test_the_run_format_module_is_light():
    code = ("import sys, engine.runformat\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'numba', 'kernels', 'matplotlib', 'vispy', 'tools'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout


# -- kind codes ----------------------------------------------------------------------

def test_kind_codes_round_trip_and_refuse_nonsense():
    kinds = KindCodes.parse("0=empty, 2=tumor,1=functional,8=macrophage")
    assert kinds.names == ("empty", "functional", "tumor", "macrophage")
    assert kinds.code("macrophage") == 8 and kinds.name(2) == "tumor"
    assert kinds.name(9) == "code_9" and "code_9" not in kinds
    assert KindCodes.parse(kinds.encode()) == kinds
    assert kind_codes_attr(["empty", "tumor"]) == "0=empty,1=tumor"
    assert read_kind_codes({}) == DEFAULT_KIND_CODES
    assert read_kind_codes({CODES_ATTR: b"0=empty,1=x"}).names == ("empty", "x")
    for bad in ("0=empty,0=tumor", "0=empty,1=empty", "zero=empty", "0:empty", "300=big",
                "1=", "1=a=b"):
        with pytest.raises(ValueError):
            KindCodes.parse(bad)


def test_the_writer_refuses_malformed_codes_and_the_reader_names_the_file(tmp_path):
    shape = (2, 3, 4)
    info = LatticeInfo("primary", shape, 20.0, np.ones(shape, np.uint8), ("none", "breast"))
    dt = np.dtype([("step", np.int64)])
    with pytest.raises(ValueError, match="appears twice"):
        RunWriter(tmp_path / "bad.h5", attrs={}, lattices=[info], counts_dtype=dt,
                  snapshot_fields={"kind": np.uint8},
                  field_attrs={"kind": {"codes": "0=empty,0=tumor"}})
    path = tmp_path / "r.h5"
    with RunWriter(path, attrs={}, lattices=[info], counts_dtype=dt,
                   snapshot_fields={"kind": np.uint8},
                   field_attrs={"kind": {"codes": "0=empty,1=tumor"}}) as w:
        w.write_snapshot(0, 0.0, {"primary": {"kind": np.ones(shape, np.uint8)}})
    with RunFile(path) as run:
        assert run.lattice().kinds.names == ("empty", "tumor")
    with h5py.File(path, "r+") as f:
        f[KIND_DS].attrs[CODES_ATTR] = "0=empty,one=tumor"
    with pytest.raises(UserError, match=r"r\.h5: lattice 'primary'.*one=tumor"):
        RunFile(path)


def test_atomic_path_lives_in_the_run_format(tmp_path):
    import engine.output
    assert not hasattr(engine.output, "atomic_path") or engine.output.atomic_path is atomic_path
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("whole")
    assert (tmp_path / "a.txt").read_text() == "whole"


# -- run files written by the real writer, then edited --------------------------------

@pytest.fixture(scope="module")
def engine_run(tmp_path_factory):
    """A 2-step run of the small quickstart, written by `python -m engine run`."""
    work = tmp_path_factory.mktemp("engine_run")
    scenario = work / "small.toml"
    scenario.write_text(small_scenario_text(EDGE))
    out = work / "small.h5"
    done = subprocess.run([sys.executable, "-m", "engine", "run", str(scenario), "--steps", "2",
                           "--out", str(out), "--quiet", "--backend", "numba"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["status"] == "complete"
        assert KindCodes.parse(f[KIND_DS].attrs[CODES_ATTR]).code("tumor") is not None
    return out


def tumour_centre(kind, tumour_code):
    """(z, y, x) voxel nearest the centroid of the tumour voxels."""
    return tuple(int(round(c)) for c in np.argwhere(kind == tumour_code).mean(axis=0))


def edited_copy(src, dest, edit):
    shutil.copy(src, dest)
    with h5py.File(dest, "r+") as f:
        edit(f[KIND_DS])
    return dest


@pytest.fixture(scope="module")
def macrophage_run(engine_run, tmp_path_factory):
    """The run with kind 200 "macrophage" added to the stored codes and a 3x2x2
    (z, y, x) block of it at the tumour's centre in the last snapshot."""
    def edit(ds):
        kinds = KindCodes.parse(ds.attrs[CODES_ATTR])
        assert 200 not in kinds.codes                  # a kind this version has never written
        ds.attrs[CODES_ATTR] = kinds.encode() + ",200=macrophage"
        kind = ds[-1]
        z, y, x = tumour_centre(kind, kinds.code("tumor"))
        kind[z - 1:z + 2, y - 1:y + 1, x - 1:x + 1] = 200
        ds[-1] = kind
    return edited_copy(engine_run, tmp_path_factory.mktemp("macrophage") / "mac.h5", edit)


@pytest.fixture(scope="module")
def swapped_run(engine_run, tmp_path_factory):
    """The run with the codes of functional and tumor swapped in the stored
    codes (data unchanged), as an older version numbering them otherwise would
    have written it."""
    def edit(ds):
        names = dict(KindCodes.parse(ds.attrs[CODES_ATTR]).items())
        f, t = (next(c for c, n in names.items() if n == k) for k in ("functional", "tumor"))
        names[f], names[t] = "tumor", "functional"
        ds.attrs[CODES_ATTR] = KindCodes(names).encode()
    return edited_copy(engine_run, tmp_path_factory.mktemp("swapped") / "swapped.h5", edit)


def test_runfile_names_a_kind_it_has_never_heard_of(macrophage_run):
    with RunFile(macrophage_run) as run:
        kinds = run.lattice().kinds
        assert kinds.name(200) == "macrophage" and kinds.code("macrophage") == 200
        assert set(DEFAULT_KIND_CODES.names) <= set(kinds.names)
        assert np.count_nonzero(run.snapshot(None, "kind", -1) == 200) == 12


def test_palette_gives_an_unknown_kind_its_fallback_colour():
    assert "macrophage" not in KIND_COLOURS
    assert kind_colour("macrophage") == fallback_colour("macrophage")
    assert kind_colour("macrophage") not in KIND_COLOURS.values()


def test_report_lists_the_unknown_kind(macrophage_run, tmp_path):
    summary = write_report(macrophage_run, tmp_path / "report")
    rows = {k["name"]: k for k in summary["kinds"]}
    mac = rows["macrophage"]
    assert mac["code"] == 200 and mac["voxels_last_snapshot"] == 12 and mac["stored"]
    assert not mac["designed_colour"]
    assert mac["colour"] == "#{:02x}{:02x}{:02x}".format(
        *(round(255 * c) for c in fallback_colour("macrophage")))
    assert rows["tumor"]["designed_colour"] and rows["tumor"]["voxels_last_snapshot"] > 0
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["kinds"] == \
        summary["kinds"]
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert "<td>macrophage</td>" in page and mac["colour"] in page
    with RunFile(macrophage_run) as run:                # the slice legend names it too
        fig = report_plots.plot_slices(run)
    labels = [t.get_text() for sub in fig.subfigs for ax in sub.axes
              if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert "macrophage" in labels and "tumour" in labels




W, H, ZOOM = 400, 300, 1.5


def top_view(run_path, out, clip_z, *options):
    import argparse
    parser = argparse.ArgumentParser()
    render.add_arguments(parser)
    args = parser.parse_args([str(run_path), "--out", str(out), "--clip", f"z={clip_z}",
                              "--camera", f"0,90,{ZOOM}", "--fov", "0", "--size", f"{W}x{H}",
                              "--no-legend", *options])
    assert render.command(args) == 0
    return iio.imread(out)


def test_render_draws_the_unknown_kind_in_its_fallback_colour(gl, macrophage_run, tmp_path):
    with RunFile(macrophage_run) as run:
        kind = run.snapshot(None, "kind", -1)
    z, y, x = (int(c) for c in np.argwhere(kind == 200).max(axis=0))  # the block's top corner
    img = top_view(macrophage_run, tmp_path / "a.png", z + 1)
    seen = mask_of(img, "macrophage")
    assert seen.sum() > 200                         # 2x2 voxels head-on, ~12 px per voxel
    col, row = top_view_pixel(x, y, W, H, ZOOM, depth=z + 1)      # the block's centre
    assert seen[row, col]
    img = top_view(macrophage_run, tmp_path / "b.png", z + 1, "--hide", "macrophage")
    assert mask_of(img, "macrophage").sum() == 0


def test_old_files_decode_by_their_own_codes(swapped_run, engine_run, tmp_path):
    with RunFile(engine_run) as run:
        original = run.lattice().kinds
    with RunFile(swapped_run) as run:
        kinds = run.lattice().kinds
        assert kinds.code("tumor") == original.code("functional")
        assert kinds.code("functional") == original.code("tumor")
        kind = run.snapshot(None, "kind", -1)
        snap = load_snapshot(run, None, -1)
        assert snap.kinds == kinds
        meta = run.lattice()
        assert (report_series.snapshot_tumour_plane(run, meta, -1)
                == report_series.tumour_plane(kind, kinds))
    summary = write_report(swapped_run, tmp_path / "report")
    rows = {k["name"]: k for k in summary["kinds"]}
    assert rows["tumor"]["code"] == original.code("functional")
    assert rows["tumor"]["voxels_last_snapshot"] == np.count_nonzero(
        kind == original.code("functional"))


def test_render_colours_follow_the_files_codes(gl, engine_run, swapped_run, tmp_path):
    with RunFile(engine_run) as run:
        kind = run.snapshot(None, "kind", -1)
        z, y, x = tumour_centre(kind, run.lattice().kinds.code("tumor"))
    centre = top_view_pixel(x + 0.5, y + 0.5, W, H, ZOOM, depth=z + 1)
    before = top_view(engine_run, tmp_path / "before.png", z + 1)
    after = top_view(swapped_run, tmp_path / "after.png", z + 1)
    assert mask_of(before, "tumor")[centre[1], centre[0]]          # the tumour, as written
    assert mask_of(after, "functional")[centre[1], centre[0]]      # the same code, renamed
    # the tissue around it now carries the other name, and its colour
    assert mask_of(after, "tumor").sum() > 5 * mask_of(before, "tumor").sum()


VIEW_CHECK = """
import argparse, json, sys
from tools import viewer
parser = argparse.ArgumentParser()
viewer.add_arguments(parser)
app, win = viewer.open_viewer(parser.parse_args([sys.argv[1], "--size", "900x600"]))
win.show()
app.processEvents()
print("RESULT " + json.dumps({"checks": {n: c.text() for n, c in win.kind_checks.items()},
                              "legend": list(win.scene._legend_text.text)}), flush=True)
win.close()
"""


def test_viewer_offers_the_unknown_kind_by_its_stored_name(macrophage_run):
    import importlib.util
    import os

    from _display import Xvfb
    if importlib.util.find_spec("PyQt6") is None or shutil.which("Xvfb") is None:
        pytest.skip("needs PyQt6 and Xvfb (Debian package xvfb)")
    server = Xvfb()
    try:
        env = dict(os.environ, DISPLAY=server.display, QT_QPA_PLATFORM="xcb")
        for key in ("WAYLAND_DISPLAY", "EGL_PLATFORM", "PYOPENGL_PLATFORM", "VISPY_GL_LIB"):
            env.pop(key, None)
        done = subprocess.run([sys.executable, "-c", VIEW_CHECK, str(macrophage_run)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    seen = json.loads(lines[-1][len("RESULT "):])
    assert seen["checks"]["macrophage"] == "macrophage  (12)"
    assert list(seen["checks"])[-1] == "macrophage"            # in the file's code order
    assert "macrophage  12" in seen["legend"]
