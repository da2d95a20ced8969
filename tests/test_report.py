"""`oncolattice report`: plots, summary.json and a self-contained index.html.

A small synthetic run file with known counts (tumour doubling every step) and
known snapshots (a tumour block at a known place) is reported on, and the
plots are checked against the data they should show.
"""
import argparse
import base64
import html
import json
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine.errors import UserError
from engine.output import LatticeInfo, RunWriter
from engine.runformat import DEFAULT_KIND_CODES
from engine.simulation import counts_dtype
from tools import report, report_html, report_plots, report_series
from tools.palette import kind_colour
from tools.runfile import RunFile

ROOT = Path(__file__).resolve().parents[1]          # the repository (tests/ is importable from it)
KINDS = DEFAULT_KIND_CODES          # the synthetic files store no kind codes: the format's default
kind_code = KINDS.code
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHAPE = (6, 20, 24)                 # (nz, ny, nx)
VOXEL_UM = 10.0
ORGANS = ("liver", "lung")
STEPS = 6
SNAPSHOT_STEPS = (0, 3, 6)
TRICKY = '# <script>alert("x")</script> & "quoted" <b>not bold</b>\n'
SCENARIO_TOML = (f"# resolved scenario\n{TRICKY}[scenario]\nname = \"synthetic\"\n"
                 f"seed = 11\n\n[time]\nstep_h = 2.0\n")


def organ_labels():
    organ = np.zeros(SHAPE, dtype=np.uint8)
    organ[:3] = 1                   # liver: z 0..2
    organ[4:] = 2                   # lung: z 4..5; z 3 is a gap with no organ
    return organ


def tumour_box(snapshot):
    """(y slice, x slice) of the tumour block in plane z = 2 (off-centre, so a flipped
    image shows); it grows and moves right."""
    r = 2 + snapshot
    return slice(7 - r, 7 + r), slice(8 + 2 * snapshot - r, 8 + 2 * snapshot + r)


def kind_at(snapshot):
    organ = organ_labels()
    kind = np.where(organ > 0, kind_code("functional"), kind_code("empty")).astype(np.uint8)
    kind[:, 0, :] = kind_code("vessel")
    ys, xs = tumour_box(snapshot)
    kind[2, ys, xs] = kind_code("tumor")
    kind[1, 6:8, xs.start + 1:xs.start + 3] = kind_code("tumor")   # above and below z = 2:
    kind[3, 6:8, xs.start + 1:xs.start + 3] = kind_code("tumor")   # the centroid stays at 2
    if snapshot == len(SNAPSHOT_STEPS) - 1:
        kind[2, 6:8, xs.start + 2:xs.start + 4] = kind_code("necrotic")
    return kind


def oxygen_at(snapshot):
    _, y, x = np.indices(SHAPE)
    return (40.0 - x - 0.5 * y - snapshot).astype(np.float32)


def vegf_at(snapshot):
    _, y, x = np.indices(SHAPE)
    return (0.01 * x * y * (snapshot + 1)).astype(np.float32)


def counts_rows(step_h):
    dt = counts_dtype(ORGANS)
    rows = np.zeros(STEPS + 1, dtype=dt)
    s = np.arange(STEPS + 1)
    rows["step"] = s
    rows["time_h"] = s * step_h
    rows["tumor"] = 10 * 2 ** s
    rows["necrotic"] = 3 * s
    rows["functional_liver"] = 600 - 10 * s
    rows["functional_lung"] = 400 - s
    rows["functional"] = rows["functional_liver"] + rows["functional_lung"]
    rows["functional_fraction"] = rows["functional_liver"] / 600.0
    rows["vessel"] = 50 - s
    rows["sprout"] = 2 * s
    rows["tip"] = (s > 0).astype(int)
    rows["lymph_vessel"] = 0          # always zero: left out of the counts plot
    rows["empty"] = 5000
    rows["hypoxic_tumor"] = 4 * s
    rows["vessel_perfused"] = rows["vessel"] - 1
    rows["perfused_fraction"] = rows["vessel_perfused"] / rows["vessel"]
    rows["vegf_max_ng_per_mL"] = 0.25 * s
    rows["new_vessel_length_um"] = 2 * VOXEL_UM
    return rows


def make_writer(path, step_h):
    lat = LatticeInfo(name="primary", shape=SHAPE, voxel_um=VOXEL_UM, organ=organ_labels(),
                      organ_names=("none",) + ORGANS)
    return RunWriter(path, attrs={"scenario_toml": SCENARIO_TOML, "seed": 11,
                                  "version": "0.1.0", "backend": "numba", "step_h": step_h,
                                  "steps_planned": STEPS, "created_utc": "2026-01-01T00:00:00"},
                     lattices=[lat], counts_dtype=counts_dtype(ORGANS),
                     snapshot_fields={"kind": np.uint8, "oxygen": np.float32,
                                      "vegf": np.float32},
                     field_attrs={"kind": {"units": "code"}, "oxygen": {"units": "mmHg"},
                                  "vegf": {"units": "ng/mL"}})


def build_run(path, step_h=2.0, snapshots=True, close="complete"):
    """A synthetic run: counts for steps 0..6, snapshots at steps 0, 3, 6."""
    rows = counts_rows(step_h)
    w = make_writer(path, step_h)
    for row in rows:
        w.append_counts(row)
        step = int(row["step"])
        if snapshots and step in SNAPSHOT_STEPS:
            i = SNAPSHOT_STEPS.index(step)
            w.write_snapshot(step, step * step_h, {"primary": {
                "kind": kind_at(i), "oxygen": oxygen_at(i), "vegf": vegf_at(i)}})
    if close:
        w.close(close)
    return path


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("run") / "synthetic.h5")


@pytest.fixture(scope="module")
def written(run_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "nested" / "report"
    summary = report_html.write_report(run_path, out)
    return out, summary


@pytest.fixture
def series(run_path):
    with RunFile(run_path) as run:
        yield report_series.load_series(run)


def lines_by_label(fig):
    return {line.get_label(): line for ax in all_axes(fig) for line in ax.get_lines()}


def all_axes(fig):
    axes = list(fig.axes)
    for sub in getattr(fig, "subfigs", []):
        axes += all_axes(sub)
    return axes


def ylabels(fig):
    return [ax.get_ylabel() for ax in all_axes(fig)]


# -- files ----------------------------------------------------------------------------

def test_report_writes_every_file_as_valid_png(written):
    from matplotlib.image import imread
    out, _ = written
    for name in report_plots.FIGURES:
        path = out / f"{name}.png"
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC), name
        image = imread(path)                      # decodes: a valid PNG
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert (out / "index.html").is_file() and (out / "summary.json").is_file()
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]     # no temporaries left


def test_summary_json_has_the_headline_numbers(written, run_path):
    out, summary = written
    data = json.loads((out / "summary.json").read_text())
    assert data == json.loads(json.dumps(summary))
    assert data["scenario"] == "synthetic" and data["seed"] == 11
    assert data["status"] == "complete" and data["backend"] == "numba"
    assert data["steps"] == STEPS and data["model_time_h"] == 12.0
    assert data["snapshots"] == 3 and data["snapshot_times_h"] == [0.0, 6.0, 12.0]
    assert data["tumor_cells_initial"] == 10 and data["tumor_cells_final"] == 640
    assert data["tumor_growth_factor"] == 64.0
    voxel_mm3 = (VOXEL_UM / 1000) ** 3
    assert data["tumour_volume_mm3_final"] == pytest.approx((640 + 18) * voxel_mm3)
    assert data["functional_fraction"] == pytest.approx(540 / 600)
    assert data["functional_fraction_overall"] == pytest.approx((540 + 394) / 1000)
    assert data["functional_fraction_by_organ"] == {"liver": pytest.approx(0.9),
                                                    "lung": pytest.approx(394 / 400)}
    assert data["vegf_max_ng_per_mL_peak"] == 1.5
    assert data["new_vessel_length_mm_total"] == pytest.approx(7 * 2 * VOXEL_UM / 1000)
    assert data["report"]["index"] == str(out / "index.html")


# -- plots contain the run's data -------------------------------------------------------

def test_counts_plot_shows_each_nonzero_kind_in_its_palette_colour(series):
    fig = report_plots.plot_counts(series)
    rows = counts_rows(2.0)
    lines = lines_by_label(fig)
    assert set(lines) == {"functional", "tumour", "necrotic", "blood vessel", "sprout stalk",
                          "tip cell"}       # lymph vessels are zero throughout; matrix never
    for kind in ("functional", "tumor", "necrotic", "vessel", "sprout", "tip"):
        line = lines[report_plots.KIND_LABELS[kind]]
        np.testing.assert_array_equal(line.get_ydata(), rows[kind])
        np.testing.assert_array_equal(line.get_xdata(), rows["time_h"])
        assert tuple(line.get_color()) == kind_colour(kind)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "model time (h)" and "voxels" in ax.get_ylabel()


def test_long_runs_have_time_in_days(tmp_path):
    path = build_run(tmp_path / "daily.h5", step_h=24.0, snapshots=False)
    with RunFile(path) as run:
        fig = report_plots.plot_tumour(report_series.load_series(run))
    assert [ax.get_xlabel() for ax in fig.axes] == ["model time (days)"] * 2
    np.testing.assert_allclose(lines_by_label(fig)["tumour + necrotic"].get_xdata(),
                               np.arange(STEPS + 1))


def test_tumour_volume_is_counts_times_voxel_volume(series):
    fig = report_plots.plot_tumour(series)
    rows = counts_rows(2.0)
    volume = (rows["tumor"] + rows["necrotic"]) * (VOXEL_UM / 1000.0) ** 3
    lines = lines_by_label(fig)
    np.testing.assert_allclose(lines["tumour + necrotic"].get_ydata(), volume, rtol=1e-12)
    np.testing.assert_allclose(lines["necrotic core"].get_ydata(),
                               rows["necrotic"] * (VOXEL_UM / 1000.0) ** 3, rtol=1e-12)
    radius_um = (3 * volume * 1e9 / (4 * math.pi)) ** (1 / 3)
    np.testing.assert_allclose(lines["equivalent-sphere radius"].get_ydata(), radius_um,
                               rtol=1e-12)
    assert ylabels(fig) == ["tumour volume (mm³)", "equivalent-sphere radius (µm)"]


def test_functional_fraction_overall_and_per_organ(series):
    fig = report_plots.plot_functional(series)
    rows = counts_rows(2.0)
    lines = lines_by_label(fig)
    np.testing.assert_allclose(lines["all functional tissue"].get_ydata(),
                               rows["functional"] / 1000.0)
    np.testing.assert_allclose(lines["liver"].get_ydata(), rows["functional_liver"] / 600.0)
    np.testing.assert_allclose(lines["lung"].get_ydata(), rows["functional_lung"] / 400.0)
    assert "fraction of initial" in fig.axes[0].get_ylabel()


def test_vessel_density_with_hypoxia_and_vegf(series):
    fig = report_plots.plot_vessels(series)
    rows = counts_rows(2.0)
    tissue_mm3 = np.count_nonzero(organ_labels()) * (VOXEL_UM / 1000.0) ** 3
    length_mm = (rows["vessel"] + rows["sprout"] + rows["tip"]) * VOXEL_UM / 1000.0
    lines = lines_by_label(fig)
    np.testing.assert_allclose(lines["vessel density"].get_ydata(), length_mm / tissue_mm3)
    np.testing.assert_allclose(lines["perfused fraction"].get_ydata(), rows["perfused_fraction"])
    np.testing.assert_array_equal(lines["hypoxic tumour cells"].get_ydata(), rows["hypoxic_tumor"])
    np.testing.assert_allclose(lines["peak VEGF"].get_ydata(), rows["vegf_max_ng_per_mL"])
    labels = ylabels(fig)
    for unit in ("mm/mm³", "ng/mL", "count"):
        assert any(unit in label for label in labels), (unit, labels)
    assert any(f"{VOXEL_UM:g} µm of vessel length" in ax.get_title() for ax in fig.axes)


def panels(fig):
    """Slice panels by title prefix: 't = …' (kind), 'Oxygen…', 'VEGF…'."""
    return {ax.get_title(): ax for ax in all_axes(fig) if ax.get_images()}


def pixel(ax, y_um, x_um):
    im = ax.get_images()[0]
    x0, x1, y0, y1 = im.get_extent()
    data = im.get_array()
    assert x0 <= x_um < x1 and y0 <= y_um < y1
    row = int((y_um - y0) // VOXEL_UM)
    if im.origin == "upper":                      # row 0 drawn at the top (y1)
        row = data.shape[0] - 1 - row
    return data[row, int((x_um - x0) // VOXEL_UM)]


def test_slices_show_the_tumour_where_it_is(run_path):
    with RunFile(run_path) as run:
        fig = report_plots.plot_slices(run)
    found = panels(fig)
    assert {t for t in found if t.startswith("t = ")} == {
        "t = 0 h, z = 25 µm", "t = 6 h, z = 25 µm", "t = 12 h, z = 25 µm"}
    for i, title in enumerate(("t = 0 h, z = 25 µm", "t = 6 h, z = 25 µm",
                               "t = 12 h, z = 25 µm")):
        ax = found[title]
        ys, xs = tumour_box(i)
        inside = ((ys.start + 0.5) * VOXEL_UM, (xs.start + 0.5) * VOXEL_UM)
        np.testing.assert_allclose(pixel(ax, *inside), kind_colour("tumor"))
        before = ((ys.start + 0.5) * VOXEL_UM, (xs.start - 0.5) * VOXEL_UM)
        np.testing.assert_allclose(pixel(ax, *before), kind_colour("functional"))
        # the image is exactly the plane z = 2 inside the window, in palette colours
        im = ax.get_images()[0]
        x0, x1, y0, y1 = (round(e / VOXEL_UM) for e in im.get_extent())
        np.testing.assert_allclose(im.get_array(),
                                   report_plots.kind_rgb(kind_at(i)[2, y0:y1, x0:x1], KINDS))
        assert ax.get_xlabel() == "x (µm)"
    necrotic = ((6 + 0.5) * VOXEL_UM, (tumour_box(2)[1].start + 2.5) * VOXEL_UM)
    np.testing.assert_allclose(pixel(found["t = 12 h, z = 25 µm"], *necrotic),
                               kind_colour("necrotic"))
    oxygen = found["Oxygen, t = 12 h, z = 25 µm"]
    vegf = found["VEGF, t = 12 h, z = 25 µm"]
    for ax, field in ((oxygen, oxygen_at(2)), (vegf, vegf_at(2))):
        x0, x1, y0, y1 = (round(e / VOXEL_UM) for e in ax.get_images()[0].get_extent())
        np.testing.assert_allclose(ax.get_images()[0].get_array(), field[2, y0:y1, x0:x1])
    colourbars = [ax.get_ylabel() for ax in all_axes(fig)]
    assert "Oxygen (mmHg)" in colourbars and "VEGF (ng/mL)" in colourbars


def test_slice_choices():
    assert report_plots.slice_indices(0) == []
    assert report_plots.slice_indices(1) == [0]
    assert report_plots.slice_indices(2) == [0, 1]
    assert report_plots.slice_indices(11) == [0, 3, 7, 10]
    kind = np.zeros((5, 8, 8), dtype=np.uint8)
    assert report_series.tumour_plane(kind, KINDS) is None
    kind[3, 2:4, 2:4] = kind_code("tumor")
    kind[4, 2:4, 2:4] = kind_code("necrotic")
    kind[1, 2:4, 2:4] = kind_code("functional")
    assert report_series.tumour_plane(kind, KINDS) == 4        # centroid z = 3.5 rounds to 4
    big = np.zeros((200, 200), dtype=bool)
    big[100:104, 50:54] = True
    wy, wx = report_plots.slice_window(big)
    assert wy.stop - wy.start == wx.stop - wx.start == 32           # at least 16 each side
    assert wy.start <= 100 and wy.stop >= 104 and wx.start <= 50 and wx.stop >= 54
    whole = (slice(0, 10), slice(0, 10))
    assert report_plots.slice_window(np.zeros((10, 10), dtype=bool)) == whole


def test_planes_read_from_the_file_match_whole_snapshots(run_path, tmp_path):
    with RunFile(run_path) as run:
        meta = run.lattice()
        for i in range(run.n_snapshots):
            kind = run.snapshot(None, "kind", i)
            assert (report_series.snapshot_tumour_plane(run, meta, i)
                    == report_series.tumour_plane(kind, KINDS) == 2)
            np.testing.assert_array_equal(report_series.snapshot_plane(run, meta, "oxygen", i, 4),
                                          run.snapshot(None, "oxygen", i)[4])
        with pytest.raises(UserError, match="out of range"):
            report_series.snapshot_plane(run, meta, "kind", 3, 0)
    # a lattice deeper than one chunk is read in several slabs
    shape = (150, 3, 3)
    lat = LatticeInfo(name="deep", shape=shape, voxel_um=5.0,
                      organ=np.ones(shape, dtype=np.uint8), organ_names=("none", "x"))
    kind = np.zeros(shape, dtype=np.uint8)
    kind[100:140, 1, 1] = kind_code("tumor")
    kind[5, 1, 1] = kind_code("necrotic")
    with RunWriter(tmp_path / "deep.h5", attrs={}, lattices=[lat],
                   counts_dtype=counts_dtype(("x",)), snapshot_fields={"kind": np.uint8}) as w:
        w.write_snapshot(0, 0.0, {"deep": {"kind": kind}})
    with RunFile(tmp_path / "deep.h5") as run:
        assert report_series.snapshot_tumour_plane(run, run.lattice(), 0) == round(
            (sum(range(100, 140)) + 5) / 41)


# -- the page -----------------------------------------------------------------------------

def test_html_is_self_contained_and_says_what_it_must(written):
    out, _ = written
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert "url(" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == len(report_plots.FIGURES) + 1        # and the outcomes figure
    assert 'id="outcomes"' in page
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert html.escape(SCENARIO_TOML) in page                  # parameters, escaped
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<b>not bold</b>" not in page
    assert report_html.DISCLAIMER in page
    assert '<span class="status complete">complete</span>' in page
    for cell in ("synthetic", "numba", "0.1.0", "6 of 6 planned", "12 h (0.5 days)",
                 "10 → 640", "× 64", "0.9000"):
        assert cell in page, cell


def test_render_failure_leaves_no_page(run_path, tmp_path, monkeypatch):
    out = tmp_path / "out"
    report_html.write_report(run_path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")
    monkeypatch.setattr(report_html, "render_html", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        report_html.write_report(run_path, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before    # untouched
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError):
        report_html.write_report(run_path, fresh)
    assert not fresh.exists()


# -- runs that are unfinished or empty ---------------------------------------------------

def test_report_on_a_run_whose_writer_was_killed(tmp_path):
    """The writer dies after two snapshots without closing: status stays 'running'."""
    path = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import os
        from tests.test_report import counts_rows, make_writer, kind_at, oxygen_at, vegf_at
        w = make_writer({str(path)!r}, 2.0)
        for row in counts_rows(2.0)[:4]:
            w.append_counts(row)
            if row["step"] in (0, 3):
                i = (0, 3).index(int(row["step"]))
                w.write_snapshot(int(row["step"]), float(row["time_h"]), {{"primary": {{
                    "kind": kind_at(i), "oxygen": oxygen_at(i), "vegf": vegf_at(i)}}}})
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT)
    summary = report_html.write_report(path, tmp_path / "out")
    assert summary["status"] == "running"
    assert summary["steps"] == 3 and summary["snapshots"] == 2
    assert summary["tumor_cells_final"] == 80
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert '<span class="status running">running</span>' in page
    assert "still open for writing" in page and "3 of 6 planned" in page


def test_report_without_snapshots_plots_the_counts(tmp_path):
    path = build_run(tmp_path / "nosnap.h5", snapshots=False, close="interrupted")
    out = tmp_path / "out"
    summary = report_html.write_report(path, out)
    assert summary["snapshots"] == 0 and summary["status"] == "interrupted"
    assert not (out / "slices.png").exists()
    for name in ("counts", "functional", "tumour", "vessels", "outcomes"):
        assert (out / f"{name}.png").read_bytes().startswith(PNG_MAGIC)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "No snapshot has been written yet" in page
    assert '<span class="status interrupted">interrupted</span>' in page
    assert len(re.findall(r'src="data:image/png', page)) == 5


def test_report_on_a_run_with_nothing_yet_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.h5"
    make_writer(path, 2.0).close("interrupted")
    with pytest.raises(UserError, match=r"empty\.h5: no steps recorded yet"):
        report_html.write_report(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- the command line ---------------------------------------------------------------------

def parser():
    p = argparse.ArgumentParser(prog="oncolattice report")
    report.add_arguments(p)
    return p


def test_command_line(run_path, tmp_path, capsys):
    args = parser().parse_args([str(run_path), "--out", str(tmp_path / "r"),
                                "--lattice", "primary"])
    assert report.command(args) == 0
    assert str(tmp_path / "r" / "index.html") in capsys.readouterr().out
    assert (tmp_path / "r" / "index.html").is_file()
    with pytest.raises(SystemExit):
        parser().parse_args([str(run_path)])             # --out is required
    assert isinstance(report.HELP, str) and "\n" not in report.HELP


@pytest.mark.parametrize("case", ["missing", "text", "foreign_hdf5", "lattice", "out_is_file"])
def test_bad_input_is_a_user_error_naming_the_value(case, run_path, tmp_path):
    import h5py
    run, out, lattice, named = run_path, tmp_path / "out", None, None
    if case == "missing":
        run = named = tmp_path / "nope.h5"
    elif case == "text":
        run = named = tmp_path / "notes.h5"
        run.write_text("not hdf5")
    elif case == "foreign_hdf5":
        run = named = tmp_path / "other.h5"
        with h5py.File(run, "w") as f:
            f["x"] = 1
    elif case == "lattice":
        lattice = named = "liverlattice"
    else:
        out = named = tmp_path / "taken.txt"
        out.write_text("a file")
    args = parser().parse_args([str(run), "--out", str(out)]
                               + (["--lattice", lattice] if lattice else []))
    with pytest.raises(UserError) as err:
        report.command(args)
    message = str(err.value)
    assert str(named) in message and "\n" not in message
    if case != "out_is_file":
        assert not out.exists()


def test_importing_the_module_does_not_import_matplotlib():
    code = "import sys, tools.report; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert done.stdout.strip() == "False"
