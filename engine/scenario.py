"""Scenario files: TOML with physical units, validated against one schema.

Every parameter is declared once below with its type, unit, allowed range,
default and source.  Key names carry their unit (`_um`, `_h`, `_per_h`,
`_per_min`, `_mmHg`, `_um2_per_s`).  Loading rejects malformed TOML, unknown
keys, wrong types and out-of-range values with a one-line `ScenarioError` that
names the file, the line (where it can be found) and the dotted key.

Loading also refuses, before anything is allocated, every scenario that could not
run: relations between keys (organs inside the lattice, each holding voxels; vessel
geometry that fits the lattice; a run of at most `MAX_STEPS` steps), a vascular
network whose build would need far more memory than the lattice, and values whose
rule constants would not be finite.  Error messages are one printable line: echoed
values and keys are escaped and cut to about 80 characters.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from kernels.process import MAX_STEPS, PROCESSES, REQUIRED, Param, nonnegative, positive

from . import schedule  # noqa: F401  (imports every process: their parameters join SCHEMA)
from .circulation import SITE_ORGANS   # (and the [circulation] table joins SCHEMA)
from .errors import ScenarioError, printable
from kernels.lattice import TRAIT_NAMES

from .protocol import (MAX_RULES, PROTOCOL_SCHEMA, PROTOCOL_TABLES, RULE_SCHEMA,
                       check_protocol)
from .therapy import MAX_THERAPIES, THERAPY_SCHEMA, check_therapies

_pos, _nonneg = positive, nonnegative


def _level(default, source="founder trait level"):
    return Param("int", default, lo=0, hi=15, unit="level 0..15", source=source)


PHYSICELL = "PhysiCell default cell parameters"
GUARD = "bound: a guard, far beyond physiology"
MAX_TEXT_CHARS = 1_000_000      # a scenario file is a page of settings, not data
SHOWN_CHARS = 80                # longest value or key echoed in an error message
VASCULAR_FACTOR = 32            # vascular build memory allowed, in lattice memories
# An organ name names a census column (functional_<name>) and an HDF5 attribute entry.
ORGAN_NAME = r"[A-Za-z][A-Za-z0-9_]{0,63}"

SCHEMA: dict[str, dict[str, Param]] = {
    "scenario": {
        "name": Param("str", "unnamed", pattern=r"[^\x00-\x1f\x7f-\x9f]{1,100}",
                      pattern_text="1 to 100 characters, no control characters",
                      source="names the run and its default output file"),
        "description": Param("str", "", pattern=r"(?s).{0,10000}",
                             pattern_text="at most 10000 characters"),
        "seed": Param("int", 1, lo=0, hi=2**64 - 1, unit="-", source="Philox key; --seed overrides"),
    },
    "lattice": {
        "shape": Param("shape", REQUIRED, lo=4, hi=8192, unit="voxels (z, y, x)"),
        "voxel_um": Param("float", 20.0, lo=1.0, hi=1000.0, unit="µm",
                          source="one cell per voxel; cell diameter 10-20 µm; bounds: a guard"),
    },
    "time": {
        "step_h": Param("float", 1.0, lo=1e-3, hi=24.0, unit="h",
                        source="cells act over hours; lower bound: a guard (3.6 s)"),
        "duration_h": _pos(168.0, "h", "--days/--steps override", hi=1e6),
        "snapshot_every_steps": Param("int", 24, lo=1, hi=10**9, unit="steps"),
    },
    "vessels": {
        "jitter_um": _nonneg(20.0, "µm", "random offset of each capillary node from its grid "
                             "point; " + GUARD, hi=1e3),
        "feeding_spacing_um": _pos(400.0, "µm", "(approx.) distance between feeding arterioles; "
                                   + GUARD, hi=1e5),
        "feeding_radius_um": _nonneg(20.0, "µm", "(approx.) arteriole radius 10-25 µm; bound: small "
                                     "arteries reach 0.25 mm", hi=250.0),
        "lymph_spacing_um": _pos(300.0, "µm", "(approx.) lymphatic capillaries are sparser than "
                                 "blood capillaries; " + GUARD, hi=1e5),
    },
    "tumor": {
        "seed_center_um": Param("vec3", None, lo=0.0, unit="µm (z, y, x); default: lattice centre"),
        "seed_radius_um": _pos(40.0, "µm", "a small settled nodule; " + GUARD + " (10 cm)", hi=1e5),
    },
    "tumor.traits": {
        "proliferation_level": _level(8),
        "adhesion_level": _level(4, "founder trait level; functional cells hold 15"),
        "apoptosis_resistance_level": _level(4),
        "chemo_resistance_level": _level(0, "founder trait level; 0: fully drug-sensitive"),
        "antigen_level": _level(8, "founder trait level of antigen presentation (approx.: "
                                   "half the maximum; 0 is complete loss)"),
        "checkpoint_level": _level(0, "founder trait level of the checkpoint ligand "
                                      "(PD-L1-like); 0: none expressed"),
        "receptor_level": _level(8, "founder trait level of hormone / growth-signal "
                                    "receptor dependence (approx.)"),
    },
    "tumor.subclone": {
        "fraction": Param("float", 0.0, lo=0.0, hi=1.0, unit="fraction of the seed's cells",
                          source="a pre-existing subclone scattered through the seed (for "
                                 "example drug-resistant cells before therapy); 0: none"),
        **{f"{name}_level": Param("int", None, lo=0, hi=15, unit="level 0..15",
                                  source="the subclone's level; default: the founder's")
           for name in TRAIT_NAMES},
    },
}

ORGAN_SCHEMA: dict[str, Param] = {
    "name": Param("str", REQUIRED, pattern=ORGAN_NAME,
                  pattern_text="an identifier: a letter, then up to 63 letters, digits or _",
                  source="names its census column functional_<name>"),
    "z_um": Param("range", REQUIRED, lo=0.0, unit="µm [from, to) along z"),
    "functional_density": Param("float", 0.7, lo=0.0, hi=1.0, lo_open=True, unit="fraction",
                                source="(approx.) parenchymal voxels per organ voxel"),
    "capillary_spacing_um": _pos(100.0, "µm", "intercapillary distance about 100 µm in typical "
                                 "tissue; " + GUARD, hi=1e5),
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

# A site of the body (engine.body): a tissue block of one organ, with that organ's own
# parameters (every organ parameter but its z range: the block is all organ).
SITE_SCHEMA: dict[str, Param] = {
    "name": Param("str", REQUIRED, pattern=ORGAN_NAME,
                  pattern_text="an identifier: a letter, then up to 63 letters, digits or _",
                  source="names its lattice in the run file"),
    "organ": Param("str", REQUIRED, choices=SITE_ORGANS,
                   source="the organ the block samples (engine.circulation: flow and drainage)"),
    "shape": Param("shape", REQUIRED, lo=4, hi=8192, unit="voxels (z, y, x)"),
    "drains_to": Param("str", "", pattern=r"|blood|" + ORGAN_NAME,
                       pattern_text='"blood" or the name of a lymph node site',
                       source="lymph nodes: the next station of the chain, or blood "
                              "(thoracic duct)"),
    **{key: p for key, p in ORGAN_SCHEMA.items() if key not in ("name", "z_um")},
}
MAX_SITES = 32                  # lattice ids 1..32 (Philox counters hold up to 255)
ARRAYS_OF_TABLES = ("organs", "sites", "therapy", "rule")
TABLES_OUTSIDE_SCHEMA = (*ARRAYS_OF_TABLES, "protocol")
PRIMARY_LATTICE = "primary"


@dataclass
class Scenario:
    """A validated scenario: resolved values (defaults filled), and where it came from."""

    path: str
    text: str
    values: dict[str, dict[str, Any]]
    organs: list[dict[str, Any]]
    sites: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    therapies: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    protocol: dict[str, Any] = dataclasses.field(default_factory=dict)   # [protocol] values
    rules: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # [[rule]] entries
    decisions: tuple = ()           # schedule edits taken at check-ups (engine.protocol)
    # where the therapy, protocol and rule tables were read (a protocol file, or the scenario)
    protocol_path: str | None = None
    protocol_text: str | None = None
    # which lattice of the body this scenario builds (engine.body derives the sites')
    lattice_name: str = "primary"
    lattice_id: int = 0
    seeded: bool = True             # the primary holds the tumour seed; sites start healthy

    def fail_in_protocol(self, key: str, message: str):
        """The one-line error of a therapy, protocol or rule key, naming the file (and line)
        it was read from."""
        _fail(self.protocol_path or self.path, self.protocol_text or self.text, key, message)

    def __getitem__(self, dotted: str):
        table, _, key = dotted.rpartition(".")
        return self.values[table][key]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.values["lattice"]["shape"])

    def site(self, i: int) -> "Scenario":
        """The scenario of site lattice i: the primary's physiology and step, the site's
        block shape and organ (label 1, filling the block), lattice id i + 1, no tumour."""
        site = self.sites[i]
        values = copy.deepcopy(self.values)
        values["lattice"]["shape"] = list(site["shape"])
        values["tumor"]["seed_center_um"] = None
        organ = {key: site[key] for key in ORGAN_SCHEMA if key in site}
        organ["name"] = site["organ"]
        organ["z_um"] = [0.0, site["shape"][0] * self["lattice.voxel_um"]]
        return dataclasses.replace(self, values=values, organs=[organ], sites=[],
                                   lattice_name=site["name"], lattice_id=i + 1, seeded=False)

    def with_overrides(self, *, seed: int | None = None, duration_h: float | None = None):
        if seed is not None:
            _check_value(self.path, self.text, "scenario.seed", seed, SCHEMA["scenario"]["seed"])
            self.values["scenario"]["seed"] = int(seed)
        if duration_h is not None:
            _check_value(self.path, self.text, "time.duration_h", duration_h,
                         SCHEMA["time"]["duration_h"])
            self.values["time"]["duration_h"] = float(duration_h)
            _check_steps(self)
        return self

    def with_parameters(self, values: dict[str, Any]):
        """The scenario with `values` ({dotted key: value}) set, each checked as if the
        file held it (its type and range, :func:`_check_value`), then the relations
        between keys (:func:`_cross_check`).  Keys are ``table.key`` of the schema or
        ``organs[i].key`` / ``sites[i].key``; any other is an unknown key."""
        for dotted, value in values.items():
            entry, params, key = self._entry_of(dotted)
            entry[key] = _check_value(self.path, self.text, dotted, value, params[key])
        _cross_check(self)
        return self

    def _entry_of(self, dotted: str):
        """(the dict holding `dotted`'s value, its schema, its key); an unknown key is a
        one-line error naming it (with the closest known key)."""
        table, _, key = dotted.rpartition(".")
        arrays = {"organs": (self.organs, ORGAN_SCHEMA), "sites": (self.sites, SITE_SCHEMA)}
        found = re.fullmatch(r"(organs|sites)\[(\d{1,4})\]", table)
        if found and int(found[2]) < len(arrays[found[1]][0]) and key in arrays[found[1]][1]:
            entries, params = arrays[found[1]]
            return entries[int(found[2])], params, key
        if table in SCHEMA and key in SCHEMA[table]:
            return self.values[table], SCHEMA[table], key
        known = [f"{t}.{k}" for t, params in SCHEMA.items() for k in params]
        known += [f"{name}[{i}].{k}" for name, (entries, params) in arrays.items()
                  for i in range(len(entries)) for k in params]
        raise ScenarioError(printable(f"unknown key '{_key_shown(dotted)}'" + (
            f" ({hint})" if (hint := _suggest(dotted, known)) else "")))

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
        for site in self.sites:
            lines.append("\n[[sites]]")
            lines.extend(f"{key} = {_toml_value(site[key])}" for key in SITE_SCHEMA)
        if self.rules:
            lines.append("\n[protocol]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in self.protocol.items()
                         if value is not None)
        for therapy in self.therapies:
            lines.append("\n[[therapy]]")
            lines.extend(f"{key} = {_toml_value(therapy[key])}" for key in THERAPY_SCHEMA
                         if therapy[key] is not None)
        for rule in self.rules:
            lines.append("\n[[rule]]")
            lines.extend(f"{key} = {_toml_value(rule[key])}" for key in RULE_SCHEMA)
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
        for i, site in enumerate(self.sites):
            for key, p in SITE_SCHEMA.items():
                rows.append((f"sites[{i}].{key}", site[key], p))
        if self.rules:
            rows += [(f"protocol.{key}", value, PROTOCOL_SCHEMA[key])
                     for key, value in self.protocol.items() if value is not None]
        for i, therapy in enumerate(self.therapies):
            for key, p in THERAPY_SCHEMA.items():
                if therapy[key] is not None:
                    rows.append((f"therapy[{i}].{key}", therapy[key], p))
        for i, rule in enumerate(self.rules):
            rows += [(f"rule[{i}].{key}", rule[key], p) for key, p in RULE_SCHEMA.items()]
        width = max(len(name) for name, _, _ in rows)
        out = []
        for name, value, p in rows:
            shown = "lattice centre" if value is None else _toml_value(value)
            note = "; ".join(s for s in (p.unit, p.source) if s)
            out.append(f"  {name:<{width}} = {shown}" + (f"   [{note}]" if note else ""))
        return out


def _shown(value, limit: int = SHOWN_CHARS) -> str:
    """`value` as TOML for a message: nesting beyond 8 levels and inline tables elided,
    cut to `limit` characters (however long or deep the value, the work is bounded)."""
    out, size = [], 0

    def put(piece):
        nonlocal size
        out.append(piece)
        size += len(piece)

    def walk(v, depth):
        if size > limit:
            return
        if isinstance(v, dict):
            put("{...}")
        elif isinstance(v, (list, tuple)) and depth >= 8:
            put("[...]")
        elif isinstance(v, (list, tuple)):
            put("[")
            for i, item in enumerate(v):
                if size > limit:
                    break
                put(", " if i else "")
                walk(item, depth + 1)
            put("]")
        elif isinstance(v, str) and len(v) > limit:
            put(_toml_value(v[:limit]))
        else:
            put(_toml_value(v))

    walk(value, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _key_shown(key: str) -> str:
    """A key as an error message names it: escaped, at most SHOWN_CHARS characters."""
    return key if len(key) <= SHOWN_CHARS else key[:SHOWN_CHARS - 3] + "..."


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


def parse_scenario(text: str, path: str = "<scenario>", protocol=None) -> Scenario:
    """The validated scenario of TOML `text`; `protocol` = (text, path) of a protocol file
    whose [protocol], [[therapy]] and [[rule]] tables replace the scenario's (errors in
    them name that file)."""
    raw = _parse_toml(text, path)
    ppath, ptext = path, text
    if protocol is not None:
        ptext, ppath = protocol
        praw = _parse_toml(ptext, ppath) if ptext else {}
        for name in praw:
            if name not in PROTOCOL_TABLES:
                _fail(ppath, ptext, name, f"'{_key_shown(name)}' cannot be in a protocol file "
                                          "(it holds [protocol], [[therapy]] and [[rule]] tables)")
        raw = {k: v for k, v in raw.items() if k not in PROTOCOL_TABLES} | praw
    values: dict[str, dict[str, Any]] = {}
    nested = {}
    for t in SCHEMA:
        if "." in t:
            parent, child = t.split(".")
            nested.setdefault(parent, set()).add(child)
    for name in raw:
        if name not in SCHEMA and name not in TABLES_OUTSIDE_SCHEMA:
            _fail(path, text, name, f"unknown table or key '{_key_shown(name)}'",
                  _suggest(name, [*SCHEMA, *TABLES_OUTSIDE_SCHEMA]))
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
    sites = _array_of_tables(path, text, raw, "sites", SITE_SCHEMA, MAX_SITES)
    therapies = _array_of_tables(ppath, ptext, raw, "therapy", THERAPY_SCHEMA, MAX_THERAPIES)
    rules = _array_of_tables(ppath, ptext, raw, "rule", RULE_SCHEMA, MAX_RULES)
    given = raw.get("protocol", {})
    if not isinstance(given, dict):
        _fail(ppath, ptext, "protocol", "'protocol' must be a table")
    protocol_values = _validate_table(ppath, ptext, "protocol", given, PROTOCOL_SCHEMA)
    scenario = Scenario(path=path, text=text, values=values, organs=organs, sites=sites,
                        therapies=therapies, protocol=protocol_values, rules=rules,
                        protocol_path=ppath, protocol_text=ptext)
    _cross_check(scenario)
    return scenario


def _array_of_tables(path, text, raw, name, schema, limit) -> list[dict]:
    """The validated entries of an optional array of tables ([[name]])."""
    entries = raw.get(name, [])
    if not isinstance(entries, list):
        _fail(path, text, name, f"'{name}' must be an array of tables ([[{name}]])")
    if len(entries) > limit:
        _fail(path, text, name, f"at most {limit} [[{name}]] tables")
    return [_validate_table(path, text, f"{name}[{i}]", entry, schema)
            for i, entry in enumerate(entries)]


def _parse_toml(text: str, path: str) -> dict:
    """The TOML document, or a one-line error: malformed TOML (with its line), a file
    too large to be a scenario, nesting too deep for the parser, an integer too long."""
    if len(text) > MAX_TEXT_CHARS:
        raise ScenarioError(printable(f"{path}: {len(text)} characters is too large for a "
                                       f"scenario file (at most {MAX_TEXT_CHARS})"))
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        why = str(exc)
    except RecursionError:
        why = f"arrays or inline tables nested too deeply (line {_deepest_line(text)})"
    except ValueError:             # tomllib turns digits into int: Python's length limit
        why = f"an integer of more than 4300 digits (line {_longest_number_line(text)})"
    raise ScenarioError(printable(f"{path}: malformed TOML: {why}"))


def _deepest_line(text: str) -> int:
    """Line with the most opening brackets and braces (where nesting runs deep)."""
    lines = text.splitlines() or [""]
    return 1 + max(range(len(lines)), key=lambda n: lines[n].count("[") + lines[n].count("{"))


def _longest_number_line(text: str) -> int:
    """Line holding the longest run of digits."""
    best, line = 0, 1
    for number, content in enumerate(text.splitlines(), start=1):
        run = max((len(m) for m in re.findall(r"[0-9_]+", content)), default=0)
        if run > best:
            best, line = run, number
    return line


def _validate_table(path, text, table, given, params, skip=()):
    if not isinstance(given, dict):
        _fail(path, text, table, f"'{table}' must be a table")
    for key in given:
        if key not in params and key not in skip:
            _fail(path, text, f"{table}.{key}", f"unknown key '{table}.{_key_shown(key)}'",
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
        _fail(path, text, dotted, f"{dotted} = {_shown(value)} {why}")

    def number(v, integer=False):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
            bad(f"has the wrong type: expected {'an integer' if integer else 'a number'}"
                + (f" ({p.unit})" if p.unit else ""))
        if isinstance(v, float) and not math.isfinite(v):
            bad("is not a finite number")
        if ((p.lo is not None and (v <= p.lo if p.lo_open else v < p.lo))
                or (p.hi is not None and (v >= p.hi if p.hi_open else v > p.hi))):
            bad(f"is out of range: must be {p.bounds_text()}" + (f" ({p.unit})" if p.unit else ""))
        if integer:
            return int(v)
        try:
            return float(v)
        except OverflowError:           # an integer beyond the float range
            bad("is not a finite number")

    if p.type == "str":
        if not isinstance(value, str):
            bad("has the wrong type: expected a string")
        if p.choices and value not in p.choices:
            bad("is not one of " + ", ".join(_toml_value(c) for c in p.choices))
        if p.pattern and not re.fullmatch(p.pattern, value):
            bad(f"is not allowed: expected {p.pattern_text}")
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
    """Relations between keys, in the order a reader fixes them; the first fails."""
    _check_steps(s)
    _check_oxygen_ramp(s)
    _check_seed_centre(s)
    check_therapies(s, s.fail_in_protocol)
    check_protocol(s, s.fail_in_protocol)
    for process in PROCESSES.values():
        for key, message in (process.check(s) if process.check else []):
            if key.startswith(("therapy", "rule", "protocol")):
                s.fail_in_protocol(key, message)
            _fail(s.path, s.text, key, message)
    _check_organs(s)
    _check_vessels(s)
    _check_vascular_memory(s)
    _check_sites(s)
    _check_rule_constants(s)


def _extent(s: Scenario) -> list[float]:
    h = s["lattice.voxel_um"]
    return [n * h for n in s.shape]


def _check_steps(s: Scenario):
    """A run takes at most MAX_STEPS steps (duration_h / step_h)."""
    duration, step = s["time.duration_h"], s["time.step_h"]
    steps = duration / step
    if not steps <= MAX_STEPS:
        _fail(s.path, s.text, "time.duration_h",
              f"time.duration_h = {duration:g} h at time.step_h = {step:g} h is {steps:.3g} "
              f"steps: a run takes at most {MAX_STEPS:.0e} steps")


def _check_oxygen_ramp(s: Scenario):
    if s["cells.o2_proliferation_saturation_mmHg"] <= s["cells.o2_proliferation_threshold_mmHg"]:
        _fail(s.path, s.text, "cells.o2_proliferation_saturation_mmHg",
              "cells.o2_proliferation_saturation_mmHg must exceed cells.o2_proliferation_threshold_mmHg")


def _check_seed_centre(s: Scenario):
    centre, extent = s["tumor.seed_center_um"], _extent(s)
    if centre is not None and any(c >= e for c, e in zip(centre, extent)):
        _fail(s.path, s.text, "tumor.seed_center_um",
              f"tumor.seed_center_um = {_toml_value(centre)} lies outside the lattice "
              f"({extent[0]:g} x {extent[1]:g} x {extent[2]:g} µm)")


def reserved_organ_names() -> set[str]:
    """Organ names whose census column functional_<name> is already a counts column,
    and "none" (the name of label 0 in run files)."""
    from .simulation import counts_dtype
    prefix = "functional_"
    return {"none"} | {c[len(prefix):] for c in counts_dtype(()).names if c.startswith(prefix)}


def _check_organs(s: Scenario):
    """Organs lie inside the lattice, do not overlap, each holds at least one voxel
    centre, and have unique names that are not reserved."""
    from .vasculature import organ_slabs
    extent, h = _extent(s), s["lattice.voxel_um"]
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
    holding = {label for label, _, _ in organ_slabs(s, s.shape[0])}
    for i, organ in enumerate(s.organs):
        if i + 1 not in holding:
            _fail(s.path, s.text, f"organs[{i}].z_um",
                  f"organs[{i}].z_um = {_toml_value(organ['z_um'])} holds no voxel: no voxel "
                  f"centre ((k + 0.5) x {h:g} µm along z) lies in [from, to)")
    seen, reserved = {}, reserved_organ_names()
    for i, organ in enumerate(s.organs):
        name = organ["name"]
        if name in reserved:
            _fail(s.path, s.text, f"organs[{i}].name",
                  f"organs[{i}].name = {_toml_value(name)} is reserved (its census column "
                  f"would be functional_{name}); reserved: {', '.join(sorted(reserved))}")
        if name in seen:
            _fail(s.path, s.text, f"organs[{i}].name",
                  f"organs[{i}].name = {_toml_value(name)} repeats "
                  f"organs[{seen[name]}].name: organ names must be unique")
        seen[name] = i


def _check_vessels(s: Scenario):
    """Networks are no denser than the voxels (one node per voxel at most), and a
    feeding arteriole fits in the lattice with tissue beside it."""
    h, nz, ny = s["lattice.voxel_um"], s.shape[0], s.shape[1]
    spacings = [(f"organs[{i}].capillary_spacing_um", o["capillary_spacing_um"])
                for i, o in enumerate(s.organs)]
    spacings.append(("vessels.lymph_spacing_um", s["vessels.lymph_spacing_um"]))
    for key, spacing in spacings:
        if spacing < h:
            _fail(s.path, s.text, key, f"{key} = {spacing:g} µm is below lattice.voxel_um = "
                                       f"{h:g} µm: vessels are at least one voxel apart")
    radius, limit = s["vessels.feeding_radius_um"], min(nz, ny) * h / 2
    if radius >= limit:
        _fail(s.path, s.text, "vessels.feeding_radius_um",
              f"vessels.feeding_radius_um = {radius:g} µm must be below half the lattice's "
              f"smaller z or y extent ({limit:g} µm)")


def _check_vascular_memory(s: Scenario):
    """The vascular build needs at most VASCULAR_FACTOR times the lattice's own memory,
    and no more than the host has available."""
    from .run import available_host_bytes
    from .state import human_bytes, run_bytes
    from .vasculature import build_bytes
    need = build_bytes(s, s.shape)
    allowed = VASCULAR_FACTOR * run_bytes(s.shape)["device_bytes"]
    have = available_host_bytes()
    if need > allowed or (have is not None and need > have):
        key, spacing = min([(f"organs[{i}].capillary_spacing_um", o["capillary_spacing_um"])
                            for i, o in enumerate(s.organs)]
                           + [("vessels.lymph_spacing_um", s["vessels.lymph_spacing_um"])],
                           key=lambda pair: pair[1])
        _fail(s.path, s.text, key,
              f"{key} = {spacing:g} µm: building the vascular network needs "
              f"{human_bytes(need)}, more than {human_bytes(min(allowed, have or allowed))}")


def _check_sites(s: Scenario):
    """Sites have unique names (not the primary's), lymph drainage names lymph node
    sites (or blood) and has no loop, and each site block is a lattice that could run."""
    seen = {}
    nodes = {site["name"] for site in s.sites if site["organ"] == "lymph_node"}
    for i, site in enumerate(s.sites):
        name, key = site["name"], f"sites[{i}].name"
        if name == PRIMARY_LATTICE or name in seen:
            _fail(s.path, s.text, key, f"{key} = {_toml_value(name)} " + (
                "is the primary lattice's name" if name == PRIMARY_LATTICE
                else f"repeats sites[{seen.get(name)}].name: site names must be unique"))
        seen[name] = i
    organs = {}
    for i, site in enumerate(s.sites):
        organ, key = site["organ"], f"sites[{i}].organ"
        if organ != "lymph_node" and organ in organs:
            _fail(s.path, s.text, key, f"{key} = {_toml_value(organ)} repeats sites[{organs[organ]}]"
                                       ".organ: one block per organ (lymph nodes excepted)")
        organs[organ] = i
    for i, site in enumerate(s.sites):
        key, target = f"sites[{i}].drains_to", site["drains_to"]
        if target and site["organ"] != "lymph_node":
            _fail(s.path, s.text, key, f"{key} = {_toml_value(target)}: only a lymph node "
                                       f"site drains on (sites[{i}].organ = {_toml_value(site['organ'])})")
        if not target and site["organ"] == "lymph_node":
            _fail(s.path, s.text, f"sites[{i}]", f"{key} is missing: a lymph node site drains "
                                                 'to another lymph node site or to "blood"')
        if target not in ("", "blood") and target not in nodes:
            _fail(s.path, s.text, key, f"{key} = {_toml_value(target)} is not a lymph node site "
                                       f"(lymph node sites: {', '.join(sorted(nodes)) or 'none'})")
    sentinel, key = s["circulation.sentinel_node"], "circulation.sentinel_node"
    if sentinel and sentinel not in nodes:
        _fail(s.path, s.text, key, f"{key} = {_toml_value(sentinel)} is not a lymph node site "
                                   f"(lymph node sites: {', '.join(sorted(nodes)) or 'none'})")
    _check_drainage_loops(s)
    _check_body_memory(s)
    for i in range(len(s.sites)):
        site = s.site(i)
        try:
            _check_vessels(site)
            _check_vascular_memory(site)
        except ScenarioError as exc:          # name the site's key, and its line
            found = re.match(re.escape(printable(s.path)) + r"(?::\d+)?: (.*)", str(exc))
            message = (found.group(1) if found else str(exc)).replace("organs[0].", f"sites[{i}].")
            key = re.search(r"(sites\[\d+\]\.\w+|vessels\.\w+)", message)
            _fail(s.path, s.text, key.group(1) if key else f"sites[{i}]", message)


def _check_body_memory(s: Scenario):
    """The body's lattices together fit in the host's memory (the run checks the GPU's
    before it allocates); the message names the largest lattice's shape key."""
    from .run import available_host_bytes, lattice_shapes
    from .state import host_bytes_per_voxel, human_bytes
    shapes = lattice_shapes(s)
    voxels = {key: int(np.prod(shape, dtype=np.int64)) for key, shape in shapes.items()}
    need = sum(voxels.values()) * host_bytes_per_voxel("numba")
    have = available_host_bytes()
    if have is not None and need > have:
        key = max(voxels, key=voxels.get)
        _fail(s.path, s.text, key, f"{key} = {_toml_value(list(shapes[key]))}: the body's "
                                   f"{len(shapes)} lattices need about {human_bytes(need)} of "
                                   f"memory, more than the {human_bytes(have)} available")


def _check_drainage_loops(s: Scenario):
    """Following drains_to from any node reaches blood (or an end) without a loop."""
    drains = {site["name"]: site["drains_to"] for site in s.sites}
    for i, site in enumerate(s.sites):
        visited, at = [], site["name"]
        while at in drains and drains[at] not in ("", "blood"):
            visited.append(at)
            at = drains[at]
            if at in visited:
                key = f"sites[{i}].drains_to"
                _fail(s.path, s.text, key, f"{key}: lymph drainage loops "
                                           f"({' -> '.join(visited + [at])})")


def _finite(value) -> bool:
    """Whether a rule constant (number, array, or dataclass of them) is finite."""
    if dataclasses.is_dataclass(value):
        return all(_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, (bool, str)) or value is None:
        return True
    array = np.asarray(value)
    return array.dtype.kind not in "fc" or bool(np.isfinite(array).all())


def _check_rule_constants(s: Scenario):
    """Every process derives its rule constants without overflow, and all are finite
    (the ranges above make this hold; this is the net under them, naming the table)."""
    for process in PROCESSES.values():
        if process.derive is None:
            continue
        try:
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                constants = process.derive(s)
            wrong = [name for name, value in constants.items() if not _finite(value)]
        except (ArithmeticError, ValueError) as exc:   # OverflowError, FloatingPointError
            wrong = [str(exc)]
        if wrong:
            table = next(iter(process.params), "scenario")
            _fail(s.path, s.text, table,
                  f"{table}: these values give process {process.name} a rule constant that "
                  f"is not finite ({_key_shown(wrong[0])})")


def _suggest(key, candidates, prefix=""):
    if len(key) > SHOWN_CHARS:
        return ""
    close = difflib.get_close_matches(key, candidates, n=1)
    return f"did you mean '{prefix}{close[0]}'?" if close else ""


def _fail(path, text, dotted, message, hint=""):
    line = find_line(text, dotted)
    where = f"{path}:{line}" if line else path
    raise ScenarioError(printable(f"{where}: {message}" + (f" ({hint})" if hint else "")))


_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _header_name(line: str) -> str | None:
    """The table name of a `[table]` or `[[array.of.tables]]` header line (spaces
    removed), or None."""
    stripped = line.lstrip()
    if not stripped.startswith("["):
        return None
    inner = stripped[2:] if stripped.startswith("[[") else stripped[1:]
    end = inner.find("]")
    name = inner[:end].replace(" ", "").replace("\t", "") if end >= 0 else ""
    return name if name and set(name) <= _NAME_CHARS | {"."} else None


def _key_name(line: str) -> str | None:
    """The bare key of a `key = value` line, or None."""
    key = line.partition("=")[0].strip() if "=" in line else ""
    return key if key and set(key) <= _NAME_CHARS else None


def _split_dotted(dotted: str):
    """(table, index or None, leaf or None) of `table.leaf`, `table[i]`, `table[i].leaf`
    or a top-level `key` (then table is the key); None if it is none of these."""
    if "[" in dotted:
        table, _, rest = dotted.partition("[")
        index, _, after = rest.partition("]")
        if not (table and index.isdigit() and len(index) < 6) or after[:1] not in ("", "."):
            return None
        leaf = after[1:] or None
        return (table, int(index), leaf) if "[" not in after and "." not in (leaf or "") else None
    table, _, leaf = dotted.rpartition(".")
    return (table, None, leaf) if table else (dotted, None, None)


def find_line(text: str, dotted: str) -> int | None:
    """Best-effort line of a dotted key (`oxygen.vessel_mmHg`, `organs[1].z_um`)
    or of a table header (`organs[1]`, `oxygen`, `tumor.traits`) in TOML text;
    None if not found.  One pass over the lines, so its cost is linear in the text: a
    header named exactly `dotted` wins, else the first matching key line."""
    parts = _split_dotted(dotted)
    table, index, leaf = parts if parts else (None, None, None)
    current, count, found = "", {}, None
    for number, line in enumerate(text.splitlines(), start=1):
        header = _header_name(line)
        if header is not None:
            if header == dotted:
                return number
            current = header
            count[current] = count.get(current, -1) + 1
            if (found is None and leaf is None and current == table
                    and index in (None, count[current])):
                found = number
            continue
        if found is not None or parts is None:
            continue
        key = _key_name(line)
        if key is None:
            continue
        if leaf is None and current == "" and key == table:
            found = number
        elif (leaf is not None and current == table and index in (None, count.get(current))
              and key == leaf):
            found = number
    return found
