"""Immunotherapies (kernels/immunotherapy.py): checkpoint blockade restores T-cell kills of
checkpoint-high targets as its plasma exposure says, dendritic-cell vaccination raises
T-cell recruitment by the declared factor (NK recruitment unchanged), adoptive transfer
places the declared number of T cells beside perfused vessels, deterministically, and
they kill; therapies not yet given change nothing; bad input is refused in one line."""
import math

import numpy as np
import pytest

from test_cuda import assert_same_state, needs_cxx
from test_immune import (events, expected_kills, immortal, immune_text, kill_rate,
                         vessel_bed)
from engine.errors import ScenarioError
from engine.pharmacokinetics import step_exposure
from engine.rules import build_rules
from engine.scenario import parse_scenario
from engine.simulation import Simulation
from kernels.immune import RECRUIT_BINS, checkpoint_rules, recruit_immune_cells
from kernels.immunotherapy import (IMMUNOTHERAPY, beside_perfused_vessels, blocked_checkpoints,
                                   infuse_t_cells, infused_count, priming,
                                   primed_recruitment)
from kernels.lattice import EMPTY, T_CELL, VESSEL

NO_EXHAUSTION = ("checkpoint_exhaustion_per_contact = 0.2 ",
                 "checkpoint_exhaustion_per_contact = 0.0 ")


def therapy(kind, dose_key, dose, start_h=0.0, count=1, interval_h=24.0, name="it"):
    return (f'\n[[therapy]]\nname = "{name}"\nkind = "{kind}"\nstart_h = {start_h}\n'
            f"count = {count}\ninterval_h = {interval_h}\n{dose_key} = {dose}\n")


def scenario_with(extra, edge=24, replace=()):
    text = immune_text(edge=edge, extra=extra)
    for old, new in replace:
        assert old in text, old
        text = text.replace(old, new, 1)
    return parse_scenario(text, "immunotherapy.toml")


PEMBRO = therapy("checkpoint_blockade", "dose_mg", 200.0)


# -- checkpoint blockade -----------------------------------------------------------------

def test_blockade_hands_engage_the_checkpoint_rules_at_the_plasma_exposure():
    s = scenario_with(PEMBRO)
    rules = build_rules(s)
    for step in (1, 2, 24, 200, 240):
        e = step_exposure(rules, "checkpoint_blockade", step)
        c = 200.0 / 6.0 * 2.0 ** (-(step - 1) / 528.0)      # bolus at step 1, label PK
        assert e == pytest.approx(c / (c + 1.0), rel=1e-12)
        expected = checkpoint_rules(s, e)
        given = blocked_checkpoints(rules, step)
        assert np.array_equal(given["lethal_thr"], expected["lethal_thr"])
        assert np.array_equal(given["exhaust_thr"], expected["exhaust_thr"])
    assert blocked_checkpoints(rules, 0) == {}                  # before the dose: nothing
    untreated = build_rules(scenario_with(""))
    assert all(blocked_checkpoints(untreated, step) == {} for step in (1, 50))


def test_blockade_raises_t_cell_kills_of_checkpoint_high_targets_as_its_exposure_says():
    s = scenario_with(PEMBRO, replace=[NO_EXHAUSTION])
    treated = immortal(build_rules(s))
    untreated = immortal(build_rules(scenario_with("", replace=[NO_EXHAUSTION])))
    steps = 96
    base, _, _ = kill_rate(untreated, T_CELL, steps=steps, checkpoint=15)
    blocked, lat, _ = kill_rate(treated, T_CELL, steps=steps, checkpoint=15)
    p = 1.0 - math.exp(-1.0)                          # engagement at antigen 15, Δt 1 h
    e = np.mean([step_exposure(treated, "checkpoint_blockade", k) for k in range(1, steps + 1)])
    assert 0.96 < e < 0.98
    p_kill = 1.0 - 0.8 * (1.0 - e)                    # P_kill = 1 − i·q/15·(1 − b), q = 15
    assert base * steps == pytest.approx(expected_kills(p, 6, 0.2, steps), rel=0.08)
    assert blocked * steps == pytest.approx(expected_kills(p, 6, p_kill, steps), rel=0.03)
    assert blocked > 4.0 * base
    # targets without checkpoint ligand are killed as before: blockade acts on q only
    free, _, _ = kill_rate(treated, T_CELL, steps=48, checkpoint=0)
    free_untreated, _, _ = kill_rate(untreated, T_CELL, steps=48, checkpoint=0)
    assert free == free_untreated
    assert events(lat)["killed_by_nk_cell"] == 0


# -- dendritic-cell vaccination ----------------------------------------------------------

FAST = [("recruitment_per_h = 0.02 ", "recruitment_per_h = 0.4 "),
        ("recruitment_per_h = 0.005 ", "recruitment_per_h = 0.1 ")]
VACCINE = therapy("dc_vaccine", "dose_million_cells", 50.0, count=3, interval_h=336.0)


def recruits_per_step(rules, steps, chemokine=5.0):
    t, nk = [], []
    for step in range(1, steps + 1):
        lat = vessel_bed(np.float32(chemokine))
        recruit_immune_cells(lat, rules, step)
        ev = events(lat)
        t.append(ev["recruited_t_cell"])
        nk.append(ev["recruited_nk_cell"])
    return np.array(t), np.array(nk)


def test_vaccination_priming_decays_from_each_dose():
    rules = build_rules(scenario_with(VACCINE))
    assert priming(rules, 0) == 0.0 and primed_recruitment(rules, 0) == {}
    assert priming(rules, 1) == pytest.approx(1.0)
    assert priming(rules, 169) == pytest.approx(math.exp(-1.0))
    # the second dose at 336 h, step 336 (the first at 0 h acts from step 1)
    assert priming(rules, 336) == pytest.approx(1.0 + math.exp(-335.0 / 168.0))
    half = build_rules(scenario_with(VACCINE.replace("= 50.0", "= 25.0")))
    assert priming(half, 1) == pytest.approx(0.5)                       # D_k / D_ref


@pytest.mark.parametrize("gain", [1.0, 3.0])
def test_vaccination_raises_t_recruitment_by_the_declared_factor(gain):
    steps = 60
    s = scenario_with(VACCINE, replace=FAST + [("recruitment_gain = 1.0 ",
                                                f"recruitment_gain = {gain} ")])
    rules = build_rules(s)
    base_rules = build_rules(scenario_with("", replace=FAST))
    t, nk = recruits_per_step(rules, steps)
    t0, _ = recruits_per_step(base_rules, steps)
    f = math.floor(RECRUIT_BINS * 5.0 / 5.5) / RECRUIT_BINS     # the chemokine bin of c = 5
    exp_t = exp_nk = var_t = 0.0
    for step in range(1, steps + 1):
        k_t = 0.4 * (1.0 + gain * math.exp(-(step - 1) / 168.0))
        p = 1.0 - math.exp(-(k_t + 0.1) * f)
        exp_t += 100 * p * k_t / (k_t + 0.1)
        exp_nk += 100 * p * 0.1 / (k_t + 0.1)
        var_t += 100 * p * k_t / (k_t + 0.1) * (1 - p * k_t / (k_t + 0.1))
    assert abs(t.sum() - exp_t) < 4 * math.sqrt(var_t)
    assert abs(nk.sum() - exp_nk) < 4 * math.sqrt(exp_nk)
    # against the untreated bed: more T cells.  The NK rate k_NK is unchanged (checked
    # above in the exact expectation); a vessel releases at most one cell a step, so where
    # the release saturates, raised T recruitment takes some of the NK releases
    assert t.sum() > t0.sum() + 4 * math.sqrt(var_t)
    # at a dose (P = 1) the tables are exactly those of a T-cell rate of k_T (1 + g)
    raised = build_rules(scenario_with("", replace=[("recruitment_per_h = 0.02 ",
                                                     f"recruitment_per_h = {0.4 * (1 + gain)} "),
                                                    FAST[1]]))
    given = primed_recruitment(rules, 1)
    assert np.array_equal(given["recruit_thr"], raised.recruit_thr)
    assert given["nk_share_thr"] == raised.nk_share_thr


def test_a_vaccine_not_yet_given_changes_no_recruitment():
    later = VACCINE.replace("start_h = 0.0", "start_h = 200.0")
    rules = build_rules(scenario_with(later, replace=FAST))
    base = build_rules(scenario_with("", replace=FAST))
    for step in (1, 5):
        a, b = vessel_bed(np.float32(1.0)), vessel_bed(np.float32(1.0))
        recruit_immune_cells(a, rules, step)
        recruit_immune_cells(b, base, step)
        assert np.array_equal(a.kind, b.kind) and events(a) == events(b)


# -- adoptive T-cell transfer --------------------------------------------------------------

NO_RECRUITS = [("recruitment_per_h = 0.02 ", "recruitment_per_h = 0.0 "),
               ("recruitment_per_h = 0.005 ", "recruitment_per_h = 0.0 ")]


def infused(dose=10000.0, seed=None, edge=24, homing=None):
    """A fresh lattice of a scenario with one infusion at step 1, the adoptive pass run on
    it: (simulation, infused, no room, kind and perfused before)."""
    extra = therapy("adoptive_t_cells", "dose_million_cells", dose, start_h=1.0)
    replace = list(NO_RECRUITS)
    if seed is not None:
        replace.append(("seed = 20261121", f"seed = {seed}"))
    if homing is not None:
        replace.append(("homing_factor = 1.0 ", f"homing_factor = {homing} "))
    sim = Simulation(scenario_with(extra, edge=edge, replace=replace))
    kind, perfused = sim.lattice.kind.copy(), sim.lattice.perfused.copy()
    sim.lattice.events[...] = 0
    infuse_t_cells(sim.lattice, sim.rules, 1)
    placed, no_room = sim.lattice.events[sim.lattice.event_rows(IMMUNOTHERAPY)].sum(axis=1)
    return sim, int(placed), int(no_room), kind, perfused


def test_adoptive_transfer_places_the_lattices_share_beside_perfused_vessels():
    sim, n, no_room, kind, perfused = infused()
    share = 24 ** 3 * 20.0 ** 3 * 1e-15 / 70.0               # lattice volume / body volume, L/L
    mean = 10000.0 * 1e6 * share                             # 15.8 cells
    assert n == infused_count(sim.rules, 1, 0) and n in (math.floor(mean), math.ceil(mean))
    assert no_room == 0
    cells = np.argwhere(sim.lattice.kind == T_CELL)
    assert len(cells) == n
    assert (kind[tuple(cells.T)] == EMPTY).all()
    for z, y, x in cells:                                    # a perfused vessel beside each
        assert any(kind[z + dz, y + dy, x + dx] == VESSEL and perfused[z + dz, y + dy, x + dx]
                   for dz, dy, dx in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1),
                                      (0, 0, -1))
                   if all(0 <= v < 24 for v in (z + dz, y + dy, x + dx)))
    t = sim.lattice.kind == T_CELL
    assert (sim.lattice.immune_busy[t] == 0).all() and (sim.lattice.immune_kills[t] == 0).all()
    assert (sim.lattice.immune_state[t] == 0).all()
    changed = sim.lattice.kind != kind
    assert np.array_equal(changed, t)                         # nothing else touched


def test_adoptive_transfer_is_deterministic_and_seeded():
    a, b, c = infused(dose=60000.0), infused(dose=60000.0), infused(dose=60000.0, seed=7)
    where = [np.argwhere(s[0].lattice.kind == T_CELL) for s in (a, b, c)]
    assert len(where[0]) > 50 and np.array_equal(where[0], where[1])
    assert not np.array_equal(where[0], where[2])


def test_the_share_is_rounded_stochastically_to_its_mean():
    sim = infused(dose=200.0)[0]                              # mean 0.316 cells a step
    rules = sim.rules.replace(adoptive_infusions={k: 200.0 for k in range(1, 4001)})
    counts = [infused_count(rules, k, 0) for k in range(1, 4001)]
    mean = 200.0 * 1e6 * 24 ** 3 * 8000.0 * 1e-15 / 70.0
    assert set(counts) == {0, 1}
    assert abs(np.mean(counts) - mean) < 4 * math.sqrt(mean * (1 - mean) / 4000)


def test_cells_without_room_are_counted_not_lost():
    sim, placed, no_room, kind, perfused = infused(dose=100000.0, homing=1000.0)
    room = int(beside_perfused_vessels(kind, perfused).sum())
    n = infused_count(sim.rules, 1, 0)
    assert n > room > 0
    assert placed == room == int((sim.lattice.kind == T_CELL).sum())
    assert no_room == n - room


def test_infused_t_cells_kill_tumour_cells():
    extra = therapy("adoptive_t_cells", "dose_million_cells", 100000.0, start_h=1.0)
    sim = Simulation(scenario_with(extra, edge=32, replace=NO_RECRUITS))
    rows = [sim.step() for _ in range(36)]
    infused_cells = sum(int(r["infused_t_cell"]) for r in rows)
    assert infused_cells == int(rows[0]["infused_t_cell"]) > 300      # one infusion, step 1
    assert sum(int(r["recruited_t_cell"]) for r in rows) == 0
    assert sum(int(r["killed_by_t_cell"]) for r in rows) > 0
    died = sum(int(r["immune_died"]) for r in rows)
    assert int(rows[-1]["t_cell"]) == infused_cells - died            # accounted every step


# -- untreated runs and bad input ----------------------------------------------------------

def test_immunotherapies_not_yet_given_leave_a_run_bit_identical():
    later = (therapy("checkpoint_blockade", "dose_mg", 200.0, start_h=100.0, name="a")
             + therapy("dc_vaccine", "dose_million_cells", 50.0, start_h=100.0, name="b")
             + therapy("adoptive_t_cells", "dose_million_cells", 10000.0, start_h=100.0,
                       name="c"))
    fast = [("recruitment_per_h = 0.02 ", "recruitment_per_h = 0.5 ")]
    a = Simulation(scenario_with(later, replace=fast))
    b = Simulation(scenario_with("", replace=fast))
    for _ in range(10):
        assert a.step().tobytes() == b.step().tobytes()
    assert_same_state(a.lattice, b.lattice, "not yet treated")
    assert int(a.lattice.events.sum()) > 0


@pytest.mark.parametrize("extra,key,message", [
    (PEMBRO, "therapy[0].kind", 'kind = "checkpoint_blockade" acts on T cells, but '
                                "immune.enabled = false"),
    (VACCINE, "therapy[0].kind", "immune.enabled = false"),
    (therapy("adoptive_t_cells", "dose_million_cells", 200000.0), "therapy[0].dose_million_cells",
     "out of range"),
    (therapy("adoptive_t_cells", "dose_million_cells", 145000.0), "therapy[0].dose_million_cells",
     "is above 144000"),
    (therapy("dc_vaccine", "dose_million_cells", 20000.0), "therapy[0].dose_million_cells",
     "is above 10000"),
    (therapy("checkpoint_blockade", "dose_mg", 1000.0), "therapy[0].dose_mg", "is above 800"),
    (therapy("checkpoint_blockade", "dose_mg", -1.0), "therapy[0].dose_mg", "out of range"),
    (therapy("dc_vaccine", "dose_mg", 50.0), "therapy[0]",
     "therapy[0].dose_million_cells is missing"),
])
def test_bad_immunotherapy_input_is_one_line_naming_the_key(extra, key, message):
    enabled = "immune.enabled" not in message
    text = immune_text(enabled=enabled, extra=extra)
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.toml")
    text = str(info.value)
    assert "\n" not in text and key in text and message in text, text


def test_a_dose_key_of_another_kind_is_refused():
    extra = therapy("adoptive_t_cells", "dose_million_cells", 100.0) + "dose_mg = 3.0\n"
    with pytest.raises(ScenarioError, match=r"therapy\[0\]\.dose_mg: a adoptive_t_cells "
                                            r"therapy is dosed in dose_million_cells"):
        parse_scenario(immune_text(extra=extra), "bad.toml")


# -- the CUDA host harness -------------------------------------------------------------------

@needs_cxx
def test_a_run_with_all_three_immunotherapies_is_identical_through_the_host_harness():
    extra = (therapy("checkpoint_blockade", "dose_mg", 200.0, start_h=1.0, name="a")
             + therapy("dc_vaccine", "dose_million_cells", 50.0, start_h=2.0, name="b")
             + therapy("adoptive_t_cells", "dose_million_cells", 30000.0, start_h=3.0,
                       name="c"))
    s = scenario_with(extra, replace=[("recruitment_per_h = 0.02 ", "recruitment_per_h = 0.2 ")])
    a = Simulation(s, backend="numba")
    b = Simulation(s, backend="cuda-host")
    infused_cells = 0
    for _ in range(10):
        row = a.step()
        assert row.tobytes() == b.step().tobytes()
        infused_cells += int(row["infused_t_cell"])
    assert_same_state(a.lattice, b.lattice, "immunotherapy run")
    assert infused_cells > 20 and int(row["t_cell"]) > 0
