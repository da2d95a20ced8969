"""The simulation: a scenario's lattice, its rules, and the clock of the run.

One step runs the passes of `engine.schedule.STEP` in order, each under its
condition (the README's pass table shows the schedule).  Every pass is a kernel from
`kernels/` with the signature `pass(lattice, rules, step)`; the loop never looks at
the backend.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.census import take_census
from kernels.intravasation import DEPARTURE_DTYPE, intravasate
from kernels.lattice import FUNCTIONAL, KIND_NAMES, TUMOR
from kernels.perfusion import spread_perfusion

from .backend import architecture
from .domain import decomposition
from .rules import build_rules
from .schedule import EVENT_NAMES, FIELD_PASSES, STEP
from .state import SNAPSHOT_FIELDS
from .tissue import build_tissue


def counts_dtype(organ_names) -> np.dtype:
    """One row of the per-step counts table."""
    fields = [("step", np.int64), ("time_h", np.float64)]
    fields += [(name, np.int64) for name in KIND_NAMES]
    fields += [(f"functional_{name}", np.int64) for name in organ_names]
    fields += [("functional_fraction", np.float64), ("hypoxic_tumor", np.int64),
               ("hypoxic_functional", np.int64), ("motile_tumor", np.int64),
               ("vessel_perfused", np.int64),
               ("perfused_fraction", np.float64)]
    fields += [(name, np.int64) for name in EVENT_NAMES]
    fields += [("new_vessel_length_um", np.float64)]
    fields += [("vegf_max_ng_per_mL", np.float64)]
    fields += [("o2_sweeps", np.int64), ("o2_residual_mmHg", np.float64),
               ("vegf_sweeps", np.int64), ("vegf_residual_ng_per_mL", np.float64)]
    return np.dtype(fields)


@dataclass
class Simulation:
    """A scenario's lattice, its rules, and the clock of the run."""

    scenario: object
    backend: str = "numba"
    comm: object = None                 # MPI communicator: this rank holds a z slab

    def __post_init__(self):
        self.arch = architecture(self.backend)
        self.rules = build_rules(self.scenario)
        self.angiogenesis = self.rules.angiogenesis_enabled
        self.shape = self.scenario.shape                  # of the whole lattice
        self.domain = decomposition(self.shape[0], self.comm)
        tissue = build_tissue(self.scenario, self.domain.z0, self.domain.local_nz)
        tissue.domain = self.domain
        self.lattice = self.arch.place(tissue)
        self.name = self.scenario.lattice_name
        self.organ_names = tuple(o["name"] for o in self.scenario.organs)
        self.dtype = counts_dtype(self.organ_names)
        self.step_index = 0
        self.departures = np.zeros(0, dtype=DEPARTURE_DTYPE)   # cells that entered a vessel
        self.placed_from_outside = False     # cells arrived from the circulation this step
        self.run_pass(spread_perfusion)
        self.field_stats = [self.run_pass(relax) for relax in FIELD_PASSES]
        self.initial = None
        self.initial = self.census()

    def reschedule(self, scenario) -> None:
        """Rules rebuilt from a scenario whose therapy schedule changed (the same lattice)."""
        self.scenario = scenario
        self.rules = build_rules(scenario)

    @property
    def time_h(self) -> float:
        return self.step_index * self.rules.step_h

    def run_pass(self, process):
        """Run one pass on the lattice at the current step (the benchmark times this)."""
        return process(self.lattice, self.rules, self.step_index)

    def step(self) -> np.ndarray:
        """Advance one step (the schedule's passes, each where its condition holds);
        returns that step's counts row."""
        self.advance()
        return self.census()

    def advance(self) -> None:
        """Run one step's passes (each where its condition holds); the cells that
        entered a vessel are left in `departures` (a body hands them on)."""
        self.step_index += 1
        self.lattice.events[...] = 0
        results, held = {}, {}
        for stage in STEP:
            if stage.when is not None and stage.when not in held:   # asked once a step, at
                held[stage.when] = stage.when.holds(self)            # its first stage
            if stage.when is None or held[stage.when]:
                results[stage.run] = self.run_pass(stage.run)
        self.departures = results[intravasate]              # for the circulation pool
        self.field_stats = [results.get(relax, (0, last[1]))        # skipped: 0 sweeps
                            for relax, last in zip(FIELD_PASSES, self.field_stats)]

    def events_this_step(self, *names) -> int:
        """Sum of the named event counters so far in this step."""
        rows = [EVENT_NAMES.index(n) for n in names]
        return self.domain.sum(int(self.owned_events()[rows].sum()))

    def owned_events(self) -> np.ndarray:
        """The event table (one row per event) of the planes this process owns, on the host."""
        return self.arch.to_host(self.lattice.events)[:, self.domain.interior]

    def census(self) -> np.ndarray:
        """The counts row of the current state (and of the last step's events)."""
        by_kind_organ, hypoxic, perfused, vegf_max, motile = self.run_pass(take_census)
        row = np.zeros((), dtype=self.dtype)
        row["step"] = self.step_index
        row["time_h"] = self.time_h
        for code, name in enumerate(KIND_NAMES):
            row[name] = by_kind_organ[code].sum()
        for label, name in enumerate(self.organ_names, start=1):
            row[f"functional_{name}"] = by_kind_organ[FUNCTIONAL, label]
        primary = f"functional_{self.organ_names[0]}"
        start = row[primary] if self.initial is None else self.initial[primary]
        row["functional_fraction"] = row[primary] / start if start else 0.0
        row["hypoxic_tumor"] = hypoxic[TUMOR]
        row["hypoxic_functional"] = hypoxic[FUNCTIONAL]
        row["motile_tumor"] = motile
        row["vessel_perfused"] = perfused
        row["perfused_fraction"] = perfused / row["vessel"] if row["vessel"] else 0.0
        events = self.domain.sum(self.owned_events().sum(axis=1))
        self.tissue_changed = (bool(events.any()) or not self.fields_converged()
                               or self.placed_from_outside)
        self.placed_from_outside = False
        for i, name in enumerate(EVENT_NAMES):
            row[name] = events[i]
        row["new_vessel_length_um"] = (events[EVENT_NAMES.index("stalk_laid")]
                                       * self.scenario["lattice.voxel_um"])
        row["vegf_max_ng_per_mL"] = vegf_max
        row["o2_sweeps"], row["o2_residual_mmHg"] = self.field_stats[0]
        row["vegf_sweeps"], row["vegf_residual_ng_per_mL"] = self.field_stats[1]
        return row

    def fields_converged(self) -> bool:
        """Whether every field's last solve (or the one before a skipped solve) reached
        its tolerance (else the next step solves it again, changed tissue or not)."""
        return all(residual <= relax.field(self.rules).tolerance
                   for relax, (_, residual) in zip(FIELD_PASSES, self.field_stats))

    def snapshot(self) -> dict[str, np.ndarray] | None:
        """Host copies of the fields a snapshot stores (on the root rank; None on others)."""
        fields = {name: self.gathered(name, to_all=False) for name in SNAPSHOT_FIELDS}
        return fields if self.domain.root else None

    def gathered(self, name: str, to_all: bool = True) -> np.ndarray:
        """A host copy of the whole lattice's array `name` (from every slab)."""
        return self.domain.gather(self.arch.to_host(self.lattice.arrays[name]), to_all)

    def write_voxel(self, z: int, y: int, x: int, **values) -> None:
        """Set arrays at global voxel (z, y, x) where this process holds it (owned or
        halo; every holder writes the same value).  `traits=levels` sets every trait."""
        if not self.domain.holds(z):
            return
        local = z - self.domain.z0
        for name, value in values.items():
            if name == "traits":
                for t, level in enumerate(value):
                    self.lattice.traits[t, local, y, x] = int(level)
            else:
                self.lattice.arrays[name][local, y, x] = value
