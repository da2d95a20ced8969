"""The initial tissue of a lattice, built on the host from the scenario and seed.

* Organs are slabs along z (`organs[i].z_um`), labelled 1..n in file order;
  voxels outside every slab (fascia, gaps) carry label 0 and hold matrix only.
* Blood and lymphatic vessels come from `engine.vasculature`: a connected
  capillary network per organ with feeding arterioles, and a sparser lymphatic
  network.
* Each other organ voxel holds a functional cell with probability
  `functional_density` (one Philox word per voxel).
* The tumour seed (primary lattices only: a site lattice of the body starts as
  healthy tissue, `Scenario.seeded`) fills the ball of `seed_radius_um` around `seed_center_um`
  with founder cells of lineage 1 (trait levels `tumor.traits.*_level`); where the
  scenario declares a subclone, each seed cell belongs to it with probability
  `tumor.subclone.fraction` (word 1 of its tissue draw) and then carries lineage 2 and
  the subclone's levels.  It is an avascular nodule: the ball
  replaces the vessels inside it, and vessels it cuts off lose their flow.
* Functional cells start quiescent (G0) and ready to refill vacancies; tumour
  cells start at a uniformly random point of their cycle.

Everything is a function of global voxel coordinates and the seed, so a slab of
the lattice can be built on its own and equals the same part of the whole.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from kernels.lattice import (ADHESION, CLOCK_FULL, EMPTY, FUNCTIONAL, LYMPH, PROLIFERATION,
                             TRAIT_NAMES, TUMOR, VESSEL, global_index)
from kernels.philox import (choose, probability_threshold,
                            seed_key, voxel_draw)

from kernels.division import NEUTRAL_LEVEL
from .state import allocate
from .vasculature import STREAM_CYCLE_PHASE, STREAM_TISSUE, build_vasculature

FUNCTIONAL_ADHESION = 15
FOUNDER_LINEAGE = 1
SUBCLONE_LINEAGE = 2


def organ_labels(scenario, shape, z0=0) -> np.ndarray:
    """Organ label of each z plane (voxel centre inside [from, to) of organ i → i + 1)."""
    h = scenario["lattice.voxel_um"]
    centres = (np.arange(z0, z0 + shape[0]) + 0.5) * h
    labels = np.zeros(shape[0], dtype=np.uint8)
    for label, organ in enumerate(scenario.organs, start=1):
        a, b = organ["z_um"]
        labels[(centres >= a) & (centres < b)] = label
    return labels


@numba.njit(parallel=True, cache=True)
def _populate_numba(kind, organ, traits, clock, lineage, density_thr, centre, radius2,
                    founder, subclone, subclone_thr, z0, ny_global, nx_global, lattice_id, k0, k1):
    nz, ny, nx = kind.shape
    for z in prange(nz):
        for y in range(ny):
            for x in range(nx):
                g = global_index(z, y, x, z0, ny_global, nx_global)
                dz = (z0 + z + 0.5) - centre[0]
                dy = (y + 0.5) - centre[1]
                dx = (x + 0.5) - centre[2]
                if dz * dz + dy * dy + dx * dx <= radius2:     # the nodule, vessels and all
                    kind[z, y, x] = TUMOR
                    sub = voxel_draw(g, 0, STREAM_TISSUE, lattice_id, k0, k1)[1] < subclone_thr
                    for t in range(traits.shape[0]):
                        traits[t, z, y, x] = subclone[t] if sub else founder[t]
                    lineage[z, y, x] = SUBCLONE_LINEAGE if sub else FOUNDER_LINEAGE
                elif organ[z, y, x] > 0 and kind[z, y, x] == EMPTY:   # not a vessel
                    word = voxel_draw(g, 0, STREAM_TISSUE, lattice_id, k0, k1)[0]
                    if word < density_thr[organ[z, y, x]]:
                        kind[z, y, x] = FUNCTIONAL
                        traits[PROLIFERATION, z, y, x] = NEUTRAL_LEVEL
                        traits[ADHESION, z, y, x] = FUNCTIONAL_ADHESION
                        for t in range(ADHESION + 1, traits.shape[0]):
                            traits[t, z, y, x] = 0
                if kind[z, y, x] == FUNCTIONAL:
                    clock[z, y, x] = CLOCK_FULL      # quiescent (G0), ready to renew
                elif kind[z, y, x] == TUMOR:
                    word = voxel_draw(g, 0, STREAM_CYCLE_PHASE, lattice_id, k0, k1)[0]
                    clock[z, y, x] = choose(word, CLOCK_FULL)


def founder_levels(scenario) -> tuple[np.ndarray, np.ndarray]:
    """Trait levels (uint8, TRAIT_NAMES order) of the founder and of its subclone (each
    subclone level the founder's where the scenario gives none)."""
    tr, sub = scenario.values["tumor.traits"], scenario.values["tumor.subclone"]
    founder = [tr[f"{name}_level"] for name in TRAIT_NAMES]
    subclone = [f if sub[f"{name}_level"] is None else sub[f"{name}_level"]
                for f, name in zip(founder, TRAIT_NAMES)]
    return np.array(founder, dtype=np.uint8), np.array(subclone, dtype=np.uint8)


def build_tissue(scenario, z0=0, nz=None):
    """Host (NumPy) lattice holding the initial tissue of planes [z0, z0 + nz) of the
    scenario's lattice (`Scenario.lattice_name`, `lattice_id`: its Philox counters)."""
    name, lattice_id = scenario.lattice_name, scenario.lattice_id
    global_shape = scenario.shape
    shape = (nz or global_shape[0], global_shape[1], global_shape[2])
    lat = allocate(name, lattice_id, "numba", shape)
    lat.z0 = z0
    lat.organ[...] = organ_labels(scenario, shape, z0)[:, None, None]
    blood, lymph = build_vasculature(scenario, global_shape)
    lat.kind[blood[z0:z0 + shape[0]]] = VESSEL
    lat.kind[lymph[z0:z0 + shape[0]]] = LYMPH

    h = scenario["lattice.voxel_um"]
    centre = scenario["tumor.seed_center_um"] or [n * h / 2.0 for n in global_shape]
    radius2 = (scenario["tumor.seed_radius_um"] / h) ** 2 if scenario.seeded else -1.0
    density_thr = np.array([0] + [probability_threshold(o["functional_density"])
                                  for o in scenario.organs], dtype=np.uint32)
    founder, subclone = founder_levels(scenario)
    subclone_thr = np.uint32(probability_threshold(scenario["tumor.subclone.fraction"]))
    k0, k1 = seed_key(scenario["scenario.seed"])
    _populate_numba(lat.kind, lat.organ, lat.traits, lat.clock, lat.lineage, density_thr,
                    np.array(centre, dtype=np.float64) / h,
                    radius2, founder, subclone, subclone_thr, z0,
                    global_shape[1], global_shape[2], lattice_id, k0, k1)
    lat.oxygen[...] = np.float32(scenario["oxygen.initial_mmHg"])
    lat.oxygen[lat.kind == VESSEL] = np.float32(scenario["oxygen.vessel_mmHg"])
    return lat
