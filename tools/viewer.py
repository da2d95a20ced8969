"""``oncolattice view``: an interactive 3D viewer of a run file (PyQt6 + vispy).

The window holds the vispy canvas of :class:`tools.scene.LatticeScene` (the
drawing shared with ``oncolattice render``) and a panel of controls:

* lattice selector (files with several lattices);
* kinds: one check-box per kind the run file stores (its codes), with its
  palette swatch and voxel count;
* plane: axis (none, x, y, z), position, clip on/off, which side to keep;
* field: none or any float field (oxygen, VEGF, ...), as slice or volume;
* time: slider over the snapshots, play/pause, step and time in hours;
  follow: poll the file (``RunFile.refresh``) and jump to each new snapshot.

Mouse: left-drag orbits, right-drag or wheel zooms, shift+left-drag pans.
Keys: ``S`` saves a screenshot PNG in the current folder (its path is printed),
space plays or pauses, left/right step through the snapshots, ``R`` resets
the camera.  Qt and vispy are imported only when the viewer opens.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from engine.errors import UserError

HELP = "open a run file in an interactive 3D viewer (--follow tracks a live run)"

PLAY_INTERVAL_MS = 600


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``oncolattice view``."""
    parser.add_argument("run", type=Path, metavar="RUN.h5", help="run file to view (may be live)")
    parser.add_argument("--follow", action="store_true",
                        help="poll the file and jump to each new snapshot as it lands")
    parser.add_argument("--poll", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between polls for new snapshots (default: 1)")
    parser.add_argument("--lattice", metavar="NAME",
                        help="lattice to show first (default: the first)")
    parser.add_argument("--step", type=int, metavar="K",
                        help="model step to show first (default: the last snapshot)")
    parser.add_argument("--kind", default="all", metavar="KINDS",
                        help="kinds shown at first, comma-separated (default: all)")
    parser.add_argument("--field", metavar="NAME", help="field shown at first: oxygen, vegf, ...")
    parser.add_argument("--field-mode", default="slice", metavar="{slice,volume}",
                        help="field as a slice on the plane or a translucent volume")
    parser.add_argument("--clip", metavar="AXIS=POS",
                        help="start with a clip plane, e.g. x=48 or z=50%% "
                             "(AXIS>POS keeps the far side); none: the whole block "
                             "(default: through the tumour's centre)")
    parser.add_argument("--camera", metavar="AZ,EL[,ZOOM]",
                        help="initial view: azimuth, elevation in degrees, zoom (default 135,25,1)")
    parser.add_argument("--fov", type=float, default=30.0,
                        help="field of view in degrees; 0 = orthographic (default: 30)")
    parser.add_argument("--size", default="1280x800", metavar="WxH",
                        help="window size in pixels (default: 1280x800)")
    parser.add_argument("--max-faces", type=int, metavar="N",
                        help="draw in blocks of voxels when the visible surface has more "
                             "faces than this (default: 600,000)")


def command(args) -> int:
    """Open the viewer window and run the Qt event loop until it is closed."""
    app, window = open_viewer(args)
    _quit_on_signals(app)
    window.show()
    return int(app.exec())


def _quit_on_signals(app) -> None:
    """Ctrl-C and SIGTERM close the window like its close button.

    Python runs signal handlers only between bytecodes, so a short idle timer
    hands control back to the interpreter while Qt's loop waits for events."""
    import signal

    from PyQt6 import QtCore
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: app.quit())
    timer = QtCore.QTimer(app)
    timer.timeout.connect(lambda: None)
    timer.start(200)


def open_viewer(args):
    """Check the options, make the QApplication and the (unshown) window;
    return (app, window).  Tests drive the window directly."""
    from tools.runfile import RunFile
    from tools.scene_options import parse_size, resolve_index, resolve_view
    if not (args.poll > 0):
        raise UserError(f"--poll {args.poll:g}: must be > 0 seconds")
    size = parse_size(args.size)
    run = RunFile(args.run)
    try:
        if run.n_snapshots or args.step is not None:
            index = resolve_index(run, args.step)
            view = resolve_view(run, args, index)
        else:
            index = 0                               # a live run: wait for its first snapshot
            view = resolve_view(run, args)
        app = _qt_app()
        window = window_class()(run, view, index, follow=args.follow, poll_s=args.poll,
                                size=size)
    except BaseException:
        run.close()
        raise
    return app, window


def _qt_app():
    """The QApplication, with vispy set to draw through PyQt6."""
    try:
        from PyQt6 import QtWidgets
    except ImportError as exc:
        raise UserError(f"view: needs PyQt6 ({exc}); pip install 'oncolattice[viewer]'") from None
    if (sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("QT_QPA_PLATFORM")):
        raise UserError("view: no display (DISPLAY is not set); use `oncolattice render` for "
                        "images, or run under xvfb-run")
    import vispy
    vispy.use(app="pyqt6")
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0]])


def screenshot_path(run_path: Path, step: int, folder: Path | None = None) -> Path:
    """A new file name ``<run>_step<K>.png`` (``_2``, ``_3``... if taken)."""
    folder = Path.cwd() if folder is None else folder
    stem = f"{Path(run_path).stem}_step{step}"
    path = folder / f"{stem}.png"
    n = 2
    while path.exists():
        path = folder / f"{stem}_{n}.png"
        n += 1
    return path


def _swatch(rgb, size=14):
    """A QIcon filled with colour `rgb` (0..1)."""
    from PyQt6 import QtGui
    pix = QtGui.QPixmap(size, size)
    pix.fill(QtGui.QColor.fromRgbF(*rgb))
    return QtGui.QIcon(pix)


def _window_class():
    """Define the window class once Qt is importable (keeps module import cheap)."""
    from PyQt6 import QtCore, QtGui, QtWidgets
    from tools.palette import kind_colour
    from tools.scene import LatticeScene, describe_time, load_snapshot, make_canvas
    from tools.scene_options import FIELD_MODES, Plane, field_names

    class ViewerWindow(QtWidgets.QMainWindow):
        """The main window: controls on the left, the 3D canvas on the right."""

        def __init__(self, run, view: dict, index: int, *, follow=False, poll_s=1.0,
                     size=(1280, 800)):
            super().__init__()
            self.run = run
            self.lattice = view["lattice"]
            self.index = index
            self.snapshot = None
            self.canvas = make_canvas(size=(max(200, size[0] - 340), size[1]), app="pyqt6")
            self.scene = LatticeScene(self.canvas, kinds=view["kinds"], camera=view["camera"],
                                      face_budget=view["max_faces"], legend=True)
            self.scene.set_plane(view["plane"], clip=view["clip"])
            self.scene.set_field(view["field"], view["field_mode"])
            self.resize(*size)
            self._build_controls(view, follow)
            self.setCentralWidget(self._central())
            self._shortcuts()
            self.play_timer = QtCore.QTimer(self)
            self.play_timer.setInterval(PLAY_INTERVAL_MS)
            self.play_timer.timeout.connect(self._advance)
            self.poll_timer = QtCore.QTimer(self)
            self.poll_timer.setInterval(max(50, int(poll_s * 1000)))
            self.poll_timer.timeout.connect(self.poll)
            self.poll_timer.start()
            self.load(index)

        # -- layout --------------------------------------------------------------------

        def _central(self):
            """The control panel (scrollable) beside the canvas, in a splitter."""
            panel = QtWidgets.QWidget()
            layout = QtWidgets.QVBoxLayout(panel)
            for box in (self.lattice_box, self.kinds_box, self.plane_box, self.field_box,
                        self.time_box):
                layout.addWidget(box)
            layout.addStretch(1)
            scroll = QtWidgets.QScrollArea()
            scroll.setWidget(panel)
            scroll.setWidgetResizable(True)
            scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
            scroll.setMinimumWidth(max(330, panel.sizeHint().width() + 24))
            split = QtWidgets.QSplitter()
            split.addWidget(scroll)
            split.addWidget(self.canvas.native)
            split.setStretchFactor(1, 1)
            split.setSizes([scroll.minimumWidth(), max(200, self.width() - scroll.minimumWidth())])
            return split

        def _build_controls(self, view, follow):
            """Make the control groups (see the module docstring)."""
            self.lattice_box = self._lattice_group()
            self.kinds_box = self._kinds_group(view["all_kinds"], view["kinds"])
            self.plane_box = self._plane_group(view["plane"], view["clip"])
            self.field_box = self._field_group(view["field"], view["field_mode"])
            self.time_box = self._time_group(follow)

        def _lattice_group(self):
            """A lattice selector, shown only for files with several lattices."""
            box = QtWidgets.QGroupBox("Lattice")
            row = QtWidgets.QHBoxLayout(box)
            self.lattice_combo = QtWidgets.QComboBox()
            self.lattice_combo.addItems(list(self.run.lattices))
            self.lattice_combo.setCurrentText(self.lattice)
            self.lattice_combo.currentTextChanged.connect(self.set_lattice)
            row.addWidget(self.lattice_combo)
            box.setVisible(len(self.run.lattices) > 1)
            return box

        def _kinds_group(self, kinds, shown):
            """One check-box per kind of the run file, with its palette swatch
            (the legend)."""
            box = QtWidgets.QGroupBox("Kinds")
            col = QtWidgets.QVBoxLayout(box)
            self.kind_checks = {}
            for name in kinds:
                check = QtWidgets.QCheckBox(name.replace("_", " "))
                check.setIcon(_swatch(kind_colour(name)))
                check.setChecked(name in shown)
                check.toggled.connect(lambda on, n=name: self.scene.set_kind_visible(n, on))
                col.addWidget(check)
                self.kind_checks[name] = check
            return box

        def _plane_group(self, plane, clip):
            """Plane axis, position, clip on/off and the side kept."""
            box = QtWidgets.QGroupBox("Clip / slice plane")
            form = QtWidgets.QFormLayout(box)
            self.axis_combo = QtWidgets.QComboBox()
            self.axis_combo.addItems(["none", "x", "y", "z"])
            self.plane_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            self.plane_label = QtWidgets.QLabel("")
            self.clip_check = QtWidgets.QCheckBox("hide voxels beyond the plane")
            self.flip_check = QtWidgets.QCheckBox("keep the far side")
            if plane is not None:
                self.axis_combo.setCurrentText(plane.axis)
                self.flip_check.setChecked(plane.keep == ">")
            self.clip_check.setChecked(clip or plane is None)
            self._sync_plane_slider(plane)
            self.axis_combo.currentTextChanged.connect(lambda _: self._plane_changed(axis=True))
            self.plane_slider.valueChanged.connect(lambda _: self._plane_changed())
            self.clip_check.toggled.connect(lambda _: self._plane_changed(recentre=True))
            self.flip_check.toggled.connect(lambda _: self._plane_changed(recentre=True))
            form.addRow("axis", self.axis_combo)
            form.addRow(self.plane_label, self.plane_slider)
            form.addRow(self.clip_check)
            form.addRow(self.flip_check)
            return box

        def _field_group(self, field, mode):
            """Field selector (none or any float field) and slice/volume choice."""
            box = QtWidgets.QGroupBox("Field")
            form = QtWidgets.QFormLayout(box)
            self.field_combo = QtWidgets.QComboBox()
            self.field_combo.addItems(["none"] + field_names(self.run))
            self.field_combo.setCurrentText(field or "none")
            self.mode_combo = QtWidgets.QComboBox()
            self.mode_combo.addItems(list(FIELD_MODES))
            self.mode_combo.setCurrentText(mode)
            self.field_combo.currentTextChanged.connect(lambda _: self._field_changed())
            self.mode_combo.currentTextChanged.connect(lambda _: self._field_changed())
            form.addRow("field", self.field_combo)
            form.addRow("show as", self.mode_combo)
            return box

        def _time_group(self, follow):
            """Time slider and label, play/pause, follow, camera and screenshot buttons."""
            box = QtWidgets.QGroupBox("Time")
            col = QtWidgets.QVBoxLayout(box)
            self.time_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
            self.time_slider.setRange(0, max(0, self.run.n_snapshots - 1))
            self.time_slider.setValue(self.index)
            self.time_slider.valueChanged.connect(self.load)
            self.time_label = QtWidgets.QLabel("")
            self.time_label.setWordWrap(True)
            self.play_button = QtWidgets.QPushButton("Play")
            self.play_button.setCheckable(True)
            self.play_button.toggled.connect(self.set_playing)
            self.follow_check = QtWidgets.QCheckBox("follow live run")
            self.follow_check.setChecked(follow)
            self.follow_check.toggled.connect(lambda on: on and self.poll(jump=True))
            buttons = QtWidgets.QHBoxLayout()
            buttons.addWidget(self.play_button)
            buttons.addWidget(self.follow_check)
            camera_button = QtWidgets.QPushButton("Reset camera (R)")
            camera_button.clicked.connect(self.reset_camera)
            shot_button = QtWidgets.QPushButton("Screenshot (S)")
            shot_button.clicked.connect(self.save_screenshot)
            col.addWidget(self.time_slider)
            col.addWidget(self.time_label)
            col.addLayout(buttons)
            col.addWidget(camera_button)
            col.addWidget(shot_button)
            return box

        def _shortcuts(self):
            """S screenshot, space play/pause, left/right step, R reset camera."""
            keys = (("S", self.save_screenshot), ("Space", self.play_button.toggle),
                    ("Right", lambda: self.step_by(1)), ("Left", lambda: self.step_by(-1)),
                    ("R", self.reset_camera))
            for key, slot in keys:
                shortcut = QtGui.QShortcut(QtGui.QKeySequence(key), self)
                shortcut.setContext(QtCore.Qt.ShortcutContext.WindowShortcut)
                shortcut.activated.connect(slot)

        # -- snapshots -------------------------------------------------------------------

        def load(self, index: int, fit: bool = False) -> None:
            """Show snapshot `index` of the current lattice (`fit`: reset the camera)."""
            n = self.run.n_snapshots
            if n == 0:
                self.time_label.setText("no snapshots yet")
                return
            self.index = min(max(int(index), 0), n - 1)
            field = self.scene.field
            fields = [field] if field else []
            try:
                self.snapshot = load_snapshot(self.run, self.lattice, self.index, fields)
            except UserError as exc:                # a damaged snapshot: say so, keep the window
                self.statusBar().showMessage(str(exc), 10000)
                return
            self.scene.show(self.snapshot, fit=fit)
            self._update_labels()

        def _update_labels(self):
            """Time label, kind counts and window title for the shown snapshot."""
            s = self.snapshot
            n = self.run.n_snapshots
            self.time_label.setText(f"step {s.step}   {describe_time(s.time_h)}   "
                                    f"(snapshot {s.index + 1} of {n})")
            for name, check in self.kind_checks.items():
                count = self.scene.kind_counts.get(name, 0)
                check.setText(f"{name.replace('_', ' ')}  ({count:,})")
            self.setWindowTitle(f"oncolattice view: {self.run.path.name} [{self.run.status}] "
                                f"{s.lattice} step {s.step}")

        def poll(self, jump: bool = False) -> None:
            """Look for new snapshots (extending the time slider); in follow mode,
            or with `jump`, go to the newest when new ones have landed."""
            before = self.run.n_snapshots
            try:
                n = self.run.refresh()
            except (OSError, UserError) as exc:     # the writer may be mid-flush
                self.statusBar().showMessage(str(exc), 3000)
                return
            if n != before:
                self.time_slider.setMaximum(max(0, n - 1))
            if n == 0:
                return
            if (self.follow_check.isChecked() and (n != before or jump)) or self.snapshot is None:
                self.time_slider.setValue(n - 1)    # emits valueChanged -> load, if it moved
                if self.index != n - 1 or self.snapshot is None:
                    self.load(n - 1)

        def step_by(self, delta: int) -> None:
            """Move the time slider by `delta` snapshots."""
            self.time_slider.setValue(self.time_slider.value() + delta)

        def set_playing(self, on: bool) -> None:
            """Play (advance a snapshot every PLAY_INTERVAL_MS) or pause."""
            self.play_button.setText("Pause" if on else "Play")
            if on:
                if self.index >= self.run.n_snapshots - 1:
                    self.time_slider.setValue(0)
                self.play_timer.start()
            else:
                self.play_timer.stop()

        def _advance(self):
            """Play: the next snapshot, stopping at the last."""
            if self.index >= self.run.n_snapshots - 1:
                self.play_button.setChecked(False)
            else:
                self.time_slider.setValue(self.index + 1)

        def set_lattice(self, name: str) -> None:
            """Show lattice `name` (same snapshot index), camera fitted to it."""
            self.lattice = name
            self._sync_plane_slider(self._plane())
            self.load(self.index, fit=True)         # fit the camera to the new lattice

        # -- plane and field ---------------------------------------------------------------

        def _shape(self):
            """(nz, ny, nx) of the current lattice."""
            return self.run.lattice(self.lattice).shape

        def _sync_plane_slider(self, plane):
            """Fit the position slider to the chosen axis (at `plane` or mid-way)."""
            axis = self.axis_combo.currentText()
            on = axis != "none"
            n = self._shape()[{"x": 2, "y": 1, "z": 0}[axis]] if on else 1
            self.plane_slider.blockSignals(True)
            self.plane_slider.setRange(0, n)
            self.plane_slider.setValue(plane.pos if plane is not None else n // 2)
            self.plane_slider.blockSignals(False)
            for w in (self.plane_slider, self.clip_check, self.flip_check):
                w.setEnabled(on)
            self.plane_label.setText(f"{axis} = {self.plane_slider.value()}" if on else "")

        def _plane(self):
            """The Plane the controls describe (None for axis "none")."""
            axis = self.axis_combo.currentText()
            if axis == "none":
                return None
            return Plane(axis=axis, pos=self.plane_slider.value(),
                         keep=">" if self.flip_check.isChecked() else "<")

        def _plane_changed(self, axis=False, recentre=False):
            """Apply the plane controls; a new axis, side or clip recentres the
            camera on the kept part (keeping the user's angles and zoom)."""
            if axis:
                self._sync_plane_slider(None)
            plane = self._plane()
            self.plane_label.setText(f"{plane.axis} = {plane.pos}" if plane else "")
            self.scene.set_plane(plane, clip=self.clip_check.isChecked())
            if (axis or recentre) and self.snapshot is not None:
                self.scene.set_camera(self.scene.current_camera())

        def _field_changed(self):
            """Apply the field controls, reading the field's data if needed."""
            name = self.field_combo.currentText()
            field = None if name == "none" else name
            self.scene.set_field(field, self.mode_combo.currentText())
            if field and self.snapshot is not None and field not in self.snapshot.fields:
                self.load(self.index)               # read the field's data

        # -- camera and screenshots ---------------------------------------------------------

        def reset_camera(self) -> None:
            """Back to the initial view angles and zoom, fitted to the kept part."""
            self.scene.set_camera(self.scene.camera_params)

        def save_screenshot(self) -> Path:
            """Save the canvas as PNG in the current folder; print the path."""
            from tools.render import write_image
            step = self.snapshot.step if self.snapshot else 0
            path = screenshot_path(self.run.path, step)
            write_image(path, self.scene.render())
            print(f"saved screenshot {path}", flush=True)
            self.statusBar().showMessage(f"saved {path}", 5000)
            return path

        def closeEvent(self, event):
            """Stop the timers and close the run file with the window."""
            self.play_timer.stop()
            self.poll_timer.stop()
            self.run.close()
            super().closeEvent(event)

    return ViewerWindow


_window_cls = None


def window_class():
    """The ViewerWindow class (defined on first use: it needs Qt)."""
    global _window_cls
    if _window_cls is None:
        _window_cls = _window_class()
    return _window_cls
