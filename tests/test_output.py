"""The run file writer: HDF5 layout, XDMF sidecar, statuses, summary JSON."""
import json
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest

from engine.errors import UserError
from engine.output import LatticeInfo, RunWriter, _chunks, write_summary
from tools.runfile import RunFile

SHAPE = (4, 5, 6)
FIELDS = {"kind": np.uint8, "oxygen": np.float32}
COUNTS = np.dtype([("step", np.int64), ("tumor", np.int64), ("mean_o2", np.float64)])
TIMES = [0.0, 1.5, 3.0]


def lattice(name="primary"):
    organ = np.zeros(SHAPE, dtype=np.uint8)
    organ[:, :, 3:] = 1
    return LatticeInfo(name=name, shape=SHAPE, voxel_um=20.0, organ=organ,
                       organ_names=("none", "liver"))


def writer(path, names=("primary",)):
    return RunWriter(path, attrs={"seed": 7, "version": "0.1.0", "step_h": 0.5,
                                  "scenario_toml": "[run]\nsteps = 6\n"},
                     lattices=[lattice(n) for n in names], counts_dtype=COUNTS,
                     snapshot_fields=FIELDS,
                     field_attrs={"oxygen": {"units": "mmHg"},
                                  "kind": {"units": "code", "codes": "0=empty,1=functional"}})


def snapshot(i, names=("primary",)):
    kind = np.full(SHAPE, i, dtype=np.uint8)
    oxygen = np.arange(np.prod(SHAPE), dtype=np.float64).reshape(SHAPE) + 100 * i
    return {n: {"kind": kind, "oxygen": oxygen} for n in names}


def counts_row(i):
    return np.array((i, 10 * i, 0.5 * i), dtype=COUNTS)


@pytest.fixture
def run(tmp_path):
    """A closed, complete run: 3 snapshots at steps 0, 3, 6 and 7 counts rows."""
    path = tmp_path / "run.h5"
    with writer(path, names=("primary", "met1")) as w:
        for i, t in enumerate(TIMES):
            for s in range(3 * i - 2, 3 * i + 1):
                if s >= 0:
                    w.append_counts(counts_row(s))
            w.write_snapshot(3 * i, t, snapshot(i, names=("primary", "met1")))
        w.append_counts(counts_row(7)[None])       # shape (1,) is accepted too
    return path


def test_hdf5_layout(run):
    with h5py.File(run, "r") as f:
        assert f.attrs["status"] == "complete"
        assert f.attrs["format"] == "oncolattice-run-1"
        assert f.attrs["seed"] == 7 and f.attrs["step_h"] == 0.5
        assert f.attrs["scenario_toml"] == "[run]\nsteps = 6\n"
        g = f["lattices/primary"]
        assert g.attrs["voxel_um"] == 20.0
        assert tuple(g.attrs["shape"]) == SHAPE
        assert list(g.attrs["organ_names"]) == ["none", "liver"]
        np.testing.assert_array_equal(g["organ"][()], lattice().organ)
        for name, dt in FIELDS.items():
            ds = g[name]
            assert ds.shape == (3, *SHAPE) and ds.dtype == dt
            assert ds.maxshape == (None, *SHAPE)
            assert ds.chunks == (1, *SHAPE)
            assert ds.compression == "gzip" and ds.compression_opts == 1 and ds.shuffle
        assert g["oxygen"].attrs["units"] == "mmHg"
        assert g["kind"].attrs["codes"] == "0=empty,1=functional"
        assert list(f["snapshots/step"][()]) == [0, 3, 6]
        assert list(f["snapshots/time_h"][()]) == TIMES
        np.testing.assert_array_equal(f["lattices/met1/kind"][2], np.full(SHAPE, 2))


def test_readers(run):
    expected = np.concatenate([counts_row(s)[None] for s in range(8)])
    with RunFile(run) as f:
        np.testing.assert_array_equal(f.counts(), expected)
        np.testing.assert_array_equal(f.snapshot("primary", "oxygen", 1),
                                      snapshot(1)["primary"]["oxygen"].astype(np.float32))
        np.testing.assert_array_equal(f.snapshot("met1", "kind", -1), np.full(SHAPE, 2))
        np.testing.assert_array_equal(f.snapshot("primary", "organ", 0), lattice().organ)
        np.testing.assert_array_equal(f.snapshot("primary", "oxygen", 1, z=2),
                                      snapshot(1)["primary"]["oxygen"].astype(np.float32)[2])
        with pytest.raises(UserError, match="out of range"):
            f.snapshot("primary", "kind", 3)


def test_xdmf(run):
    root = ET.parse(run.with_suffix(".xdmf")).getroot()
    assert root.tag == "Xdmf" and root.get("Version") == "3.0"
    collections = root.findall("Domain/Grid")
    assert [c.get("Name") for c in collections] == ["primary", "met1"]
    with h5py.File(run, "r") as f:
        for coll in collections:
            assert coll.get("GridType") == "Collection"
            assert coll.get("CollectionType") == "Temporal"
            grids = coll.findall("Grid")
            assert [float(g.find("Time").get("Value")) for g in grids] == TIMES
            for t, g in enumerate(grids):
                topo = g.find("Topology")
                assert topo.get("TopologyType") == "3DCoRectMesh"
                assert topo.get("Dimensions") == "5 6 7"
                origin, spacing = g.findall("Geometry/DataItem")
                assert origin.text.split() == ["0", "0", "0"]
                assert [float(x) for x in spacing.text.split()] == [20.0] * 3
                attrs = {a.get("Name"): a for a in g.findall("Attribute")}
                assert set(attrs) == {"organ", "kind", "oxygen"}
                assert all(a.get("Center") == "Cell" for a in attrs.values())
                organ = attrs["organ"].find("DataItem")
                file_name, h5path = organ.text.strip().split(":")
                assert file_name == "run.h5" and f[h5path].shape == SHAPE
                for name, (ntype, prec) in (("kind", ("UChar", "1")), ("oxygen", ("Float", "4"))):
                    slab = attrs[name].find("DataItem")
                    assert slab.get("ItemType") == "HyperSlab"
                    assert tuple(map(int, slab.get("Dimensions").split())) == SHAPE
                    sel, src = slab.findall("DataItem")
                    start, stride, count = np.array(sel.text.split(), int).reshape(3, 4)
                    assert list(start) == [t, 0, 0, 0] and list(stride) == [1] * 4
                    assert list(count) == [1, *SHAPE]
                    file_name, h5path = src.text.strip().split(":")
                    assert file_name == "run.h5"
                    ds = f[h5path]
                    assert tuple(map(int, src.get("Dimensions").split())) == ds.shape
                    assert (src.get("NumberType"), src.get("Precision")) == (ntype, prec)
                    assert (slab.get("NumberType"), slab.get("Precision")) == (ntype, prec)
                    assert start[0] < ds.shape[0]


def test_running_then_xdmf_follows_snapshots(tmp_path):
    path = tmp_path / "live.h5"
    w = writer(path)
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "running"
        assert f["lattices/primary/kind"].shape == (0, *SHAPE)   # created up front
        assert f["counts"].shape == (0,)
    root = ET.parse(tmp_path / "live.xdmf").getroot()
    assert root.find("Domain/Grid").get("GridType") == "Uniform"   # organs only
    w.write_snapshot(0, 0.0, snapshot(0))
    assert len(ET.parse(tmp_path / "live.xdmf").getroot().findall("Domain/Grid/Grid")) == 1
    w.close("interrupted")
    assert w.closed
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"
    with pytest.raises(RuntimeError):
        w.write_snapshot(1, 1.0, snapshot(1))


def test_exception_in_with_marks_failed(tmp_path):
    path = tmp_path / "bad.h5"
    with pytest.raises(ZeroDivisionError):
        with writer(path) as w:
            w.write_snapshot(0, 0.0, snapshot(0))
            w.append_counts(counts_row(0))
            1 / 0
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "failed"
        assert f["snapshots/step"].shape == (1,)
    with RunFile(path) as f:
        assert len(f.counts()) == 1


def test_keyboard_interrupt_marks_interrupted(tmp_path):
    path = tmp_path / "ki.h5"
    with pytest.raises(KeyboardInterrupt):
        with writer(path):
            raise KeyboardInterrupt
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "interrupted"


def test_bad_input_is_refused_before_writing(tmp_path):
    w = writer(tmp_path / "r.h5")
    bad = snapshot(0)
    bad["primary"]["kind"] = bad["primary"]["kind"][:-1]
    with pytest.raises(ValueError):
        w.write_snapshot(0, 0.0, bad)
    bad = snapshot(0)
    bad["primary"]["kind"] = np.zeros(SHAPE, dtype=np.float32)   # float -> uint8 is lossy
    with pytest.raises(TypeError):
        w.write_snapshot(0, 0.0, bad)
    with pytest.raises(ValueError):
        w.write_snapshot(0, 0.0, {"primary": {"kind": snapshot(0)["primary"]["kind"]}})
    with pytest.raises(TypeError):
        w.append_counts(np.zeros(1, dtype=[("step", np.int64)]))
    with pytest.raises(ValueError):
        w.close("done")
    assert w.n_snapshots == 0
    w.close("failed")


def test_chunks_stay_under_one_mib():
    assert _chunks((4, 5, 6), 4) == (4, 5, 6)
    for shape, itemsize in (((512, 512, 512), 4), ((512, 512, 512), 8), ((3, 1000, 1000), 8)):
        c = _chunks(shape, itemsize)
        assert np.prod(c) * itemsize <= 1 << 20
        assert all(1 <= ci <= min(n, 64) for ci, n in zip(c, shape))


def test_write_summary_is_atomic(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_summary(path, {"steps": np.int64(6), "final": {"tumor": 12, "o2": np.float32(0.5)},
                         "status": "complete"})
    assert json.loads(path.read_text()) == {"steps": 6, "final": {"tumor": 12, "o2": 0.5},
                                            "status": "complete"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    with pytest.raises(TypeError):
        write_summary(path, {"bad": object()})
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
    assert json.loads(path.read_text())["steps"] == 6
