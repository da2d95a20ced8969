"""The body of lattices in the tools (issue 11): the reader exposes the primary and
site lattices, their counts, the body table, the colony registry, colony sizes and
CTC records; `report` adds a metastasis section (timeline, body map, colony sizes,
registry) for such a file and none for a file of one lattice; `view`/`render`
open a site lattice on its colony.

A small synthetic body is written with RunWriter: a primary lattice (breast), a
regional lymph node and a distant lung, with known counts and tables.
"""
import json
import re

import h5py
import numpy as np
import pytest

from engine.errors import RunFileError, UserError
from engine.output import LatticeInfo, RunWriter
from engine.runformat import (BODY, COLONIES, COLONY_SIZES, CTCS, LATTICE_ID_ATTR, PRIMARY,
                              ROLE_ATTR, SITE, SITE_CLASS_ATTR, SITE_ORGAN_ATTR, KindCodes,
                              counts_path)
from tools import report_plots, report_series
from tools.report_html import write_report
from tools.runfile import RunFile, text_column
from tools.scene_options import tumour_clip

KINDS = KindCodes.from_names(("empty", "functional", "tumor", "necrotic", "vessel",
                              "lymph_vessel", "sprout", "tip", "dormant"))
SHAPE = (8, 10, 12)
STEPS = 4                       # counts and body rows for steps 0..4
STEP_H = 6.0
COUNTS = np.dtype([("step", np.int64), ("time_h", np.float64), ("tumor", np.int64),
                   ("dormant", np.int64), ("necrotic", np.int64), ("functional", np.int64)])
BODY_DT = np.dtype([("step", np.int64), ("time_h", np.float64), ("shed_cells", np.int64),
                    ("shedding_per_g_per_day", np.float64), ("in_blood", np.int64),
                    ("in_lymph", np.int64), ("ctc_per_7_5_mL", np.float64),
                    ("entered_blood", np.int64), ("entered_lymph", np.int64),
                    ("arrested_lung", np.int64), ("extravasated", np.int64),
                    ("died_in_blood", np.int64), ("disseminated_dormant", np.int64),
                    ("disseminated_tumor", np.int64), ("colonies_local", np.int64),
                    ("colonies_regional", np.int64), ("colonies_distant", np.int64),
                    ("itc", np.int64), ("micrometastasis", np.int64),
                    ("macrometastasis", np.int64)])
COLONY_DT = np.dtype([("id", np.int64), ("lattice", "S32"), ("lineage", np.uint16),
                      ("organ", "S32"), ("class", "S8"), ("founder_clone", np.uint16),
                      ("founder_record", np.int64), ("arrival_step", np.int64),
                      ("first_growth_step", np.int64), ("cells", np.int64),
                      ("max_cells", np.int64), ("diameter_um", np.float64), ("stage", "S16")])
SIZES_DT = np.dtype([("step", np.int64), ("colony", np.int64), ("cells", np.int64),
                     ("diameter_um", np.float64)])
CTC_DT = np.dtype([("id", np.int64), ("from_lattice", "S32"), ("state", "S16"),
                   ("step", np.int64)])
# the registry: a local colony, one in the node, two in the lung (one extinct)
REGISTRY = [(1, b"primary", 0, b"breast", b"local", 1, -1, 0, 0, 400, 400, 150.0, b"itc"),
            (2, b"node", 1, b"lymph_node", b"regional", 1, 7, 1, 2, 30, 30, 350.0,
             b"micrometastasis"),
            (3, b"lung", 2, b"lung", b"distant", 2, 9, 2, 3, 5, 5, 60.0, b"itc"),
            (4, b"lung", 3, b"lung", b"distant", 2, 11, 3, -1, 0, 1, 0.0, b"extinct")]
NODE_FINAL = {"tumor": 27, "dormant": 3}         # the node's counts at the last step
LUNG_FINAL = {"tumor": 4, "dormant": 2}


def lattice(name, organ, **attrs):
    return LatticeInfo(name=name, shape=SHAPE, voxel_um=20.0,
                       organ=np.ones(SHAPE, dtype=np.uint8), organ_names=("none", organ),
                       attrs=attrs)


def kinds_of(lattice_name, i):
    """Kinds of a lattice at snapshot i: the primary a block of tumour; the node a dormant
    cell (and tumour from snapshot 1) at y = 7; the lung dormant cells at y = 2 only."""
    k = np.full(SHAPE, KINDS.code("functional"), dtype=np.uint8)
    if lattice_name == "primary":
        k[2:6, 3:7, 4:8] = KINDS.code("tumor")
    elif lattice_name == "node":
        k[4, 7, 5] = KINDS.code("dormant")
        if i:
            k[4, 7, 6:8] = KINDS.code("tumor")
    elif lattice_name == "lung" and i:
        k[1, 2, 1:3] = KINDS.code("dormant")
    return k


def site_counts(final, s):
    rows = np.zeros(len(s), dtype=COUNTS)
    rows["step"], rows["time_h"] = s, s * STEP_H
    for k, v in final.items():
        rows[k] = np.round(v * s / STEPS)
    rows["functional"] = 900
    return rows


def build_body(path):
    lats = [lattice("primary", "breast", **{ROLE_ATTR: PRIMARY, LATTICE_ID_ATTR: 0}),
            lattice("node", "lymph_node", **{ROLE_ATTR: SITE, SITE_ORGAN_ATTR: "lymph_node",
                                             SITE_CLASS_ATTR: "regional", LATTICE_ID_ATTR: 1}),
            lattice("lung", "lung", **{ROLE_ATTR: SITE, SITE_ORGAN_ATTR: "lung",
                                       SITE_CLASS_ATTR: "distant", LATTICE_ID_ATTR: 2})]
    tables = {counts_path("node", SITE): COUNTS, counts_path("lung", SITE): COUNTS,
              BODY: BODY_DT, COLONIES: COLONY_DT, COLONY_SIZES: SIZES_DT, CTCS: CTC_DT}
    w = RunWriter(path, attrs={"step_h": STEP_H}, lattices=lats, counts_dtype=COUNTS,
                  snapshot_fields={"kind": np.uint8},
                  field_attrs={"kind": {"codes": KINDS.encode()}}, tables=tables)
    s = np.arange(STEPS + 1)
    primary = np.zeros(len(s), dtype=COUNTS)
    primary["step"], primary["time_h"] = s, s * STEP_H
    primary["tumor"], primary["dormant"] = 100 + 100 * s, 0
    primary["functional"] = 800
    body = np.zeros(len(s), dtype=BODY_DT)
    body["step"], body["time_h"] = s, s * STEP_H
    body["shed_cells"] = 10 * s
    body["shedding_per_g_per_day"] = 1e4 * s
    body["in_blood"] = [0, 8, 12, 9, 7]
    body["in_lymph"] = [0, 2, 3, 1, 1]
    body["ctc_per_7_5_mL"] = body["in_blood"] * 7.5 / 5000.0
    body["entered_blood"] = [0, 8, 6, 3, 2]
    body["arrested_lung"] = [0, 0, 2, 1, 1]
    body["extravasated"] = [0, 0, 1, 1, 0]
    body["colonies_local"] = 1
    body["colonies_regional"] = [0, 1, 1, 1, 1]
    body["colonies_distant"] = [0, 0, 1, 2, 1]
    body["itc"] = [1, 1, 2, 3, 2]
    body["micrometastasis"] = [0, 1, 1, 1, 1]
    sizes = []
    for st in s:
        sizes.append((st, 1, 100 + 75 * st, 100.0 + 12.5 * st))
        if st >= 1:
            sizes.append((st, 2, 5 + 6 * st, 100.0 + 62.5 * st))
        if st >= 2:
            sizes.append((st, 3, st + 1, 30.0 + 10 * st))
        if st == 3:
            sizes.append((st, 4, 1, 20.0))
    sizes = np.array(sizes, dtype=SIZES_DT)
    for st in s:
        w.append_counts(primary[st])
        w.append_rows(counts_path("node", SITE), site_counts(NODE_FINAL, s)[st:st + 1])
        w.append_rows(counts_path("lung", SITE), site_counts(LUNG_FINAL, s)[st:st + 1])
        w.append_rows(BODY, body[st:st + 1])
        w.append_rows(COLONY_SIZES, sizes[sizes["step"] == st])
        if st % 2 == 0:
            i = st // 2
            w.write_table(COLONIES, np.array(REGISTRY[:2 + i], dtype=COLONY_DT))
            w.write_snapshot(int(st), st * STEP_H, {n: {"kind": kinds_of(n, i)}
                                                     for n in ("primary", "node", "lung")})
    w.write_table(CTCS, np.array([(i, b"primary", b"arrested", i) for i in range(6)],
                                 dtype=CTC_DT))
    w.close("complete")
    return path, primary, body, sizes


@pytest.fixture(scope="module")
def body_run(tmp_path_factory):
    return build_body(tmp_path_factory.mktemp("body") / "body.h5")


@pytest.fixture(scope="module")
def body_report(body_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(body_run[0], out)


def single_run(path):
    w = RunWriter(path, attrs={"step_h": STEP_H}, lattices=[lattice("primary", "breast")],
                  counts_dtype=COUNTS, snapshot_fields={"kind": np.uint8})
    rows = np.zeros(3, dtype=COUNTS)
    rows["step"], rows["time_h"], rows["tumor"], rows["functional"] = (
        np.arange(3), np.arange(3) * STEP_H, [5, 9, 20], 900)
    for r in rows:
        w.append_counts(r)
    w.write_snapshot(2, 12.0, {"primary": {"kind": kinds_of("primary", 0)}})
    w.close("complete")
    return path


# -- the reader --------------------------------------------------------------------------

def test_reader_exposes_the_body(body_run):
    path, primary, body, sizes = body_run
    with RunFile(path) as run:
        assert run.has_body
        assert run.primary.name == "primary" and run.primary.role == PRIMARY
        assert run.lattice().name == "primary"
        assert [(m.name, m.role, m.site_organ, m.site_class, m.lattice_id) for m in run.sites()] \
            == [("node", SITE, "lymph_node", "regional", 1), ("lung", SITE, "lung", "distant", 2)]
        assert "dormant" in run.lattice("node").kinds
        assert set(run.fields) == {"kind"}              # a lattice's counts is no field
        np.testing.assert_array_equal(run.counts(), primary)
        np.testing.assert_array_equal(run.counts("primary"), primary)
        node = run.counts("node")
        assert node["tumor"][-1] == NODE_FINAL["tumor"] and len(node) == STEPS + 1
        np.testing.assert_array_equal(run.body(), body)
        reg = run.colonies()
        assert len(reg) == 4 and list(reg["id"]) == [1, 2, 3, 4]
        assert text_column(reg, "stage") == ["itc", "micrometastasis", "itc", "extinct"]
        assert text_column(reg, "no_such_column", "x") == ["x"] * 4
        np.testing.assert_array_equal(run.colony_sizes(), sizes)
        assert len(run.ctcs()) == 6


def test_single_lattice_file_reads_as_before(tmp_path):
    with RunFile(single_run(tmp_path / "one.h5")) as run:
        assert not run.has_body and run.sites() == []
        assert run.primary.role == PRIMARY and run.primary.site_class is None
        assert run.body() is None and run.colonies() is None
        assert run.colony_sizes() is None and run.ctcs() is None
        assert list(run.counts()["tumor"]) == [5, 9, 20]


def _damage(src, dest, edit):
    import shutil
    shutil.copyfile(src, dest)
    with h5py.File(dest, "r+") as f:
        edit(f)
    return dest


@pytest.mark.parametrize("edit, words", [
    (lambda f: f["lattices/node"].attrs.__setitem__(ROLE_ATTR, "organ"), "role 'organ'"),
    (lambda f: f["lattices/lung"].attrs.__setitem__(ROLE_ATTR, PRIMARY), "one primary"),
    (lambda f: f["lattices/lung"].attrs.__setitem__(SITE_CLASS_ATTR, 3), "site_class 3"),
    (lambda f: f["lattices/lung"].attrs.__setitem__(LATTICE_ID_ATTR, "x"), "lattice_id"),
    (lambda f: (f.__delitem__(COLONIES), f.create_dataset(COLONIES, data=np.arange(3))),
     "'colonies' has dtype int64"),
    (lambda f: (f.__delitem__(COLONY_SIZES),
                f.create_dataset(COLONY_SIZES, data=np.zeros(2, [("step", "i8")]))),
     "lacks column 'colony'"),
    (lambda f: (f.__delitem__(BODY),
                f.create_dataset(BODY, data=np.zeros(2, [("step", "i8"), ("x", "S4")]))),
     "'body' column 'x'"),
    (lambda f: (f.__delitem__("lattices/node/counts"),
                f.create_dataset("lattices/node/counts", data=np.zeros((2, 2)))),
     "lattices/node/counts"),
])
def test_damaged_body_is_a_one_line_error(body_run, tmp_path, edit, words):
    bad = _damage(body_run[0], tmp_path / "bad.h5", edit)
    with pytest.raises(RunFileError) as err:
        RunFile(bad).close()
    message = str(err.value)
    assert "bad.h5" in message and words in message and "\n" not in message


# -- the report's metastasis section ---------------------------------------------------

def test_report_writes_the_metastasis_page(body_report):
    out, summary = body_report
    for name in report_plots.METASTASIS_FIGURES:
        png = out / f"{name}.png"
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
        assert summary["report"]["images"][name] == str(png)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert '<section id="metastasis">' in page and "Colony registry" in page
    for name in report_plots.METASTASIS_FIGURES:
        assert f'<figure id="{name}">' in page
    rows = re.findall(r'<tr class="colony">(.*?)</tr>', page)
    assert len(rows) == 4
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows]
    assert cells[1] == ["2", "node (lymph node)", "regional", "1", "1", "2", "30", "350",
                        "micrometastasis"]
    assert cells[3][5] == "not yet" and cells[3][8] == "extinct"
    assert cells[0][1] == "primary (breast)" and cells[2][2] == "distant"


def test_summary_metastasis_block_matches_the_tables(body_run, body_report):
    _, primary, body, sizes = body_run
    out, summary = body_report
    m = json.loads((out / "summary.json").read_text())["metastasis"]
    assert m == json.loads(json.dumps(summary["metastasis"]))
    assert m["colonies"] == 4 and m["body_rows"] == STEPS + 1
    assert m["colonies_by_class"] == {"local": 1, "regional": 1, "distant": 2}
    assert m["colonies_by_stage"] == {"extinct": 1, "itc": 2, "micrometastasis": 1,
                                      "macrometastasis": 0}
    assert m["largest_colony_diameter_um"] == 350.0
    assert m["shed_cells_total"] == int(body["shed_cells"].sum()) == 100
    assert m["ctc_in_blood_final"] == 7 and m["ctc_in_blood_peak"] == 12
    assert m["ctc_in_lymph_final"] == 1
    assert m["ctc_per_7_5_mL_peak"] == pytest.approx(12 * 7.5 / 5000)
    assert m["events_total"] == {"entered_blood": 19, "entered_lymph": 0, "arrested_lung": 4,
                                 "extravasated": 2, "died_in_blood": 0}
    assert m["final"]["colonies_distant"] == 1 and m["final"]["micrometastasis"] == 1
    assert m["colony_size_rows"] == len(sizes) and m["ctc_records"] == 6
    by_name = {lat["name"]: lat for lat in m["lattices"]}
    assert [lat["name"] for lat in m["lattices"]] == ["primary", "node", "lung"]
    assert by_name["primary"]["burden_cells"] == int(primary["tumor"][-1]) == 500
    assert by_name["node"]["burden_cells"] == sum(NODE_FINAL.values())
    assert by_name["lung"]["burden_cells"] == sum(LUNG_FINAL.values())
    assert by_name["lung"]["dormant_cells"] == 2 and by_name["lung"]["burden_source"] == "counts"
    assert (by_name["lung"]["colonies"], by_name["lung"]["colonies_live"]) == (2, 1)
    assert by_name["node"]["class"] == "regional" and by_name["node"]["organ"] == "lymph_node"
    assert summary["lattice"] == "primary" and summary["tumor_cells_final"] == 500


def test_body_map_discs_show_the_burden(body_run):
    with RunFile(body_run[0]) as run:
        b = report_series.load_body(run)
    layout = {i["name"]: i for i in report_plots.body_map_layout(b.lattices)}
    assert {k: v["burden"] for k, v in layout.items()} == {"primary": 500, "node": 30, "lung": 6}
    assert layout["primary"]["radius"] == pytest.approx(report_plots.BODY_MAP_MAX_RADIUS)
    for name in ("node", "lung"):               # disc area proportional to the burden
        ratio = (layout[name]["radius"] / layout["primary"]["radius"]) ** 2
        assert ratio == pytest.approx(layout[name]["burden"] / 500)
    # organs at their places: lymph node in the axilla, lung in the chest, breast primary
    assert (layout["node"]["x"], layout["node"]["y"]) == report_plots.organ_place("lymph_node")
    assert layout["lung"]["y"] > 1.4 and layout["primary"]["placed"]
    assert layout["node"]["class"] == "regional" and layout["primary"]["class"] == "local"
    assert report_plots.organ_place("bone_marrow")[1] < report_plots.organ_place("liver")[1] \
        < report_plots.organ_place("lung")[1] < report_plots.organ_place("brain")[1]
    assert report_plots.organ_place("pancreas_tail") is not None
    assert report_plots.organ_place("appendix_x") is None


def test_body_map_of_a_site_without_burden_and_an_unknown_organ():
    lats = [{"name": "p", "role": PRIMARY, "organ": "breast", "class": None,
             "burden_cells": 0, "colonies": 0, "colonies_live": 0},
            {"name": "x", "role": SITE, "organ": "thyroid", "class": "distant",
             "burden_cells": 0, "colonies": 0, "colonies_live": 0}]
    layout = report_plots.body_map_layout(lats)
    assert [i["radius"] for i in layout] == [0.0, 0.0]
    assert not layout[1]["placed"] and layout[1]["x"] > 1
    b = report_series.Body(lattices=lats, body=None, time_h=np.zeros(0), colonies=[],
                           sizes={}, ctcs=None)
    assert report_plots.plot_body_map(b) is not None
    assert report_plots.plot_metastasis_timeline(b) is None
    assert report_plots.plot_colony_sizes(b) is None


def test_single_lattice_report_has_no_metastasis_section(tmp_path):
    out = tmp_path / "r"
    summary = write_report(single_run(tmp_path / "one.h5"), out)
    assert "metastasis" not in summary
    assert "metastasis" not in json.loads((out / "summary.json").read_text())
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "metastasis" not in page.lower() and "Colony registry" not in page
    for name in report_plots.METASTASIS_FIGURES:
        assert not (out / f"{name}.png").exists()


def test_report_of_a_site_lattice_uses_its_counts(body_run, tmp_path):
    summary = write_report(body_run[0], tmp_path / "r", lattice="node")
    assert summary["lattice"] == "node" and summary["tumor_cells_final"] == NODE_FINAL["tumor"]
    assert "metastasis" in summary


# -- view and render: a site lattice opens on its colony ---------------------------------

def test_default_clip_centres_on_tumour_or_dormant_cells(body_run):
    with RunFile(body_run[0]) as run:
        assert tumour_clip(run, "primary", 0).pos == 5        # tumour y 3..6: centre 4.5
        node = tumour_clip(run, "node", 0)                   # a single dormant cell at y = 7
        assert (node.axis, node.pos, node.keep) == ("y", 8, "<")
        assert tumour_clip(run, "lung", 1).pos == 3          # dormant cells at y = 2
        assert tumour_clip(run, "lung", 0) is None           # none yet: no clip


def test_default_clip_lands_on_a_layer_with_cells(tmp_path):
    """Two colonies far apart: the clip passes through one of them, not the empty
    space at their mean."""
    w = RunWriter(tmp_path / "two.h5", attrs={}, lattices=[lattice("primary", "lung")],
                  counts_dtype=COUNTS, snapshot_fields={"kind": np.uint8},
                  field_attrs={"kind": {"codes": KINDS.encode()}})
    k = np.full(SHAPE, KINDS.code("functional"), dtype=np.uint8)
    k[3, 1, 2] = k[3, 8, 9] = KINDS.code("tumor")           # mean y 4.5: an empty layer
    w.write_snapshot(0, 0.0, {"primary": {"kind": k}})
    w.close("complete")
    with RunFile(tmp_path / "two.h5") as run:
        plane = tumour_clip(run, "primary", 0)
    assert plane.pos - 1 in (1, 8)


def test_unknown_lattice_is_one_line_naming_it_and_the_lattices(body_run, tmp_path):
    import argparse

    from tools import render, viewer
    from tools.scene_options import resolve_view
    with RunFile(body_run[0]) as run:
        with pytest.raises(UserError) as err:
            resolve_view(run, argparse.Namespace(lattice="liver"), 0)
    message = str(err.value)
    assert err.value.exit_status == 2 and "\n" not in message
    assert "--lattice 'liver'" in message and "primary, node, lung" in message
    p = argparse.ArgumentParser()
    render.add_arguments(p)
    with pytest.raises(UserError, match=r"--lattice 'liver'.*primary, node, lung"):
        render.command(p.parse_args([str(body_run[0]), "--out", str(tmp_path / "f.png"),
                                     "--lattice", "liver"]))
    p = argparse.ArgumentParser()
    viewer.add_arguments(p)
    with pytest.raises(UserError, match=r"--lattice 'liver'.*primary, node, lung"):
        viewer.open_viewer(p.parse_args([str(body_run[0]), "--lattice", "liver"]))
    with pytest.raises(UserError, match=r"--lattice 'liver'.*primary, node, lung"):
        write_report(body_run[0], tmp_path / "r", lattice="liver")
    assert not (tmp_path / "r").exists() and not (tmp_path / "f.png").exists()




@pytest.mark.parametrize("step, kind", [(4, "tumor"), (0, "dormant")])
def test_render_of_a_site_lattice_shows_its_colony(gl, body_run, tmp_path, step, kind):
    """Looking at the +y faces head-on: the default clip cuts through the node's colony
    (tumour at y = 7 at step 4; at step 0 a single dormant cell), which the uncut
    block's outer face hides."""
    import argparse

    import imageio.v3 as iio

    from tools import render
    from tools.palette import kind_colour
    p = argparse.ArgumentParser()
    render.add_arguments(p)
    common = ["--lattice", "node", "--step", str(step), "--camera", "180,0,1.2", "--fov", "0", "--size", "240x200",
              "--no-legend"]

    def pixels(name, *extra):
        out = tmp_path / name
        assert render.command(p.parse_args([str(body_run[0]), "--out", str(out), *common,
                                            *extra])) == 0
        img = iio.imread(out)[..., :3].astype(float)
        ratio = img / (np.array(kind_colour(kind)) * 255)    # faces are shaded by light
        shade = ratio.mean(axis=-1)
        return int(((np.ptp(ratio, axis=-1) < 0.06) & (shade > 0.5) & (shade < 1.05)).sum())
    assert pixels("cut.png") > 40
    assert pixels("whole.png", "--clip", "none") == 0
