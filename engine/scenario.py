"""Scenario files: TOML with physical units, validated against one schema.

Every parameter is declared once below with its type, unit, allowed range,
default and source.  Key names carry their unit (`_um`, `_h`, `_per_h`,
`_per_min`, `_mmHg`, `_um2_per_s`).  Loading rejects malformed TOML, unknown
keys, wrong types and out-of-range values with a one-line `ScenarioError` that
names the file, the line (where it can be found) and the dotted key.
"""
from __future__ import annotations

import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kernels.process import PROCESSES, REQUIRED, Param, nonnegative, positive

from . import schedule  # noqa: F401  (imports every process: their parameters join SCHEMA)
from .errors import ScenarioError

_pos, _nonneg = positive, nonnegative


def _level(default, source="founder trait level"):
    return Param("int", default, lo=0, hi=15, unit="level 0..15", source=source)


PHYSICELL = "PhysiCell default cell parameters"

SCHEMA: dict[str, dict[str, Param]] = {
    "scenario": {
        "name": Param("str", "unnamed"),
        "description": Param("str", ""),
        "seed": Param("int", 1, lo=0, hi=2**64 - 1, unit="-", source="Philox key; --seed overrides"),
    },
    "lattice": {
        "shape": Param("shape", REQUIRED, lo=4, hi=8192, unit="voxels (z, y, x)"),
        "voxel_um": _pos(20.0, "µm", "one cell per voxel; cell diameter 10-20 µm", hi=1000.0),
    },
    "time": {
        "step_h": _pos(1.0, "h", "cells act over hours", hi=24.0),
        "duration_h": _pos(168.0, "h", "--days/--steps override", hi=1e6),
        "snapshot_every_steps": Param("int", 24, lo=1, hi=10**9, unit="steps"),
    },
    "vessels": {
        "jitter_um": _nonneg(20.0, "µm", "random offset of each capillary node from its grid point"),
        "feeding_spacing_um": _pos(400.0, "µm", "(approx.) distance between feeding arterioles"),
        "feeding_radius_um": _nonneg(20.0, "µm", "(approx.) arteriole radius 10-25 µm"),
        "lymph_spacing_um": _pos(300.0, "µm", "(approx.) lymphatic capillaries are sparser than blood capillaries"),
    },
    "tumor": {
        "seed_center_um": Param("vec3", None, lo=0.0, unit="µm (z, y, x); default: lattice centre"),
        "seed_radius_um": _pos(40.0, "µm", "a small settled nodule"),
    },
    "tumor.traits": {
        "proliferation_level": _level(8),
        "adhesion_level": _level(4, "founder trait level; functional cells hold 15"),
        "apoptosis_resistance_level": _level(4),
    },
}

ORGAN_SCHEMA: dict[str, Param] = {
    "name": Param("str", REQUIRED),
    "z_um": Param("range", REQUIRED, lo=0.0, unit="µm [from, to) along z"),
    "functional_density": Param("float", 0.7, lo=0.0, hi=1.0, lo_open=True, unit="fraction",
                                source="(approx.) parenchymal voxels per organ voxel"),
    "capillary_spacing_um": _pos(100.0, "µm", "intercapillary distance about 100 µm in typical tissue"),
}
MAX_ORGANS = 15


def _declare_process_parameters():
    """Every process's declared parameters join the schema (a key declared twice is an
    error at import, not a silent override)."""
    for process in PROCESSES.values():
        for table, params in process.params.items():
            target = ORGAN_SCHEMA if table == "organs" else SCHEMA.setdefault(table, {})
            for key, param in params.items():
                if key in target:
                    raise RuntimeError(f"scenario key {table}.{key} of process "
                                       f"{process.name!r} is declared twice")
                target[key] = param


_declare_process_parameters()


@dataclass
class Scenario:
    """A validated scenario: resolved values (defaults filled), and where it came from."""

    path: str
    text: str
    values: dict[str, dict[str, Any]]
    organs: list[dict[str, Any]]

    def __getitem__(self, dotted: str):
        table, _, key = dotted.rpartition(".")
        return self.values[table][key]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values["lattice"]["shape"])

    def with_overrides(self, *, seed: int | None = None, duration_h: float | None = None):
        if seed is not None:
            _check_value(self.path, self.text, "scenario.seed", seed, SCHEMA["scenario"]["seed"])
            self.values["scenario"]["seed"] = int(seed)
        if duration_h is not None:
            _check_value(self.path, self.text, "time.duration_h", duration_h,
                         SCHEMA["time"]["duration_h"])
            self.values["time"]["duration_h"] = float(duration_h)
        return self

    def resolved_toml(self) -> str:
        """The scenario with every default filled in, as TOML text."""
        lines = [f"# resolved scenario (from {self.path})"]
        for table, params in SCHEMA.items():
            lines.append(f"\n[{table}]")
            for key in params:
                value = self.values[table][key]
                if value is not None:
                    lines.append(f"{key} = {_toml_value(value)}")
        for organ in self.organs:
            lines.append("\n[[organs]]")
            lines.extend(f"{key} = {_toml_value(organ[key])}" for key in ORGAN_SCHEMA)
        return "\n".join(lines) + "\n"

    def describe(self) -> list[str]:
        """Resolved parameters, one line each, with unit and source."""
        rows = []
        for table, params in SCHEMA.items():
            for key, p in params.items():
                rows.append((f"{table}.{key}", self.values[table][key], p))
        for i, organ in enumerate(self.organs):
            for key, p in ORGAN_SCHEMA.items():
                rows.append((f"organs[{i}].{key}", organ[key], p))
        width = max(len(name) for name, _, _ in rows)
        out = []
        for name, value, p in rows:
            shown = "lattice centre" if value is None else _toml_value(value)
            note = "; ".join(s for s in (p.unit, p.source) if s)
            out.append(f"  {name:<{width}} = {shown}" + (f"   [{note}]" if note else ""))
        return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + "".join(_toml_char(c) for c in value) + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _toml_char(c: str) -> str:
    """A character as it may stand in a TOML basic string."""
    if c in '"\\':
        return "\\" + c
    if ord(c) < 0x20 or ord(c) == 0x7F:
        return f"\\u{ord(c):04X}"
    return c


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("scenarios").iterdir()
                  if p.name.endswith(".toml"))


def find_scenario(name_or_path: str) -> tuple[str, str]:
    """(display path, text) of a scenario file or a built-in scenario name."""
    path = Path(name_or_path)
    if path.is_file():
        try:
            return str(path), path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read scenario: {exc}") from None
    stem = name_or_path[:-5] if name_or_path.endswith(".toml") else name_or_path
    if "/" not in stem and stem in builtin_names():
        res = resources.files("scenarios") / f"{stem}.toml"
        return f"scenarios/{stem}.toml", res.read_text(encoding="utf-8")
    raise ScenarioError(f"{name_or_path}: no such scenario file "
                        f"(built-in scenarios: {', '.join(builtin_names())})")


def load_scenario(name_or_path: str) -> Scenario:
    """Read, parse and validate a scenario file or built-in name."""
    path, text = find_scenario(name_or_path)
    return parse_scenario(text, path)


def parse_scenario(text: str, path: str = "<scenario>") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: malformed TOML: {exc}") from None
    values: dict[str, dict[str, Any]] = {}
    nested = {}
    for t in SCHEMA:
        if "." in t:
            parent, child = t.split(".")
            nested.setdefault(parent, set()).add(child)
    for name in raw:
        if name not in SCHEMA and name != "organs":
            _fail(path, text, name, f"unknown table or key '{name}'", _suggest(name, [*SCHEMA, "organs"]))
    for table, params in SCHEMA.items():
        head, _, sub = table.partition(".")
        given = raw.get(head, {})
        if sub:
            given = given.get(sub, {}) if isinstance(given, dict) else {}
        if not isinstance(given, dict):
            _fail(path, text, table, f"'{table}' must be a table")
        skip = nested.get(head, set()) if not sub else set()
        values[table] = _validate_table(path, text, table, given, params, skip)
    organs_raw = raw.get("organs", [])
    if not isinstance(organs_raw, list) or not organs_raw:
        _fail(path, text, "organs", "at least one [[organs]] table is required")
    if len(organs_raw) > MAX_ORGANS:
        _fail(path, text, "organs", f"at most {MAX_ORGANS} organs per lattice")
    organs = [_validate_table(path, text, f"organs[{i}]", o, ORGAN_SCHEMA)
              for i, o in enumerate(organs_raw)]
    scenario = Scenario(path=path, text=text, values=values, organs=organs)
    _cross_check(scenario)
    return scenario


def _validate_table(path, text, table, given, params, skip=()):
    if not isinstance(given, dict):
        _fail(path, text, table, f"'{table}' must be a table")
    for key in given:
        if key not in params and key not in skip:
            _fail(path, text, f"{table}.{key}", f"unknown key '{table}.{key}'",
                  _suggest(key, list(params), prefix=f"{table}."))
    out = {}
    for key, p in params.items():
        dotted = f"{table}.{key}"
        if key in given:
            out[key] = _check_value(path, text, dotted, given[key], p)
        elif p.default is REQUIRED:
            _fail(path, text, table, f"missing required key '{dotted}'")
        else:
            out[key] = p.default
    return out


def _check_value(path, text, dotted, value, p: Param):
    def bad(why):
        _fail(path, text, dotted, f"{dotted} = {_toml_value(value)} {why}")

    def number(v, integer=False):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            bad(f"has the wrong type: expected {'an integer' if integer else 'a number'}"
                + (f" ({p.unit})" if p.unit else ""))
        if isinstance(v, float) and not math.isfinite(v):
            bad("is not a finite number")
        if ((p.lo is not None and (v <= p.lo if p.lo_open else v < p.lo))
                or (p.hi is not None and (v >= p.hi if p.hi_open else v > p.hi))):
            bad(f"is out of range: must be {p.bounds_text()}" + (f" ({p.unit})" if p.unit else ""))
        return int(v) if integer else float(v)

    if p.type == "str":
        if not isinstance(value, str):
            bad("has the wrong type: expected a string")
        if p.choices and value not in p.choices:
            bad("is not one of " + ", ".join(_toml_value(c) for c in p.choices))
        return value
    if p.type == "bool":
        if not isinstance(value, bool):
            bad("has the wrong type: expected true or false")
        return value
    if p.type in ("float", "int"):
        return number(value, integer=p.type == "int")
    size = {"vec3": 3, "range": 2, "shape": 3}[p.type]
    if not isinstance(value, list) or len(value) != size:
        bad(f"has the wrong type: expected a list of {size} numbers ({p.unit})")
    items = [number(v, integer=p.type == "shape") for v in value]
    if p.type == "range" and not items[0] < items[1]:
        bad("is not an increasing [from, to) range")
    return items


def _cross_check(s: Scenario):
    v = s.values
    shape = v["lattice"]["shape"]
    h = v["lattice"]["voxel_um"]
    extent = [n * h for n in shape]
    if v["cells"]["o2_proliferation_saturation_mmHg"] <= v["cells"]["o2_proliferation_threshold_mmHg"]:
        _fail(s.path, s.text, "cells.o2_proliferation_saturation_mmHg",
              "cells.o2_proliferation_saturation_mmHg must exceed cells.o2_proliferation_threshold_mmHg")
    centre = v["tumor"]["seed_center_um"]
    if centre is not None and any(c >= e for c, e in zip(centre, extent)):
        _fail(s.path, s.text, "tumor.seed_center_um",
              f"tumor.seed_center_um = {_toml_value(centre)} lies outside the lattice "
              f"({extent[0]:g} x {extent[1]:g} x {extent[2]:g} µm)")
    for process in PROCESSES.values():
        for key, message in (process.check(s) if process.check else []):
            _fail(s.path, s.text, key, message)
    spans = []
    for i, organ in enumerate(s.organs):
        z0, z1 = organ["z_um"]
        if z1 > extent[0] + 1e-9:
            _fail(s.path, s.text, f"organs[{i}].z_um",
                  f"organs[{i}].z_um = {_toml_value(organ['z_um'])} extends beyond the lattice "
                  f"(z extent {extent[0]:g} µm)")
        for j, (a, b) in enumerate(spans):
            if z0 < b and a < z1:
                _fail(s.path, s.text, f"organs[{i}].z_um",
                      f"organs[{i}].z_um overlaps organs[{j}].z_um")
        spans.append((z0, z1))
    seen = {}
    for i, organ in enumerate(s.organs):
        if organ["name"] in seen:
            _fail(s.path, s.text, f"organs[{i}].name",
                  f"organs[{i}].name = {_toml_value(organ['name'])} repeats "
                  f"organs[{seen[organ['name']]}].name: organ names must be unique")
        seen[organ["name"]] = i


def _suggest(key, candidates, prefix=""):
    close = difflib.get_close_matches(key, candidates, n=1)
    return f"did you mean '{prefix}{close[0]}'?" if close else ""


def _fail(path, text, dotted, message, hint=""):
    line = find_line(text, dotted)
    where = f"{path}:{line}" if line else path
    raise ScenarioError(f"{where}: {message}" + (f" ({hint})" if hint else ""))


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")


def find_line(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted key (`oxygen.vessel_mmHg`, `organs[1].z_um`)
    or of a table header (`organs[1]`, `oxygen`, `tumor.traits`) in TOML text;
    None if not found."""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header and header.group(2).replace(" ", "") == dotted:
            return number
    m = re.fullmatch(r"([^\[\]]+?)(?:\[(\d+)\])?(?:\.([^.\[\]]+))?", dotted)
    if not m:
        return None
    table, index, leaf = m.group(1), m.group(2), m.group(3)
    index = None if index is None else int(index)
    current, count = "", {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            current = header.group(2).replace(" ", "")
            count[current] = count.get(current, -1) + 1
            if leaf is None and current == table and index in (None, count[current]):
                return number
            continue
        key = _KEY.match(line)
        if not key:
            continue
        if leaf is None and current == "" and key.group(1) == table:
            return number
        if (leaf is not None and current == table and index in (None, count.get(current))
                and key.group(1) == leaf):
            return number
    return None
