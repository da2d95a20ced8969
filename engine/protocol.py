"""Protocols: a schedule of therapies, and rules that adapt it at check-ups.

A scenario's `[[therapy]]` entries are the schedule (engine.therapy).  A protocol may add
`[protocol]` (its name, what it is modelled on, how often the patient is seen) and
`[[rule]]` entries, each a condition on quantities measured at a check-up and an action:

    [[rule]]
    when = "burden_vs_baseline <= 0.5"          # conditions joined by "and"
    then = "stop chemo"                         # start / stop / reduce / switch

At a check-up (every `checkup_interval_h` from `first_checkup_h`, at the end of the
step that reaches it) the body measures the quantities of `QUANTITIES`, and every rule
whose conditions all hold fires, in file order; an action that would change nothing
(starting a therapy already running, stopping one that is not) is not recorded.  The
actions edit the schedule from the next step on, never the past:

* `start NAME`: a new course of therapy NAME (its `count` deliveries `interval_h`
  apart, the first `start_h` after the check-up: start_h = 0 gives the next step);
  a therapy with `held = true` is given only when a rule starts it;
* `stop NAME`: its deliveries after the check-up are dropped;
* `reduce NAME FACTOR`: its later doses (also of courses started later) × FACTOR;
* `switch A B`: stop A and start B.

A therapy's `max_cumulative` (in its dose unit) is the tolerability limit: a delivery
that would take the cumulative dose beyond it is not given (nor any later one).  Every
decision is recorded (`/decisions` in the run file) with the measures that led to it
(`/checkups`), and `oncolattice check` prints the rules with the static schedule.

A protocol can live in the scenario file or in its own TOML file (`[protocol]`,
`[[therapy]]`, `[[rule]]` only), which `scenario_with_protocol` puts in place of the
scenario's; shipped protocols are under `scenarios/protocols/`.  The word `untreated`
names the empty protocol.
"""
from __future__ import annotations

import dataclasses
import math
import operator
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from kernels.process import REQUIRED, Param

PROTOCOL_PACKAGE_DIR = "protocols"       # under the `scenarios` package (package data)
UNTREATED = "untreated"
PROTOCOL_TABLES = ("protocol", "therapy", "rule")
MAX_RULES = 64

PROTOCOL_SCHEMA: dict[str, Param] = {
    "name": Param("str", "", pattern=r"|[A-Za-z][A-Za-z0-9_]{0,63}",
                  pattern_text="an identifier: a letter, then up to 63 letters, digits or _",
                  source="names the protocol in reports"),
    "modelled_on": Param("str", "", source="the trial, guideline or study the protocol follows"),
    "checkup_interval_h": Param("float", 672.0, lo=0.0, hi=1e6, lo_open=True, unit="h",
                                source="restaging interval; 4 weeks, as the monthly PSA "
                                       "check-ups of adaptive abiraterone (Zhang et al. 2017, "
                                       "Nat Commun 8:1816)"),
    "first_checkup_h": Param("float", None, lo=0.0, hi=1e6, lo_open=True, unit="h",
                             source="the first check-up; default: one interval after the "
                                    "start"),
}
RULE_SCHEMA: dict[str, Param] = {
    "when": Param("str", REQUIRED, source="conditions 'quantity op number' (op: < <= > >=) "
                                          "joined by 'and'"),
    "then": Param("str", REQUIRED, source="start NAME | stop NAME | reduce NAME FACTOR | "
                                          "switch NAME NAME"),
}


# -- what a check-up measures ------------------------------------------------------------

@dataclass(frozen=True)
class Quantity:
    unit: str
    text: str


QUANTITIES: dict[str, Quantity] = {
    "burden_cells": Quantity("cells", "tumour cells, dormant ones included, in every lattice "
                                      "of the body"),
    "burden_vs_baseline": Quantity("ratio", "burden_cells / burden_cells at the start of the run"),
    "burden_change": Quantity("fraction", "burden_cells / burden_cells at the previous check-up "
                                          "(the start for the first) − 1"),
    "metastases": Quantity("colonies", "colonies founded so far (local, regional and distant)"),
    "new_metastases": Quantity("colonies", "colonies founded since the previous check-up"),
    "ctcs": Quantity("cells", "tumour cells in the circulation now"),
    "functional_fraction": Quantity("fraction", "functional cells of the primary organ / its "
                                                "initial count"),
    "toxicity": Quantity("fraction", "functional cells killed by therapy so far (events named "
                                     "*functional_killed*) / initial functional cells of the body"),
    "new_toxicity": Quantity("fraction", "toxicity added since the previous check-up (the "
                                         "harm of the last cycle)"),
    "immune_status": Quantity("-", "the patient's immune status (immune.status; 0 where immunity "
                                   "is not modelled, immune.enabled = false)"),
    "days": Quantity("d", "time since the start of the run"),
}
GIVEN_PREFIX = "given."     # given.NAME: deliveries of therapy NAME so far (prior therapy)
OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
ACTIONS = {"start": 1, "stop": 1, "reduce": 2, "switch": 2}     # action -> arguments


@dataclass(frozen=True)
class Condition:
    quantity: str
    op: str
    value: float

    def holds(self, measures: dict[str, float]) -> bool:
        return OPERATORS[self.op](measures[self.quantity], self.value)

    def __str__(self) -> str:
        return f"{self.quantity} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Action:
    verb: str
    therapies: tuple[str, ...]
    factor: float = 1.0

    def __str__(self) -> str:
        extra = f" {self.factor:g}" if self.verb == "reduce" else ""
        return f"{self.verb} {' '.join(self.therapies)}{extra}"


@dataclass(frozen=True)
class Rule:
    conditions: tuple[Condition, ...]
    action: Action

    def holds(self, measures: dict[str, float]) -> bool:
        return all(c.holds(measures) for c in self.conditions)

    def __str__(self) -> str:
        return f"when {' and '.join(map(str, self.conditions))}: {self.action}"


class RuleError(ValueError):
    """A rule that cannot be read: (key, message)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


_CONDITION = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*")


def parse_rule(i: int, entry: dict, therapy_names: list[str]) -> Rule:
    """The rule of `[[rule]]` entry i, or a RuleError naming `rule[i].when` / `.then`."""
    at = f"rule[{i}]"
    conditions = []
    for part in re.split(r"\band\b", entry["when"]):
        m = _CONDITION.fullmatch(part)
        if not m:
            raise RuleError(f"{at}.when", f"{at}.when: \"{part.strip()}\" is not a condition "
                                          "'quantity op number' (op one of < <= > >=)")
        name, op, number = m.groups()
        known = name in QUANTITIES or (name.startswith(GIVEN_PREFIX)
                                       and name[len(GIVEN_PREFIX):] in therapy_names)
        if not known:
            raise RuleError(f"{at}.when", f"{at}.when: unknown quantity \"{name}\" (measured: "
                                          f"{', '.join(QUANTITIES)}, or given.NAME of a therapy)")
        try:
            value = float(number)
        except ValueError:
            raise RuleError(f"{at}.when", f"{at}.when: \"{number}\" is not a number") from None
        if not math.isfinite(value):
            raise RuleError(f"{at}.when", f"{at}.when: {number} is not a finite number")
        conditions.append(Condition(name, op, value))
    words = entry["then"].split()
    verb = words[0] if words else ""
    if verb not in ACTIONS or len(words) != 1 + ACTIONS[verb]:
        raise RuleError(f"{at}.then", f"{at}.then = \"{entry['then']}\": expected start NAME, "
                                      "stop NAME, reduce NAME FACTOR or switch NAME NAME")
    names = tuple(words[1:3] if verb == "switch" else words[1:2])
    for name in names:
        if name not in therapy_names:
            raise RuleError(f"{at}.then", f"{at}.then: \"{name}\" is not a therapy of the "
                                          f"protocol ({', '.join(therapy_names) or 'none'})")
    factor = 1.0
    if verb == "reduce":
        try:
            factor = float(words[2])
        except ValueError:
            factor = math.nan
        if not 0.0 < factor < 1.0:
            raise RuleError(f"{at}.then", f"{at}.then: the factor of reduce must be a number "
                                          f"in (0, 1), got \"{words[2]}\"")
    if verb == "switch" and names[0] == names[1]:
        raise RuleError(f"{at}.then", f"{at}.then: switch needs two different therapies")
    return Rule(tuple(conditions), Action(verb, names, factor))


def rules_of(scenario) -> tuple[Rule, ...]:
    names = [t["name"] for t in scenario.therapies]
    return tuple(parse_rule(i, entry, names) for i, entry in enumerate(scenario.rules))


def check_protocol(scenario, fail) -> None:
    """Every rule reads, and every held therapy is started by some rule;
    `fail(key, message)` raises the one-line error."""
    try:
        rules = rules_of(scenario)
    except RuleError as exc:
        fail(exc.key, str(exc))
    started = {r.action.therapies[-1] for r in rules if r.action.verb in ("start", "switch")}
    for i, t in enumerate(scenario.therapies):
        if t["held"] and t["name"] not in started:
            fail(f"therapy[{i}].held", f"therapy[{i}] \"{t['name']}\" is held (given only when "
                                       "a rule starts it) but no rule starts it")


# -- check-ups ----------------------------------------------------------------------------

def checkup_steps(scenario) -> tuple[int, int]:
    """(first check-up step, steps between check-ups): times / step_h rounded half up,
    at least 1."""
    p, step_h = scenario.protocol, scenario["time.step_h"]
    every = max(1, math.floor(p["checkup_interval_h"] / step_h + 0.5))
    first_h = p["first_checkup_h"] if p["first_checkup_h"] is not None else p["checkup_interval_h"]
    return max(1, math.floor(first_h / step_h + 0.5)), every


def is_checkup(scenario, step: int) -> bool:
    if not scenario.rules:
        return False
    first, every = checkup_steps(scenario)
    return step >= first and (step - first) % every == 0


DECISION_DTYPE = np.dtype([("step", np.int64), ("time_h", np.float64), ("rule", np.int32),
                           ("action", "S8"), ("therapy", "S64"), ("factor", np.float64)])


@dataclass(frozen=True)
class Decision:
    """One edit of the schedule: from the step after `step` on."""

    step: int
    rule: int
    verb: str                 # start, stop or reduce (a switch is a stop and a start)
    therapy: str
    factor: float = 1.0


def decide(scenario, step: int, measures: dict[str, float], running: set[str]) -> list[Decision]:
    """The decisions of a check-up at `step`: every rule that holds, in file order; an
    action that changes nothing is dropped.  `running`: therapies with deliveries left
    after `step` (updated as decisions are taken)."""
    out = []
    for i, rule in enumerate(rules_of(scenario)):
        if not rule.holds(measures):
            continue
        a = rule.action
        edits = ([("stop", a.therapies[0]), ("start", a.therapies[1])] if a.verb == "switch"
                 else [(a.verb, a.therapies[0])])
        for verb, name in edits:
            if verb == "start" and name in running or verb == "stop" and name not in running:
                continue
            out.append(Decision(step, i, verb, name, a.factor if verb == "reduce" else 1.0))
            if verb == "start":
                running.add(name)
            elif verb == "stop":
                running.discard(name)
    return out


def decision_rows(decisions, step_h: float) -> np.ndarray:
    return np.array([(d.step, d.step * step_h, d.rule, d.verb, d.therapy, d.factor)
                     for d in decisions], dtype=DECISION_DTYPE)


def checkup_dtype() -> np.dtype:
    return np.dtype([("step", np.int64), ("time_h", np.float64)]
                    + [(name, np.float64) for name in QUANTITIES])


def checkup_row(step: int, step_h: float, measures: dict[str, float]) -> np.ndarray:
    row = np.zeros((), dtype=checkup_dtype())
    row["step"], row["time_h"] = step, step * step_h
    for name in QUANTITIES:
        row[name] = measures[name]
    return row


def protocol_lines(scenario) -> list[str]:
    """The adaptive part of the schedule, for `oncolattice check`."""
    if not scenario.rules:
        return []
    first, every = checkup_steps(scenario)
    step_h = scenario["time.step_h"]
    name = scenario.protocol["name"] or "(unnamed)"
    lines = [f"  protocol {name}" + (f", modelled on {scenario.protocol['modelled_on']}"
                                     if scenario.protocol["modelled_on"] else ""),
             f"  check-ups every {every * step_h / 24:g} days from day {first * step_h / 24:g} "
             f"(step {first}, then every {every} steps); rules, in order:"]
    lines += [f"    rule[{i}]: {rule}" for i, rule in enumerate(rules_of(scenario))]
    held = [t["name"] for t in scenario.therapies if t["held"]]
    if held:
        lines.append(f"  held until a rule starts them: {', '.join(held)}")
    return lines


# -- a protocol from its own file ---------------------------------------------------------

def find_protocol(name_or_path: str) -> tuple[str, str]:
    """(path, text) of a shipped protocol name or a protocol file."""
    from .errors import ScenarioError, printable
    if name_or_path in shipped_protocols():
        res = protocol_dir() / f"{name_or_path}.toml"
        return f"scenarios/protocols/{name_or_path}.toml", res.read_text(encoding="utf-8")
    path = Path(name_or_path)
    if not path.is_file():
        shipped = ", ".join(shipped_protocols())
        raise ScenarioError(printable(f"protocol \"{name_or_path}\": no such file or shipped "
                                      f"protocol ({UNTREATED}, {shipped})"))
    try:
        return str(path), path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(printable(f"protocol {name_or_path}: cannot read: {exc}")) from None


def protocol_dir():
    """The shipped protocols' folder (package data of `scenarios`, installed or not)."""
    return resources.files("scenarios") / PROTOCOL_PACKAGE_DIR


def shipped_protocols() -> list[str]:
    return sorted(p.name[:-5] for p in protocol_dir().iterdir() if p.name.endswith(".toml"))


def scenario_with_protocol(scenario: str, protocol: str):
    """The scenario (a built-in name or a path) with its therapies, `[protocol]` and rules
    replaced by those of `protocol` (`untreated`: none; a shipped name; a path)."""
    from .scenario import find_scenario, parse_scenario
    path, text = find_scenario(scenario)
    if protocol == UNTREATED:
        return parse_scenario(text, path, protocol=("", UNTREATED))
    return parse_scenario(text, path, protocol=find_protocol(protocol)[::-1])


def with_decisions(scenario, decisions) -> object:
    """The scenario whose schedule includes `decisions` (the rules rebuilt from it follow)."""
    return dataclasses.replace(scenario, decisions=tuple(decisions))


# -- the check-ups of a run ---------------------------------------------------------------

def burden(rows) -> int:
    """Tumour cells, dormant ones included, over the body's counts rows."""
    return sum(int(r["tumor"]) + int(r["dormant"]) for r in rows)


def harm_columns(row) -> tuple[str, ...]:
    """The counts columns of functional cells killed by a therapy: named *functional* and
    *killed* (irradiated_functional_killed, chemo_killed_functional, ...)."""
    return tuple(n for n in row.dtype.names if "functional" in n and "killed" in n)


class Clinic:
    """The check-ups of a body's run: what they measure, what they decide, their record.

    `after_step(body)` is called once a step after the census; at a check-up step it
    measures `QUANTITIES`, takes the decisions of the rules and returns them (the body
    puts them into its schedule).  `checkups` and `decided` hold this step's rows for
    the run file (`/checkups`, `/decisions`; empty at other steps)."""

    def __init__(self, scenario, rows):
        self.baseline = max(burden(rows), 1)
        self.last_burden = self.baseline
        self.metastases_seen = 0
        self.initial_functional = max(sum(int(r["functional"]) for r in rows), 1)
        self.harm = 0
        self.harm_seen = 0
        self.checkups = np.zeros(0, dtype=checkup_dtype())
        self.decided = np.zeros(0, dtype=DECISION_DTYPE)

    def measures(self, body) -> dict[str, float]:
        cells = burden(body.rows)
        metastases = len(body.registry.rows)
        contents = body.circulation.counts()
        out = {"burden_cells": float(cells),
               "burden_vs_baseline": cells / self.baseline,
               "burden_change": cells / max(self.last_burden, 1) - 1.0,
               "metastases": float(metastases),
               "new_metastases": float(metastases - self.metastases_seen),
               "ctcs": float(contents["in_blood"] + contents["in_lymph"]),
               "functional_fraction": float(body.rows[0]["functional_fraction"]),
               "toxicity": self.harm / self.initial_functional,
               "new_toxicity": (self.harm - self.harm_seen) / self.initial_functional,
               "immune_status": (float(body.scenario["immune.status"])
                                 if body.scenario["immune.enabled"] else 0.0),
               "days": body.time_h / 24.0}
        given = body.schedule[body.schedule["step"] <= body.step_index]
        for t in body.scenario.therapies:
            out[GIVEN_PREFIX + t["name"]] = float((given["therapy"] == t["name"].encode()).sum())
        return out

    def after_step(self, body) -> list[Decision]:
        """Count this step's harm; at a check-up, measure and decide."""
        self.harm += sum(int(r[c]) for r in body.rows for c in harm_columns(r))
        step, scenario = body.step_index, body.scenario
        if not is_checkup(scenario, step):
            self.checkups = self.checkups[:0]
            self.decided = self.decided[:0]
            return []
        measures = self.measures(body)
        later = body.schedule[body.schedule["step"] > step]
        running = {name.decode() for name in later["therapy"]}
        decisions = decide(scenario, step, measures, running)
        self.last_burden = int(measures["burden_cells"])
        self.metastases_seen = int(measures["metastases"])
        self.harm_seen = self.harm
        step_h = scenario["time.step_h"]
        self.checkups = checkup_row(step, step_h, measures).reshape(1)
        self.decided = decision_rows(decisions, step_h)
        return decisions
