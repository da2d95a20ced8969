"""Scenario files: schema, loading, resolved TOML, and one-line errors naming file, line and key."""
import re
import tomllib
from importlib import resources

import numpy as np
import pytest

from engine.errors import ScenarioError, UserError
from engine.rules import build_rules
from kernels.field import diffusion_coefficient
from engine.scenario import (MAX_ORGANS, ORGAN_SCHEMA, REQUIRED, SCHEMA, Scenario, builtin_names,
                             find_line, load_scenario, parse_scenario)

QUICKSTART = (resources.files("scenarios") / "quickstart.toml").read_text(encoding="utf-8")
UPTAKE = re.search(r'^uptake = "\w+"', QUICKSTART, re.M).group(0)   # oxygen.uptake as shipped

MINIMAL = """\
[lattice]
shape = [24, 24, 24]

[[organs]]
name = "breast"
z_um = [0.0, 480.0]
"""

# unit a parameter must have, by the unit suffix of its key name
SUFFIX_UNITS = [("_mmHg_per_s", "mmHg/s"), ("_um2_per_s", "µm²/s"), ("_um_per_h", "µm/h"), ("_um_per_min", "µm/min"), ("_ng_per_mL_per_h", "ng/mL/h"), ("_ng_per_mL", "ng/mL"),
                ("_per_min", "1/min"), ("_per_h", "1/h"), ("_per_mmHg", "1/mmHg"),
                ("_mmHg", "mmHg"), ("_um", "µm"), ("_h", "h")]


def edit(text, old, new):
    """`text` with the single occurrence of `old` replaced by `new`."""
    assert text.count(old) == 1, f"expected exactly one {old!r} in the scenario text"
    return text.replace(old, new)


def line_of(text, fragment):
    """1-based number of the only line of `text` containing `fragment`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(hits) == 1, f"{fragment!r} is on lines {hits}"
    return hits[0]


def nth_line_of(text, fragment, nth):
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if fragment in line]
    return hits[nth]


def all_params():
    for table, params in SCHEMA.items():
        for key, p in params.items():
            yield f"{table}.{key}", key, p
    for key, p in ORGAN_SCHEMA.items():
        yield f"organs[].{key}", key, p


def load_bad(tmp_path, text, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    message = str(info.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    return str(path), message


# -- the quickstart scenario and the schema -----------------------------------------------

def test_quickstart_loads_by_name_and_by_path(tmp_path):
    s = load_scenario("quickstart")
    assert isinstance(s, Scenario)
    assert s.path == "scenarios/quickstart.toml"
    assert load_scenario("quickstart.toml").values == s.values
    assert "quickstart" in builtin_names()
    assert s.shape == (96, 96, 96)
    assert s["lattice.voxel_um"] == 20.0
    assert s["oxygen.diffusion_um2_per_s"] == 1750.0
    assert s["tumor.traits.proliferation_level"] == 8
    assert s["tumor.seed_center_um"] == [720.0, 960.0, 960.0]
    assert [o["name"] for o in s.organs] == ["breast", "pectoral_muscle"]
    assert s.organs[1]["z_um"] == [1520.0, 1920.0]
    copy = tmp_path / "copy.toml"
    copy.write_text(QUICKSTART, encoding="utf-8")
    from_file = load_scenario(str(copy))
    assert from_file.path == str(copy)
    assert from_file.values == s.values and from_file.organs == s.organs


def test_quickstart_sets_every_parameter_explicitly():
    """The shipped example documents every value (no silent defaults)."""
    raw = tomllib.loads(QUICKSTART)
    for table, params in SCHEMA.items():
        given = raw
        for part in table.split("."):
            given = given[part]
        subtables = {t.rpartition(".")[2] for t in SCHEMA if t.startswith(table + ".")}
        assert set(given) - subtables == set(params), table
    for organ in raw["organs"]:
        assert set(organ) == set(ORGAN_SCHEMA)


@pytest.mark.parametrize("dotted,key,p", list(all_params()), ids=lambda v: v if isinstance(v, str) else "")
def test_every_parameter_has_a_unit(dotted, key, p):
    if p.type == "str":
        assert p.unit == ""
        return
    assert p.unit.strip(), f"{dotted} has no unit (use '-' for dimensionless)"
    for suffix, unit in SUFFIX_UNITS:
        if key.endswith(suffix):
            assert p.unit.startswith(unit), f"{dotted}: key says {unit}, schema says {p.unit!r}"
            break


@pytest.mark.parametrize("dotted,key,p", list(all_params()), ids=lambda v: v if isinstance(v, str) else "")
def test_schema_bounds_are_consistent(dotted, key, p):
    assert p.type in ("float", "int", "bool", "str", "vec3", "range", "shape")
    if p.lo is not None and p.hi is not None:
        assert p.lo < p.hi, dotted
    if p.type in ("str", "bool"):
        assert p.lo is None and p.hi is None


def test_defaults_are_valid_values():
    """A scenario of only the required keys resolves, and its resolved TOML re-validates."""
    s = parse_scenario(MINIMAL, "minimal.toml")
    for table, params in SCHEMA.items():
        for key, p in params.items():
            assert p.default is not REQUIRED or (table, key) == ("lattice", "shape")
            if p.default is not REQUIRED:
                assert s[f"{table}.{key}"] == p.default, f"{table}.{key}"
    assert s["tumor.seed_center_um"] is None
    again = parse_scenario(s.resolved_toml(), "resolved.toml")
    assert again.values == s.values
    assert again.organs == s.organs


def test_resolved_toml_reparses_to_equal_values():
    s = load_scenario("quickstart")
    text = s.resolved_toml()
    again = parse_scenario(text, "resolved.toml")
    assert again.values == s.values
    assert again.organs == s.organs
    for dotted, key, p in all_params():
        assert re.search(rf"^{re.escape(key)} = ", text, re.M), f"{dotted} missing from resolved TOML"
    # types survive: ints stay ints, floats stay floats
    assert isinstance(again["oxygen.max_sweeps"], int)
    assert isinstance(again["oxygen.tolerance_mmHg"], float)
    assert again["oxygen.tolerance_mmHg"] == 1e-3


def test_resolved_toml_fills_defaults_and_reflects_overrides():
    s = parse_scenario(MINIMAL, "minimal.toml").with_overrides(seed=99, duration_h=12.5)
    again = parse_scenario(s.resolved_toml())
    assert again["scenario.seed"] == 99
    assert again["time.duration_h"] == 12.5
    assert again["oxygen.sor_omega"] == SCHEMA["oxygen"]["sor_omega"].default
    assert again["tumor.seed_center_um"] is None      # still "lattice centre"
    assert again.organs[0]["functional_density"] == ORGAN_SCHEMA["functional_density"].default


def test_resolved_toml_round_trips_quotes_and_backslashes():
    text = edit(QUICKSTART, 'name = "quickstart"', 'name = "q \\"uoted\\" C:\\\\dir µ³"')
    s = parse_scenario(text, "quoted.toml")
    assert s["scenario.name"] == 'q "uoted" C:\\dir µ³'
    assert parse_scenario(s.resolved_toml())["scenario.name"] == s["scenario.name"]


@pytest.mark.parametrize("escape", ["\\n", "\\u0001", "\\u007f"])
def test_resolved_toml_round_trips_control_characters(escape):
    """A description with an escaped newline or control character is valid TOML,
    so the resolved scenario written into every run file must be too."""
    text = edit(QUICKSTART, 'description = "Breast', f'description = "two{escape}lines, Breast')
    s = parse_scenario(text, "escaped.toml")
    again = parse_scenario(s.resolved_toml(), "resolved.toml")
    assert again["scenario.description"] == s["scenario.description"]


def test_describe_lists_every_key_with_value_and_unit():
    s = load_scenario("quickstart")
    rows = s.describe()
    n_params = sum(len(p) for p in SCHEMA.values()) + len(s.organs) * len(ORGAN_SCHEMA)
    assert len(rows) == n_params

    def row(name):
        hits = [r for r in rows if re.match(rf"\s*{re.escape(name)}\s+=", r)]
        assert len(hits) == 1, f"{name}: {hits}"
        return hits[0]

    for table, params in SCHEMA.items():
        for key, p in params.items():
            r = row(f"{table}.{key}")
            if p.unit:
                assert p.unit in r
    for i in range(len(s.organs)):
        for key in ORGAN_SCHEMA:
            row(f"organs[{i}].{key}")
    assert "1750.0" in row("oxygen.diffusion_um2_per_s")
    assert "µm²/s" in row("oxygen.diffusion_um2_per_s")
    assert '"pectoral_muscle"' in row("organs[1].name")
    assert "[1520.0, 1920.0]" in row("organs[1].z_um")
    minimal = [r for r in parse_scenario(MINIMAL).describe() if "tumor.seed_center_um" in r]
    assert len(minimal) == 1 and "= lattice centre" in minimal[0]


def test_overrides_are_validated():
    s = parse_scenario(QUICKSTART, "q.toml")
    with pytest.raises(ScenarioError, match=r"scenario\.seed"):
        s.with_overrides(seed=-1)
    with pytest.raises(ScenarioError, match=r"time\.duration_h"):
        s.with_overrides(duration_h=0.0)
    with pytest.raises(ScenarioError, match=r"time\.duration_h"):
        s.with_overrides(duration_h=-24.0)
    with pytest.raises(ScenarioError, match=r"time\.duration_h"):
        s.with_overrides(duration_h=float("nan"))
    assert s["scenario.seed"] == 20261121 and s["time.duration_h"] == 240.0
    s.with_overrides(seed=0, duration_h=0.5)
    assert s["scenario.seed"] == 0 and s["time.duration_h"] == 0.5


def test_scenario_error_is_a_user_error_with_exit_status_2():
    assert issubclass(ScenarioError, UserError)
    assert ScenarioError("x").exit_status == 2


# -- find_line --------------------------------------------------------------------------

def test_find_line_keys_tables_and_organs():
    t = QUICKSTART
    assert find_line(t, "oxygen.sor_omega") == line_of(t, "sor_omega = 1.5")
    assert find_line(t, "lattice.shape") == line_of(t, "shape = [96")
    assert find_line(t, "oxygen") == line_of(t, "[oxygen]")
    assert find_line(t, "tumor.traits.adhesion_level") == line_of(t, "adhesion_level =")
    # o2_uptake_per_min is in [tumor] and in both organs: each must resolve to its own line
    assert find_line(t, "tumor.o2_uptake_per_min") == nth_line_of(t, "o2_uptake_per_min =", 0)
    assert find_line(t, "organs[0].o2_uptake_per_min") == nth_line_of(t, "o2_uptake_per_min =", 1)
    assert find_line(t, "organs[1].o2_uptake_per_min") == nth_line_of(t, "o2_uptake_per_min =", 2)
    assert find_line(t, "organs[1].z_um") == line_of(t, "z_um = [1520")
    assert find_line(t, "organs[0]") == nth_line_of(t, "[[organs]]", 0)
    assert find_line(t, "organs[1]") == nth_line_of(t, "[[organs]]", 1)
    assert find_line(t, "organs[2].z_um") is None
    assert find_line(t, "oxygen.no_such_key") is None
    assert find_line(t, "cycle_time_h") is None          # only inside tables


def test_find_line_nested_table_header():
    """`tumor.traits` is a table; its header line is where errors about it point."""
    t = edit(QUICKSTART, "[tumor.traits]", "[tumor.traits]  # founder traits")
    assert find_line(t, "tumor.traits") == line_of(t, "[tumor.traits]")


# -- bad input: one-line ScenarioError naming file, line and dotted key -------------------

# (id, old text, new text, dotted key in the message, fragment of the offending line
#  (None: no line expected), other text the message must contain)
BAD = [
    # unknown keys and tables
    ("unknown-key-typo", "diffusion_um2_per_s = 1750.0", "difusion_um2_per_s = 1750.0",
     "oxygen.difusion_um2_per_s", "difusion_um2_per_s =", ["did you mean 'oxygen.diffusion_um2_per_s'"]),
    ("unknown-trait", "adhesion_level = 4", "adhesoin_level = 4",
     "tumor.traits.adhesoin_level", "adhesoin_level =", ["did you mean 'tumor.traits.adhesion_level'"]),
    ("unknown-organ-key", 'name = "pectoral_muscle"', 'name = "pectoral_muscle"\nvolume_ml = 3.0',
     "organs[1].volume_ml", "volume_ml =", ["unknown key"]),
    ("unknown-table", "[vessels]", "[surgery]\nmargin_mm = 2.0\n\n[vessels]",
     "surgery", "[surgery]", ["unknown"]),
    ("therapy-not-array", "[vessels]", "[therapy]\ndose_Gy = 2.0\n\n[vessels]",
     "therapy", "[therapy]", ["array of tables"]),
    ("unknown-table-typo", "[vessels]", "[vesels]", "vesels", "[vesels]", ["did you mean 'vessels'"]),
    ("unknown-subtable", "[tumor.traits]", "[tumor.extras]\nx = 1\n\n[tumor.traits]",
     "tumor.extras", "[tumor.extras]", ["unknown"]),
    # wrong types
    ("string-for-float", "diffusion_um2_per_s = 1750.0", 'diffusion_um2_per_s = "1750.0"',
     "oxygen.diffusion_um2_per_s", 'diffusion_um2_per_s = "1750.0"', ["wrong type"]),
    ("float-for-int", "max_sweeps = 500", "max_sweeps = 1.5",
     "oxygen.max_sweeps", "max_sweeps = 1.5", ["wrong type", "integer"]),
    ("bool-for-number", "vessel_mmHg = 38.0", "vessel_mmHg = true",
     "oxygen.vessel_mmHg", "vessel_mmHg =", ["wrong type"]),
    ("bool-for-int", "seed = 20261121", "seed = false", "scenario.seed", "seed = false", ["wrong type"]),
    ("number-for-string", 'name = "quickstart"', "name = 3", "scenario.name", "name = 3", ["wrong type"]),
    ("float-in-shape", "shape = [96, 96, 96]", "shape = [96, 96.0, 96]",
     "lattice.shape", "shape = [96", ["wrong type"]),
    ("short-vec3", "seed_center_um = [720.0, 960.0, 960.0]", "seed_center_um = [720.0, 960.0]",
     "tumor.seed_center_um", "seed_center_um =", ["wrong type"]),
    ("string-for-length", "capillary_spacing_um = 140.0", 'capillary_spacing_um = "140 um"',
     "organs[0].capillary_spacing_um", 'capillary_spacing_um = "140 um"', ["wrong type"]),
    # out of range
    ("negative-diffusion", "diffusion_um2_per_s = 1750.0", "diffusion_um2_per_s = -1750.0",
     "oxygen.diffusion_um2_per_s", "diffusion_um2_per_s = -1750.0", ["out of range"]),
    ("zero-diffusion", "diffusion_um2_per_s = 1750.0", "diffusion_um2_per_s = 0.0",
     "oxygen.diffusion_um2_per_s", "diffusion_um2_per_s = 0.0", ["out of range"]),
    ("sor-omega-2", "sor_omega = 1.5", "sor_omega = 2.0", "oxygen.sor_omega", "sor_omega = 2.0",
     ["out of range", "< 2"]),
    ("sor-omega-0", "sor_omega = 1.5", "sor_omega = 0.0", "oxygen.sor_omega", "sor_omega = 0.0",
     ["out of range"]),
    ("nan", "sor_omega = 1.5", "sor_omega = nan", "oxygen.sor_omega", "sor_omega = nan", ["finite"]),
    ("number-for-switch", "enabled = true", "enabled = 1", "angiogenesis.enabled", "enabled = 1",
     ["wrong type", "true or false"]),
    ("inf", "capillary_spacing_um = 140.0", "capillary_spacing_um = inf",
     "organs[0].capillary_spacing_um", "capillary_spacing_um = inf", ["finite"]),
    ("trait-level-16", "proliferation_level = 8", "proliferation_level = 16",
     "tumor.traits.proliferation_level", "proliferation_level =", ["out of range", "15"]),
    ("trait-level-negative", "apoptosis_resistance_level = 4", "apoptosis_resistance_level = -1",
     "tumor.traits.apoptosis_resistance_level", "apoptosis_resistance_level =", ["out of range"]),
    ("second-organ-density", "functional_density = 0.85", "functional_density = 1.5",
     "organs[1].functional_density", "functional_density = 1.5", ["out of range"]),
    ("tiny-shape", "shape = [96, 96, 96]", "shape = [96, 3, 96]", "lattice.shape", "shape = [96",
     ["out of range"]),
    ("negative-seed-centre", "seed_center_um = [720.0, 960.0, 960.0]",
     "seed_center_um = [720.0, -1.0, 960.0]", "tumor.seed_center_um", "seed_center_um =",
     ["out of range"]),
    ("decreasing-range", "z_um = [1520.0, 1920.0]", "z_um = [1920.0, 1520.0]",
     "organs[1].z_um", "z_um = [1920", ["increasing"]),
    # missing required keys
    ("missing-shape", "shape = [96, 96, 96]          # voxels (z, y, x)\n", "",
     "lattice.shape", "[lattice]", ["missing required key"]),
    ("missing-organ-name", 'name = "pectoral_muscle"\n', "",
     "organs[1].name", None, ["missing required key"]),
    # cross checks
    ("organ-beyond-lattice", "z_um = [1520.0, 1920.0]", "z_um = [1520.0, 1940.0]",
     "organs[1].z_um", "z_um = [1520", ["beyond the lattice", "1920"]),
    ("organs-overlap", "z_um = [1520.0, 1920.0]", "z_um = [1400.0, 1920.0]",
     "organs[1].z_um", "z_um = [1400", ["overlaps", "organs[0].z_um"]),
    ("saturation-equals-threshold", "o2_proliferation_saturation_mmHg = 38.0",
     "o2_proliferation_saturation_mmHg = 5.0", "cells.o2_proliferation_saturation_mmHg",
     "o2_proliferation_saturation_mmHg =", ["cells.o2_proliferation_threshold_mmHg"]),
    ("saturation-below-threshold", "o2_proliferation_saturation_mmHg = 38.0",
     "o2_proliferation_saturation_mmHg = 4.0", "cells.o2_proliferation_saturation_mmHg",
     "o2_proliferation_saturation_mmHg =", ["must exceed"]),
    ("seed-centre-outside", "seed_center_um = [720.0, 960.0, 960.0]",
     "seed_center_um = [720.0, 960.0, 1920.0]", "tumor.seed_center_um", "seed_center_um =",
     ["outside the lattice"]),
    ("seed-centre-outside-z", "seed_center_um = [720.0, 960.0, 960.0]",
     "seed_center_um = [2500.0, 960.0, 960.0]", "tumor.seed_center_um", "seed_center_um =",
     ["outside the lattice"]),
    ("duplicate-organ-names", 'name = "pectoral_muscle"', 'name = "breast"', "organs[1].name", None,
     ["unique", "breast"]),
    # oxygen uptake kinetics
    ("uptake-unknown", UPTAKE, 'uptake = "zero_order"', "oxygen.uptake",
     'uptake = "zero_order"', ["is not one of", '"michaelis_menten"', '"first_order"']),
    ("uptake-not-a-string", UPTAKE, "uptake = 1", "oxygen.uptake",
     "uptake = 1", ["wrong type", "string"]),
    ("negative-tumour-vmax", "o2_vmax_mmHg_per_s = 8.44", "o2_vmax_mmHg_per_s = -8.44",
     "tumor.o2_vmax_mmHg_per_s", "o2_vmax_mmHg_per_s = -8.44", ["out of range", "mmHg/s"]),
    ("zero-tumour-km", "o2_km_mmHg = 0.375                        # p50",
     "o2_km_mmHg = 0.0                        # p50", "tumor.o2_km_mmHg", "o2_km_mmHg = 0.0",
     ["out of range", "> 0", "mmHg"]),
    ("nan-organ-vmax", "o2_vmax_mmHg_per_s = 0.86", "o2_vmax_mmHg_per_s = nan",
     "organs[1].o2_vmax_mmHg_per_s", "o2_vmax_mmHg_per_s = nan", ["finite"]),
    ("string-organ-vmax", "o2_vmax_mmHg_per_s = 0.245", 'o2_vmax_mmHg_per_s = "0.245 mmHg/s"',
     "organs[0].o2_vmax_mmHg_per_s", 'o2_vmax_mmHg_per_s = "0.245', ["wrong type"]),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_scenario_names_file_line_and_key(tmp_path, case):
    _, old, new, dotted, fragment, extra = case
    text = edit(QUICKSTART, old, new)
    path, message = load_bad(tmp_path, text)
    assert message.startswith(path), message
    assert dotted in message, message
    for needle in extra:
        assert needle in message, f"{needle!r} not in {message!r}"
    if fragment is not None:
        line = line_of(text, fragment)
        assert message.startswith(f"{path}:{line}: "), f"expected line {line}: {message}"


def test_missing_organ_key_points_at_that_organ(tmp_path):
    text = edit(QUICKSTART, 'name = "pectoral_muscle"\n', "")
    path, message = load_bad(tmp_path, text)
    assert message.startswith(f"{path}:{nth_line_of(text, '[[organs]]', 1)}: "), message


def test_malformed_toml_gives_file_and_line(tmp_path):
    text = edit(QUICKSTART, "max_sweeps = 500", "max_sweeps = = 500")
    path, message = load_bad(tmp_path, text)
    assert message.startswith(path)
    assert "malformed TOML" in message
    assert f"line {line_of(text, 'max_sweeps = = 500')}" in message


def test_duplicate_key_is_malformed(tmp_path):
    text = edit(QUICKSTART, "sor_omega = 1.5", "sor_omega = 1.5\nsor_omega = 1.2")
    path, message = load_bad(tmp_path, text)
    assert "malformed TOML" in message and path in message


def test_no_organs(tmp_path):
    text = QUICKSTART[:QUICKSTART.index("[[organs]]")]
    path, message = load_bad(tmp_path, text)
    assert message.startswith(path) and "organs" in message


def test_too_many_organs(tmp_path):
    text = edit(QUICKSTART, "shape = [96, 96, 96]", f"shape = [{2 * (MAX_ORGANS + 1)}, 96, 96]")
    text = text[:text.index("[[organs]]")]
    text = text.replace("seed_center_um = [720.0, 960.0, 960.0]", "seed_center_um = [20.0, 960.0, 960.0]")
    for i in range(MAX_ORGANS + 1):
        text += f'\n[[organs]]\nname = "o{i}"\nz_um = [{40.0 * i}, {40.0 * i + 20.0}]\n'
    path, message = load_bad(tmp_path, text)
    assert f"at most {MAX_ORGANS}" in message
    # and the limit itself is allowed
    ok = text[:text.index(f'[[organs]]\nname = "o{MAX_ORGANS}"')]
    assert len(parse_scenario(ok).organs) == MAX_ORGANS


def test_nested_table_name_is_not_a_key_of_other_tables(tmp_path):
    """`traits` is a sub-table of [tumor] only; elsewhere it is an unknown key."""
    text = edit(QUICKSTART, "sor_omega = 1.5", "sor_omega = 1.5\ntraits = 3")
    path, message = load_bad(tmp_path, text)
    assert "oxygen.traits" in message
    assert message.startswith(f"{path}:{line_of(text, 'traits = 3')}: ")


def test_nested_traits_table_under_wrong_parent_is_rejected(tmp_path):
    text = edit(QUICKSTART, "[vessels]", "[cells.traits]\nproliferation_level = 9\n\n[vessels]")
    _, message = load_bad(tmp_path, text)
    assert "cells.traits" in message


def test_missing_scenario_file_names_it_and_the_builtins(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(tmp_path / "nope.toml"))
    assert "nope.toml" in str(info.value) and "quickstart" in str(info.value)


def test_unreadable_scenario_file(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(QUICKSTART.replace("µ", "u").encode() + b"# caf\xe9\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_valid_edits_are_accepted():
    """The checks are not over-eager: boundary values that are allowed load."""
    text = QUICKSTART
    text = edit(text, "z_um = [1520.0, 1920.0]", "z_um = [1440.0, 1920.0]")    # touching organs
    text = edit(text, "sor_omega = 1.5", "sor_omega = 1.99")
    text = edit(text, "proliferation_level = 8", "proliferation_level = 15")
    text = edit(text, "necrosis_mmHg = 2.5", "necrosis_mmHg = 0")             # int for float
    text = edit(text, "seed_center_um = [720.0, 960.0, 960.0]", "seed_center_um = [0, 0, 1919.9]")
    s = parse_scenario(text, "edge.toml")
    assert s.organs[1]["z_um"] == [1440.0, 1920.0]
    assert s["tumor.traits.proliferation_level"] == 15
    assert s["cells.necrosis_mmHg"] == 0.0 and isinstance(s["cells.necrosis_mmHg"], float)
    assert s["tumor.seed_center_um"] == [0.0, 0.0, 1919.9]


# -- oxygen uptake kinetics: Michaelis–Menten as shipped, first order on request ---------

def with_kinetics(kinetics, text=QUICKSTART):
    """`text` with `oxygen.uptake` set to `kinetics`."""
    line = re.findall(r'^uptake = "\w+"', text, re.M)
    assert len(line) == 1
    return text.replace(line[0], f'uptake = "{kinetics}"')


def muscle_km(text, value):
    """The quickstart with the second organ's (muscle's) K_m set to `value`."""
    head, sep, muscle = text.rpartition("o2_km_mmHg = 0.375")
    assert sep and muscle.count("[[organs]]") == 0 and head.count("o2_km_mmHg = 0.375") == 2
    return head + f"o2_km_mmHg = {value}" + muscle



def test_michaelis_menten_rule_tables():
    """V_max per kind and organ as h² V_max / D (float64, then float32), one K_m, and
    only the background decay left in the linear coefficients."""
    from kernels.field import MichaelisMenten
    from kernels.lattice import FUNCTIONAL, N_KINDS, TUMOR
    r = build_rules(parse_scenario(with_kinetics("michaelis_menten"), "mm.toml"))
    h, d = 20.0, 1750.0 * 3600.0
    assert isinstance(r.o2_uptake, MichaelisMenten)
    assert r.o2_uptake.km == np.float32(0.375) and r.o2_uptake.km.dtype == np.float32
    vmax = r.o2_uptake.vmax
    assert vmax.dtype == np.float32 and vmax.shape == (N_KINDS, 3)
    expected = np.zeros((N_KINDS, 3))
    expected[TUMOR, :] = 8.44 * 3600.0 * h * h / d
    expected[FUNCTIONAL, 1] = 0.245 * 3600.0 * h * h / d       # breast
    expected[FUNCTIONAL, 2] = 0.86 * 3600.0 * h * h / d        # pectoral muscle
    assert np.array_equal(vmax, expected.astype(np.float32))
    decay = diffusion_coefficient(0.1 * 60.0, h, d)
    assert r.o2_coeff.dtype == np.float32 and (r.o2_coeff == decay).all()


def test_first_order_rule_tables_ignore_the_michaelis_menten_keys():
    from kernels.field import FIRST_ORDER
    from kernels.lattice import EMPTY, FUNCTIONAL, TUMOR
    text = with_kinetics("first_order")
    r = build_rules(parse_scenario(text, "first-order.toml"))
    h, d = 20.0, 1750.0 * 3600.0
    assert r.o2_uptake is FIRST_ORDER
    assert r.o2_coeff[TUMOR, 1] == diffusion_coefficient(10.0 * 60.0, h, d)
    assert r.o2_coeff[FUNCTIONAL, 2] == diffusion_coefficient(10.0 * 60.0, h, d)
    assert r.o2_coeff[FUNCTIONAL, 0] == r.o2_coeff[EMPTY, 1] == diffusion_coefficient(6.0, h, d)
    other = build_rules(parse_scenario(muscle_km(edit(text, "o2_vmax_mmHg_per_s = 8.44",
                                                      "o2_vmax_mmHg_per_s = 99.0"), 2.0)))
    assert other.o2_uptake is FIRST_ORDER and np.array_equal(other.o2_coeff, r.o2_coeff)


def test_organ_km_must_equal_the_tumour_km(tmp_path):
    text = muscle_km(with_kinetics("michaelis_menten"), 1.0)
    path, message = load_bad(tmp_path, text)
    line = nth_line_of(text, "o2_km_mmHg =", 2)
    assert message.startswith(f"{path}:{line}: organs[1].o2_km_mmHg = 1.0 differs from "
                              "tumor.o2_km_mmHg = 0.375"), message
    # first order has no K_m: the same values load
    assert parse_scenario(with_kinetics("first_order", text)).organs[1]["o2_km_mmHg"] == 1.0
