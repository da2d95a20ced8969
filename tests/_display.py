"""Shared helpers for the renderer and viewer tests: a small synthetic run file
with known contents, pixel classification by palette colour, and a private
Xvfb display.

The synthetic lattice is 24^3 functional tissue holding a tumour ball and a
vessel line; each snapshot moves the ball (see ``BALLS``), so a test can tell
which snapshot is drawn from where the tumour appears.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

import numpy as np

from engine.output import LatticeInfo, RunWriter
from engine.runformat import DEFAULT_KIND_CODES
from tools.palette import kind_colour

SHAPE = (24, 24, 24)                           # (nz, ny, nx)
# tumour ball per snapshot: centre (x, y, z) in voxel units, radius
BALLS = [((16.0, 8.0, 12.0), 5.0), ((8.0, 15.0, 12.0), 5.0), ((12.0, 12.0, 12.0), 6.0)]
STEPS = [0, 5, 10]
VESSEL_Y, VESSEL_Z = 20, 11                    # vessel along x at this (y, z)
COUNTS = np.dtype([("step", np.int64), ("time_h", np.float64), ("tumor", np.int64)])
FIELDS = {"kind": np.uint8, "oxygen": np.float32, "vegf": np.float32}
UNITS = {"kind": "code", "oxygen": "mmHg", "vegf": "ng/mL"}
KINDS = DEFAULT_KIND_CODES                     # stored with the kind field, as a real run does


def kind_array(t: int) -> np.ndarray:
    """Snapshot t's kinds: functional tissue, the tumour ball, the vessel line."""
    code = KINDS.code
    kind = np.full(SHAPE, code("functional"), np.uint8)
    z, y, x = np.indices(SHAPE) + 0.5
    (cx, cy, cz), r = BALLS[t]
    kind[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= r * r] = code("tumor")
    kind[VESSEL_Z, VESSEL_Y, :] = code("vessel")
    return kind


def oxygen_array() -> np.ndarray:
    """Oxygen rising linearly with x: 10 mmHg at x = 0 to 56 mmHg at x = 23."""
    x = np.indices(SHAPE)[2]
    return (10.0 + 2.0 * x).astype(np.float32)


def snapshot(t: int) -> dict:
    return {"primary": {"kind": kind_array(t), "oxygen": oxygen_array(),
                        "vegf": np.zeros(SHAPE, np.float32)}}


def open_writer(path) -> RunWriter:
    """A RunWriter for the synthetic run (no snapshots yet)."""
    info = LatticeInfo("primary", SHAPE, 20.0, np.ones(SHAPE, np.uint8), ("none", "breast"))
    attrs = {k: {"units": u} for k, u in UNITS.items()}
    attrs["kind"]["codes"] = KINDS.encode()
    return RunWriter(path, attrs={"seed": 1}, lattices=[info], counts_dtype=COUNTS,
                     snapshot_fields=FIELDS, field_attrs=attrs)


def write_snapshot(w: RunWriter, t: int) -> None:
    w.append_counts(np.array((STEPS[t], float(STEPS[t]), 1), dtype=COUNTS))
    w.write_snapshot(STEPS[t], float(STEPS[t]), snapshot(t))


def make_run(path, n: int = 2):
    """A complete synthetic run file with the first n snapshots."""
    with open_writer(path) as w:
        for t in range(n):
            write_snapshot(w, t)
    return path


# -- pixels --------------------------------------------------------------------------

def rgb255(kind: str) -> np.ndarray:
    return np.round(np.array(kind_colour(kind)) * 255)


def mask_of(img: np.ndarray, kind: str, tol: float = 6.0) -> np.ndarray:
    """Pixels showing `kind` at full brightness (faces seen head-on)."""
    diff = img[..., :3].astype(float) - rgb255(kind)
    return np.abs(diff).max(axis=-1) <= tol


def centroid(mask: np.ndarray) -> tuple[float, float]:
    """(column, row) centre of the True pixels."""
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


def top_view_pixel(x: float, y: float, width: int, height: int, zoom: float,
                   depth: int = SHAPE[0]) -> tuple[int, int]:
    """(column, row) of scene point (x, y) in an orthographic view straight down
    the z axis (camera 0,90,zoom, fov 0) of the lattice's lowest `depth` layers
    (a clip at z = depth): +x to the right, +y up, the box's centre in the
    middle and its diagonal * 1.02 / zoom across the shorter side."""
    _, ny, nx = SHAPE
    scale = min(width, height) / (np.sqrt(nx * nx + ny * ny + depth * depth) * 1.02 / zoom)
    return (int(round(width / 2 + (x - nx / 2) * scale)),
            int(round(height / 2 - (y - ny / 2) * scale)))


# -- a private X display ------------------------------------------------------------

class Xvfb:
    """An Xvfb server on a free display number (``-displayfd``), for the test's
    child processes; ``.display`` is like ``:5``."""

    def __init__(self, screen="1400x1000x24"):
        exe = shutil.which("Xvfb")
        if exe is None:
            raise FileNotFoundError("Xvfb not found (Debian package xvfb)")
        read, write = os.pipe()
        self.proc = subprocess.Popen([exe, "-displayfd", str(write), "-screen", "0", screen,
                                      "-nolisten", "tcp", "-noreset"], pass_fds=(write,),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(write)
        number = b""
        deadline = time.monotonic() + 20
        try:
            while not number.endswith(b"\n") and time.monotonic() < deadline:
                ready, _, _ = select.select([read], [], [], 0.5)
                if ready:
                    chunk = os.read(read, 16)
                    if not chunk:                   # Xvfb exited
                        break
                    number += chunk
        finally:
            os.close(read)
        if not number.strip().isdigit():
            self.stop()
            raise RuntimeError(f"Xvfb did not start: {self.proc.stderr.read().decode()[-300:]}")
        self.display = f":{int(number)}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
