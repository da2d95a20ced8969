"""The therapy schedule (engine/therapy.py): [[therapy]] tables, their checks, and the
schedule `oncolattice check` prints."""
import subprocess
import sys

import pytest

from engine.errors import ScenarioError
from engine.scenario import load_scenario, parse_scenario
from engine.therapy import delivery_steps, schedule_lines

QUICKSTART = load_scenario("quickstart").text
RT = """
[[therapy]]
name = "rt"
kind = "radiotherapy"
start_h = 48.0
count = 5
interval_h = 24.0
dose_Gy = 2.0
region = "sphere"
radius_um = 400.0
"""


def scenario(extra=RT, base=QUICKSTART):
    return parse_scenario(base + extra, "therapy.toml")


def test_deliveries_fall_at_start_plus_k_intervals():
    s = scenario()
    therapy = s.therapies[0]
    assert delivery_steps(therapy, 1.0) == [48, 72, 96, 120, 144]
    assert delivery_steps(therapy, 0.5) == [96, 144, 192, 240, 288]
    assert delivery_steps(dict(therapy, start_h=0.0, count=1), 1.0) == [1]   # the first step


def test_schedule_lines_in_time_order_and_past_the_end_marked():
    two = RT + RT.replace('name = "rt"', 'name = "boost"').replace("start_h = 48.0",
                                                                   "start_h = 50.0")
    lines = schedule_lines(scenario(two), steps=100)
    assert len(lines) == 10
    steps = [int(line.split()[1]) for line in lines]
    assert steps == sorted(steps)
    assert sum("not given" in line for line in lines) == 4          # 120, 122, 144, 146
    assert "rt 1/5" in lines[0] and "boost 1/5" in lines[1]


def test_resolved_scenario_keeps_the_therapy():
    s = scenario()
    again = parse_scenario(s.resolved_toml(), "resolved.toml")
    assert again.therapies == s.therapies


@pytest.mark.parametrize("change, key", [
    (lambda t: t.replace('kind = "radiotherapy"', 'kind = "surgery"'), "therapy[0].kind"),
    (lambda t: t.replace("dose_Gy = 2.0", "dose_Gy = 80.0"), "therapy[0].dose_Gy"),
    (lambda t: t.replace("dose_Gy = 2.0", "dose_Gy = 0.0"), "therapy[0].dose_Gy"),
    (lambda t: t.replace("dose_Gy = 2.0\n", ""), "therapy[0].dose_Gy"),
    (lambda t: t.replace("radius_um = 400.0\n", ""), "therapy[0].radius_um"),
    (lambda t: t.replace("count = 5", "count = 0"), "therapy[0].count"),
    (lambda t: t.replace("interval_h = 24.0", "interval_h = 0.0"), "therapy[0].interval_h"),
    (lambda t: t + 'lattice = "liver"\n', "therapy[0].lattice"),
    (lambda t: t + "dose_mg = 3\n", "therapy[0].dose_mg"),
    (lambda t: t + t, "therapy[1].name"),
    (lambda t: t.replace('region = "sphere"', 'region = "box"'), "box_from_um"),
])
def test_bad_therapy_is_one_line_naming_the_key(change, key):
    with pytest.raises(ScenarioError) as err:
        scenario(change(RT))
    assert key in str(err.value) and "\n" not in str(err.value)


def test_check_prints_the_schedule(tmp_path):
    path = tmp_path / "rt.toml"
    path.write_text(QUICKSTART + RT)
    done = subprocess.run([sys.executable, "-m", "engine", "check", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    schedule = done.stdout.split("therapy schedule (as it will run):\n")[1].splitlines()[:5]
    assert [line.split()[1] for line in schedule] == ["48", "72", "96", "120", "144"]
    assert all("radiotherapy on primary (sphere r = 400 µm), dose_Gy = 2" in line
               for line in schedule)


def test_the_run_records_every_delivery_given(tmp_path):
    """/therapy in the run file and `therapy` in the summary list the deliveries made
    within the run, in time order."""
    import json

    import h5py

    from conftest import small_scenario_text
    path = tmp_path / "rt.toml"
    path.write_text(small_scenario_text(16) + RT.replace("start_h = 48.0", "start_h = 2.0")
                    .replace("interval_h = 24.0", "interval_h = 3.0"))
    out, summary = tmp_path / "rt.h5", tmp_path / "rt.json"
    done = subprocess.run([sys.executable, "-m", "engine", "run", str(path), "--steps", "9",
                           "--out", str(out), "--summary", str(summary), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as f:
        record = f["therapy"][...]
    assert list(record["step"]) == [2, 5, 8] and list(record["delivery"]) == [1, 2, 3]
    assert set(record["dose"]) == {2.0} and set(record["dose_unit"]) == {b"Gy"}
    given = json.loads(summary.read_text())["therapy"]
    assert [g["step"] for g in given] == [2, 5, 8] and given[0]["therapy"] == "rt"
    # the report lists the record, with the research-tool caveat
    from tools.report_html import write_report
    report = write_report(out, tmp_path / "report")
    assert [g["step"] for g in report["therapy"]] == [2, 5, 8]
    page = (tmp_path / "report" / "index.html").read_text()
    section = page.split('<section id="therapy">')[1].split("</section>")[0]
    assert section.count("<td>rt</td>") == 3 and "3/5" in section and "2 Gy" in section
    assert "not a promise of cure" in section
