"""A body: the primary lattice, its site lattices, and the circulation between them.

The primary lattice holds the tumour and its neighbouring organ (where local
metastases arise); each *site* (`[[sites]]` in the scenario) is a block of a regional
lymph node or a distant organ with its own tissue, vessels and oxygen, built from the
same processes and healthy at the start.  Lattice ids: 0 for the primary, 1..n for the
sites in file order; every lattice draws from the one Philox key with its id in the
counter (`kernels.philox.voxel_draw`), so lattices never share random numbers.

One step of the body, in order:

1. every lattice runs its passes (`engine.schedule.STEP`); the cells that entered a
   vessel (`kernels.intravasation`) join the circulation (`engine.circulation`);
2. the circulation advances one step: cells die, arrest, drain along the node chain,
   and the arrested ones that extravasate are handed back as arrivals;
3. each arrival *extravasates* into its site lattice next to a perfused capillary
   chosen with Philox (stream `extravasation`, counter = record id, step, lattice id):
   the capillary is drawn uniformly among the block's perfused vessel voxels, then an
   empty face neighbour of it uniformly; up to `PLACEMENT_TRIES` capillaries are tried,
   and an arrival that finds no room is recorded as failed (never dropped silently).
   It settles as a dormant cell, or with `dormancy.proliferating_on_arrival` as a
   dividing tumour cell (`kernels.dormancy`), founding a colony with a clone id of its
   own;
4. motile cells that settled in the primary's neighbouring organ this step
   (`kernels.migration`, lineage NEW_CLONE) found local colonies;
5. every lattice takes its census; the colony registry (`engine.colonies`) measures
   every colony.

Sampling organs by site blocks: a site block is a sample of its organ's capillary
beds, and *every* cell that arrests in an organ with a block is placed into that block
(no scaling, no sub-sampling): counts of arrivals, colonies and disseminated cells
are those of the whole organ, while their density in the block is the organ's
multiplied by V_organ / V_block.  Cells arresting in organs without a block are
recorded as `arrested_elsewhere` by the circulation.  The run file and the summary
state each block's fraction of its organ (`block_fraction`, from reference organ masses).
"""
from __future__ import annotations

import numpy as np

from kernels.intravasation import shedding_per_g_per_day
from kernels.dormancy import STREAM_ARRIVAL
from kernels.immune import STREAM_NK_ARRIVAL
from kernels.lattice import (COLONY_LINEAGE_BASE, DORMANT, DX, DY, DZ, EMPTY, FOUNDING_BASE,
                             NEW_CLONE_LIMIT, TUMOR)
from kernels.philox import choose

from .circulation import CIRCULATION, ORGAN_MASS_G, Circulation, Site, record_draw
from .circulation import counts_dtype as circulation_counts_dtype
from .colonies import CENSUS_COLUMNS, SIZE_DTYPE, ColonyRegistry
from .protocol import Clinic, with_decisions
from .simulation import Simulation
from .therapy import deliveries

NK_KILLED = "killed by NK cells on arrival (immune surveillance)"   # its fail reason
PLACEMENT_TRIES = 3          # capillaries an arrival tries before it is recorded as failed
STREAM_EXTRAVASATION = CIRCULATION.streams["extravasation"]
REGIONAL_ORGAN = "lymph_node"


def block_fraction(organ: str, shape, voxel_um: float) -> float:
    """The fraction of its organ a site block holds: V_block · 1 g/cm³ / organ mass
    (`ORGAN_MASS_G`).  Every arrival into the organ is placed in the block, so the
    block's density of disseminated cells is the organ's divided by this fraction."""
    volume_cm3 = float(np.prod(shape)) * (voxel_um * 1e-4) ** 3
    return volume_cm3 / ORGAN_MASS_G[organ]


def site_class(organ: str) -> str:
    """A lymph node is a regional site; any other organ a distant one."""
    return "regional" if organ == REGIONAL_ORGAN else "distant"


def body_counts_dtype(circulation: Circulation) -> np.dtype:
    """One row of the per-step body table: shedding, the circulation's events and
    contents, disseminated cells on the site lattices, colonies by class and stage."""
    fields = [("step", np.int64), ("time_h", np.float64), ("shed_cells", np.int64),
              ("shedding_per_g_per_day", np.float64)]
    fields += [(name, dt) for name, (dt, _) in
               circulation_counts_dtype(circulation.sites).fields.items() if name != "step"]
    fields += [("disseminated_dormant", np.int64), ("disseminated_tumor", np.int64)]
    fields += [(name, np.int64) for name in CENSUS_COLUMNS]
    return np.dtype(fields)


class Body:
    """The primary lattice, the site lattices and the circulation, stepped together."""

    def __init__(self, scenario, backend: str = "numba", comm=None):
        self.scenario = scenario
        self.primary = Simulation(scenario, backend=backend, comm=comm)
        self.sites = [Simulation(scenario.site(i), backend=backend, comm=comm)
                      for i in range(len(scenario.sites))]
        self.lattices = [self.primary, *self.sites]
        self.by_name = {sim.name: sim for sim in self.lattices}
        self.site_specs = [Site(name=s["name"], organ=s["organ"], lattice_id=i + 1,
                                drains_to=s["drains_to"] or None)
                           for i, s in enumerate(scenario.sites)]
        self.organ_of = {site.name: site.organ for site in self.site_specs}
        self.block_fraction = {sim.name: block_fraction(self.organ_of[sim.name],
                                                        sim.shape,
                                                        sim.scenario["lattice.voxel_um"])
                               for sim in self.sites}
        self.key = self.primary.rules.key
        self.circulation = Circulation(scenario.values["circulation"], self.site_specs,
                                       self.key, scenario["time.step_h"])
        self.registry = ColonyRegistry()
        self.next_clone = {sim.name: COLONY_LINEAGE_BASE for sim in self.lattices}
        self.dtype = body_counts_dtype(self.circulation)
        self.rows = [sim.initial for sim in self.lattices]
        self.sizes = np.zeros(0, dtype=SIZE_DTYPE)
        self.schedule = deliveries(scenario)             # every delivery the therapies give
        self.delivered = self.given_at(0)                # the therapy record of the step
        self.clinic = Clinic(scenario, self.rows)        # check-ups of an adaptive protocol
        self.body_row = self._body_row(0)

    def given_at(self, step: int) -> np.ndarray:
        """The deliveries of the schedule at `step`."""
        return self.schedule[self.schedule["step"] == step]

    @property
    def step_index(self) -> int:
        return self.primary.step_index

    @property
    def time_h(self) -> float:
        return self.primary.time_h

    def step(self) -> list[np.ndarray]:
        """Advance the body one step; returns each lattice's counts row (primary first)."""
        shed = 0
        for sim in self.lattices:
            sim.advance()
            departures = sim.departures
            if len(departures):
                self.circulation.enter(sim.step_index, departures, sim.name,
                                       shape=sim.shape)
                shed += len(departures) if sim is self.primary else 0
        step = self.step_index
        self.extravasate(step, self.circulation.advance(step))
        for sim in self.lattices:
            self.found_local_colonies(sim)
        self.circulation.audit()
        self.rows = [sim.census() for sim in self.lattices]
        self.sizes = np.concatenate([self.measure(sim) for sim in self.lattices])
        decisions = self.clinic.after_step(self)
        if decisions:
            self.reschedule(with_decisions(self.scenario, self.scenario.decisions
                                           + tuple(decisions)))
        self.delivered = self.given_at(step)
        self.body_row = self._body_row(shed)
        return self.rows

    def reschedule(self, scenario) -> None:
        """Adopt the scenario of a changed schedule (a protocol's decisions): every
        lattice's rules are rebuilt from it, from the next step on."""
        self.scenario = scenario
        self.schedule = deliveries(scenario)
        self.primary.reschedule(scenario)
        for i, sim in enumerate(self.sites):
            sim.reschedule(scenario.site(i))

    # -- 3. extravasation -------------------------------------------------------------

    def extravasate(self, step: int, arrivals) -> None:
        """Place each arrival next to a perfused capillary of its site lattice (see the
        module docstring), in the circulation's order, as the founder of a new colony;
        each site's kind and capillaries come to the host once a step (the whole
        lattice, from every slab: each process decides every arrival alike)."""
        blocks = {}
        for arrival in arrivals:
            sim = self.by_name[arrival.site]
            if sim.name not in blocks:
                blocks[sim.name] = (sim.gathered("kind").copy(),
                                    np.flatnonzero(sim.gathered("perfused").reshape(-1)))
            kind, capillaries = blocks[sim.name]
            record = int(arrival.record_id)
            if self.killed_by_nk_cells(sim, record, step):
                self.circulation.fail_arrival(step, record, NK_KILLED)
                continue
            words = record_draw(record, step, STREAM_EXTRAVASATION, sim.lattice.lattice_id,
                                self.key)
            for attempt in range(PLACEMENT_TRIES if len(capillaries) else 0):
                vessel = int(capillaries[choose(int(words[attempt]), len(capillaries))])
                rooms = open_neighbours(kind, vessel)
                if rooms:
                    room = rooms[choose(int(words[3]), len(rooms))]
                    kind[room] = self.settle(sim, arrival, room, step)
                    break
            else:
                self.circulation.fail_arrival(step, record,
                                              "no empty voxel beside the capillaries tried")

    def settle(self, sim, arrival, voxel: tuple[int, int, int], step: int) -> int:
        """The arrival becomes a dormant (or dividing) cell at `voxel`, founder of a new
        colony; returns its kind."""
        z, y, x = voxel
        clone = self.new_clone(sim)
        kind = TUMOR if self.arrives_dividing(sim, arrival, step) else DORMANT
        sim.write_voxel(z, y, x, kind=kind, traits=arrival.traits, lineage=clone,
                        clock=0, hypoxia=0, motile=0, vacancy=0)
        sim.placed_from_outside = True
        index = (z * sim.shape[1] + y) * sim.shape[2] + x
        self.circulation.settled(step, int(arrival.record_id), arrival.site, index)
        organ = self.organ_of[arrival.site]
        self.registry.register(lattice=sim.name, lineage=clone, organ=organ,
                               cls=site_class(organ), founder_clone=int(arrival.lineage),
                               founder_record=int(arrival.record_id), step=step)
        return kind

    def arrives_dividing(self, sim, arrival, step) -> bool:
        """Whether an arrival starts dividing at once (`kernels.dormancy`: word 0 of the
        Philox draw of stream `arrival`, counter record id, step, lattice id)."""
        word = record_draw(int(arrival.record_id), step, STREAM_ARRIVAL,
                           sim.lattice.lattice_id, self.key)[0]
        return int(word) < int(sim.rules.arrival_dividing_thr)

    def killed_by_nk_cells(self, sim, record: int, step: int) -> bool:
        """NK surveillance of an arrival (`kernels.immune`, where immunity is on): killed
        with P = `immune.nk_cell.arrival_kill_probability` · `immune.status` (Ichise et
        al. 2022: about half within 4 h of arrest), word 0 of stream `nk_arrival`
        (counter: record id, step, lattice id); recorded as a failed arrival with the
        reason NK_KILLED."""
        if not sim.rules.immune_enabled:
            return False
        word = record_draw(record, step, STREAM_NK_ARRIVAL, sim.lattice.lattice_id, self.key)[0]
        return int(word) < int(sim.rules.nk_arrival_thr)

    def new_clone(self, sim) -> int:
        clone = self.next_clone[sim.name]
        if clone >= NEW_CLONE_LIMIT:
            raise RuntimeError(f"lattice {sim.name}: more than {NEW_CLONE_LIMIT - COLONY_LINEAGE_BASE} "
                               "colonies founded; clone ids are exhausted")
        self.next_clone[sim.name] = clone + 1
        return clone

    # -- 4. local colonies --------------------------------------------------------------

    def found_local_colonies(self, sim) -> None:
        """Cells that settled in a neighbouring organ this step (lineage FOUNDING_BASE +
        their clone) found local colonies, in global index order; a founder's daughter
        born beside it in the same step (face neighbours with the same mark) joins it."""
        if sim.events_this_step("settled_abroad") == 0:
            return
        lineage = sim.gathered("lineage")
        organ = sim.gathered("organ")
        marked = lineage >= FOUNDING_BASE
        done = np.zeros_like(marked)
        for index in np.flatnonzero(marked):
            start = np.unravel_index(index, sim.shape)
            if done[start]:
                continue
            clone, mark = self.new_clone(sim), int(lineage[start])
            self.registry.register(lattice=sim.name, lineage=clone,
                                   organ=sim.organ_names[int(organ[start]) - 1], cls="local",
                                   founder_clone=mark - FOUNDING_BASE,
                                   founder_record=-1, step=sim.step_index)
            group = [start]
            done[start] = True
            while group:
                z, y, x = group.pop()
                sim.write_voxel(z, y, x, lineage=clone)
                for zz, yy, xx in face_neighbours(sim.shape, z, y, x):
                    if marked[zz, yy, xx] and not done[zz, yy, xx] \
                            and lineage[zz, yy, xx] == mark:
                        done[zz, yy, xx] = True
                        group.append((zz, yy, xx))

    # -- 5. measures ----------------------------------------------------------------------

    def measure(self, sim) -> np.ndarray:
        """This step's sizes of the colonies of one lattice."""
        if not self.registry.by_lattice.get(sim.name):
            return np.zeros(0, dtype=SIZE_DTYPE)
        return self.registry.measure(sim.step_index, sim.name, sim.gathered("kind"),
                                     sim.gathered("lineage"),
                                     self.scenario["lattice.voxel_um"])

    def _body_row(self, shed: int) -> np.ndarray:
        row = np.zeros((), dtype=self.dtype)
        row["step"], row["time_h"] = self.step_index, self.time_h
        row["shed_cells"] = shed
        tumour = int(self.rows[0]["tumor"])
        row["shedding_per_g_per_day"] = shedding_per_g_per_day(
            self.primary.departures, tumour, self.scenario["lattice.voxel_um"],
            self.scenario["time.step_h"]) if tumour and shed else 0.0
        for name, value in self.circulation.counts().items():
            if name != "step":
                row[name] = value
        row["disseminated_dormant"] = sum(int(r["dormant"]) for r in self.rows[1:])
        row["disseminated_tumor"] = sum(int(r["tumor"]) for r in self.rows[1:])
        for name, value in self.registry.census().items():
            row[name] = value
        return row


def face_neighbours(shape, z, y, x) -> list[tuple[int, int, int]]:
    """The face neighbours of (z, y, x) inside the lattice, in direction order 1..6."""
    out = []
    for d in range(1, 7):
        zz, yy, xx = z + int(DZ[d]), y + int(DY[d]), x + int(DX[d])
        if 0 <= zz < shape[0] and 0 <= yy < shape[1] and 0 <= xx < shape[2]:
            out.append((zz, yy, xx))
    return out


def open_neighbours(kind: np.ndarray, index: int) -> list[tuple[int, int, int]]:
    """Face neighbours (z, y, x) of voxel `index` that hold empty matrix, in direction
    order 1..6."""
    z, y, x = (int(i) for i in np.unravel_index(index, kind.shape))
    return [v for v in face_neighbours(kind.shape, z, y, x) if kind[v] == EMPTY]


def circulation_totals(circulation: Circulation) -> dict[str, int]:
    """Cells that left a lattice, clusters, and where every one of them is now."""
    records = circulation.records
    return {"cells": int(len(records)),
            "clusters": int(len(np.unique(records["unit"][records["cluster_size"] > 1]))),
            **circulation.contents()}
