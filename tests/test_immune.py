"""Immune cells on the lattice (kernels/immune.py): killing at the declared rates and
contact times, checkpoint inhibition and its blockade, exhaustion, recruitment, chemotaxis,
NK surveillance of arrivals, a no-immunity run identical to one without the process, and
the CUDA twins bit for bit."""
import math

import numpy as np
import pytest

from conftest import on, small_scenario_text
from test_cuda import CUDA_BACKENDS, assert_same_state, needs_cxx
from engine.body import NK_KILLED, Body
from engine.rules import build_rules
from engine.scenario import load_scenario, parse_scenario
from engine.schedule import event_layout
from engine.simulation import Simulation
from engine.state import allocate
from kernels.immune import (EXHAUSTED, IMMUNE, checkpoint_rules, kill_tumour_cells,
                            move_immune_cells, recruit_immune_cells, relax_chemokine)
from kernels.lattice import (ANTIGEN, CHECKPOINT, EMPTY, FUNCTIONAL, NK_CELL, T_CELL, TUMOR,
                             VESSEL)

IMMUNE_OFF = "enabled = false                           # off"


def scenario(**tables):
    """The quickstart scenario with some immune values changed: tables={"immune.t_cell":
    {"contact_h": 2.0}, ...}."""
    s = load_scenario("quickstart")
    for table, values in tables.items():
        s.values[table].update(values)
    return s


def events(lat) -> dict:
    rows = lat.events[event_layout()["immune"]].sum(axis=1)
    return dict(zip(IMMUNE.events, (int(n) for n in rows)))


def killers_among_targets(cell, edge=24, spacing=3, antigen=15, checkpoint=0):
    """A lattice full of tumour cells (given antigen and checkpoint levels) with immune
    cells of kind `cell` on a grid `spacing` apart (no two share a target); returns the
    lattice and the immune cells' coordinates."""
    lat = allocate("k", 0, "numba", (edge, edge, edge))
    lat.kind[...] = TUMOR
    lat.traits[ANTIGEN] = antigen
    lat.traits[CHECKPOINT] = checkpoint
    grid = np.arange(1, edge - 1, spacing)
    z, y, x = np.meshgrid(grid, grid, grid, indexing="ij")
    cells = (z.ravel(), y.ravel(), x.ravel())
    lat.kind[cells] = cell
    lat.traits[:, cells[0], cells[1], cells[2]] = 0
    return lat, cells


def refill(lat, antigen, checkpoint):
    """Killed targets are replaced by new ones: the immune cells stay surrounded."""
    dead = lat.kind == EMPTY
    lat.kind[dead] = TUMOR
    lat.traits[ANTIGEN][dead] = antigen
    lat.traits[CHECKPOINT][dead] = checkpoint


def kill_rate(rules, cell, steps, antigen=15, checkpoint=0, refill_targets=True):
    """Kills per immune cell per step among targets, and the lattice at the end."""
    lat, cells = killers_among_targets(cell, antigen=antigen, checkpoint=checkpoint)
    for step in range(1, steps + 1):
        kill_tumour_cells(lat, rules, step)
        if refill_targets:
            refill(lat, antigen, checkpoint)
    ev = events(lat)
    kills = ev["killed_by_t_cell"] + ev["killed_by_nk_cell"]
    return kills / (len(cells[0]) * steps), lat, cells


def renewal_rate(p_engage, contact_steps, p_kill):
    """Long-run kills per step of a cell that engages with P per step while free (the
    step it becomes free included) and holds each contact n = `contact_steps` steps:
    p_kill / (n + (1 − P)/P)."""
    return p_kill / (contact_steps + (1.0 - p_engage) / p_engage)


def expected_kills(p_engage, contact_steps, p_kill, steps):
    """Exact expected kills per cell within `steps` steps (free at step 1): a cell free at
    step t engages with P; a contact engaged at step t ends at step t + n (a kill with
    p_kill), where the cell is free again and may engage in the same step."""
    free = np.zeros(steps + 2)
    engaged = np.zeros(steps + 2)
    free[1] = 1.0
    for t in range(1, steps + 1):
        if t > 1:
            free[t] = free[t - 1] * (1.0 - p_engage)
            if t - contact_steps >= 1:
                free[t] += engaged[t - contact_steps]
        engaged[t] = free[t] * p_engage
    return p_kill * sum(engaged[t] for t in range(1, steps + 1) if t + contact_steps <= steps)


def immortal(rules, capacity=254):
    return rules.replace(immune_death_thr=np.zeros(2, dtype=np.uint32),
                         t_kill_capacity=capacity, nk_kill_capacity=capacity)


# -- killing -----------------------------------------------------------------------------

@pytest.mark.parametrize("contact_h,engagement_per_h", [(6.0, 1.0), (2.0, 0.5)])
def test_t_cells_among_antigen_high_targets_kill_at_the_declared_rate(contact_h,
                                                                      engagement_per_h):
    s = scenario(**{"immune.t_cell": {"contact_h": contact_h,
                                      "engagement_per_h": engagement_per_h}})
    rules = immortal(build_rules(s))
    measured, lat, _ = kill_rate(rules, T_CELL, steps=96)
    p = 1.0 - math.exp(-engagement_per_h * 1.0)                 # status 1, antigen 15, Δt 1 h
    n = round(contact_h)
    assert measured * 96 == pytest.approx(expected_kills(p, n, 1.0, 96), rel=0.02)
    assert measured == pytest.approx(renewal_rate(p, n, 1.0), rel=0.08)    # long run
    # a few kills per day, hours per kill: within Halle 2016's 2-16 per CTL per day
    assert 2.0 <= measured * 24 <= 16.0
    assert events(lat)["killed_by_nk_cell"] == 0


def test_t_cells_spare_targets_that_lost_antigen_presentation():
    rules = immortal(build_rules(scenario()))
    half, _, _ = kill_rate(rules, T_CELL, steps=96, antigen=4)
    lost, _, _ = kill_rate(rules, T_CELL, steps=48, antigen=0)
    full, _, _ = kill_rate(rules, T_CELL, steps=96, antigen=15)
    assert lost == 0.0
    p = 1.0 - math.exp(-4.0 / 15.0)
    assert half * 96 == pytest.approx(expected_kills(p, 6, 1.0, 96), rel=0.03)
    assert half < full


@pytest.mark.parametrize("antigen", [0, 8, 15])
def test_nk_cells_kill_targets_missing_self_at_the_declared_rate(antigen):
    rules = immortal(build_rules(scenario()))
    measured, lat, _ = kill_rate(rules, NK_CELL, steps=72, antigen=antigen)
    p = 1.0 - math.exp(-1.0 * (15 - antigen) / 15.0)    # not solitary: surrounded by tumour
    expected = expected_kills(p, 1, 1.0, 72) / 72 if antigen < 15 else 0.0
    assert measured == pytest.approx(expected, rel=0.02, abs=1e-12)
    assert events(lat)["killed_by_t_cell"] == 0


def test_nk_cells_engage_solitary_cells_faster():
    rules = immortal(build_rules(scenario()))
    lat = allocate("s", 0, "numba", (16, 16, 16))
    nk = (slice(2, 14, 4), slice(2, 14, 4), slice(2, 14, 4))
    lat.kind[nk] = NK_CELL
    targets = (slice(2, 14, 4), slice(2, 14, 4), slice(3, 15, 4))   # one +x neighbour each
    lat.kind[targets] = TUMOR
    lat.traits[ANTIGEN][targets] = 8
    engaged = 0
    n = lat.kind[nk].size
    trials = 0
    for step in range(1, 200):
        kill_tumour_cells(lat, rules, step)
        engaged += int((lat.immune_busy[nk] > 0).sum())
        trials += n
        lat.immune_busy[nk] = 0                      # a fresh free cell every step
        lat.immune_state[nk] = 0
        lat.kind[targets] = TUMOR
    p_solitary = 1.0 - math.exp(-1.0 * 7 / 15 * 3.0)
    sigma = math.sqrt(p_solitary * (1 - p_solitary) / trials)
    assert abs(engaged / trials - p_solitary) < 4 * sigma
    assert p_solitary > 1.0 - math.exp(-1.0 * 7 / 15) + 8 * sigma     # vs a cell in a mass


def test_checkpoint_ligand_lowers_kills_and_blockade_restores_them():
    s = scenario(**{"immune.t_cell": {"checkpoint_exhaustion_per_contact": 0.0}})
    rules = immortal(build_rules(s))
    base, _, _ = kill_rate(rules, T_CELL, steps=96)
    inhibited, _, _ = kill_rate(rules, T_CELL, steps=96, checkpoint=15)
    blocked_rules = rules.replace(**checkpoint_rules(s, 1.0))
    restored, _, _ = kill_rate(blocked_rules, T_CELL, steps=96, checkpoint=15)
    half_blocked, _, _ = kill_rate(rules.replace(**checkpoint_rules(s, 0.5)), T_CELL, steps=96,
                                   checkpoint=15)
    p = 1.0 - math.exp(-1.0)
    assert base * 96 == pytest.approx(expected_kills(p, 6, 1.0, 96), rel=0.02)
    assert inhibited * 96 == pytest.approx(expected_kills(p, 6, 0.2, 96), rel=0.08)  # P_kill 0.2
    assert half_blocked * 96 == pytest.approx(expected_kills(p, 6, 0.6, 96), rel=0.05)
    assert restored == base                       # b = 1: the same draws, the same kills
    with pytest.raises(ValueError):
        checkpoint_rules(s, 1.5)


def test_t_cells_are_exhausted_after_their_kill_capacity():
    rules = immortal(build_rules(scenario()), capacity=3)
    rate, lat, cells = kill_rate(rules, T_CELL, steps=120)
    n = len(cells[0])
    ev = events(lat)
    assert ev["immune_exhausted"] == n
    assert ev["killed_by_t_cell"] == 3 * n
    assert (lat.immune_kills[cells] == 3).all()
    assert ((lat.immune_state[cells] & EXHAUSTED) != 0).all() and (lat.immune_busy[cells] == 0).all()
    # exhausted cells kill no more
    for step in range(121, 150):
        kill_tumour_cells(lat, rules, step)
    assert events(lat)["killed_by_t_cell"] == 3 * n


def test_checkpoint_ligand_drives_exhaustion():
    s = scenario(**{"immune.t_cell": {"checkpoint_exhaustion_per_contact": 0.3,
                                      "kill_probability": 0.0, "engagement_per_h": 50.0}})
    rules = immortal(build_rules(s))
    _, lat, cells = kill_rate(rules, T_CELL, steps=7, checkpoint=15)     # one contact each
    n = len(cells[0])
    exhausted = events(lat)["immune_exhausted"]
    assert exhausted / n == pytest.approx(0.3, abs=4 * math.sqrt(0.3 * 0.7 / n))
    _, lat, _ = kill_rate(rules.replace(**checkpoint_rules(s, 1.0)), T_CELL, steps=7,
                          checkpoint=15)
    assert events(lat)["immune_exhausted"] == 0


def test_immune_cells_die_at_their_rate():
    s = scenario(**{"immune.t_cell": {"death_per_h": 0.05}})
    rules = build_rules(s)
    lat, cells = killers_among_targets(T_CELL, antigen=0)
    n = len(cells[0])
    for step in range(1, 11):
        kill_tumour_cells(lat, rules, step)
    alive = int((lat.kind == T_CELL).sum())
    expected = n * math.exp(-0.05 * 10)
    assert abs(alive - expected) < 4 * math.sqrt(n * 0.4 * 0.6)
    assert events(lat)["immune_died"] == n - alive


# -- recruitment -------------------------------------------------------------------------

def vessel_bed(chemokine):
    """Perfused vessel voxels 3 apart in a plane of empty matrix, at one chemokine level."""
    lat = allocate("v", 0, "numba", (3, 30, 30))
    vessels = (np.full(100, 1), *np.meshgrid(np.arange(1, 30, 3), np.arange(1, 30, 3),
                                             indexing="ij"))
    vessels = (vessels[0], vessels[1].ravel(), vessels[2].ravel())
    lat.kind[vessels] = VESSEL
    lat.perfused[vessels] = 1
    lat.chemokine[...] = chemokine
    return lat


def recruitment_fraction(rules, chemokine, steps=60):
    """Fraction of vessel-steps that released a cell, and the NK share of recruits."""
    released = nk = 0
    for step in range(1, steps + 1):
        lat = vessel_bed(chemokine)
        recruit_immune_cells(lat, rules, step)
        ev = events(lat)
        released += ev["recruited_t_cell"] + ev["recruited_nk_cell"]
        nk += ev["recruited_nk_cell"]
        assert ev["recruited_t_cell"] == int((lat.kind == T_CELL).sum())
    return released / (100 * steps), nk / max(released, 1)


def test_recruitment_rises_with_immune_status_and_chemokine():
    fast = {"immune.t_cell": {"recruitment_per_h": 0.4}, "immune.nk_cell": {"recruitment_per_h": 0.1}}
    measured = {}
    for status in (0.0, 0.3, 1.0):
        rules = build_rules(scenario(immune={"status": status}, **fast))
        for c in (0.0, 0.5, 5.0):
            fraction, nk_share = recruitment_fraction(rules, np.float32(c))
            f = c / (c + 0.5)
            p = 1.0 - math.exp(-0.5 * status * f)
            trials = 100 * 60
            assert abs(fraction - p) < 4 * math.sqrt(max(p * (1 - p), 1e-9) / trials) + 0.003, \
                (status, c)
            if fraction > 0.1:
                assert nk_share == pytest.approx(0.2, abs=0.04)
            measured[status, c] = fraction
    assert measured[0.0, 5.0] == 0.0 and measured[1.0, 0.0] == 0.0
    assert measured[0.3, 0.5] < measured[1.0, 0.5] < measured[1.0, 5.0]
    assert measured[0.3, 0.5] < measured[0.3, 5.0]


# -- migration ---------------------------------------------------------------------------

def walkers(rules, steps, gradient):
    """T cells released in the middle of an empty block with chemokine rising along +x;
    their mean x displacement and mean squared displacement (voxels)."""
    lat = allocate("w", 0, "numba", (40, 40, 120))
    lat.chemokine[...] = (np.arange(120, dtype=np.float32) * np.float32(gradient))[None, None, :]
    start = (slice(6, 34, 4), slice(6, 34, 4), slice(45, 85, 10))
    lat.kind[start] = T_CELL
    n = int((lat.kind == T_CELL).sum())
    lat.immune_kills[lat.kind == T_CELL] = np.arange(1, n + 1)     # a tag that moves along
    before = np.argwhere(lat.kind == T_CELL)[np.argsort(lat.immune_kills[lat.kind == T_CELL])]
    for step in range(1, steps + 1):
        move_immune_cells(lat, rules, step)
    after = np.argwhere(lat.kind == T_CELL)[np.argsort(lat.immune_kills[lat.kind == T_CELL])]
    moved = (after - before).astype(float)
    return moved[:, 2].mean(), (moved ** 2).sum(axis=1).mean(), n


def test_t_cells_walk_at_their_speed_and_climb_the_chemokine_gradient():
    rules = build_rules(scenario())
    hops = rules.immune_hop_substeps * 1.0                # T cells: 5 µm/min → 15 hops per step
    assert hops == 15
    dx0, msd, n = walkers(rules, steps=3, gradient=0.0)
    assert n == 196
    # an unbiased lattice walk: MSD = hops · steps voxels² (the walkers rarely meet)
    assert msd == pytest.approx(hops * 3, rel=0.2)
    assert abs(dx0) < 4 * math.sqrt(hops * 3 / 3 / n)
    dx, _, _ = walkers(rules, steps=3, gradient=0.1)
    # weight 1 + χ·0.1 = 1.5 up the gradient: drift (1.5 − 1)/(6.5) per hop
    assert dx == pytest.approx(hops * 3 * 0.5 / 6.5, rel=0.25)
    assert dx > dx0 + 4 * math.sqrt(hops * 3 / 3 / n)


def test_movers_swap_with_organ_cells_and_carry_their_state():
    rules = build_rules(scenario())
    lat = allocate("m", 0, "numba", (5, 5, 5))
    lat.kind[...] = FUNCTIONAL
    lat.organ[...] = 1
    lat.kind[2, 2, 2] = T_CELL
    lat.immune_kills[2, 2, 2] = 7
    lat.immune_state[2, 2, 2] = EXHAUSTED
    move_immune_cells(lat, rules, 5)
    assert (lat.kind == T_CELL).sum() == 1 and (lat.kind == FUNCTIONAL).sum() == 124
    where = tuple(np.argwhere(lat.kind == T_CELL)[0])
    assert lat.immune_kills[where] == 7 and lat.immune_state[where] == EXHAUSTED
    assert lat.immune_kills.sum() == 7
    assert events(lat)["immune_migrated"] > 0


def test_movers_never_carry_an_organ_cell_into_another_organ():
    rules = build_rules(scenario())
    lat = allocate("b", 0, "numba", (6, 6, 6))
    lat.kind[...] = FUNCTIONAL
    lat.organ[:3] = 1
    lat.organ[3:] = 2
    lat.kind[2:4, 1:5:2, 1:5:2] = T_CELL                  # eight walkers at the boundary
    before = [int(((lat.kind == FUNCTIONAL) & (lat.organ == o)).sum()) for o in (1, 2)]
    for step in range(1, 13):
        move_immune_cells(lat, rules, step)
    after = [int(((lat.kind == FUNCTIONAL) & (lat.organ == o)).sum()) for o in (1, 2)]
    assert after == before and events(lat)["immune_migrated"] > 0


# -- runs --------------------------------------------------------------------------------

def immune_text(edge=24, status=1.0, enabled=True, extra=""):
    text = small_scenario_text(edge, seed_radius_um=100.0)
    assert text.count(IMMUNE_OFF) == 1
    text = text.replace(IMMUNE_OFF, f"enabled = {'true' if enabled else 'false'} #")
    return text.replace("status = 1.0 ", f"status = {status} ", 1) + extra


def test_no_immunity_is_bit_identical_to_the_process_switched_off():
    off = Simulation(parse_scenario(immune_text(enabled=False), "off.toml"))
    zero = Simulation(parse_scenario(immune_text(status=0.0), "zero.toml"))
    assert zero.rules.immune_enabled and not off.rules.immune_enabled
    for _ in range(24):
        assert off.step().tobytes() == zero.step().tobytes()
    for name in ("kind", "traits", "oxygen", "vegf", "lineage", "clock"):
        assert np.array_equal(off.lattice.arrays[name], zero.lattice.arrays[name]), name
    assert zero.lattice.chemokine.max() > 0 and off.lattice.chemokine.max() == 0


def test_a_tumour_with_immunity_recruits_cells_that_kill_it():
    sim = Simulation(parse_scenario(immune_text(
        edge=32, extra="").replace("recruitment_per_h = 0.02 ", "recruitment_per_h = 0.2 ", 1),
        "on.toml"))
    totals = dict.fromkeys(IMMUNE.events, 0)
    for _ in range(72):
        row = sim.step()
        for e in totals:
            totals[e] += int(row[e])
    assert totals["recruited_t_cell"] > 0 and totals["recruited_nk_cell"] > 0
    assert totals["killed_by_t_cell"] > 0
    assert row["t_cell"] > 0
    # cells accumulate where the chemokine is: nearer the tumour than where they entered
    chem = sim.lattice.chemokine
    assert chem[sim.lattice.kind == T_CELL].mean() > chem[sim.lattice.kind == VESSEL].mean()


def test_nk_cells_kill_about_half_the_arrivals_times_immune_status():
    from test_body import SITES, body_text
    for status, p in ((1.0, 0.5), (0.4, 0.2)):
        text = body_text().replace(IMMUNE_OFF, "enabled = true #").replace(
            "status = 1.0 ", f"status = {status} ", 1)
        body = Body(parse_scenario(text, "body.toml"))
        lattice = body.sites[0]
        killed = sum(body.killed_by_nk_cells(lattice, record, 7) for record in range(4000))
        assert abs(killed / 4000 - p) < 4 * math.sqrt(p * (1 - p) / 4000)
    off = Body(parse_scenario(body_text(), "body.toml"))
    assert not any(off.killed_by_nk_cells(off.sites[0], record, 7) for record in range(500))


def test_nk_surveillance_of_arrivals_in_a_running_body():
    from test_body import body_text
    text = body_text().replace(IMMUNE_OFF, "enabled = true #")
    body = Body(parse_scenario(text, "body.toml"))
    for _ in range(40):
        body.step()
    records = body.circulation.records
    reason = body.circulation.fail_reasons.index(NK_KILLED) + 1
    killed = int((records["fail_reason"] == reason).sum())
    settled = int((records["voxel"] >= 0).sum())
    assert killed > 0 and settled > 0
    assert killed / (killed + settled) == pytest.approx(0.5, abs=0.25)


# -- the CUDA twins ----------------------------------------------------------------------

def random_immune_lattice(seed):
    from test_cuda import random_lattice
    lat = random_lattice((9, 10, 11), seed, z0=seed)
    rng = np.random.default_rng(seed + 77)
    cells = (lat.kind == EMPTY) & (rng.random(lat.shape) < 0.3)
    n = int(cells.sum())
    lat.kind[cells] = np.where(rng.random(n) < 0.7, T_CELL, NK_CELL)
    lat.vacancy[cells] = 0
    lat.immune_busy[cells] = rng.choice([0, 1, 1, 2, 6], n)
    lat.immune_state[cells] = rng.integers(1, 7, n) | (rng.integers(0, 8, n) << 3)
    lat.immune_kills[cells] = rng.integers(0, 12, n)
    lat.chemokine[...] = rng.uniform(0.0, 2.0, lat.shape).astype(np.float32)
    return lat


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
@pytest.mark.parametrize("seed", [1, 2])
def test_every_immune_kernel_matches_numba_on_random_states(backend, seed):
    s = scenario(**{"immune.t_cell": {"recruitment_per_h": 2.0, "kill_capacity": 5}})
    rules = build_rules(s).replace(key=(seed * 31, seed))
    reference = random_immune_lattice(seed)
    twin = on(backend, reference)
    for step in (40 + seed, 41 + seed):
        for process in (kill_tumour_cells, relax_chemokine, move_immune_cells,
                        recruit_immune_cells):
            a, b = process(reference, rules, step), process(twin, rules, step)
            assert a == b
            assert_same_state(reference, twin, process.name)
    ev = events(reference)
    for name in ("recruited_t_cell", "killed_by_t_cell", "immune_exhausted", "immune_migrated"):
        assert ev[name] > 0, name


@needs_cxx
def test_a_run_with_immunity_is_identical_through_the_host_harness():
    text = immune_text(edge=24).replace("recruitment_per_h = 0.02 ", "recruitment_per_h = 0.5 ", 1)
    a = Simulation(parse_scenario(text, "a.toml"), backend="numba")
    b = Simulation(parse_scenario(text, "a.toml"), backend="cuda-host")
    for _ in range(16):
        assert a.step().tobytes() == b.step().tobytes()
    assert_same_state(a.lattice, b.lattice, "immune run")
    assert int(a.step()["t_cell"]) > 0


def test_the_run_summary_reports_immune_status_and_totals(tmp_path):
    import h5py
    from engine.run import run
    text = immune_text(edge=24, status=0.7).replace("recruitment_per_h = 0.02 ",
                                                    "recruitment_per_h = 0.5 ", 1)
    out = tmp_path / "immune.h5"
    summary = run(parse_scenario(text, "immune.toml"), backend="numba", steps=12, out=out,
                  snapshot_every=6, summary_path=tmp_path / "s.json", progress=False)
    immune = summary["immune"]
    assert immune["enabled"] is True and immune["status"] == 0.7
    with h5py.File(out, "r") as f:
        counts = f["counts"][...]
    for event in IMMUNE.events:
        assert immune[event] == int(counts[event].sum()), event
    assert immune["recruited_t_cell"] > 0
    assert immune["t_cell"] == int(counts["t_cell"][-1]) == summary["counts"]["t_cell"]
    assert immune["killed_by_nk_on_arrival"] == 0                 # no sites in this scenario


def test_killed_tumour_cells_and_immune_cells_are_accounted_every_step():
    """Tumour: births − deaths (immune kills included) − departures = change; immune cells:
    recruited − died = change."""
    from test_accounting import HYPOXIC
    text = HYPOXIC.replace(IMMUNE_OFF, "enabled = true #").replace(
        "recruitment_per_h = 0.02 ", "recruitment_per_h = 1.0 ", 1)
    sim = Simulation(parse_scenario(text, "hypoxic_immune.toml"))
    h = np.array([sim.initial] + [sim.step() for _ in range(20)])
    killed = h["killed_by_t_cell"] + h["killed_by_nk_cell"]
    assert killed.sum() > 0 and h["immune_died"].sum() > 0
    left = h["intravasated_blood"] + h["intravasated_lymph"]
    assert np.array_equal(np.diff(h["tumor"]), (h["birth_tumor"] - h["apoptosis_tumor"]
                                                 - h["necrosis_tumor"] - left - killed)[1:])
    recruited = h["recruited_t_cell"] + h["recruited_nk_cell"]
    assert np.array_equal(np.diff(h["t_cell"] + h["nk_cell"]), (recruited - h["immune_died"])[1:])


def test_a_contact_longer_than_255_steps_is_refused_with_one_line(tmp_path):
    from engine.errors import ScenarioError
    from engine.scenario import load_scenario as load
    text = immune_text().replace("contact_h = 6.0 ", "contact_h = 200.0 ", 1).replace(
        "step_h = 1.0 ", "step_h = 0.5 ", 1)
    path = tmp_path / "long.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError, match="immune.t_cell.contact_h = 200 h is 400 steps"):
        load(str(path))
