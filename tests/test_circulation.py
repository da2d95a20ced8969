"""The circulation (engine/circulation.py): blood clearance, arrest beds, organotropism,
extravasation, the lymph chain, bookkeeping and determinism."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.circulation import (ARRESTED, ARRESTED_ELSEWHERE, BLOOD, BLOOD_FLOW, DEAD,
                                EXTRAVASATED, FAILED, IN_BLOOD, IN_LYMPH, LYMPH,
                                ORGANOTROPISM, PARAMS, STREAM_CIRCULATION, Circulation, Site,
                                counts_dtype)
from engine.errors import ScenarioError
from engine.scenario import SCHEMA, parse_scenario
from kernels.lattice import N_TRAITS
from kernels.philox import philox4x32_numpy, probability_threshold, seed_key
from conftest import small_scenario_text

KEY = seed_key(12345)
LUNG, LIVER, BONE = Site("lung", "lung", 1), Site("liver", "liver", 2), Site("bone", "bone", 3)
NODE_A = Site("axillary_node", "lymph_node", 4, "level2_node")
NODE_B = Site("level2_node", "lymph_node", 5, "blood")
FAST = 1e-3            # a half-life so short that every unit is cleared at its first step


def departures(n_single=0, clusters=(), route=BLOOD, z0=0):
    """Single cells then clusters (sizes), each cell at its own voxel."""
    sizes = [1] * n_single + list(clusters)
    n = sum(sizes)
    d = np.zeros(n, [("z", np.int32), ("y", np.int32), ("x", np.int32), ("route", np.uint8),
                     ("vessel", np.uint8), ("lineage", np.uint16), ("traits", np.uint8, (N_TRAITS,)),
                     ("cluster", np.int32), ("cluster_size", np.int32)])
    i = np.arange(n)
    d["z"], d["y"], d["x"] = z0 + i // 10000, (i // 100) % 100, i % 100
    d["route"] = route
    d["lineage"] = i % 7
    d["traits"] = np.stack([(i + 2 * t) % 16 for t in range(N_TRAITS)], axis=1)
    d["cluster"] = np.repeat(np.arange(len(sizes)), sizes)
    d["cluster_size"] = np.repeat(sizes, sizes)
    return d


def make(sites=(LUNG,), key=KEY, step_h=1.0, **params):
    return Circulation(params, list(sites), key, step_h)


def binomial_ok(k, n, p, sigmas=5.0):
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p)) + 1


def systemic_share(primary, organ):
    """W_o / ΣW: the chance a unit that passed every bed arrests in `organ`."""
    w = {o: BLOOD_FLOW[o] * ORGANOTROPISM[primary][o] for o in BLOOD_FLOW}
    return w[organ] / sum(w.values())


def run(circ, steps, start=0, audit=True):
    arrivals = []
    for s in range(start, start + steps):
        arrivals += circ.advance(s)
        if audit:
            circ.audit()
    return arrivals


# -- blood ----------------------------------------------------------------------------------

def test_ctcs_in_blood_decay_with_the_half_life():
    """arrest_fraction 0: every cleared cell dies, so the blood holds N·2^(−t/t½)."""
    n, half = 20000, 1.7
    circ = make(arrest_fraction=0.0, ctc_half_life_h=half)
    circ.enter(0, departures(n), "breast")
    for s in range(8):
        circ.advance(s)
        left = circ.counts()["in_blood"]
        expected = 2.0 ** (-(s + 1) / half)
        assert binomial_ok(left, n, expected), (s, left / n, expected)
        assert circ.counts()["died_in_blood"] > 0
    assert (circ.records["state"] != ARRESTED).all()


def test_step_length_enters_the_clearance():
    """Half-hour steps: twice as many steps for the same decay."""
    n = 20000
    circ = make(arrest_fraction=0.0, ctc_half_life_h=2.0, step_h=0.5)
    circ.enter(0, departures(n), "breast")
    run(circ, 8)
    assert binomial_ok(circ.counts()["in_blood"], n, 0.25)


def test_clusters_are_retained_more_than_single_cells_at_the_first_bed():
    r, n_units = 0.4, 8000
    circ = make(arrest_fraction=1.0, ctc_half_life_h=FAST, first_bed_retention=r)
    circ.enter(0, departures(n_units, [3] * n_units), "breast")
    circ.advance(0)
    rec = circ.records
    leads = rec[rec["id"] == rec["unit"]]
    in_lung = (leads["state"] == ARRESTED) & (leads["where"] == 0)
    single, cluster = leads["cluster_size"] == 1, leads["cluster_size"] == 3
    p1, p3 = in_lung[single].mean(), in_lung[cluster].mean()
    bronchial = systemic_share("breast", "lung")       # a unit passing the bed may return
    for mask, r_n in ((single, r), (cluster, 1 - (1 - r) ** 3)):
        assert binomial_ok(in_lung[mask].sum(), n_units, r_n + (1 - r_n) * bronchial)
    assert p3 > p1 + 0.2
    # a cluster arrests as one unit: its cells share state and place
    assert circ.counts()["arrested_lung"] == in_lung[single].sum() + 3 * in_lung[cluster].sum()


def test_first_bed_is_the_liver_for_colorectal_and_the_lung_for_breast():
    for primary, bed in (("breast", 0), ("colorectal", 1)):
        circ = make((LUNG, LIVER), arrest_fraction=1.0, ctc_half_life_h=FAST,
                    first_bed_retention=1.0, primary_type=primary)
        circ.enter(0, departures(2000, [2] * 200), "primary")
        circ.advance(0)
        rec = circ.records
        assert (rec["state"] == ARRESTED).all()
        assert (rec["where"] == bed).all(), primary


def test_colorectal_cells_passing_the_liver_meet_the_lungs_next():
    """Two beds in series: liver r, then lung (1 − r) r, then the systemic draw."""
    r, n = 0.5, 20000
    circ = make((LUNG, LIVER), arrest_fraction=1.0, ctc_half_life_h=FAST,
                first_bed_retention=r, primary_type="colorectal")
    circ.enter(0, departures(n), "colon")
    circ.advance(0)
    counts = circ.counts()
    share = {o: systemic_share("colorectal", o) for o in BLOOD_FLOW}
    rest = (1 - r) ** 2
    assert binomial_ok(counts["arrested_liver"], n, r + rest * share["liver"])
    assert binomial_ok(counts["arrested_lung"], n, (1 - r) * r + rest * share["lung"])
    assert binomial_ok(counts["arrested_elsewhere"], n,
                       rest * (1 - share["liver"] - share["lung"]))


def test_a_metastasis_and_the_lymph_feed_the_lungs_first_even_for_colorectal():
    circ = make((LUNG, LIVER), arrest_fraction=1.0, ctc_half_life_h=FAST,
                first_bed_retention=1.0, primary_type="colorectal", lymph_transit_h=FAST)
    circ.enter(0, departures(300), "liver")                   # a site: hepatic veins
    circ.enter(0, departures(300, route=LYMPH, z0=5), "colon")  # thoracic duct
    run(circ, 3)
    assert (circ.records["where"] == 0).all()


def test_systemic_arrests_follow_flow_times_affinity_and_absent_organs_go_elsewhere():
    n = 40000
    circ = make((LUNG, LIVER, BONE), arrest_fraction=1.0, ctc_half_life_h=FAST,
                first_bed_retention=0.0, primary_type="breast")
    circ.enter(0, departures(n), "breast")
    circ.advance(0)
    w = {o: BLOOD_FLOW[o] * ORGANOTROPISM["breast"][o] for o in BLOOD_FLOW}
    total = sum(w.values())
    counts = circ.counts()
    for organ in ("lung", "liver", "bone"):
        assert binomial_ok(counts[f"arrested_{organ}"], n, w[organ] / total), organ
    rest = 1 - (w["lung"] + w["liver"] + w["bone"]) / total
    assert binomial_ok(counts["arrested_elsewhere"], n, rest)
    rec = circ.records
    gone = rec[rec["state"] == ARRESTED_ELSEWHERE]
    assert len(gone) == counts["arrested_elsewhere"] and (gone["where"] == -1).all()
    named = {circ.locations[c] for c in gone["path"][:, 1]}
    assert "elsewhere:bone_marrow" in named and all(c.startswith("elsewhere:") for c in named)
    # breast favours bone (SEER): more arrests in bone than in the far better perfused liver
    assert counts["arrested_bone"] > counts["arrested_liver"]


def test_affinities_reproduce_the_site_frequency_ratios():
    for primary, row in (("breast", ("bone", 39.8, "liver", 7.3)),
                         ("melanoma", ("lung", 71.3, "brain", 49.1))):
        a, fa, b, fb = row
        A = ORGANOTROPISM[primary]
        qa = BLOOD_FLOW[a] + (BLOOD_FLOW["bone_marrow"] if a == "bone" else 0)
        wa = qa * A[a]
        assert wa / (BLOOD_FLOW[b] * A[b]) == pytest.approx(fa / fb)
    assert sum(BLOOD_FLOW.values()) == pytest.approx(1.0)


# -- extravasation ----------------------------------------------------------------------------

def test_most_arrested_survivors_extravasate_within_a_day_at_the_default():
    n = 5000
    circ = make(ctc_half_life_h=FAST, arrest_fraction=1.0, first_bed_retention=1.0)
    circ.enter(0, departures(n), "breast")
    circ.advance(0)
    assert circ.counts()["arrested"] == n
    arrivals = run(circ, 24, start=1)
    rec = circ.records
    out = (rec["state"] == EXTRAVASATED).sum()
    still = (rec["state"] == ARRESTED).sum()
    assert out == len(arrivals)
    assert out / (out + still) >= 0.8
    k_ex, k_d = PARAMS["extravasation_per_h"].default, PARAMS["arrested_death_per_h"].default
    k = k_ex + k_d
    assert binomial_ok(out, n, k_ex / k * (1 - math.exp(-24 * k)))
    assert binomial_ok((rec["state"] == DEAD).sum(), n, k_d / k * (1 - math.exp(-24 * k)))


def test_an_extravasating_cluster_yields_one_arrival_per_cell():
    circ = make(ctc_half_life_h=FAST, arrest_fraction=1.0, first_bed_retention=1.0,
                extravasation_per_h=1e3, arrested_death_per_h=0.0)
    circ.enter(0, departures(1, [4, 2]), "breast")
    circ.advance(0)
    arrivals = circ.advance(1)
    assert [a.record_id for a in arrivals] == list(range(7))
    assert [a.cluster_size for a in arrivals] == [1, 4, 4, 4, 4, 2, 2]
    assert all(a.site == "lung" for a in arrivals)
    rec = circ.records
    assert [a.lineage for a in arrivals] == rec["lineage"].tolist()
    assert arrivals[3].traits == tuple(int(t) for t in rec["traits"][3])
    # the body places some and cannot place others
    circ.settled(1, 0, "lung", 1234)
    circ.fail_arrival(1, 1, "no room")
    counts = circ.counts()
    assert counts["settled"] == 1 and counts["failed"] == 1 and counts["extravasated"] == 7
    circ.audit()
    assert circ.records["voxel"][0] == 1234 and circ.records["state"][1] == FAILED
    assert circ.fail_reasons[circ.records["fail_reason"][1] - 1] == "no room"
    with pytest.raises(ValueError, match="already settled"):
        circ.settled(1, 0, "lung", 99)
    with pytest.raises(ValueError, match="not 'liver'"):
        circ.settled(1, 2, "liver", 99)


# -- lymph ------------------------------------------------------------------------------------

def lymph_run(retention, n=2000, steps=40):
    circ = make((LUNG, NODE_A, NODE_B), sentinel_node="axillary_node", node_retention=retention,
                lymph_transit_h=2.0, arrest_fraction=1.0, ctc_half_life_h=1e3)
    circ.enter(0, departures(n - 30, [3] * 10, route=LYMPH), "breast")
    circ.totals = {}
    for step in range(steps):
        circ.advance(step)
        circ.audit()
        for k, v in circ.counts().items():
            circ.totals[k] = circ.totals.get(k, 0) + v
    return circ


def test_with_no_node_retention_every_lymph_cell_reaches_the_blood_along_the_chain():
    circ = lymph_run(0.0)
    rec = circ.records
    assert (rec["state"] != IN_LYMPH).all()
    code = {name: i for i, name in enumerate(circ.locations)}
    chain = [code["lymph"], code["axillary_node"], code["level2_node"], code["blood"]]
    assert (rec["path"][:, :4] == chain).all()
    # since then, in the blood (t½ 1000 h) or arrested after it: nowhere else
    stayed = rec["state"] == IN_BLOOD
    assert stayed.mean() > 0.9 and (rec["path_len"][stayed] == 4).all()
    assert (rec["path"][stayed, 4:] == -1).all()
    assert circ.counts()["in_lymph"] == 0
    assert circ.totals["node_passed"] == 2 * len(rec) and circ.totals["node_retained"] == 0
    assert circ.totals["to_blood_from_lymph"] == len(rec)


def test_with_full_node_retention_every_lymph_cell_stops_at_the_sentinel():
    circ = lymph_run(1.0, steps=60)
    rec = circ.records
    assert np.isin(rec["state"], (ARRESTED, EXTRAVASATED, DEAD)).all()
    assert (rec["where"] == 1).all()
    assert (rec["path_len"] == 2).all()
    assert circ.totals["node_retained"] == len(rec) and circ.totals["node_passed"] == 0


def test_lymph_transit_takes_the_declared_mean_time():
    n, tau = 20000, 3.0
    circ = make((LUNG, NODE_A, NODE_B), sentinel_node="axillary_node", node_retention=1.0,
                lymph_transit_h=tau, extravasation_per_h=0.0, arrested_death_per_h=0.0)
    circ.enter(0, departures(n, route=LYMPH), "breast")
    for s in range(3):
        circ.advance(s)
    p = 1 - math.exp(-1 / tau)
    assert binomial_ok(circ.counts()["arrested"], n, 1 - (1 - p) ** 3)


def test_no_sentinel_node_sends_the_lymph_to_the_blood():
    circ = make((LUNG,), lymph_transit_h=FAST, ctc_half_life_h=1e3)
    circ.enter(0, departures(500, route=LYMPH), "breast")
    circ.advance(0)
    assert circ.counts()["to_blood_from_lymph"] == 500
    assert (circ.records["state"] == IN_BLOOD).all()


def test_the_body_must_name_a_valid_lymph_chain():
    with pytest.raises(ValueError, match="not a lymph-node site"):
        make((LUNG,), sentinel_node="lung")
    with pytest.raises(ValueError, match="loop"):
        make((Site("a", "lymph_node", 1, "b"), Site("b", "lymph_node", 2, "a")))
    with pytest.raises(ValueError, match="drains_to"):
        make((Site("a", "lymph_node", 1, "nowhere"),))
    with pytest.raises(ValueError, match="one site per organ"):
        make((LUNG, Site("lung2", "lung", 2)))
    with pytest.raises(ValueError, match="organ"):
        make((Site("x", "spleen", 1),))


# -- bookkeeping ------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**64 - 1),
       arrest=st.floats(0, 1), retention=st.floats(0, 1), node=st.floats(0, 1),
       half=st.floats(0.01, 5), transit=st.floats(0.01, 5), k_ex=st.floats(0, 2),
       k_d=st.floats(0, 2), colorectal=st.booleans(), sentinel=st.booleans(),
       plan=st.lists(st.tuples(st.integers(0, 30), st.lists(st.integers(2, 5), max_size=4),
                               st.booleans(), st.integers(0, 3)),
                     min_size=1, max_size=12))
def test_bookkeeping_balances_after_every_step_of_a_random_run(
        seed, arrest, retention, node, half, transit, k_ex, k_d, colorectal, sentinel, plan):
    sites = (LUNG, LIVER, NODE_A, NODE_B)
    circ = Circulation({"arrest_fraction": arrest, "first_bed_retention": retention,
                        "node_retention": node, "ctc_half_life_h": half,
                        "lymph_transit_h": transit, "extravasation_per_h": k_ex,
                        "arrested_death_per_h": k_d,
                        "primary_type": "colorectal" if colorectal else "breast",
                        "sentinel_node": "axillary_node" if sentinel else ""},
                       list(sites), seed_key(seed), 1.0)
    totals = {}
    for step, (singles, clusters, lymph, fails) in enumerate(plan):
        if singles or clusters:
            circ.enter(step, departures(singles, clusters, LYMPH if lymph else BLOOD,
                                        z0=step), "primary" if step % 3 else "liver")
        for i, a in enumerate(circ.advance(step)):
            if i < fails:
                circ.fail_arrival(step, a.record_id, "no room")
            else:
                circ.settled(step, a.record_id, a.site, 100 + a.record_id)
        circ.audit()
        c = circ.counts()
        assert c["step"] == step
        for k, v in c.items():
            totals[k] = totals.get(k, 0) + v
    rec = circ.records
    assert totals["entered_blood"] + totals["entered_lymph"] == len(rec)
    assert c["ctc_per_7_5_mL"] == pytest.approx(c["in_blood"] * 7.5 / 5000.0)
    row = circ.counts_row()
    assert row.dtype == counts_dtype(sites) and row["in_blood"] == c["in_blood"]


def test_audit_catches_a_broken_record_and_an_unbalanced_step():
    circ = make(ctc_half_life_h=FAST)
    circ.enter(0, departures(50, [3]), "breast")
    circ.advance(0)
    circ.audit()
    circ.records["state"][0] = 9
    with pytest.raises(RuntimeError, match="valid state"):
        circ.audit()
    circ.records["state"][0] = DEAD          # a death no event recorded
    circ.records["fate_step"][0] = 0
    with pytest.raises(RuntimeError, match="this step's events"):
        circ.audit()


def test_counts_table_has_fixed_columns():
    dtype = counts_dtype((LUNG, LIVER, NODE_A, NODE_B))
    assert dtype.names[:5] == ("step", "entered_blood", "entered_lymph", "clusters_entered",
                               "died_in_blood")
    assert "arrested_lung" in dtype.names and "arrested_axillary_node" not in dtype.names
    assert dtype["ctc_per_7_5_mL"] == np.float64
    circ = make((LUNG, LIVER, NODE_A, NODE_B))
    assert tuple(circ.counts()) == dtype.names


def test_the_growable_records_keep_every_cell():
    circ = make()
    for step in range(5):
        circ.enter(step, departures(50, [3, 4], z0=step), "breast")
        circ.advance(step)
    assert len(circ.records) == 5 * 57 and (circ.records["id"] == np.arange(285)).all()
    assert set(np.unique(circ.records["entered_step"])) == set(range(5))


# -- determinism ------------------------------------------------------------------------------

def test_the_order_of_departure_rows_does_not_change_the_records():
    d = departures(300, [2, 3, 4, 5])
    d["route"][:100] = LYMPH
    d["route"][d["cluster_size"] == 4] = LYMPH
    sites = (LUNG, LIVER, NODE_A, NODE_B)
    results = []
    for order in (np.arange(len(d)), np.random.default_rng(7).permutation(len(d))):
        circ = make(sites, sentinel_node="axillary_node")
        circ.enter(0, d[order], "breast", shape=(10, 100, 100))
        run(circ, 30)
        results.append(circ.records.copy())
    assert results[0].tobytes() == results[1].tobytes()
    assert (results[0]["origin_voxel"] >= 0).all()


def test_a_different_seed_gives_different_fates():
    def fates(key):
        circ = make((LUNG, LIVER), key=key)
        circ.enter(0, departures(500), "breast")
        run(circ, 10, audit=False)
        return circ.records
    assert fates(seed_key(1)).tobytes() == fates(seed_key(1)).tobytes()
    assert fates(seed_key(1)).tobytes() != fates(seed_key(2)).tobytes()


def test_a_blood_decision_is_the_documented_philox_draw():
    """Counter (unit id low, step, stream | location << 8, unit id high), key the seed."""
    circ = make(arrest_fraction=0.5, ctc_half_life_h=1.0, key=KEY)
    circ.enter(3, departures(200), "breast")
    circ.advance(3)
    w0 = philox4x32_numpy((np.arange(200), 3, STREAM_CIRCULATION, 0), KEY)[0].astype(np.uint64)
    p = 1 - 2 ** -1.0
    arrest, clear = probability_threshold(p * 0.5), probability_threshold(p)
    state = circ.records["state"]
    assert ((state == DEAD) == ((w0 >= arrest) & (w0 < clear))).all()
    assert ((state == IN_BLOOD) == (w0 >= clear)).all()


# -- scenario ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("arrest_fraction", "1.5", "out of range"),
    ("first_bed_retention", "-0.1", "out of range"),
    ("node_retention", "2", "out of range"),
    ("primary_type", '"pancreas"', "is not one of"),
    ("sentinel_node", '"not a name!"', "not allowed"),
    ("ctc_half_life_h", "0.0", "out of range"),
])
def test_scenario_refuses_bad_circulation_values(key, value, message):
    text = small_scenario_text()
    lines = [ln for ln in text.splitlines() if ln.startswith(f"{key} = ")]
    assert len(lines) == 1
    bad = text.replace(lines[0], f"{key} = {value}")
    with pytest.raises(ScenarioError, match=f"circulation.{key}.*{message}"):
        parse_scenario(bad, "bad.toml")


def test_circulation_parameters_join_the_schema_with_their_defaults():
    s = parse_scenario(small_scenario_text(), "small.toml")
    assert set(s.values["circulation"]) == set(SCHEMA["circulation"]) == set(PARAMS)
    assert s["circulation.primary_type"] == "breast"
    circ = Circulation(s.values["circulation"], [LUNG], seed_key(s["scenario.seed"]),
                       s["time.step_h"])
    assert circ.params == s.values["circulation"]
    for name, p in PARAMS.items():
        if name.endswith(("_fraction", "_retention")):
            assert (p.lo, p.hi) == (0.0, 1.0), name
