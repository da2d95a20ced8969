"""Issue 10: scenario input that once passed `check` and then failed inside `run`, hung,
or crashed `check` itself.  Each is now refused at load with one printable line naming
the file, the dotted key (or the line) and the value."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from engine.errors import ScenarioError
from engine.rules import build_rules
from engine.scenario import find_line, parse_scenario
from engine.tissue import build_tissue
from engine.vasculature import widen_in_yz
from kernels.process import MAX_STEPS, float32_of, steps_of
from conftest import small_scenario_text

SMALL = small_scenario_text(16, seed_radius_um=40.0)     # 16³ voxels of 20 µm


def edit(text, old, new):
    assert text.count(old) == 1, old
    return text.replace(old, new)


def refused(text, *needles):
    """The one-line, printable, short ScenarioError of `text`, checked for `needles`."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.toml")
    message = str(info.value)
    assert message.startswith("bad.toml"), message
    assert message.isprintable() and len(message) < 400, repr(message)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


CASES = [
    ("organ-named-fraction", 'name = "breast"', 'name = "fraction"', ["organs[0].name", "fraction"]),
    ("organ-named-none", 'name = "pectoral_muscle"', 'name = "none"', ["organs[1].name", "none"]),
    ("organ-name-nul", 'name = "breast"', 'name = "bre\\u0000ast"', ["organs[0].name", "\\u0000"]),
    ("organ-name-space", 'name = "breast"', 'name = "left breast"', ["organs[0].name"]),
    ("organ-name-empty", 'name = "breast"', 'name = ""', ["organs[0].name"]),
    ("scenario-name-300", 'name = "quickstart"', 'name = "' + "n" * 300 + '"', ["scenario.name"]),
    ("scenario-name-escape", 'name = "quickstart"', 'name = "\\u001b[2J"', ["scenario.name"]),
    ("branch-age-int64", "branch_age_h = 18.0", "branch_age_h = 9223372036854775807",
     ["angiogenesis.branch_age_h", "9223372036854775807"]),
    ("seed-radius-1e300", "seed_radius_um = 40.0", "seed_radius_um = 1e300", ["tumor.seed_radius_um"]),
    ("step-denormal", "step_h = 1.0 ", "step_h = 1e-310 ", ["time.step_h", "1e-310"]),
    ("chemotaxis-1e308", "chemotaxis_mL_per_ng = 200.0", "chemotaxis_mL_per_ng = 1.7e308",
     ["angiogenesis.chemotaxis_mL_per_ng"]),
    ("secretion-1e308", "tumor_secretion_ng_per_mL_per_h = 20.0",
     "tumor_secretion_ng_per_mL_per_h = 1e308", ["vegf.tumor_secretion_ng_per_mL_per_h"]),
    ("saturation-tiny", "chemotaxis_saturation_ng_per_mL = 2.0",
     "chemotaxis_saturation_ng_per_mL = 1e-300", ["angiogenesis.chemotaxis_saturation_ng_per_mL"]),
    ("cycle-time-tiny", "cycle_time_h = 24.0", "cycle_time_h = 1e-300", ["tumor.cycle_time_h"]),
    ("diffusion-tiny", "diffusion_um2_per_s = 70.0", "diffusion_um2_per_s = 1e-300",
     ["vegf.diffusion_um2_per_s"]),
    ("huge-int-for-float", "seed_center_um = [120.0, 160.0, 160.0]",
     "seed_center_um = [120.0, 160.0, " + "9" * 400 + "]", ["tumor.seed_center_um"]),
    ("feeding-radius-depth", "feeding_radius_um = 20.0", "feeding_radius_um = 240.0",
     ["vessels.feeding_radius_um", "240"]),
    ("feeding-radius-2**64", "feeding_radius_um = 20.0", "feeding_radius_um = 18446744073709551616",
     ["vessels.feeding_radius_um"]),
    ("capillary-spacing-1", "capillary_spacing_um = 140.0", "capillary_spacing_um = 1",
     ["organs[0].capillary_spacing_um", "= 1"]),
    ("lymph-spacing-1", "lymph_spacing_um = 300.0", "lymph_spacing_um = 1.0",
     ["vessels.lymph_spacing_um"]),
    ("primary-organ-no-voxel", "z_um = [0.0, 240.0]", "z_um = [0.0, 5.0]", ["organs[0].z_um", "no voxel"]),
    ("organ-between-centres", "z_um = [280.0, 320.0]", "z_um = [300.5, 309.5]",
     ["organs[1].z_um", "no voxel"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reproduced_case_is_refused_at_load(case):
    _, old, new, needles = case
    refused(edit(SMALL, old, new), *needles)


def test_small_scenario_itself_builds():
    s = parse_scenario(SMALL)
    build_rules(s)
    assert build_tissue(s).shape == (16, 16, 16)


def test_a_long_run_is_refused_and_overrides_are_checked():
    text = edit(edit(SMALL, "step_h = 1.0 ", "step_h = 0.001 "), "duration_h = 240.0",
                "duration_h = 1000000.0")
    assert parse_scenario(text)["time.duration_h"] == 1e6           # exactly 1e9 steps: allowed
    s = parse_scenario(edit(SMALL, "step_h = 1.0 ", "step_h = 0.001 "))
    assert s.with_overrides(duration_h=1e6)["time.duration_h"] == 1e6
    with pytest.raises(ScenarioError, match=r"time\.duration_h"):
        s.with_overrides(duration_h=2e6)


def test_deep_nesting_is_malformed_toml_not_a_recursion_error():
    for opening, closing in (("[", "]"), ("{a = ", "}")):
        text = SMALL + "\nextra = " + opening * 1000 + closing * 1000 + "\n"
        refused(text, "malformed TOML", "nested too deeply", f"line {text.count(chr(10))}")


def test_deep_but_parseable_nesting_is_echoed_bounded():
    message = refused(edit(SMALL, "shape = [16, 16, 16]", "shape = " + "[" * 100 + "]" * 100),
                      "lattice.shape", "wrong type")
    assert "[...]" in message


def test_20000_digit_integer():
    text = edit(SMALL, "seed = 20261121", "seed = " + "7" * 20000)
    refused(text, "malformed TOML", "4300 digits", "line 12")


def test_line_finder_is_linear_on_pathological_lines():
    """A multi-line string holding a long bracketed line made the old regular
    expressions cubic (over a minute for 14 KB)."""
    line = next(ln for ln in SMALL.splitlines() if ln.startswith("description = "))
    text = edit(SMALL, line, 'description = """\n[' + " " * 9000 + 'x\n"""')
    text = edit(text, "sor_omega = 1.5", "sor_omega = 2.5")
    started = time.perf_counter()
    refused(text, "oxygen.sor_omega")
    assert find_line(text, "a" * 14000 + "[1]." + " " * 14000) is None
    assert time.perf_counter() - started < 2.0


def test_unknown_key_with_control_characters_is_escaped():
    text = edit(SMALL, "sor_omega = 1.5", '"bad\\n\\u001b[31mkey\\u009b" = 1\nsor_omega = 1.5')
    message = refused(text, "unknown key", "oxygen.bad\\n\\x1b[31mkey\\x9b")
    assert "\x1b" not in message and "\n" not in message


def test_huge_values_are_cut_in_the_message():
    shape = "shape = [" + "1, " * 200_001 + "]"
    message = refused(edit(SMALL, "shape = [16, 16, 16]", shape), "lattice.shape", "...")
    assert len(message) < 300
    long_key = "k" * 5000
    message = refused(edit(SMALL, "sor_omega = 1.5", f"{long_key} = 1\nsor_omega = 1.5"),
                      "unknown key", "oxygen.kkk")
    assert len(message) < 300


def test_steps_of_saturates_and_refuses_non_finite():
    assert steps_of(9.2e18, 1.0, lo=0, hi=65536) == 65536
    assert steps_of(1.0, 1e-300) == MAX_STEPS
    assert steps_of(0.0, 1.0, lo=0) == 0 and steps_of(1.5, 1.0) == 2
    for hours, step in ((float("inf"), 1.0), (1.0, 0.0), (float("nan"), 1.0), (-1.0, 1.0)):
        with pytest.raises(ValueError):
            steps_of(hours, step)


def test_float32_of_refuses_overflow():
    assert float32_of(1.5) == np.float32(1.5)
    assert float32_of([1.0, 2.0]).dtype == np.float32
    for value in (1e39, float("inf"), float("nan"), [1.0, 1e300]):
        with pytest.raises(OverflowError):
            float32_of(value)


def test_extreme_ages_saturate_to_never():
    s = parse_scenario(edit(edit(SMALL, "branch_age_h = 18.0", "branch_age_h = 100000.0"),
                            "step_h = 1.0 ", "step_h = 0.001 ").replace(
        "duration_h = 240.0", "duration_h = 1.0"))
    r = build_rules(s)
    assert r.branch_age == 65536 and r.regression_steps == 65536


def test_widen_in_yz_is_bounded_by_the_lattice():
    mask = np.zeros((4, 4, 4), dtype=bool)
    mask[1, 1, :] = True
    assert widen_in_yz(mask, 1e6).all()
    assert widen_in_yz(mask, 0.0).sum() == 4


# -- end to end: `check` and `run` end with one line and exit 2 ----------------------------

E2E = [
    ("organ-named-fraction", 'name = "breast"', 'name = "fraction"', "organs[0].name"),
    ("feeding-radius-depth", "feeding_radius_um = 20.0", "feeding_radius_um = 240.0",
     "vessels.feeding_radius_um"),
    ("capillary-spacing-1", "capillary_spacing_um = 140.0", "capillary_spacing_um = 1",
     "organs[0].capillary_spacing_um"),
    ("deep-nesting", "sor_omega = 1.5", "sor_omega = " + "[" * 1000 + "]" * 1000,
     f"line {SMALL.splitlines().index(next(ln for ln in SMALL.splitlines() if ln.startswith('sor_omega = 1.5'))) + 1}"),
]


def cli(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "ONCOLATTICE_DEBUG"}
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], cwd=cwd, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", E2E, ids=[c[0] for c in E2E])
def test_check_and_run_end_in_one_line(tmp_path, case):
    _, old, new, needle = case
    (tmp_path / "BAD.toml").write_text(edit(SMALL, old, new), encoding="utf-8")
    for args in (("check", "BAD.toml"), ("run", "BAD.toml", "--out", "x.h5", "--steps", "1")):
        proc = cli(*args, cwd=tmp_path)
        assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("oncolattice: error: BAD.toml"), lines
        assert needle in lines[0] and lines[0].isprintable(), lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["BAD.toml"]
