"""Fuzzing the readers with damaged run files (issue 10): a small real run is
damaged at random, bytes (truncated, flipped, overwritten) or structure
(objects and attributes deleted or replaced, dtypes and shapes changed, the
time index stretched, unknown kind codes, garbage text with control
characters, TeX and HTML), and every reader must either succeed or raise the
one-line error naming the file: never another exception, never a hang.

Readers are called in-process (a watchdog ends the test run if one hangs);
a few end-to-end checks run the CLI in a subprocess.  Profiles: ``ci``
(default, derandomised) and ``nightly`` (``HYPOTHESIS_PROFILE=nightly``).
"""
import argparse
import faulthandler
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import UserError
from test_hardening_readers import assert_names_the_file, cli, make_small_run
from tools import render
from tools.report_html import render_html, write_report
from tools.report_plots import build_figures
from tools.report_series import load_series, summarise
from tools.runfile import RunFile

pytestmark = pytest.mark.fuzz
HANG_S = 60                         # a reader that has not answered by then hangs
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The small real run every case damages a copy of."""
    return make_small_run(tmp_path_factory.mktemp("fuzz_src"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def gl():
    """Whether `render` can draw here (as tests/test_render.py decides)."""
    name, _ = render.find_headless_backend()
    return name is not None


@contextmanager
def watchdog(seconds=HANG_S):
    """End the test process with every thread's stack if the block hangs
    (a hang inside HDF5 ignores signals and exceptions)."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def damaged_copy(original: Path, workdir: Path) -> Path:
    path = workdir / f"{uuid.uuid4().hex[:8]}.h5"
    shutil.copyfile(original, path)
    return path


def report_without_pictures(path: Path) -> None:
    """The report's reading, numbers, figures and page, all but drawing the
    PNGs (a second or more each on 2 shared cores)."""
    with RunFile(path) as run:
        series = load_series(run)
        build_figures(run, series=series)
        summary = summarise(run, series)
        summary["report"] = {"written_utc": "now"}
        render_html(summary, str(run.attrs.get("scenario_toml", "")), {}, [])


def readers_cope(path: Path, workdir: Path, full: bool = False, draw: bool = False) -> str:
    """Every reader on `path`: succeed, or raise the one-line error naming it.
    `full`: the whole report with its PNGs (else all but the PNGs); `draw`:
    also `render` a PNG.  Returns "ok" or "error"."""
    out = workdir / f"report_{path.stem}"
    with watchdog(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with RunFile(path) as run:
                run.counts()
                if run.n_snapshots and "kind" in run.fields:
                    run.snapshot(None, "kind", -1)
            if full:
                write_report(path, out)
            else:
                report_without_pictures(path)
            if draw:
                parser = argparse.ArgumentParser()
                render.add_arguments(parser)
                render.command(parser.parse_args([str(path), "--out", str(out / "f.png"),
                                                  "--size", "48x32", "--no-legend"]))
        except UserError as err:
            assert_names_the_file(err, path)
            return "error"
    return "ok"


# -- damage to the bytes -----------------------------------------------------------------

@st.composite
def byte_damage(draw, size: int):
    """(what, offset, data): truncate at offset, or write data at offset."""
    what = draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    offset = draw(st.integers(0, size - 1))
    if what == "truncate":
        return what, offset, b""
    length = draw(st.integers(1, 4 if what == "flip" else 256))
    if what == "flip":
        return what, offset, bytes([draw(st.integers(1, 255))] * length)
    return what, offset, draw(st.binary(min_size=length, max_size=length))


def apply_bytes(path: Path, damage) -> None:
    what, offset, data = damage
    with open(path, "r+b") as fh:
        if what == "truncate":
            fh.truncate(offset)
            return
        fh.seek(offset)
        old = fh.read(len(data))
        fh.seek(offset)
        fh.write(bytes(a ^ b for a, b in zip(old, data)) if what == "flip" else data)


@FUZZ
@given(data=st.data())
def test_byte_damage(original, workdir, data):
    damages = data.draw(st.lists(byte_damage(original.stat().st_size), min_size=1, max_size=3))
    path = damaged_copy(original, workdir)
    for damage in damages:
        apply_bytes(path, damage)
    readers_cope(path, workdir)


# -- damage to the structure -----------------------------------------------------------------

GARBAGE_TEXT = st.lists(st.sampled_from(list("ab_$\\{}^<>&\"'\x00\x07\n\t\r =,é\u202e")
                                       + [r"\frac{", "<script>", "$$"]),
                       max_size=8).map("".join)
GARBAGE = st.one_of(GARBAGE_TEXT, st.integers(-2**40, 2**40),
                    st.floats(allow_nan=True, allow_infinity=True),
                    st.lists(st.integers(-5, 70), max_size=5).map(np.array),
                    st.lists(GARBAGE_TEXT.filter(lambda s: "\x00" not in s), min_size=1,
                             max_size=4).map(lambda v: np.array(v, dtype=h5py.string_dtype())))


def objects(f) -> list[str]:
    names = []
    f.visit(names.append)
    return sorted(names)


def attributes(f) -> list[tuple[str, str]]:
    """(object path, attribute name) of every attribute, the root's too."""
    return [(p, a) for p in ["/"] + objects(f) for a in sorted(f[p].attrs)]


def delete_object(f, draw):
    if objects(f):
        del f[draw(st.sampled_from(objects(f)))]


def delete_attribute(f, draw):
    where, name = draw(st.sampled_from(attributes(f)))
    del f[where].attrs[name]


def garbage_attribute(f, draw):
    where, name = draw(st.sampled_from(attributes(f) + [("/", "status"),
                                                        ("lattices/primary/kind", "codes")]))
    value = draw(GARBAGE)
    if isinstance(value, str) and "\x00" in value:
        value = value.encode("utf-8")              # HDF5 strings stop at NUL; bytes keep it
    f[where].attrs[name] = value


def replace_dataset(f, draw):
    """A dataset replaced by one of another dtype and/or shape."""
    datasets = [p for p in objects(f) if isinstance(f[p], h5py.Dataset)]
    if not datasets:
        return
    path = draw(st.sampled_from(datasets))
    old = f[path]
    shape = draw(st.sampled_from([old.shape, old.shape[1:], old.shape[:1] + (3,) * (old.ndim - 1),
                                  (max(old.shape[0] - 1, 0), *old.shape[1:]), ()]))
    dtype = draw(st.sampled_from([old.dtype, np.uint8, np.int16, np.float32, np.float64,
                                  h5py.string_dtype(), np.dtype([("step", np.float32)])]))
    data = np.zeros(shape, dtype=dtype) if dtype != h5py.string_dtype() else "x"
    del f[path]
    f[path] = data


def stretch_index(f, draw):
    """The time index lengthened or shortened (and time_h maybe not)."""
    n = draw(st.integers(0, 9))
    for name in draw(st.sampled_from([["snapshots/step"], ["snapshots/step", "snapshots/time_h"]])):
        f[name].resize(n, axis=0)


def unknown_kinds(f, draw):
    """Codes the current code does not know, named with garbage, some drawn in voxels."""
    kind = f["lattices/primary/kind"]
    code = draw(st.integers(8, 255))
    name = draw(st.text(alphabet=st.sampled_from(list("xyz_$<>&{}\\")), min_size=1, max_size=8))
    kind.attrs["codes"] = f"{kind.attrs['codes']},{code}={name}"
    last = kind[-1]
    last[draw(st.integers(0, 15)), :, draw(st.integers(0, 15))] = draw(
        st.sampled_from([code, draw(st.integers(0, 255))]))
    kind[-1] = last


EDITS = [delete_object, delete_attribute, garbage_attribute, replace_dataset, stretch_index,
         unknown_kinds]


@FUZZ
@given(data=st.data())
def test_structure_damage(original, workdir, gl, data):
    edits = data.draw(st.lists(st.sampled_from(EDITS), min_size=1, max_size=3))
    path = damaged_copy(original, workdir)
    with h5py.File(path, "r+") as f:
        for edit in edits:
            try:
                edit(f, data.draw)
            except (KeyError, ValueError, TypeError, IndexError, OSError):
                pass                                # an earlier edit removed its target
    pictures = data.draw(st.integers(0, 7)) == 0        # drawing is slow: 1 case in 8
    readers_cope(path, workdir, full=pictures, draw=pictures and gl)


def test_unknown_kind_still_opens_and_reports(original, workdir):
    path = damaged_copy(original, workdir)
    with h5py.File(path, "r+") as f:
        kind = f["lattices/primary/kind"]
        kind.attrs["codes"] = kind.attrs["codes"] + ",200=macrophage"
        last = kind[-1]
        last[4] = 200
        kind[-1] = last
    assert readers_cope(path, workdir, full=True) == "ok"
    with RunFile(path) as run:
        assert run.lattice().kinds.name(200) == "macrophage"


# -- end to end: the command line ------------------------------------------------------------

@pytest.mark.parametrize("damage", [("truncate", 3000, b""), ("flip", 0x48, b"\xff" * 8)])
def test_cli_report_prints_one_line_and_exits_2(original, workdir, damage):
    path = damaged_copy(original, workdir)
    apply_bytes(path, damage)
    done = cli("report", path, "--out", workdir / f"cli_{path.stem}", timeout=HANG_S)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"error: {path}: " in done.stderr, done.stderr
