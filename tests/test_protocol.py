"""Protocols (engine/protocol.py): rules at check-ups that start, stop, reduce and switch
therapies, dose limits, protocol files, and what a run records of them."""
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import small_scenario_text
from engine.errors import ScenarioError
from engine.protocol import (QUANTITIES, Clinic, Decision, checkup_steps, decide, is_checkup,
                             rules_of, scenario_with_protocol, shipped_protocols,
                             with_decisions)
from engine.scenario import load_scenario, parse_scenario
from engine.therapy import deliveries

QUICKSTART = load_scenario("quickstart").text
THERAPIES = """
[[therapy]]
name = "rt"
kind = "radiotherapy"
start_h = 10.0
count = 6
interval_h = 24.0
dose_Gy = 2.0

[[therapy]]
name = "bev"
kind = "anti_angiogenic"
start_h = 5.0
count = 3
interval_h = 48.0
dose_mg_per_kg = 10.0
held = true
"""
RULES = """
[protocol]
name = "demo"
checkup_interval_h = 24.0

[[rule]]
when = "days >= 2"
then = "switch rt bev"
"""


def protocol_scenario(extra=THERAPIES + RULES):
    return parse_scenario(QUICKSTART + extra, "protocol.toml")


def schedule(s):
    return [(int(r["step"]), r["therapy"].decode(), float(r["dose"])) for r in deliveries(s)]


def test_a_held_therapy_waits_for_its_rule_and_decisions_edit_only_the_future():
    s = protocol_scenario()
    assert schedule(s) == [(10 + 24 * k, "rt", 2.0) for k in range(6)]
    stopped = with_decisions(s, [Decision(48, 0, "stop", "rt"), Decision(48, 0, "start", "bev")])
    assert schedule(stopped) == [(10, "rt", 2.0), (34, "rt", 2.0), (53, "bev", 10.0),
                                 (101, "bev", 10.0), (149, "bev", 10.0)]
    reduced = with_decisions(s, [Decision(30, 0, "reduce", "rt", 0.5)])
    assert schedule(reduced) == [(10, "rt", 2.0)] + [(10 + 24 * k, "rt", 1.0) for k in range(1, 6)]
    # a course started after a reduce carries the reduced dose; a restart begins a new course
    again = with_decisions(s, [Decision(30, 0, "reduce", "bev", 0.5), Decision(40, 0, "start", "bev"),
                               Decision(60, 0, "stop", "bev"), Decision(70, 0, "start", "bev")])
    bev = [row for row in schedule(again) if row[1] == "bev"]
    assert bev == [(45, "bev", 5.0), (75, "bev", 5.0), (123, "bev", 5.0), (171, "bev", 5.0)]


def test_max_cumulative_dose_drops_the_delivery_that_would_exceed_it_and_every_later_one():
    s = protocol_scenario(THERAPIES.replace("dose_Gy = 2.0", "dose_Gy = 2.0\nmax_cumulative = 7.0")
                          + RULES)
    assert schedule(s) == [(10, "rt", 2.0), (34, "rt", 2.0), (58, "rt", 2.0)]
    reduced = with_decisions(s, [Decision(40, 0, "reduce", "rt", 0.5)])
    assert [row[2] for row in schedule(reduced)] == [2.0, 2.0, 1.0, 1.0, 1.0]    # 7 Gy


def test_rules_fire_in_file_order_and_actions_that_change_nothing_are_dropped():
    s = protocol_scenario()
    measures = dict.fromkeys(QUANTITIES, 0.0) | {"days": 2.0, "given.rt": 2.0, "given.bev": 0.0}
    assert decide(s, 48, measures, running={"rt"}) == [Decision(48, 0, "stop", "rt"),
                                                       Decision(48, 0, "start", "bev")]
    assert decide(s, 72, measures, running={"bev"}) == []          # switched already
    assert decide(s, 24, measures | {"days": 1.0}, running={"rt"}) == []
    assert checkup_steps(s) == (24, 24)
    assert [is_checkup(s, t) for t in (23, 24, 36, 48)] == [False, True, False, True]
    assert str(rules_of(s)[0]) == "when days >= 2: switch rt bev"
    one = protocol_scenario(THERAPIES + RULES.replace('"switch rt bev"', '"reduce rt 0.5"')
                            + '\n[[rule]]\nwhen = "days > 5"\nthen = "start bev"\n'
                            + '\n[[rule]]\nwhen = "days > 6"\nthen = "stop rt"\n')
    assert decide(one, 168, measures | {"days": 7.0}, running={"rt"}) == [
        Decision(168, 0, "reduce", "rt", 0.5), Decision(168, 1, "start", "bev"),
        Decision(168, 2, "stop", "rt")]


@pytest.mark.parametrize("rule, key, words", [
    ('when = "tumour_size > 3"\nthen = "stop rt"', "rule[0].when", "unknown quantity \"tumour_size\""),
    ('when = "days >> 3"\nthen = "stop rt"', "rule[0].when", "is not a condition"),
    ('when = "days > 3"\nthen = "stop chemo"', "rule[0].then", "\"chemo\" is not a therapy"),
    ('when = "days > 3"\nthen = "reduce rt 1.5"', "rule[0].then", "in (0, 1)"),
    ('when = "days > 3"\nthen = "halve rt"', "rule[0].then", "expected start NAME"),
    ('when = "given.chemo > 3"\nthen = "stop rt"', "rule[0].when", "unknown quantity"),
])
def test_a_bad_rule_is_one_line_naming_its_key_and_line(rule, key, words):
    text = QUICKSTART + THERAPIES.replace("held = true", "held = false") + "\n[[rule]]\n" + rule + "\n"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "bad.toml")
    message = str(err.value)
    line = 1 + text.splitlines().index(rule.splitlines()[0 if key.endswith("when") else 1])
    assert message.startswith(f"bad.toml:{line}: ") and words in message and "\n" not in message


def test_a_held_therapy_no_rule_starts_is_refused():
    with pytest.raises(ScenarioError, match=r"therapy\[1\] \"bev\" is held .* no rule starts it"):
        protocol_scenario(THERAPIES)


def test_a_protocol_file_replaces_the_scenarios_therapies_and_its_errors_name_that_file(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(small_scenario_text(16) + THERAPIES.replace("held = true", ""))
    proto = tmp_path / "proto.toml"
    proto.write_text(THERAPIES + RULES)
    s = scenario_with_protocol(str(base), str(proto))
    assert s.protocol["name"] == "demo" and len(s.therapies) == 2 and s.therapies[1]["held"]
    assert scenario_with_protocol(str(base), "untreated").therapies == []
    proto.write_text(THERAPIES + RULES.replace('"days >= 2"', '"dayz >= 2"'))
    with pytest.raises(ScenarioError, match=r"proto\.toml:\d+: rule\[0\]\.when: unknown quantity"):
        scenario_with_protocol(str(base), str(proto))
    proto.write_text("[lattice]\nvoxel_um = 10.0\n")
    with pytest.raises(ScenarioError, match=r"proto\.toml:1: 'lattice' cannot be in a protocol"):
        scenario_with_protocol(str(base), str(proto))
    with pytest.raises(ScenarioError, match="no such file or shipped protocol"):
        scenario_with_protocol(str(base), "no_such_protocol")


def test_every_shipped_protocol_reads_says_what_it_is_modelled_on_and_carries_the_caveat():
    """Each reads against breast_metastasis, except an immunotherapy protocol: it acts on
    T cells, which breast_metastasis leaves off (immune.enabled = false), so it reads
    against immune_quickstart and is refused against breast_metastasis in one line."""
    import tomllib
    from engine.protocol import find_protocol
    from kernels.immunotherapy import KINDS as IMMUNOTHERAPY_KINDS
    names = shipped_protocols()
    assert {"breast_weekly_paclitaxel", "breast_adaptive_paclitaxel_bevacizumab",
            "immunotherapy_pembrolizumab"} <= set(names)
    for name in names:
        kinds = {t["kind"] for t in tomllib.loads(find_protocol(name)[1]).get("therapy", [])}
        base = "breast_metastasis"
        if kinds & set(IMMUNOTHERAPY_KINDS):
            with pytest.raises(ScenarioError, match=r"therapy\[0\]\.kind = .* immune\.enabled"):
                scenario_with_protocol(base, name)
            base = "immune_quickstart"
        s = scenario_with_protocol(base, name)
        assert s.therapies and s.protocol["modelled_on"] and s.protocol["name"] == name, name
        assert "not clinical advice" in s.protocol_text, name
        assert deliveries(s).size, name


def test_a_run_measures_at_check_ups_decides_and_records_it(tmp_path):
    """A rule switches radiotherapy for the held anti-angiogenic drug at the first
    check-up after day 2: no fraction is given after it, the drug's doses follow, and the
    run file holds the check-ups' measures and the decisions."""
    text = small_scenario_text(20) + THERAPIES.replace("start_h = 10.0", "start_h = 1.0") + RULES
    text = text.replace("snapshot_every_steps = 24", "snapshot_every_steps = 100")
    path = tmp_path / "adaptive.toml"
    path.write_text(text)
    out = tmp_path / "adaptive.h5"
    done = subprocess.run([sys.executable, "-m", "engine", "run", str(path), "--steps", "80",
                           "--out", str(out), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with h5py.File(out) as f:
        checkups, decisions, record = f["checkups"][:], f["decisions"][:], f["therapy"][:]
        counts = f["counts"][:]
    assert list(checkups["step"]) == [24, 48, 72]
    assert list(checkups["days"]) == [1.0, 2.0, 3.0]
    assert not checkups["immune_status"].any()          # immunity not modelled here
    assert checkups["burden_cells"][0] == counts["tumor"][24] + counts["dormant"][24]
    assert [(d["step"], d["action"], d["therapy"]) for d in decisions] == [
        (48, b"stop", b"rt"), (48, b"start", b"bev")]
    given = [(int(r["step"]), r["therapy"].decode()) for r in record]
    assert given == [(1, "rt"), (25, "rt"), (53, "bev")]
    fractions = counts["irradiated_tumor_killed"] + counts["irradiated_functional_killed"]
    assert fractions[1] > 0 and fractions[25] > 0 and not fractions[49:].any()
    assert counts["vessel_pruned"][53:].sum() >= 0 and not np.isnan(checkups["toxicity"]).any()
    assert checkups["toxicity"][0] > 0        # the first fraction killed functional cells


def test_the_clinic_counts_harm_from_every_functional_killed_column():
    s = load_scenario("quickstart")
    row = np.zeros((), dtype=[("tumor", int), ("dormant", int), ("functional", int),
                              ("irradiated_functional_killed", int), ("chemo_killed_functional", int),
                              ("irradiated_tumor_killed", int), ("functional_fraction", float)])
    row["functional"], row["tumor"] = 1000, 10
    clinic = Clinic(s, [row])
    row["irradiated_functional_killed"], row["chemo_killed_functional"] = 3, 4
    row["irradiated_tumor_killed"] = 100

    class Body:
        rows = [row]
        step_index = 5
        scenario = s
    clinic.after_step(Body)
    assert clinic.harm == 7


def test_overlapping_schedules_of_one_drug_are_refused_naming_the_later_start():
    two = THERAPIES.replace("held = true", "") + THERAPIES.split("[[therapy]]")[2].replace(
        '"bev"', '"bev2"').replace("held = true", "").join(["[[therapy]]", ""])
    with pytest.raises(ScenarioError, match=r"therapy\[2\] \"bev2\" doses anti_angiogenic at "
                                            r"step 5, as \"bev\" does: overlapping"):
        protocol_scenario(two)


def test_check_prints_the_rules_and_the_dose_limit_cut(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(QUICKSTART + THERAPIES.replace("dose_Gy = 2.0", "dose_Gy = 2.0\nmax_cumulative = 7.0")
                    + RULES)
    done = subprocess.run([sys.executable, "-m", "engine", "check", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "rt: 3 of 6 deliveries: the next would exceed max_cumulative = 7 Gy" in done.stdout
    assert "check-ups every 1 days from day 1 (step 24, then every 24 steps)" in done.stdout
    assert "rule[0]: when days >= 2: switch rt bev" in done.stdout
    assert "held until a rule starts them: bev" in done.stdout
