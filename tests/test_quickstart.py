"""The quickstart as a user runs it: an avascular nodule beyond its diffusion limit
loses its anoxic core, its hypoxic rim secretes VEGF, draws new capillaries from the
host network that connect to it, and grows while it displaces the breast; with
angiogenesis switched off the same nodule stays more hypoxic and ends smaller."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import anoxic_radius_um
from engine.scenario import load_scenario, parse_scenario
from engine.simulation import Simulation
from tools.runfile import RunFile


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The README's first command: summary and counts of the full quickstart."""
    tmp = tmp_path_factory.mktemp("quickstart")
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "quickstart", "--out", "q.h5",
                           "--summary", "q.json"], cwd=tmp, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stderr
    with RunFile(tmp / "q.h5") as run:
        assert run.status == "complete" and run.n_snapshots == 11   # daily + step 0
        counts = run.counts()
    return json.loads((tmp / "q.json").read_text()), counts


def test_quickstart_core_dies_and_the_rim_regrows_while_it_displaces_the_breast(quickstart):
    """The anoxic core is at least what constant uptake at the tumour's V_max leaves
    without oxygen when the nodule's surface sits at the vessels' pO2 (the least it can
    be: the surface pO2 is lower); it dies within the first day.  Then the viable rim
    grows every day, past the size the nodule started at."""
    summary, counts = quickstart
    assert summary["steps"] == 240 and summary["time_h"] == 240.0
    s = load_scenario("quickstart")
    core = anoxic_radius_um(s["tumor.seed_radius_um"], s["oxygen.vessel_mmHg"],
                            s["tumor.o2_vmax_mmHg_per_s"], s["oxygen.diffusion_um2_per_s"])
    daily = counts[::24]          # growth and loss are steady, not noise
    assert daily["necrotic"][0] == 0
    assert daily["necrotic"][1] > (core / s["tumor.seed_radius_um"]) ** 3 * daily["tumor"][0]
    assert (np.diff(daily["tumor"][1:]) > 0).all()
    assert daily["tumor"][-1] > daily["tumor"][0]
    assert summary["functional_fraction"] < 0.99
    assert (np.diff(daily["functional_breast"]) < 0).all()
    assert counts["compression_functional"].sum() > 0


def test_quickstart_vessel_growth_follows_tumour_hypoxia(quickstart):
    _, counts = quickstart
    threshold = load_scenario("quickstart")["angiogenesis.sprout_vegf_threshold_ng_per_mL"]
    hypoxic = np.flatnonzero(counts["hypoxic_tumor"] > 0)
    vegf_on = np.flatnonzero(counts["vegf_max_ng_per_mL"] >= threshold)
    sprouted = np.flatnonzero(counts["tip_sprouted"] > 0)
    joined = np.flatnonzero(counts["anastomosis"] > 0)
    assert len(hypoxic) and len(vegf_on) and len(sprouted) and len(joined)
    assert hypoxic[0] <= vegf_on[0] < sprouted[0] < joined[0]
    endothelium = counts["vessel"] + counts["sprout"] + counts["tip"]
    assert endothelium[-1] > endothelium[0] + 1000          # new capillaries, voxels
    assert counts["new_vessel_length_um"].sum() > 10_000    # µm of new vessel laid
    assert counts["perfused_fraction"][-1] > 0.99            # and they carry blood


def test_quickstart_tumour_grows_larger_with_angiogenesis_than_without(quickstart):
    """Angiogenesis feeds the tumour: it makes more cells (those in the lattice plus
    those shed into vessels) and fewer hypoxic ones; and its new, leaky vessels take up
    more of them (vessel invasion is faster into new vessels)."""
    _, with_angio = quickstart
    text = load_scenario("quickstart").text.replace("enabled = true", "enabled = false", 1)
    sim = Simulation(parse_scenario(text, "quickstart-no-angiogenesis"))
    assert not sim.angiogenesis
    sim_shed = 0
    for _ in range(240):
        row = sim.step()
        sim_shed += int(row["intravasated_blood"] + row["intravasated_lymph"])
    assert row["tip_sprouted"] == 0 and row["new_vessel_length_um"] == 0
    shed = sum(int(with_angio[e].sum()) for e in ("intravasated_blood", "intravasated_lymph"))
    shed_without = sim_shed
    assert with_angio["tumor"][-1] + shed > row["tumor"] + shed_without
    assert shed > shed_without
    assert with_angio["hypoxic_tumor"][-1] < 0.8 * row["hypoxic_tumor"]
