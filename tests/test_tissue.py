"""The initial tissue: a function of global coordinates and the seed."""
import numpy as np

from engine.scenario import load_scenario
from engine.state import VOXEL_ARRAYS
from engine.tissue import build_tissue
from kernels.lattice import FUNCTIONAL, TUMOR, VESSEL


def test_a_slab_equals_the_same_planes_of_the_whole_lattice():
    s = load_scenario("quickstart")
    whole = build_tissue(s)
    for z0, nz in ((0, 7), (30, 20), (70, 26)):
        slab = build_tissue(s, z0=z0, nz=nz)
        for name, *_ in VOXEL_ARRAYS:
            a, b = whole.arrays[name], slab.arrays[name]
            assert np.array_equal(a[..., z0:z0 + nz, :, :], b), (name, z0)


def test_quickstart_tissue_matches_its_scenario():
    s = load_scenario("quickstart")
    lat = build_tissue(s)
    h = s["lattice.voxel_um"]
    breast = lat.organ == 1
    fraction = (lat.kind[breast] == FUNCTIONAL).mean() / (lat.kind[breast] != VESSEL).mean()
    assert abs(fraction - 0.7) < 0.01                       # functional_density
    assert (lat.organ[int(1440 / h):int(1520 / h)] == 0).all()   # the fascia gap
    # about one capillary per spacing along each axis: vessel fraction ≈ 3 h / spacing²·h
    expected = 3 * h * h / s["vessels.spacing_um"] ** 2
    assert abs((lat.kind == VESSEL).mean() - expected) < 0.35 * expected
    tumour = np.argwhere(lat.kind == TUMOR) * h + h / 2
    radius = np.linalg.norm(tumour - np.array(s["tumor.seed_center_um"]), axis=1)
    assert radius.max() <= s["tumor.seed_radius_um"] and len(tumour) > 40
