"""Readers never hang and turn any damaged run file into one line naming it
(issue 10).  A small real run (`python -m engine run`, 16^3, a snapshot each
step) is copied and damaged as files were found damaged in the field:
corrupt metadata in a file marked complete (which once hung every reader in
HDF5's SWMR re-read loop), truncation, missing groups, an index longer than
its data, a wrong shape, no counts; names that are TeX or HTML; a killed run.
"""
import argparse
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from kernels.lattice import N_KINDS

from conftest import small_scenario_text
from engine.errors import RunFileError, UserError
from tools import render
from tools.report_html import write_report
from tools.runfile import RunFile

ROOT = Path(__file__).resolve().parents[1]
EDGE = 16
FAST_S = 5.0                        # a reader's verdict on a damaged file takes less than this
TEX = r"$\frac{$"
TRICKY = TEX + ' <script>alert("x")</script> & "q"'


def make_small_run(folder: Path, steps: int = 3) -> Path:
    """A finished run of the 16^3 quickstart with a snapshot every step."""
    scenario = folder / "small.toml"
    scenario.write_text(small_scenario_text(EDGE, seed_radius_um=40.0))
    out = folder / "small.h5"
    done = subprocess.run([sys.executable, "-m", "engine", "run", str(scenario), "--steps",
                           str(steps), "--snapshot-every", "1", "--out", str(out), "--quiet",
                           "--backend", "numba"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    return make_small_run(tmp_path_factory.mktemp("real"))


def copy_of(src: Path, dest: Path) -> Path:
    shutil.copyfile(src, dest)
    return dest


def assert_names_the_file(err, path):
    """The one-line error a reader must give: ``<path>: <what is wrong>``."""
    message = str(err)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert len(message) < 500, message


def object_header_offsets(path: Path) -> list[int]:
    """Offsets of the HDF5 version-2 object headers (signature OHDR) in `path`."""
    data = path.read_bytes()
    offsets, at = [], data.find(b"OHDR")
    while at >= 0:
        offsets.append(at)
        at = data.find(b"OHDR", at + 1)
    return offsets


def flip(path: Path, offset: int, count: int = 4) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        data = fh.read(count)
        fh.seek(offset)
        fh.write(bytes(b ^ 0xFF for b in data))


def read_all(path: Path, out: Path):
    """What the report and viewers read: open, counts, the last snapshot, the report."""
    with RunFile(path) as run:
        run.counts()
        if run.n_snapshots and "kind" in run.fields:
            run.snapshot(None, "kind", -1)
    write_report(path, out)


def render_cli(path: Path, out: Path):
    parser = argparse.ArgumentParser()
    render.add_arguments(parser)
    return render.command(parser.parse_args([str(path), "--out", str(out), "--size", "64x48"]))


def cli(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env=_env())


# -- corrupt metadata: never a hang --------------------------------------------------

@pytest.fixture(scope="module")
def corrupt_files(real_run, tmp_path_factory):
    """Copies of the finished run, each with one object header (or the superblock)
    corrupted: the metadata checksum fails, as two writers once left a file."""
    folder = tmp_path_factory.mktemp("corrupt")
    files = [copy_of(real_run, folder / "superblock.h5")]
    flip(files[0], 20)
    for i, offset in enumerate(object_header_offsets(real_run)):
        files.append(copy_of(real_run, folder / f"ohdr{i}.h5"))
        flip(files[-1], offset + 12)
    return files


def test_the_fixture_is_a_finished_run(real_run):
    with RunFile(real_run) as run:
        assert run.status == "complete" and run.n_snapshots == 4 and len(run.counts()) == 4


def test_corrupt_metadata_is_a_quick_one_line_error_never_a_hang(corrupt_files, tmp_path):
    assert len(corrupt_files) > 5
    failed = 0
    for path in corrupt_files:
        start = time.monotonic()
        try:
            read_all(path, tmp_path / path.stem)
        except UserError as err:
            assert_names_the_file(err, path)
            failed += 1
        assert time.monotonic() - start < FAST_S, path
    assert failed >= len(corrupt_files) // 2


def test_report_cli_on_corrupt_metadata_exits_2_with_one_line(corrupt_files, tmp_path):
    path = corrupt_files[1]                         # the root group's header
    start = time.monotonic()
    done = cli("report", path, "--out", tmp_path / "r")
    assert time.monotonic() - start < 30
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and f"error: {path}: " in done.stderr, done.stderr
    assert not (tmp_path / "r").exists()


def test_render_on_corrupt_metadata_is_the_same_error(corrupt_files, tmp_path):
    with pytest.raises(RunFileError) as err:
        render_cli(corrupt_files[1], tmp_path / "f.png")
    assert_names_the_file(err.value, corrupt_files[1])


# -- damaged layout -------------------------------------------------------------------

def truncate_half(f_path):
    size = f_path.stat().st_size
    with open(f_path, "r+b") as fh:
        fh.truncate(size // 2)


def edit(change):
    def apply(path):
        with h5py.File(path, "r+") as f:
            change(f)
    return apply


def longer_index(f):
    for name in ("snapshots/step", "snapshots/time_h"):
        f[name].resize(f[name].shape[0] + 3, axis=0)


DAMAGE = {
    "truncated_at_half": (truncate_half, ""),
    "no_lattices_group": (edit(lambda f: f.__delitem__("lattices")), "no group 'lattices'"),
    "index_longer_than_data": (edit(longer_index), "snapshot index lists 7 snapshots"),
    "wrong_shape_attribute": (edit(lambda f: f["lattices/primary"].attrs.__setitem__(
        "shape", np.array([16, 16, 8]))), "shape"),
    "shape_not_three_numbers": (edit(lambda f: f["lattices/primary"].attrs.__setitem__(
        "shape", "big")), "not 3 positive integers"),
    "no_counts": (edit(lambda f: f.__delitem__("counts")), "no dataset 'counts'"),
    "counts_not_a_table": (edit(lambda f: (f.__delitem__("counts"),
                                           f.create_dataset("counts", data=np.arange(4.0)))),
                           "named columns"),
    "kind_is_float": (edit(lambda f: (f.__delitem__("lattices/primary/kind"),
                                      f.create_dataset("lattices/primary/kind",
                                                       data=np.zeros((4, 16, 16, 16))))),
                      "expected uint8"),
    "organ_names_garbage": (edit(lambda f: f["lattices/primary"].attrs.__setitem__(
        "organ_names", 7)), "organ_names"),
    "voxel_size_negative": (edit(lambda f: f["lattices/primary"].attrs.__setitem__(
        "voxel_um", -1.0)), "voxel_um"),
    "no_time_index": (edit(lambda f: f.__delitem__("snapshots/step")), "snapshots/step"),
    "bad_kind_codes": (edit(lambda f: f["lattices/primary/kind"].attrs.__setitem__(
        "codes", "0=empty,x\n=y")), "lattice 'primary'"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_layout_is_one_line_error_from_every_reader(case, real_run, tmp_path):
    damage, words = DAMAGE[case]
    path = copy_of(real_run, tmp_path / f"{case}.h5")
    damage(path)
    with pytest.raises(RunFileError) as err:
        read_all(path, tmp_path / "out")
    assert_names_the_file(err.value, path)
    assert words in str(err.value)
    assert not (tmp_path / "out").exists()
    with pytest.raises(RunFileError):
        render_cli(path, tmp_path / "f.png")        # fails on opening, before any OpenGL


def test_report_cli_on_a_truncated_file_exits_2_with_one_line(real_run, tmp_path):
    path = copy_of(real_run, tmp_path / "half.h5")
    truncate_half(path)
    done = cli("report", path, "--out", tmp_path / "r")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"error: {path}: " in done.stderr


# -- files that are not run files -------------------------------------------------------

def not_run_files(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)                 # opening a FIFO would block a reader for ever
    return {"missing": tmp_path / "nope.h5", "folder": tmp_path, "text": text, "empty": empty,
            "fifo": fifo}


def test_anything_else_is_one_line_error_naming_it(tmp_path):
    for case, path in not_run_files(tmp_path).items():
        with pytest.raises(RunFileError) as err:
            RunFile(path)
        assert_names_the_file(err.value, path)
        with pytest.raises(RunFileError):
            write_report(path, tmp_path / f"out_{case}")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_file_is_permission_denied(real_run, tmp_path):
    path = copy_of(real_run, tmp_path / "locked.h5")
    path.chmod(0)
    with pytest.raises(RunFileError, match="permission denied"):
        RunFile(path)


# -- names that are TeX or HTML -------------------------------------------------------------

def tricky_names(f):
    """Organ, lattice, kind, units and scenario named with TeX and HTML specials."""
    lat = f["lattices/primary"]
    lat.attrs["organ_names"] = np.array(["none", TRICKY, "muscle"], dtype=h5py.string_dtype())
    counts = f["counts"][()]
    names = ["functional_" + TRICKY if n == "functional_breast" else n
             for n in counts.dtype.names]
    del f["counts"]
    f["counts"] = counts.astype(np.dtype({"names": names, "formats": [
        counts.dtype[n] for n in counts.dtype.names]}))
    kind = lat["kind"]
    kind.attrs["codes"] = kind.attrs["codes"] + f",{N_KINDS}={TEX}<b>"
    kind.attrs["units"] = TEX
    lat["oxygen"].attrs["units"] = TRICKY
    last = kind[-1]
    last[8, 8, 8] = N_KINDS
    kind[-1] = last
    f.attrs["scenario_toml"] = f"[scenario]\nname = '{TEX} <i>&'\n"
    f.move("lattices/primary", f"lattices/{TEX}")


def test_tex_and_html_in_names_are_drawn_as_text(real_run, tmp_path):
    path = copy_of(real_run, tmp_path / "tricky.h5")
    edit(tricky_names)(path)
    summary = write_report(path, tmp_path / "out")
    assert summary["scenario"] == f"{TEX} <i>&"
    assert TRICKY in summary["functional_fraction_by_organ"]
    assert any(k["name"] == f"{TEX}<b>" for k in summary["kinds"])
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in page and "<i>&" not in page and "<b>" not in page.split("<h2>")[2]
    assert "&lt;script&gt;" in page and r"$\frac{$" in page


# -- a run whose writer was killed ------------------------------------------------------------

KILLED = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {tests!r})
    from _display import open_writer, write_snapshot
    w = open_writer(sys.argv[1])
    for t in range(2):
        write_snapshot(w, t)
    os._exit(0)                     # no close: status stays running, superblock flags set
""").format(tests=str(ROOT / "tests"))


def test_a_killed_run_still_opens_and_reports(tmp_path):
    path = tmp_path / "killed.h5"
    subprocess.run([sys.executable, "-c", KILLED, str(path)], check=True, cwd=ROOT, env=_env(),
                   timeout=120)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")                       # the flags a killed SWMR writer leaves
    with RunFile(path) as run:
        assert run.status == "running" and run.n_snapshots == 2
        assert run.snapshot(None, "kind", -1).shape == (24, 24, 24)
    summary = write_report(path, tmp_path / "out")
    assert summary["status"] == "running" and summary["snapshots"] == 2
