"""Outcomes of a run (tools/outcomes.py) on synthetic run files with known numbers:
burden and lesion diameter (the tumour's own debris in, normal tissue's debris out),
the RECIST-like rule (nadir, +20 %, the absolute floor, a new lesion, baseline target
colonies), functional tissue preserved, harm columns found by their names, metastases
by class, the therapy record, the Kaplan–Meier estimate, and the report's Outcomes
section with its disclaimer."""
import math

import numpy as np
import pytest

from engine.colonies import COLONY_DTYPE, SIZE_DTYPE
from engine.output import LatticeInfo, RunWriter
from engine.protocol import DECISION_DTYPE
from engine.runformat import (COLONIES, COLONY_SIZES, DECISIONS, LATTICE_ID_ATTR, PRIMARY,
                              ROLE_ATTR, SITE, SITE_CLASS_ATTR, SITE_ORGAN_ATTR, THERAPY,
                              counts_path)
from engine.therapy import RECORD_DTYPE
from tools import outcomes, report_html
from tools.outcomes import RECIST, harm_columns, kaplan_meier, median_time, read_outcomes

VOXEL_UM = 10.0
SHAPE = (4, 4, 4)
ORGANS = ("breast", "muscle")
BASE_COLUMNS = ("step", "time_h", "empty", "functional", "tumor", "necrotic", "dormant",
                "functional_breast", "functional_muscle", "necrosis_functional",
                "irradiated_tumor_killed", "irradiated_functional_killed",
                "chemo_killed_functional", "chemo_killed_functional_breast",
                "compression_functional", "apoptosis_functional",
                "functional_cleared_by_sprout", "debris_lysed", "debris_cleared")
SITE_COLUMNS = ("step", "time_h", "tumor", "dormant", "necrotic", "functional",
                "functional_lung", "irradiated_functional_killed")


def cells_for(d_mm):
    """Voxels of a ball of diameter d_mm (10 µm voxels), rounded."""
    return round(math.pi / 6.0 * (d_mm * 1000.0 / VOXEL_UM) ** 3)


def diameter(n):
    return VOXEL_UM / 1000.0 * (6.0 * n / math.pi) ** (1.0 / 3.0)


def table(columns, n):
    return np.zeros(n, dtype=[(c, np.float64 if c == "time_h" else np.int64) for c in columns])


def write_run(path, primary, site=None, colonies=(), sizes=(), therapy=(), step_h=2.0,
              decisions=()):
    """A run file with counts `primary` (a table of BASE_COLUMNS), optionally a site lattice
    with counts `site`, colony registry rows, colony size rows and therapy rows."""
    organ = np.ones(SHAPE, dtype=np.uint8)
    organ[2:] = 2
    lattices = [LatticeInfo(name="primary", shape=SHAPE, voxel_um=VOXEL_UM, organ=organ,
                            organ_names=("none",) + ORGANS,
                            attrs={ROLE_ATTR: PRIMARY, LATTICE_ID_ATTR: 0})]
    tables = {COLONIES: COLONY_DTYPE, COLONY_SIZES: SIZE_DTYPE, THERAPY: RECORD_DTYPE,
              DECISIONS: DECISION_DTYPE}
    if site is not None:
        lattices.append(LatticeInfo(name="lung_block", shape=SHAPE, voxel_um=VOXEL_UM,
                                    organ=np.ones(SHAPE, dtype=np.uint8),
                                    organ_names=("none", "lung"),
                                    attrs={ROLE_ATTR: SITE, LATTICE_ID_ATTR: 1,
                                           SITE_ORGAN_ATTR: "lung",
                                           SITE_CLASS_ATTR: "distant"}))
        tables[counts_path("lung_block", SITE)] = site.dtype
    w = RunWriter(path, attrs={"seed": 7, "step_h": step_h}, lattices=lattices,
                  counts_dtype=primary.dtype, snapshot_fields={"kind": np.uint8},
                  tables=tables)
    for i, row in enumerate(primary):
        w.append_counts(row)
        if site is not None:
            w.append_rows(counts_path("lung_block", SITE), site[i])
    w.append_rows(COLONY_SIZES, np.array(list(sizes), dtype=SIZE_DTYPE))
    w.append_rows(THERAPY, np.array(list(therapy), dtype=RECORD_DTYPE))
    w.append_rows(DECISIONS, np.array(list(decisions), dtype=DECISION_DTYPE))
    w.write_table(COLONIES, np.array(list(colonies), dtype=COLONY_DTYPE))
    kind = np.zeros((1,) + SHAPE, dtype=np.uint8)[0]
    w.write_snapshot(int(primary["step"][-1]), float(primary["time_h"][-1]),
                     {lat.name: {"kind": kind} for lat in lattices})
    w.close("complete")
    return path


def primary_counts(diameters_mm, step_h=2.0):
    t = table(BASE_COLUMNS, len(diameters_mm))
    t["step"] = np.arange(len(t))
    t["time_h"] = t["step"] * step_h
    t["tumor"] = [cells_for(d) for d in diameters_mm]
    t["functional_breast"] = 1000
    t["functional_muscle"] = 500
    t["functional"] = 1500
    return t


def colony(cid, cls, cells, diameter_um, lattice="lung_block"):
    row = np.zeros((), dtype=COLONY_DTYPE)
    row["id"], row["lattice"], row["class"] = cid, lattice, cls
    row["cells"], row["diameter_um"] = cells, diameter_um
    row["stage"] = "itc" if cells else "extinct"
    return row


# -- the naming rule of harm columns ---------------------------------------------------

def test_harm_columns_are_found_by_their_names():
    names = BASE_COLUMNS + ("immune_killed_functional_cells", "irradiated_dormant_killed",
                            "functional_fraction", "killed_tumor")
    totals, breakdown = harm_columns(names, ORGANS)
    assert totals == ["irradiated_functional_killed", "chemo_killed_functional",
                      "immune_killed_functional_cells"]
    assert breakdown == {"chemo_killed_functional": ["chemo_killed_functional_breast"]}
    # without the organ, the per-organ column is a harm column of its own
    totals, breakdown = harm_columns(names, ())
    assert "chemo_killed_functional_breast" in totals and breakdown == {}


def test_harm_is_cumulative_and_a_breakdown_is_not_counted_twice(tmp_path):
    t = primary_counts([0.5] * 5)
    t["irradiated_functional_killed"] = [0, 10, 0, 5, 0]
    t["chemo_killed_functional"] = [0, 0, 4, 4, 0]
    t["chemo_killed_functional_breast"] = [0, 0, 3, 1, 0]
    t["compression_functional"] = 99            # the tumour's doing, not therapy's
    t["apoptosis_functional"] = 50
    o = read_outcomes(write_run(tmp_path / "harm.h5", t))
    p = o.primary
    assert p.harm["irradiated_functional_killed"].tolist() == [0, 10, 10, 15, 15]
    assert p.harm["chemo_killed_functional"].tolist() == [0, 0, 4, 8, 8]
    assert p.harm_by_organ["chemo_killed_functional"]["breast"].tolist() == [0, 0, 3, 4, 4]
    assert o.harm_total.tolist() == [0, 10, 14, 23, 23]
    assert o.summary()["harm_cells_total"] == 23


# -- burden and diameter -------------------------------------------------------------------

def test_burden_volume_and_diameter_keep_tumour_debris_and_leave_out_normal_debris(tmp_path):
    t = primary_counts([0.5] * 4)
    n = int(t["tumor"][0])
    # step 1: 1000 tumour cells die into debris (necrotic core); step 2: radiotherapy kills
    # 3000 functional cells into debris; step 3: a third of all debris lyses
    t["tumor"] = [n, n - 1000, n - 1000, n - 1000]
    t["dormant"] = [0, 0, 5, 5]
    t["irradiated_functional_killed"] = [0, 0, 3000, 0]
    t["necrotic"] = [0, 1000, 4000, 2667]
    t["debris_lysed"] = [0, 0, 0, 1333]
    o = read_outcomes(write_run(tmp_path / "debris.h5", t))
    debris = o.primary.tumour_debris
    assert debris[:3].tolist() == pytest.approx([0, 1000, 1000])
    assert debris[3] == pytest.approx(2667 * 1000 / 4000, rel=1e-3)   # lysis: its share
    assert o.burden_cells.tolist() == [n, n - 1000, n - 995, n - 995]
    voxel_mm3 = (VOXEL_UM / 1000) ** 3
    assert o.burden_volume_mm3[2] == pytest.approx((n - 995 + 1000) * voxel_mm3)
    assert o.primary_diameter_mm[1] == pytest.approx(diameter(n))     # necrotic core kept
    assert o.primary_diameter_mm[2] == pytest.approx(diameter(n + 5))  # irradiated breast not


# -- the RECIST-like rule ----------------------------------------------------------------

def test_progression_is_twenty_percent_above_the_nadir(tmp_path):
    ds = [1.0, 0.8, 0.6, 0.5, 0.55, 0.59, 0.61, 0.7]
    o = read_outcomes(write_run(tmp_path / "pd.h5", primary_counts(ds)))
    assert o.primary_diameter_mm.tolist() == pytest.approx(ds, rel=1e-5)
    assert o.nadir_mm.tolist() == pytest.approx([1.0, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5],
                                                rel=1e-5)
    p = o.progression
    assert p["progressed"] and p["reason"] == "growth"
    assert p["step"] == 6 and p["time_h"] == 12.0          # 0.61 ≥ 1.2 × 0.5; 0.59 is not
    assert o.summary()["progression"] == p


def test_a_tumour_that_keeps_shrinking_never_progresses_and_is_censored(tmp_path):
    ds = [1.0, 0.9, 0.95, 0.9, 1.05, 1.07]       # +19 % over the nadir 0.9 at most
    o = read_outcomes(write_run(tmp_path / "sd.h5", primary_counts(ds)))
    assert o.progression == {"progressed": False, "step": None, "time_h": None,
                             "reason": None, "censored_h": 10.0}


def test_the_absolute_floor_guards_small_lesions(tmp_path):
    assert RECIST.floor_mm == 0.1 and RECIST.measurable_mm == 0.2
    ds = [0.3, 0.2, 0.25, 0.29, 0.31]            # +25 % and +45 % but under +0.1 mm at first
    o = read_outcomes(write_run(tmp_path / "floor.h5", primary_counts(ds)))
    assert o.progression["step"] == 4


def test_an_eradicated_lesion_that_reappears_progresses(tmp_path):
    ds = [0.4, 0.2, 0.0, 0.0, 0.05, 0.12]
    o = read_outcomes(write_run(tmp_path / "cr.h5", primary_counts(ds)))
    assert o.nadir_mm[-1] == 0.0
    assert o.progression["step"] == 5 and o.progression["reason"] == "growth"


def test_a_new_lesion_is_progression_and_a_baseline_colony_is_a_target(tmp_path):
    ds = [0.5] * 6
    t = primary_counts(ds)
    site = table(SITE_COLUMNS, len(ds))
    site["step"] = t["step"]
    site["time_h"] = t["time_h"]
    site["tumor"] = [0, 10, 40, 120, 500, 600]
    site["functional_lung"] = [800, 800, 790, 780, 700, 680]
    colonies = [colony(0, "distant", 600, 230.0), colony(1, "regional", 4, 190.0),
                colony(2, "local", 0, 20.0), colony(3, "distant", 50, 80.0)]
    sizes = [(s, 0, 10 + 100 * s, 20.0 + 40.0 * s) for s in range(6)]   # 0.2 mm at step 5
    sizes += [(s, 1, 4, 190.0) for s in range(6)]                       # never 0.2 mm
    sizes += [(s, 3, 50, 250.0 - 40.0 * s) for s in range(6)]           # measurable at baseline
    o = read_outcomes(write_run(tmp_path / "new.h5", t, site=site, colonies=colonies,
                                sizes=sizes))
    assert o.target_colonies == [3]
    assert o.sum_diameters_mm.tolist() == pytest.approx(
        [0.5 + (250 - 40 * s) / 1000 for s in range(6)], rel=1e-5)
    assert [(n["colony"], n["step"], n["class"]) for n in o.new_lesions] == [(0, 5, "distant")]
    assert o.progression["progressed"] and o.progression["reason"] == "new lesion"
    assert o.progression["step"] == 5 and o.progression["time_h"] == 10.0
    # burden per lattice and in total
    assert o.lattices[1].name == "lung_block"
    assert o.burden_cells.tolist() == (t["tumor"] + site["tumor"]).tolist()
    # functional tissue preserved per organ of each lattice
    fp = o.functional_preserved()
    assert fp == {"breast": 1.0, "muscle": 1.0, "lung_block/lung": pytest.approx(680 / 800)}
    # metastases by class, from the registry and the sizes over time
    m = o.metastases()
    assert m["distant"] == {"founded": 2, "alive": 2, "measurable": 1}
    assert m["regional"] == {"founded": 1, "alive": 1, "measurable": 0}
    assert m["local"] == {"founded": 1, "alive": 0, "measurable": 0}
    assert o.colonies_alive["distant"].tolist() == [2] * 6
    assert o.colonies_alive["local"].tolist() == [0] * 6


def test_therapy_record_totals(tmp_path):
    rows = [(3, 6.0, b"rt", b"radiotherapy", b"primary", k + 1, 3, 2.0, b"Gy")
            for k in range(3)]
    rows.append((4, 8.0, b"bev", b"anti_angiogenic", b"body", 1, 1, 10.0, b"mg/kg"))
    edits = [(4, 8.0, 0, b"reduce", b"rt", 0.5), (5, 10.0, 1, b"stop", b"bev", 1.0)]
    o = read_outcomes(write_run(tmp_path / "tx.h5", primary_counts([0.5] * 6), therapy=rows,
                                decisions=edits))
    assert [(d["step"], d["action"], d["therapy"]) for d in o.summary()["decisions"]] == \
           [(4, "reduce", "rt"), (5, "stop", "bev")]
    assert len(o.therapy) == 4 and o.therapy[0]["therapy"] == "rt"
    assert o.therapy_given() == {
        "rt": {"kind": "radiotherapy", "deliveries": 3, "total_dose": 6.0, "dose_unit": "Gy"},
        "bev": {"kind": "anti_angiogenic", "deliveries": 1, "total_dose": 10.0,
                "dose_unit": "mg/kg"}}


def test_kaplan_meier():
    xs, ys = kaplan_meier([2.0, 4.0, 4.0, 6.0], [True, False, True, False])
    assert xs.tolist() == [0.0, 2.0, 4.0]
    assert ys.tolist() == pytest.approx([1.0, 0.75, 0.5])      # 3/4, then × 2/3 at t = 4
    assert median_time(xs, ys) == 4.0
    xs, ys = kaplan_meier([5.0, 5.0], [False, False])
    assert ys.tolist() == [1.0] and median_time(xs, ys) is None


# -- the report's Outcomes section -----------------------------------------------------------

def test_report_has_an_outcomes_section_with_the_disclaimer(tmp_path):
    t = primary_counts([1.0, 0.8, 0.6, 0.5, 0.55, 0.59, 0.61, 0.7])
    t["irradiated_functional_killed"] = [0, 30, 0, 0, 0, 0, 0, 0]
    t["functional_breast"] = [1000, 970, 970, 970, 970, 970, 970, 970]
    path = write_run(tmp_path / "r.h5", t, decisions=[(4, 8.0, 0, b"reduce", b"rt", 0.5)])
    summary = report_html.write_report(path, tmp_path / "report")
    page = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="outcomes">'):]
    section = section[:section.index("</section>")]
    assert report_html.TREATMENT_DISCLAIMER in section
    for words in ("not a promise of cure", "decided individually by a physician",
                  "research tool, not clinical advice"):
        assert words in report_html.TREATMENT_DISCLAIMER
    assert "at 12 h (0.5 days, step 6): growth" in section
    assert "breast 0.9700" in section and "irradiated_functional_killed 30" in section
    assert 'id="outcomes"><img' in section
    assert "day 0.333: reduce rt × 0.5" in section
    assert summary["outcomes"]["progression"]["step"] == 6
    assert summary["outcomes"]["functional_preserved"]["breast"] == pytest.approx(0.97)
    assert (tmp_path / "report" / "outcomes.png").is_file()
    assert outcomes.RECIST.describe() in page.replace("&#x27;", "'")
