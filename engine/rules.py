"""Rule tables: the scenario's physiology turned into what kernels compare against.

Each process derives its own rule constants from its own parameters
(`Process.rules_from` in its module under `kernels/`); here they are gathered, with
the Philox key and the step length, into one `Rules`.  Every constant is computed
once, on the host, in float64, and rounded to the kernel types (float32
coefficients, uint32 probability thresholds), so both backends read identical
numbers.  Rows of the per-cell-type tables: 0 = tumour, 1..n = functional cells of
organ 1..n.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from kernels.philox import seed_key


@dataclass(frozen=True)
class Rules:
    key: tuple[int, int]
    step_h: float
    # rule constants each declared process derives itself (kernels.process.Process.rules_from)
    processes: dict = field(default_factory=dict)

    def __getattr__(self, name):
        """A process's rule constant by name (names are unique across processes)."""
        for constants in self.__dict__.get("processes", {}).values():
            if name in constants:
                return constants[name]
        raise AttributeError(name)

    def replace(self, **changes) -> "Rules":
        """A copy with some fields or process rule constants changed (experiments, tests)."""
        processes = {p: dict(c) for p, c in self.processes.items()}
        fields = {}
        for name, value in changes.items():
            owner = [p for p, c in processes.items() if name in c]
            if owner:
                processes[owner[0]][name] = value
            else:
                fields[name] = value
        return dataclasses.replace(self, processes=processes, **fields)


def build_rules(scenario) -> Rules:
    return Rules(key=seed_key(scenario["scenario.seed"]), step_h=scenario["time.step_h"],
                 processes=process_rules(scenario))


def process_rules(scenario) -> dict[str, dict]:
    """{process name: {constant: value}} from every process that derives its own rules."""
    from kernels.process import PROCESSES
    out, seen = {}, {}
    for p in PROCESSES.values():
        if p.derive:
            out[p.name] = dict(p.derive(scenario))
            for name in out[p.name]:
                if name in seen:
                    raise RuntimeError(f"rule constant {name!r} of {p.name} is also {seen[name]}'s")
                seen[name] = p.name
    return out
