"""Each cell kernel on hand-built lattices: the rule its docstring states."""

import numpy as np
import pytest

from engine.rules import build_rules
from engine.scenario import load_scenario
from engine.schedule import EVENT_NAMES, PASSES
from engine.state import allocate
from kernels.division import place_daughters
from kernels.fate import decide_fate
from kernels.migration import MIGRATION
from kernels.lattice import (ADHESION, N_TRAITS, CLOCK_FULL, EMPTY, FUNCTIONAL, NECROTIC, TUMOR,
                             VESSEL)
from kernels.philox import probability_threshold

# fate, lysis, division and displacement; cells here stay where they are, so migration
# (tests/test_migration.py) is left out
CELL_PASSES = tuple(p for p in PASSES[PASSES.index(decide_fate):PASSES.index(place_daughters) + 1]
                    if p.process is not MIGRATION)
APOPTOSIS_FUNCTIONAL = EVENT_NAMES.index("apoptosis_functional")
APOPTOSIS_TUMOR = EVENT_NAMES.index("apoptosis_tumor")
BIRTH_TUMOR = EVENT_NAMES.index("birth_tumor")
COMPRESSION_FUNCTIONAL = EVENT_NAMES.index("compression_functional")
DISPLACED_FUNCTIONAL = EVENT_NAMES.index("displaced_functional")
NECROSIS_TUMOR = EVENT_NAMES.index("necrosis_tumor")


@pytest.fixture(scope="module")
def rules():
    """Quickstart rules with apoptosis switched off, so only the rule under test acts."""
    r = build_rules(load_scenario("quickstart"))
    return r.replace(apoptosis_thr=np.zeros_like(r.apoptosis_thr))


def lattice(shape, kind=EMPTY, organ=1, oxygen=38.0):
    lat = allocate("t", 0, "numba", shape)
    lat.kind[...] = kind
    lat.organ[...] = organ
    lat.oxygen[...] = oxygen
    return lat


def put(lat, where, kind, clock=0, lineage=0, traits=(8, 4, 4)):
    lat.kind[where] = kind
    lat.clock[where] = clock
    lat.lineage[where] = lineage
    for t, level in enumerate(traits):
        lat.traits[(t,) + where] = level


def cell_step(lat, rules, step=1):
    lat.events[...] = 0
    for process in CELL_PASSES:
        process(lat, rules, step)
    return lat.events.sum(axis=1)


def test_necrosis_after_the_stated_delay(rules):
    lat = lattice((4, 4, 4), oxygen=0.0)
    put(lat, (1, 1, 1), TUMOR, lineage=3)
    for step in range(1, rules.necrosis_steps):
        decide_fate(lat, rules, step)
        assert lat.kind[1, 1, 1] == TUMOR and lat.hypoxia[1, 1, 1] == step
    decide_fate(lat, rules, rules.necrosis_steps)
    assert lat.kind[1, 1, 1] == NECROTIC and lat.events[NECROSIS_TUMOR].sum() == 1
    assert lat.lineage[1, 1, 1] == 3          # debris remembers its clone


def test_reoxygenation_resets_the_hypoxia_count(rules):
    lat = lattice((4, 4, 4), oxygen=0.0)
    put(lat, (1, 1, 1), TUMOR)
    for step in range(1, 2 * rules.necrosis_steps):
        lat.oxygen[1, 1, 1] = 0.0 if step % rules.necrosis_steps else 38.0
        decide_fate(lat, rules, step)
    assert lat.kind[1, 1, 1] == TUMOR


def test_apoptosis_rate_and_resistance(rules):
    p = 0.1
    thr = np.zeros_like(rules.apoptosis_thr)
    thr[0, :] = probability_threshold(p)             # tumour, every level
    thr[0, 15] = 0                                   # fully resistant level
    thr[1, :] = probability_threshold(p)             # functional cells of organ 1
    r = rules.replace(apoptosis_thr=thr)
    lat = lattice((40, 40, 40), kind=TUMOR)
    lat.traits[2] = 4
    lat.traits[2, :20] = 15                          # upper half resists completely
    lat.kind[:, :20, :] = FUNCTIONAL
    decide_fate(lat, r, 1)
    n = 40 * 20 * 20
    tumour_deaths = (lat.kind[20:, 20:, :] == EMPTY).sum()
    assert abs(tumour_deaths - p * n) < 5 * np.sqrt(n * p * (1 - p))
    assert (lat.kind[:20, 20:, :] == TUMOR).all()                   # resistant tumour
    functional_dead = lat.kind[:, :20, :] == EMPTY
    assert abs(functional_dead.sum() - p * 2 * n) < 5 * np.sqrt(2 * n * p * (1 - p))
    assert (lat.vacancy[:, :20, :][functional_dead] == 1).all()      # vacancies marked
    assert (lat.vacancy[20:, 20:, :] == 0).all()                      # tumour deaths leave none
    ev = lat.events.sum(axis=1)
    assert ev[APOPTOSIS_TUMOR] == tumour_deaths and ev[APOPTOSIS_FUNCTIONAL] == functional_dead.sum()


def test_ready_tumour_cell_divides_into_a_face_neighbour(rules):
    lat = lattice((5, 5, 5))
    put(lat, (2, 2, 2), TUMOR, clock=CLOCK_FULL, lineage=7)
    ev = cell_step(lat, rules)
    assert ev[BIRTH_TUMOR] == 1 and (lat.kind == TUMOR).sum() == 2
    (dz, dy, dx), = np.argwhere((lat.kind == TUMOR) & (lat.clock == 0) & (lat.lineage == 7)
                                & ~np.eye(1, 125, 62, dtype=bool).reshape(5, 5, 5)) - 2
    assert abs(dz) + abs(dy) + abs(dx) == 1
    assert lat.clock[2, 2, 2] == 0                     # the parent restarts its cycle


def test_contact_inhibition_keeps_an_enclosed_cell_ready(rules):
    lat = lattice((3, 3, 3), kind=VESSEL)
    put(lat, (1, 1, 1), TUMOR, clock=CLOCK_FULL)
    ev = cell_step(lat, rules)
    assert ev.sum() == 0 and lat.clock[1, 1, 1] == CLOCK_FULL


def test_no_cycling_without_oxygen(rules):
    lat = lattice((3, 3, 3), oxygen=float(rules.o2_prolif_threshold))
    put(lat, (1, 1, 1), TUMOR, clock=100)
    cell_step(lat, rules)
    assert lat.clock[1, 1, 1] == 100
    lat.oxygen[...] = 38.0
    cell_step(lat, rules, 2)
    assert lat.clock[1, 1, 1] == 100 + int(rules.cycle_rate[0, 8])


def test_contested_site_goes_to_exactly_one_parent(rules):
    lat = lattice((1, 1, 3), kind=EMPTY)
    for seed_step in range(1, 30):
        put(lat, (0, 0, 0), TUMOR, clock=CLOCK_FULL, lineage=1)
        put(lat, (0, 0, 2), TUMOR, clock=CLOCK_FULL, lineage=2)
        put(lat, (0, 0, 1), EMPTY)
        ev = cell_step(lat, rules, seed_step)
        assert ev[BIRTH_TUMOR] == 1 and lat.kind[0, 0, 1] == TUMOR
        winner = lat.lineage[0, 0, 1]
        loser_x = 2 if winner == 1 else 0
        assert lat.clock[0, 0, 2 - loser_x] == 0 and lat.clock[0, 0, loser_x] == CLOCK_FULL
    # both parents win some of the contests
    wins = {int(cell_step_winner(rules, s)) for s in range(1, 30)}
    assert wins == {1, 2}


def cell_step_winner(rules, step):
    lat = lattice((1, 1, 3), kind=EMPTY)
    put(lat, (0, 0, 0), TUMOR, clock=CLOCK_FULL, lineage=1)
    put(lat, (0, 0, 2), TUMOR, clock=CLOCK_FULL, lineage=2)
    cell_step(lat, rules, step)
    return lat.lineage[0, 0, 1]


def test_functional_cells_refill_only_vacancies(rules):
    lat = lattice((1, 1, 3))
    put(lat, (0, 0, 0), FUNCTIONAL, clock=CLOCK_FULL, traits=(8, 15, 0))
    cell_step(lat, rules)
    assert (lat.kind == FUNCTIONAL).sum() == 1             # plain matrix is not refilled
    lat.vacancy[0, 0, 1] = 1
    cell_step(lat, rules, 2)
    assert lat.kind[0, 0, 1] == FUNCTIONAL and lat.traits[ADHESION, 0, 0, 1] == 15
    assert lat.vacancy[0, 0, 1] == 0                      # the refilled vacancy is gone


def test_displaced_functional_cell_moves_aside(rules):
    # row: tumour | functional | empty  -> tumour | tumour | functional
    lat = lattice((1, 1, 3))
    put(lat, (0, 0, 0), TUMOR, clock=CLOCK_FULL)
    put(lat, (0, 0, 1), FUNCTIONAL, clock=1234, lineage=0, traits=(8, 15, 0))
    ev = cell_step(lat, rules)
    assert list(lat.kind[0, 0]) == [TUMOR, TUMOR, FUNCTIONAL]
    assert ev[DISPLACED_FUNCTIONAL] == 1 and ev[COMPRESSION_FUNCTIONAL] == 0
    assert lat.traits[ADHESION, 0, 0, 2] == 15           # the whole cell moved


def test_displaced_functional_cell_without_room_dies_of_compression(rules):
    lat = lattice((1, 1, 3))
    put(lat, (0, 0, 0), TUMOR, clock=CLOCK_FULL)
    put(lat, (0, 0, 1), FUNCTIONAL, traits=(8, 15, 0))
    put(lat, (0, 0, 2), VESSEL)
    ev = cell_step(lat, rules)
    assert list(lat.kind[0, 0]) == [TUMOR, TUMOR, VESSEL]
    assert ev[COMPRESSION_FUNCTIONAL] == 1 and ev[DISPLACED_FUNCTIONAL] == 0


def test_mutation_moves_each_trait_at_most_one_level(rules):
    half = probability_threshold(0.25)
    r = rules.replace(mutation_down_thr=np.full(N_TRAITS, half, np.uint32),
                      mutation_up_thr=np.full(N_TRAITS, half, np.uint32))
    lat = lattice((16, 16, 16))
    lat.kind[::2, ::2, ::2] = TUMOR
    lat.clock[::2, ::2, ::2] = CLOCK_FULL
    lat.traits[:, ::2, ::2, ::2] = 8
    cell_step(lat, r)
    parents = np.zeros(lat.shape, bool)
    parents[::2, ::2, ::2] = True
    daughters = (lat.kind == TUMOR) & ~parents
    assert (lat.traits[:, parents] == 8).all()     # parents keep their traits
    levels = lat.traits[:, daughters].astype(int)
    assert levels.size and np.abs(levels - 8).max() == 1
    changed = (levels != 8).mean()
    assert 0.35 < changed < 0.65                   # P(change) = 0.5 per trait


def test_pick_direction_is_uniform_over_the_allowed_faces():
    from kernels.claims import pick_direction
    from kernels.philox import seed_key, voxel_draw_numpy
    words = voxel_draw_numpy(np.arange(60_000, dtype=np.uint64), 1, 2, 0, seed_key(3))[0]
    mask = 0b101010                                   # directions 2, 4, 6 allowed
    picks = np.array([pick_direction(mask, int(w)) for w in words[:6000]])
    assert set(picks) == {2, 4, 6}
    counts = np.bincount(picks, minlength=7)[[2, 4, 6]]
    assert np.abs(counts - 2000).max() < 5 * np.sqrt(6000 * (1 / 3) * (2 / 3))
    assert pick_direction(0, 12345) == 0
