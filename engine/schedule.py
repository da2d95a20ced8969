"""The step, written once: every pass in order, with the condition under which it runs.

The simulation loop runs `STEP`; the lattice's event table (one row per event, in the
order the processes first appear here), the counts columns, the benchmark's list of
passes and the README's pass table (`pass_table`, checked by a test) all follow from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kernels.antiangiogenic import exposure_at, prune_immature_vessels
from kernels.angiogenesis import grow_sprouts, lumenise, propose_sprouting
from kernels.chemotherapy import chemo_active, kill_cycling_cells, relax_drug
from kernels.displacement import choose_escape, move_displaced, settle_escape_claims
from kernels.division import place_daughters, propose_division, settle_division_claims
from kernels.dormancy import wake_dormant
from kernels.fate import decide_fate
from kernels.immune import kill_tumour_cells, move_immune_cells, recruit_immune_cells, relax_chemokine
from kernels.immunotherapy import infuse_t_cells
from kernels.intravasation import intravasate
from kernels.lysis import lyse_debris
from kernels.migration import lose_adhesion, migrate
from kernels.oxygen import relax_oxygen
from kernels.perfusion import spread_perfusion
from kernels.radiation import irradiate
from kernels.regression import regress_vessels
from kernels.vegf import relax_vegf
# drug processes without passes of their own: they hand per-step overrides to the passes
# they act through (division, fate, migration, intravasation); imported so that their
# scenario tables and rule constants are declared
import kernels.antimetastatic  # noqa: F401,E402
import kernels.apoptosis_reactivation  # noqa: F401,E402
import kernels.receptor_blockade  # noqa: F401,E402


@dataclass(frozen=True)
class Condition:
    """When a pass runs: `text` for people, `holds(simulation)` for the loop."""

    text: str
    holds: Callable


@dataclass(frozen=True)
class Stage:
    run: object                      # a pass: kernels.twin.Kernel
    when: Condition | None = None


ANGIOGENESIS_ENABLED = Condition(
    "angiogenesis.enabled", lambda sim: sim.rules.angiogenesis_enabled)
VESSELS_CHANGED = Condition(
    "a sprout anastomosed or a vessel regressed or was pruned this step",
    lambda sim: sim.events_this_step("anastomosis", "vessel_regressed", "vessel_pruned") > 0)

ANTIANGIOGENIC_EXPOSURE = Condition(
    "anti-angiogenic exposure E > 0 this step",
    lambda sim: exposure_at(sim.rules, sim.step_index) > 0.0)

CHEMO_ACTIVE = Condition(
    "chemotherapy plasma effect E ≥ chemotherapy.min_effect this step",
    lambda sim: chemo_active(sim.rules, sim.step_index))

FRACTION_DUE = Condition(
    "a radiotherapy fraction is due this step",
    lambda sim: sim.step_index in sim.rules.fraction_steps)

IMMUNE_ENABLED = Condition("immune.enabled", lambda sim: sim.rules.immune_enabled)

INFUSION_DUE = Condition(
    "an adoptive T-cell infusion is due this step (immune.enabled)",
    lambda sim: sim.step_index in sim.rules.adoptive_steps)

TISSUE_CHANGED = Condition(
    "a cell or vessel changed in the last step (any event counted)",
    lambda sim: sim.tissue_changed)

STEP = (
    Stage(relax_oxygen, TISSUE_CHANGED),
    Stage(relax_vegf, TISSUE_CHANGED),
    Stage(relax_drug, CHEMO_ACTIVE),  # this step's plasma level; after oxygen: none needed
    Stage(decide_fate),
    Stage(irradiate, FRACTION_DUE),  # after fate: this step's pO2; dormant cells too
    Stage(kill_cycling_cells, CHEMO_ACTIVE),  # this step's clock advance, before division
    Stage(kill_tumour_cells, IMMUNE_ENABLED),    # after fate: only survivors are killed
    Stage(relax_chemokine, IMMUNE_ENABLED),      # this step's debris and tumour
    Stage(wake_dormant),         # after fate: dormant cells die only by their own rate
    Stage(lyse_debris),
    Stage(lose_adhesion),        # after fate: only survivors detach; this step's pO2
    Stage(migrate),              # before division: movers leave room for daughters
    Stage(move_immune_cells, IMMUNE_ENABLED),
    Stage(recruit_immune_cells, IMMUNE_ENABLED),
    Stage(infuse_t_cells, INFUSION_DUE),       # after recruitment: arrive like recruits
    Stage(intravasate),          # after migration: cells that reached a vessel enter it
    Stage(propose_division),
    Stage(settle_division_claims),
    Stage(choose_escape),
    Stage(settle_escape_claims),
    Stage(move_displaced),
    Stage(place_daughters),
    Stage(propose_sprouting, ANGIOGENESIS_ENABLED),
    Stage(grow_sprouts, ANGIOGENESIS_ENABLED),
    Stage(regress_vessels),
    Stage(prune_immature_vessels, ANTIANGIOGENIC_EXPOSURE),
    Stage(lumenise, VESSELS_CHANGED),
    Stage(spread_perfusion, VESSELS_CHANGED),
)
PASSES = tuple(stage.run for stage in STEP)
FIELD_PASSES = (relax_oxygen, relax_vegf)     # they return (sweeps, residual)


def _event_processes():
    seen = []
    for p in PASSES:
        if p.process is not None and p.process.events and p.process not in seen:
            seen.append(p.process)
    return tuple(seen)


EVENT_PROCESSES = _event_processes()
EVENT_NAMES = tuple(e for p in EVENT_PROCESSES for e in p.events)
if len(set(EVENT_NAMES)) != len(EVENT_NAMES):
    raise RuntimeError(f"two processes declare the same event: {EVENT_NAMES}")


def event_layout() -> dict[str, slice]:
    """Rows of each process's events in the lattice's event table."""
    out, start = {}, 0
    for p in EVENT_PROCESSES:
        out[p.name] = slice(start, start + len(p.events))
        start += len(p.events)
    return out


def pass_table() -> str:
    """The step as a Markdown table (the README shows exactly this)."""
    rows = ["| # | pass | process | runs | rule |", "|---|---|---|---|---|"]
    for i, stage in enumerate(STEP, start=1):
        p = stage.run
        rule = (p.__doc__ or "").strip().splitlines()[0]
        process = p.process.name if p.process is not None else p.__module__.rpartition(".")[2]
        when = f"when {stage.when.text}" if stage.when else "every step"
        rows.append(f"| {i} | `{p.name}` | {process} | {when} | {rule} |")
    return "\n".join(rows) + "\n"


BEGIN, END = "<!-- pass table: python -m engine.schedule --update-readme -->", "<!-- end pass table -->"


def update_readme(path) -> bool:
    """Rewrite the README's pass table (between BEGIN and END) from STEP; True if changed."""
    from pathlib import Path
    text = Path(path).read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    new = f"{head}{BEGIN}\n{pass_table()}{END}{tail}"
    if new != text:
        Path(path).write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["--update-readme"]:
        from pathlib import Path
        print("README.md updated" if update_readme(Path(__file__).parents[1] / "README.md")
              else "README.md already up to date")
    else:
        print(pass_table(), end="")
