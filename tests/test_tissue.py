"""The initial tissue: a function of global coordinates and the seed."""
import numpy as np

from engine.scenario import load_scenario, parse_scenario
from engine.state import VOXEL_ARRAYS
from engine.tissue import build_tissue
from kernels.lattice import FUNCTIONAL, LYMPH, TUMOR, VESSEL


def test_a_slab_equals_the_same_planes_of_the_whole_lattice():
    s = load_scenario("quickstart")
    whole = build_tissue(s)
    for z0, nz in ((0, 7), (30, 20), (70, 26)):
        slab = build_tissue(s, z0=z0, nz=nz)
        for name, *_ in VOXEL_ARRAYS:
            a, b = whole.arrays[name], slab.arrays[name]
            assert np.array_equal(a[..., z0:z0 + nz, :, :], b), (name, z0)


def host_tissue():
    """The quickstart's tissue without its nodule: the vasculature as generated."""
    text = load_scenario("quickstart").text.replace("seed_radius_um = 300.0", "seed_radius_um = 10.0")
    return parse_scenario(text, "host")


def test_quickstart_tissue_matches_its_scenario():
    s = host_tissue()
    lat = build_tissue(s)
    h = s["lattice.voxel_um"]
    breast = lat.organ == 1
    fraction = (lat.kind[breast] == FUNCTIONAL).mean() / (lat.kind[breast] != VESSEL).mean()
    assert abs(fraction - 0.7) < 0.01                       # functional_density
    assert (lat.organ[int(1440 / h):int(1520 / h)] == 0).all()   # the fascia gap
    # one capillary per spacing along each axis: vessel fraction ≈ 3 h² / spacing²
    # (plus the jogs of jittered paths and the feeding arterioles)
    expected = 3 * h * h / s.organs[0]["capillary_spacing_um"] ** 2
    core = lat.kind[4:60, 4:92, 4:92]                    # breast, away from the faces
    assert expected < (core == VESSEL).mean() < 1.6 * expected
    assert not (lat.kind == TUMOR).any()


def test_the_nodule_is_an_avascular_ball_of_founder_cells():
    s = load_scenario("quickstart")
    lat, h = build_tissue(s), s["lattice.voxel_um"]
    centres = np.argwhere(np.ones(lat.shape, bool)).reshape(*lat.shape, 3) * h + h / 2
    inside = np.linalg.norm(centres - np.array(s["tumor.seed_center_um"]), axis=-1) \
        <= s["tumor.seed_radius_um"]
    assert (lat.kind[inside] == TUMOR).all() and not (lat.kind[~inside] == TUMOR).any()
    assert inside.sum() > 14_000                        # 4/3 π (300 µm / 20 µm)³ ≈ 14 137


def reachable_from_faces(mask):
    """Voxels of `mask` joined by face-neighbour paths inside `mask` to a lattice face."""
    reach = np.zeros_like(mask)
    for face in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1], np.s_[:, :, 0], np.s_[:, :, -1]):
        reach[face] = mask[face]
    while True:
        grown = reach.copy()
        for axis in range(3):
            grown |= np.roll(reach, 1, axis) | np.roll(reach, -1, axis)
        grown &= mask
        if np.array_equal(grown, reach):
            return reach
        reach = grown


def test_capillary_networks_are_connected_and_lymphatics_separate():
    s = host_tissue()
    lat = build_tissue(s)
    blood = lat.kind == VESSEL
    assert np.array_equal(reachable_from_faces(blood), blood)
    lymph = lat.kind == LYMPH
    assert 0.002 < lymph.mean() < 0.05 and not (lymph & blood).any()
    assert not (lat.kind[int(1440 / 20):int(1520 / 20)] == VESSEL).any()   # none in the fascia gap


def arteriole_voxels(blood, run=4):
    """Voxels whose (z, y) cross-section is a full plus (the voxel and its four z/y
    neighbours) for `run` consecutive voxels along x.  A capillary node has a plus
    cross-section at one x only; a widened feeding vessel keeps it along its length."""
    plus = blood[1:-1, 1:-1] & blood[:-2, 1:-1] & blood[2:, 1:-1] & blood[1:-1, :-2] & blood[1:-1, 2:]
    along = plus[..., :plus.shape[2] - run + 1].copy()
    for dx in range(1, run):
        along &= plus[..., dx:plus.shape[2] - run + 1 + dx]
    return along


def test_feeding_arterioles_are_wider_than_capillaries():
    s = load_scenario("quickstart")
    assert arteriole_voxels(build_tissue(s).kind == VESSEL).sum() > 50
    s.values["vessels"]["feeding_radius_um"] = 0.0
    assert arteriole_voxels(build_tissue(s).kind == VESSEL).sum() == 0


def test_a_subclone_is_scattered_through_the_seed_with_its_own_levels_and_clone_id():
    from conftest import small_scenario_text, with_values
    from engine.tissue import FOUNDER_LINEAGE, SUBCLONE_LINEAGE
    from kernels.lattice import CHEMO_RESISTANCE, TRAIT_NAMES
    text = with_values(small_scenario_text(edge=40, seed_radius_um=160.0), fraction="0.3")
    text = text.replace("chemo_resistance_level      = 0", "chemo_resistance_level = 12")
    lat = build_tissue(parse_scenario(text))
    seed = lat.kind == TUMOR
    sub = seed & (lat.lineage == SUBCLONE_LINEAGE)
    share = sub.sum() / seed.sum()
    assert seed.sum() > 500 and abs(share - 0.3) < 4 * (0.3 * 0.7 / seed.sum()) ** 0.5
    assert set(np.unique(lat.lineage[seed])) == {FOUNDER_LINEAGE, SUBCLONE_LINEAGE}
    assert (lat.traits[CHEMO_RESISTANCE][sub] == 12).all()
    assert (lat.traits[CHEMO_RESISTANCE][seed & ~sub] == 0).all()
    others = [t for t in range(len(TRAIT_NAMES)) if t != CHEMO_RESISTANCE]
    assert (lat.traits[others][:, sub] == lat.traits[others][:, seed & ~sub][:, :1]).all()
