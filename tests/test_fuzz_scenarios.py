"""Fuzzing the scenario loader (issue 10): mutated quickstart text either loads, and then
its rules and a (small) tissue build, or is refused with one short printable
`ScenarioError` line naming the key (or the line of a TOML syntax error); never another
exception, never a hang (each case has hypothesis's deadline).

The quickstart is shrunk to 16³ voxels first (conftest.small_scenario_text), so a case
that loads builds its tissue in milliseconds.  `HYPOTHESIS_PROFILE=nightly` runs many
more cases.
"""
import json
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ScenarioError
from engine.rules import build_rules
from engine.scenario import MAX_ORGANS, ORGAN_SCHEMA, SCHEMA, find_line, parse_scenario
from engine.state import run_bytes
from engine.tissue import build_tissue
from engine.vasculature import build_bytes
from conftest import small_scenario_text

pytestmark = pytest.mark.fuzz

BASE = small_scenario_text(16, seed_radius_um=40.0)
LINES = BASE.splitlines()
PATH = "fuzz.toml"
MAX_BUILT_VOXELS = 32 ** 3          # a loaded case builds its tissue only up to this size


def scaled(factor):
    """Settings with `factor` times the profile's examples (ci: 25, nightly: 1000)."""
    return settings(max_examples=factor * settings.default.max_examples)


def key_lines(lines):
    """[(line index, dotted key)] of the `key = value` lines (organs numbered)."""
    out, table, organs = [], "", -1
    for n, line in enumerate(lines):
        header = re.match(r"\s*(\[\[?)\s*([\w.]+)\s*\]", line)
        if header:
            table = header.group(2)
            if table == "organs":
                organs += 1
                table = f"organs[{organs}]"
            continue
        key = re.match(r"(\w+)\s*=", line)
        if key:
            out.append((n, f"{table}.{key.group(1)}"))
    return out


KEYS = key_lines(LINES)
KNOWN = sorted({dotted for _, dotted in KEYS} | set(SCHEMA) | {"organs"}
               | {f"organs[{i}].{k}" for i in range(MAX_ORGANS + 2) for k in ORGAN_SCHEMA},
               key=len, reverse=True)


def toml_value(v) -> str:
    """Python value as TOML text (strings escaped as JSON, which TOML reads)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else
                                     "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return str(v)


EXTREMES = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, -2**63, 10**30, 0.0, -0.0, 5e-324,
            1e-310, 1e-300, 1e300, 1e308, 1.7976931348623157e308, -1e308, float("nan"),
            float("inf"), float("-inf"), 8192, 8193, 4, 3, 1e6, 65535, 65536, 255, 256]
scalars = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    st.text(alphabet=st.characters(max_codepoint=0x9f), max_size=8),     # control characters
    st.integers(min_value=0, max_value=400).map(lambda n: "x" * n),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.lists(st.sampled_from([0, 1, 4, 16, 100, 8192, -4, 1.5]), min_size=3, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "name"]), scalars, max_size=2),
)


@st.composite
def deep(draw):
    """An array or inline table nested 1..1500 deep."""
    n = draw(st.integers(min_value=1, max_value=1500))
    return ("[" * n + "]" * n) if draw(st.booleans()) else ("{a = " * n + "1" + "}" * n)


@st.composite
def mutation(draw, lines):
    """One edit of the scenario lines (a list, edited in place); returns what it did."""
    keyed = key_lines(lines) or [(0, "")]
    n, dotted = draw(st.sampled_from(keyed))
    key = dotted.rpartition(".")[2]
    kind = draw(st.sampled_from(["value", "value", "value", "deep", "delete", "duplicate",
                                 "unknown", "syntax", "geometry", "long", "table"]))
    if kind == "value":
        lines[n] = f"{key} = {toml_value(draw(values))}"
    elif kind == "deep":
        lines[n] = f"{key} = {draw(deep())}"
    elif kind == "delete":
        del lines[draw(st.integers(min_value=0, max_value=len(lines) - 1))]
    elif kind == "duplicate":
        at = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        lines.insert(draw(st.integers(min_value=0, max_value=len(lines))), lines[at])
    elif kind == "unknown":
        name = draw(st.one_of(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                              st.text(min_size=1, max_size=12).map(json.dumps),
                              st.integers(1, 5000).map(lambda m: "k" * m)))
        lines.insert(n, f"{name} = {toml_value(draw(scalars))}")
    elif kind == "syntax":
        text = "\n".join(lines)
        at = draw(st.integers(min_value=0, max_value=len(text)))
        junk = draw(st.sampled_from(["=", "[", "]", '"', "{", "\n[", "\n[[organs]]\n", "\\",
                                     "\x00", "\x1b", "'''", " = = ", "\n" + " " * 3000 + "[x"]))
        lines[:] = (text[:at] + junk + text[at:]).split("\n")
    elif kind == "geometry":
        organs = [i for i, (_, d) in enumerate(keyed) if d.endswith(".z_um")]
        if organs:
            i = keyed[draw(st.sampled_from(organs))][0]
            ends = st.sampled_from([0.0, 5.0, 10.0, 20.0, 160.0, 240.0, 300.0, 320.0, 321.0,
                                    -20.0, 1e9, 310.5, 309.5])
            lines[i] = f"z_um = [{draw(ends)}, {draw(ends)}]"
    elif kind == "long":
        name = draw(st.text(max_size=300))
        target = draw(st.sampled_from([d for _, d in keyed if d.endswith(".name")] or [dotted]))
        idx = next(i for i, d in keyed if d == target)
        lines[idx] = f"name = {json.dumps(name, ensure_ascii=False)}"
    else:
        at = draw(st.integers(min_value=0, max_value=len(lines)))
        lines.insert(at, draw(st.sampled_from(["[[organs]]", '[[organs]]\nname = "x"\nz_um = [0.0, 20.0]',
                                               "[oxygen]", "[tumor.traits]", "[tumor]", "[x.y]",
                                               "organs = 3", "[vessels.traits]"])))
    return kind, dotted


def assert_refused_well(text):
    """`text` loads (and then builds) or is refused in one good line; returns the scenario."""
    try:
        s = parse_scenario(text, PATH)
    except ScenarioError as exc:
        message = str(exc)
        assert message.startswith(PATH), message
        assert message.isprintable(), repr(message)
        assert len(message) < 400, message
        named = (any(name in message for name in KNOWN) or "unknown" in message
                 or ("malformed TOML" in message and "line" in message) or "too large" in message)
        assert named, f"names no key or line: {message}"
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # an overflow in a cast is a failure here
        build_rules(s)
    assert build_bytes(s, s.shape) <= 32 * run_bytes(s.shape)["device_bytes"]
    if np.prod(s.shape) <= MAX_BUILT_VOXELS:
        build_tissue(s)
    return s


@scaled(3)
@given(st.data())
def test_mutated_quickstart_loads_or_is_refused_in_one_line(data):
    lines = list(LINES)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        data.draw(mutation(lines))
    assert_refused_well("\n".join(lines) + "\n")


@scaled(2)
@given(st.sampled_from(KEYS), values)
def test_one_bad_value_is_named(key_line, value):
    """A single replaced value: a refusal names that key (or another key it relates to,
    or the line of the TOML error)."""
    n, dotted = key_line
    lines = list(LINES)
    lines[n] = f"{dotted.rpartition('.')[2]} = {toml_value(value)}"
    assert_refused_well("\n".join(lines) + "\n")


def numeric_params():
    """(line index, dotted, Param) of every number in the base scenario."""
    params = {f"{t}.{k}": p for t, ps in SCHEMA.items() for k, p in ps.items()}
    for n, dotted in KEYS:
        p = params.get(dotted) or ORGAN_SCHEMA.get(dotted.rpartition(".")[2]) \
            if dotted.startswith("organs[") else params.get(dotted)
        if p is not None and p.type in ("float", "int") and p.lo is not None and p.hi is not None:
            yield n, dotted, p


NUMERIC = list(numeric_params())


@scaled(3)
@given(st.sampled_from(NUMERIC), st.data())
def test_every_value_in_range_gives_finite_rules(entry, data):
    """Any in-range value (bounds included) of any one parameter: the scenario loads
    with finite rule constants and no overflow warning, or a relation between keys
    refuses it in one line."""
    n, dotted, p = entry
    if p.type == "int":
        value = data.draw(st.integers(min_value=int(p.lo), max_value=int(p.hi)))
    else:
        value = data.draw(st.one_of(st.sampled_from([p.lo, p.hi]),
                                    st.floats(min_value=p.lo, max_value=p.hi)))
        if (p.lo_open and value <= p.lo) or (p.hi_open and value >= p.hi):
            value = (p.lo + p.hi) / 2
    lines = list(LINES)
    lines[n] = f"{dotted.rpartition('.')[2]} = {toml_value(value)}"
    assert_refused_well("\n".join(lines) + "\n")


@scaled(2)
@given(st.text(max_size=3000), st.text(max_size=200))
def test_find_line_never_fails(text, dotted):
    line = find_line(text, dotted)
    assert line is None or 1 <= line <= len(text.splitlines())
