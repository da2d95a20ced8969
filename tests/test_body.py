"""A body of lattices (engine/body.py): sites, extravasation, colonies, bookkeeping.

A small primary (24³) sheds quickly into a lymph node and a lung block (12³ each);
every step the circulation's audit runs (inside `Body.step`) and the tests below check
that every cell that left a lattice is a record, that every settled record sits in its
site lattice as the founder of a registered colony, and that the whole body is the same
on the Numba and CUDA-host backends and for any thread count.
"""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import small_scenario_text, with_values
from test_cuda import CUDA_BACKENDS
from engine.body import Body, open_neighbours
from engine.circulation import STATES
from engine.colonies import diameter_um, stage_of
from engine.errors import DoesNotFit, ScenarioError
from engine.run import ensure_fits
from engine.scenario import parse_scenario
from kernels.lattice import COLONY_LINEAGE_BASE, DORMANT, EMPTY, TUMOR, VESSEL

FAST = {          # a body where every step of the cascade happens within tens of steps
    "detachment_per_h": 0.2, "readhesion_per_h": 0.5, "mature_blood_per_h": 0.5,
    "sprout_blood_per_h": 0.5, "lymph_per_h": 0.5, "ctc_half_life_h": 1.0,
    "extravasation_per_h": 0.5, "proliferating_on_arrival": 0.5, "wake_per_h": 0.05,
    "sentinel_node": '"node"', "node_retention": 0.8,
}
SITES = """
[[sites]]
name = "node"
organ = "lymph_node"
shape = [12, 12, 12]
drains_to = "blood"
capillary_spacing_um = 100.0

[[sites]]
name = "lung"
organ = "lung"
shape = [12, 12, 12]
capillary_spacing_um = 80.0
functional_density = 0.3
"""


def body_text(values=FAST, sites=SITES):
    return with_values(small_scenario_text(24, seed_radius_um=100.0), **values) + sites


@pytest.fixture(scope="module")
def stepped():
    """A body stepped 60 times, with what each step settled."""
    body = Body(parse_scenario(body_text(), "body.toml"))
    settled_at, shed = [], 0
    for _ in range(60):
        body.step()
        records = body.circulation.records
        shed += sum(len(sim.departures) for sim in body.lattices)
        assert len(records) == shed            # every cell that left a lattice, a record
        assert len(body.registry) == int((records["voxel"] >= 0).sum()) + sum(
            int(r["founder_record"] < 0) for r in body.registry.rows)   # + local founders
        settled_at.append(records[(records["fate_step"] == body.step_index)
                                  & (records["voxel"] >= 0)].copy())
    return body, settled_at


def test_sites_are_healthy_blocks_with_their_own_random_numbers():
    s = parse_scenario(body_text(), "body.toml")
    node, lung = s.site(0), s.site(1)
    assert (node.lattice_name, node.lattice_id, node.seeded) == ("node", 1, False)
    assert lung.lattice_id == 2 and lung.organs[0]["name"] == "lung"
    body = Body(s)
    for sim in body.sites:
        assert sim.lattice.shape == (12, 12, 12)
        assert not (sim.lattice.kind == TUMOR).any()
        assert (sim.lattice.organ == 1).all()
    # same block shape, other lattice id: other vessels (the id is in the Philox counter)
    twin = Body(parse_scenario(body_text(sites=SITES.replace('"lung"', '"liver"')
                                         .replace("80.0", "100.0")), "b.toml"))
    assert not np.array_equal(twin.sites[0].lattice.kind == VESSEL,
                              twin.sites[1].lattice.kind == VESSEL)


def test_every_step_of_the_cascade_happens(stepped):
    body, _ = stepped
    totals = {state: int((body.circulation.records["state"] == i).sum())
              for i, state in enumerate(STATES)}
    assert len(body.circulation.records) > 10                    # cells shed
    assert totals["extravasated"] > 0
    classes = set(body.registry.rows["class"])
    assert {b"regional", b"distant"} <= classes
    assert (body.registry.rows["first_growth_step"] >= 0).any()   # a colony grew


def test_every_settled_record_founds_a_colony_in_its_site(stepped):
    body, settled_at = stepped
    settled = np.concatenate(settled_at)
    founders = body.registry.rows[body.registry.rows["founder_record"] >= 0]
    assert sorted(founders["founder_record"]) == sorted(settled["id"])
    for row in founders:
        record = body.circulation.records[row["founder_record"]]
        assert body.circulation.locations[record["where"] + 2] == row["lattice"].decode()
        assert row["lineage"] >= COLONY_LINEAGE_BASE
    # lineages are unique per lattice
    for name in {r.decode() for r in founders["lattice"]}:
        mine = founders[founders["lattice"] == name.encode()]["lineage"]
        assert len(set(mine)) == len(mine)


def test_records_balance_departures_every_step(stepped):
    """Cells that left any lattice = records; each record is in exactly one state
    (the circulation audits this at every step; here its end state is checked)."""
    body, _ = stepped
    records = body.circulation.records
    assert np.array_equal(records["id"], np.arange(len(records)))
    assert sum(int((records["state"] == i).sum()) for i in range(len(STATES))) == len(records)
    body.circulation.audit()


def test_colony_sizes_follow_the_lattice(stepped):
    body, _ = stepped
    for row in body.registry.rows:
        sim = body.by_name[row["lattice"].decode()]
        mine = sim.lattice.lineage == row["lineage"]
        cells = int((mine & ((sim.lattice.kind == TUMOR) | (sim.lattice.kind == DORMANT))).sum())
        assert row["cells"] == cells
        assert row["stage"].decode() == stage_of(cells, row["diameter_um"])


def test_stage_thresholds_are_the_ajcc_ones():
    assert stage_of(0, 0.0) == "extinct"
    assert stage_of(10, 200.0) == "itc" and stage_of(10, 201.0) == "micrometastasis"
    assert stage_of(10, 2000.0) == "micrometastasis" and stage_of(10, 2001.0) == "macrometastasis"
    assert diameter_um(1, 20.0) == pytest.approx(20.0 * (6 / np.pi) ** (1 / 3))


def test_open_neighbours_are_empty_face_neighbours_in_direction_order():
    kind = np.full((3, 3, 3), TUMOR, np.uint8)
    kind[1, 1, 0] = kind[2, 1, 1] = EMPTY
    assert open_neighbours(kind, 13) == [(1, 1, 0), (2, 1, 1)]


@pytest.mark.parametrize("backend", CUDA_BACKENDS)
def test_body_is_bit_identical_on_the_cuda_twins(backend):
    """The whole body (every lattice, the records, the registry) on the CUDA C kernels
    (host harness on the CPU; CuPy on a GPU) equals the Numba run bit for bit."""
    s = parse_scenario(body_text(), "body.toml")
    a, b = Body(s, backend="numba"), Body(s, backend=backend)
    for _ in range(15):
        a.step()
        b.step()
    for x, y in zip(a.lattices, b.lattices):
        for name, arr in x.lattice.arrays.items():
            assert np.array_equal(arr, y.arch.to_host(y.lattice.arrays[name])), (x.name, name)
    assert a.circulation.records.tobytes() == b.circulation.records.tobytes()
    assert a.registry.rows.tobytes() == b.registry.rows.tobytes()


# -- the whole body through the command line, any thread count ---------------------------

def run_cli(tmp_path, name, threads):
    scenario = tmp_path / "body.toml"
    scenario.write_text(body_text())
    out = tmp_path / f"{name}.h5"
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-m", "engine", "run", str(scenario), "--steps", "30",
                           "--snapshot-every", "15", "--out", str(out), "--quiet",
                           "--summary", str(tmp_path / f"{name}.json")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out, "r") as f:
        data = {f"{lat}/kind": f[f"lattices/{lat}/kind"][...] for lat in f["lattices"]}
        for table in ("counts", "body", "colonies", "colony_sizes", "ctcs",
                      "lattices/node/counts", "lattices/lung/counts"):
            data[table] = f[table][...].tobytes()
        assert f["lattices/node"].attrs["site_class"] == "regional"
        assert f["lattices/lung"].attrs["site_organ"] == "lung"
    return data, json.loads((tmp_path / f"{name}.json").read_text())


def test_whole_body_run_is_the_same_for_any_thread_count(tmp_path):
    one, summary = run_cli(tmp_path, "one", 1)
    two, _ = run_cli(tmp_path, "two", 2)
    assert one.keys() == two.keys()
    for key in one:
        assert np.array_equal(one[key], two[key]) if isinstance(one[key], np.ndarray) \
            else one[key] == two[key], key
    assert summary["body"]["circulation"]["cells"] > 0
    assert set(summary["body"]["colonies_by_class"]) == {"local", "regional", "distant"}


# -- bad input: one line naming the key ---------------------------------------------------

@pytest.mark.parametrize("change, key", [
    (lambda t: t.replace('organ = "lung"', 'organ = "spleen"'), "sites[1].organ"),
    (lambda t: t.replace('drains_to = "blood"', 'drains_to = "axilla"'), "sites[0].drains_to"),
    (lambda t: t.replace('sentinel_node = "node"', 'sentinel_node = "lung"'),
     "circulation.sentinel_node"),
    (lambda t: t.replace("node_retention = 0.8", "node_retention = 1.5"),
     "circulation.node_retention"),
    (lambda t: t.replace("proliferating_on_arrival = 0.5", "proliferating_on_arrival = -0.1"),
     "dormancy.proliferating_on_arrival"),
    (lambda t: t.replace('name = "lung"', 'name = "node"'), "sites[1].name"),
    (lambda t: t.replace('drains_to = "blood"\n', ""), "sites[0].drains_to"),
    (lambda t: t + '\n[[sites]]\nname = "lung2"\norgan = "lung"\nshape = [8, 8, 8]\n',
     "sites[2].organ"),
    (lambda t: t.replace("shape = [12, 12, 12]\ndrains_to", "shape = [6000, 6000, 6000]\ndrains_to"),
     "sites[0].shape"),            # a body too large for the machine's memory
])
def test_bad_body_input_is_one_line_naming_the_key(change, key):
    text = change(body_text())
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "bad.toml")
    message = str(err.value)
    assert key in message and "\n" not in message


def test_a_body_too_large_for_the_device_names_the_largest_lattice(monkeypatch):
    import engine.run as run_module
    text = body_text().replace("shape = [12, 12, 12]\ncapillary_spacing_um = 80.0",
                               "shape = [200, 200, 200]\ncapillary_spacing_um = 80.0")
    s = parse_scenario(text, "big.toml")
    monkeypatch.setattr(run_module, "gpu_free_bytes", lambda: 100 << 20)
    with pytest.raises(DoesNotFit) as err:
        ensure_fits(s, "cupy")
    assert "sites[1].shape" in str(err.value) and "3 lattices" in str(err.value)


def test_an_arrival_with_no_room_is_recorded_as_failed(monkeypatch):
    """An arrival that finds no empty voxel beside the capillaries it tries is a failed
    record with its reason, never a lost cell."""
    import engine.body as body_module
    monkeypatch.setattr(body_module, "open_neighbours", lambda kind, index: [])
    body = Body(parse_scenario(body_text(), "body.toml"))
    for _ in range(30):
        body.step()
    records = body.circulation.records
    failed = records[records["state"] == STATES.index("failed")]
    assert len(failed) > 0 and len(body.registry.rows[body.registry.rows["founder_record"] >= 0]) == 0
    assert (records["state"] != STATES.index("extravasated")).all()
