"""The interactive viewer (`oncolattice view`): the real Qt window on a private
Xvfb display, driven in a child process (Qt and the headless renderer's GL
backend cannot share one process), reporting what its canvas showed.

Checks: the tumour of a synthetic run is drawn where it lies; unticking the
tumour check-box removes it; the time slider shows another snapshot; the S key
saves a screenshot; and in follow mode a snapshot appended by another process
appears after a poll.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import imageio.v3 as iio
import pytest

from _display import BALLS, STEPS, Xvfb, centroid, make_run, mask_of, top_view_pixel
from engine.errors import UserError
from tools import viewer

TESTS = Path(__file__).resolve().parent
VIEW = ["--camera", "0,90,1.5", "--fov", "0", "--clip", "z=12", "--size", "900x600"]

# Appends snapshots to a live run file when told to on stdin.
WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from _display import open_writer, write_snapshot
    w = open_writer(sys.argv[1])
    write_snapshot(w, 0)
    print("wrote 0", flush=True)
    for line in sys.stdin:
        if line.strip() == "next":
            write_snapshot(w, w.n_snapshots)
            print("wrote", w.n_snapshots - 1, flush=True)
        else:
            break
    w.close("complete")
""")

# Opens the viewer, drives it, prints one line: RESULT {json}.
CHECK = textwrap.dedent("""
    import json, subprocess, sys, time
    tests, complete, live = sys.argv[1:4]
    view = json.loads(sys.argv[4])
    sys.path.insert(0, tests)
    import argparse
    import numpy as np
    from PyQt6 import QtCore, QtGui, QtTest
    from _display import centroid, mask_of
    from tools import viewer

    def open_window(argv):
        parser = argparse.ArgumentParser()
        viewer.add_arguments(parser)
        app, win = viewer.open_viewer(parser.parse_args(argv))
        win.show()
        win.activateWindow()                    # no window manager: take the focus
        pump(app, 0.5)
        return app, win

    def pump(app, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)

    def grab(win):
        img = win.canvas.native.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB888)
        w, h = img.width(), img.height()
        bits = img.constBits()
        bits.setsize(img.sizeInBytes())
        rows = np.frombuffer(bits, np.uint8).reshape(h, img.bytesPerLine())
        return rows[:, :3 * w].reshape(h, w, 3).copy()

    def seen(win):
        img = grab(win)
        tumor = mask_of(img, "tumor")
        return {"size": [img.shape[1], img.shape[0]], "tumor_px": int(tumor.sum()),
                "vessel_px": int(mask_of(img, "vessel").sum()),
                "centroid": centroid(tumor) if tumor.any() else None,
                "step": win.snapshot.step if win.snapshot else None,
                "label": win.time_label.text()}

    out = {}
    app, win = open_window([complete, "--step", "0"] + view)
    out["first"] = seen(win)
    win.kind_checks["tumor"].setChecked(False)
    pump(app, 0.3)
    out["tumor_off"] = seen(win)
    win.kind_checks["tumor"].setChecked(True)
    win.time_slider.setValue(1)
    pump(app, 0.3)
    out["slider"] = seen(win)
    QtTest.QTest.keyClick(win, QtCore.Qt.Key.Key_S)
    pump(app, 0.3)
    win.close()

    writer = subprocess.Popen([sys.executable, "-c", sys.argv[5], live, tests],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().split() == ["wrote", "0"]
    app, win = open_window([live, "--follow", "--poll", "0.2"] + view)
    out["follow_before"] = seen(win)
    writer.stdin.write("next\\n")
    writer.stdin.flush()
    assert writer.stdout.readline().split() == ["wrote", "1"]
    start = time.monotonic()
    while time.monotonic() - start < 20 and (win.snapshot is None or win.snapshot.index < 1):
        pump(app, 0.05)
    out["follow_wait_s"] = time.monotonic() - start
    pump(app, 0.3)
    out["follow_after"] = seen(win)
    writer.stdin.close()
    writer.wait(timeout=30)
    win.close()
    print("RESULT " + json.dumps(out), flush=True)
""")


@pytest.fixture(scope="module")
def display():
    """A private Xvfb display; skips when Xvfb or PyQt6 is missing."""
    if importlib.util.find_spec("PyQt6") is None:
        pytest.skip("PyQt6 is not installed (pip install 'oncolattice[viewer]')")
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    server = Xvfb()
    yield server.display
    server.stop()


@pytest.fixture(scope="module")
def session(display, tmp_path_factory):
    """Run the viewer check once; return (its results, its working folder)."""
    work = tmp_path_factory.mktemp("viewer")
    complete = make_run(work / "run.h5", n=2)
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
    for key in ("WAYLAND_DISPLAY", "EGL_PLATFORM", "PYOPENGL_PLATFORM", "VISPY_GL_LIB"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "-c", CHECK, str(TESTS), str(complete),
                           str(work / "live.h5"), json.dumps(VIEW), WRITER],
                          cwd=work, env=env, capture_output=True, text=True, timeout=180)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, \
        f"viewer check failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):]), work, done.stdout


def near_ball(seen: dict, t: int, tol_px: float = 12.0) -> bool:
    """Whether the tumour pixels are centred where ball t projects."""
    (x, y, _), _ = BALLS[t]
    want = top_view_pixel(x, y, *seen["size"], zoom=1.5, depth=12)    # clip z=12
    got = seen["centroid"]
    return got is not None and abs(got[0] - want[0]) <= tol_px and abs(got[1] - want[1]) <= tol_px


def test_window_draws_the_tumour_where_it_lies(session):
    out, _, _ = session
    first = out["first"]
    assert first["step"] == 0 and "step 0" in first["label"]
    assert first["tumor_px"] > 2000, first      # a disc ~10 voxels across, ~25 px/voxel
    assert near_ball(first, 0), first
    assert first["vessel_px"] > 1000, first     # the vessel line on the cut face


def test_unticking_a_kind_hides_it(session):
    out, _, _ = session
    assert out["tumor_off"]["tumor_px"] == 0, out["tumor_off"]
    assert out["tumor_off"]["vessel_px"] > 1000


def test_time_slider_shows_another_snapshot(session):
    out, _, _ = session
    moved = out["slider"]
    assert moved["step"] == STEPS[1] and f"step {STEPS[1]}" in moved["label"]
    assert "snapshot 2 of 2" in moved["label"]
    assert near_ball(moved, 1), moved
    assert not near_ball(moved, 0)


def test_s_key_saves_a_screenshot(session):
    out, work, stdout = session
    shot = work / f"run_step{STEPS[1]}.png"
    assert shot.is_file(), sorted(p.name for p in work.iterdir())
    assert f"saved screenshot {shot}" in stdout
    img = iio.imread(shot)
    assert [img.shape[1], img.shape[0]] == out["slider"]["size"]
    tumor = mask_of(img, "tumor")
    assert tumor.sum() > 2000
    assert near_ball({"size": out["slider"]["size"], "centroid": centroid(tumor)}, 1)


def test_follow_mode_shows_a_new_snapshot(session):
    out, _, _ = session
    before, after = out["follow_before"], out["follow_after"]
    assert before["step"] == STEPS[0] and near_ball(before, 0), before
    assert out["follow_wait_s"] < 10
    assert after["step"] == STEPS[1] and "snapshot 2 of 2" in after["label"], after
    assert near_ball(after, 1), after


def test_bad_options_are_one_line_errors(tmp_path):
    run = make_run(tmp_path / "run.h5", n=1)
    parser = argparse.ArgumentParser()
    viewer.add_arguments(parser)
    for argv, word in (([str(tmp_path / "missing.h5")], "missing.h5"),
                       ([str(run), "--kind", "tumour"], "tumour"),
                       ([str(run), "--field", "glucose"], "glucose"),
                       ([str(run), "--step", "7"], "--step 7"),
                       ([str(run), "--camera", "north"], "north"),
                       ([str(run), "--poll", "0"], "--poll")):
        with pytest.raises(UserError, match=word):
            viewer.command(parser.parse_args(argv))


def test_import_is_cheap():
    code = ("import sys, tools.viewer, tools.render; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('vispy', 'PyQt6')]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
