"""The per-voxel vocabulary every kernel shares: voxel kinds, heritable traits,
the six face neighbours, and the event counters a step reports.

These constants are the contract between the Numba kernels, their CUDA twins
and the host: the HDF5 `kind` array stores exactly these codes.
"""
from __future__ import annotations

import numba
import numpy as np

from .process import Array, Process

# Voxel kinds (uint8).  One cell or structure per voxel.
EMPTY = 0        # extracellular matrix / interstitial space, no cell
FUNCTIONAL = 1   # organ parenchyma: the tissue a tumour displaces
TUMOR = 2
NECROTIC = 3     # dead cell debris
VESSEL = 4       # blood vessel (capillary or feeding arteriole)
LYMPH = 5        # lymphatic vessel
SPROUT = 6       # endothelial stalk of a sprout: no lumen, no blood until anastomosis
TIP = 7          # endothelial tip cell leading a sprout
DORMANT = 8      # dormant tumour cell: non-cycling, apoptosis-resistant (kernels/dormancy.py)
T_CELL = 9       # cytotoxic T cell (kernels/immune.py)
NK_CELL = 10     # natural killer cell (kernels/immune.py)
N_KINDS = 11
KIND_NAMES = ("empty", "functional", "tumor", "necrotic", "vessel", "lymph_vessel", "sprout", "tip",
              "dormant", "t_cell", "nk_cell")
# A dormant cell is not live (`is_live`): it does not cycle, divide, migrate, take up
# oxygen (approx.: quiescent cells respire far less; the oxygen field treats the voxel
# like matrix) or die in the fate pass (no apoptosis, no hypoxic necrosis; its own
# death rate is `dormancy.death_per_h`).  Dividing cells, escaping functional cells,
# movers and sprouts never enter its voxel: it is an obstacle, like a vessel.
# Immune cells (T_CELL, NK_CELL) are not live either: they do not divide or take up oxygen
# (approx., kernels/immune.py), have their own death rate, and no tissue cell enters
# their voxels; they move, kill and die only in the immune process.

# Clone ids (uint16 `lineage`).  Ids below COLONY_LINEAGE_BASE are clones of a primary
# tumour; ids from COLONY_LINEAGE_BASE up to FOUNDING_BASE name colonies founded by a
# disseminated or locally settled cell.  FOUNDING_BASE + c marks a founder of primary
# clone c waiting for its colony id, which the host assigns at the end of the step
# (engine.body); NEW_CLONE_LIMIT bounds the colony ids of a lattice.
COLONY_LINEAGE_BASE = 1024
FOUNDING_BASE = 65536 - COLONY_LINEAGE_BASE
NEW_CLONE_LIMIT = FOUNDING_BASE
# Organ labels (uint8 `organ`): 0 no organ, 1 the lattice's own organ, 2.. neighbouring
# organs on the same lattice (the primary's lattice holds the organ next to it).
OWN_ORGAN = 1

# Heritable traits (uint8 levels 0..TRAIT_LEVELS-1), one plane each in `traits`.
PROLIFERATION = 0
ADHESION = 1
APOPTOSIS_RESISTANCE = 2
CHEMO_RESISTANCE = 3      # lowers the kill of cytotoxic chemotherapy
ANTIGEN = 4               # antigen presentation (MHC-I): what T cells recognise; loss = escape
CHECKPOINT = 5            # checkpoint ligand (PD-L1-like): inhibits the T cell that engages it
RECEPTOR = 6              # dependence on a hormone / growth-signal receptor (ER, HER2-like)
N_TRAITS = 7
TRAIT_NAMES = ("proliferation", "adhesion", "apoptosis_resistance", "chemo_resistance",
               "antigen", "checkpoint", "receptor")
TRAIT_LEVELS = 16

# The arrays every cell carries, whatever the process (each process declares its own).
LATTICE = Process("lattice", arrays={
    "kind": Array(np.uint8, "voxel kind (kernels/lattice.py; the run file stores the codes)"),
    "organ": Array(np.uint8, "organ label (0 = none)"),
    "traits": Array(np.uint8, "heritable levels 0–15, one plane per trait of TRAIT_NAMES",
                     planes=N_TRAITS),
    "lineage": Array(np.uint16, "clone id (debris keeps it until it lyses)"),
})

# Cell-cycle clock: uint16 progress in units of 2**-16 cycle; FULL = ready to divide.
CLOCK_FULL = 65535
CLOCK_UNITS_PER_CYCLE = 65536.0

# Face neighbours: direction codes 1..6; 0 means "none".
# 1: -x, 2: +x, 3: -y, 4: +y, 5: -z, 6: +z.  opposite(d) = ((d - 1) ^ 1) + 1.
DZ = np.array([0, 0, 0, 0, 0, -1, 1], dtype=np.int64)
DY = np.array([0, 0, 0, -1, 1, 0, 0], dtype=np.int64)
DX = np.array([0, -1, 1, 0, 0, 0, 0], dtype=np.int64)

# A claim byte holds the direction of the winning daughter source in bits 0..2
# and the direction of the winning escaping functional cell in bits 3..5.
# An intent byte holds a cell's chosen daughter site in bits 0..2 and, for a
# displaced functional cell, its chosen escape site in bits 3..5.
LOW3 = 7
ESCAPE_SHIFT = 3

@numba.njit(inline="always", cache=True)
def opposite(d):
    """The direction pointing back: -x <-> +x, -y <-> +y, -z <-> +z."""
    return ((d - 1) ^ 1) + 1


@numba.njit(inline="always", cache=True)
def neighbour(z, y, x, d, nz, ny, nx):
    """Coordinates of the face neighbour in direction d, and whether it lies
    inside the lattice (the lattice faces are walls)."""
    zz = z + DZ[d]
    yy = y + DY[d]
    xx = x + DX[d]
    inside = 0 <= zz < nz and 0 <= yy < ny and 0 <= xx < nx
    return zz, yy, xx, inside


@numba.njit(inline="always", cache=True)
def global_index(z, y, x, z0, ny, nx):
    """Global voxel index of local (z, y, x) in a slab starting at global z0."""
    return ((np.int64(z0) + z) * ny + y) * nx + x


@numba.njit(inline="always", cache=True)
def is_live(k):
    """Live cells: the ones that consume oxygen, age, divide and die (not DORMANT)."""
    return k == FUNCTIONAL or k == TUMOR


@numba.njit(inline="always", cache=True)
def is_immune(k):
    """Immune cells on the lattice: cytotoxic T cells and NK cells."""
    return k == T_CELL or k == NK_CELL


@numba.njit(inline="always", cache=True)
def clear_cell(z, y, x, traits, clock, hypoxia, lineage, motile):
    """Forget the cell that occupied a voxel (its motility with it)."""
    for t in range(traits.shape[0]):
        traits[t, z, y, x] = 0
    clock[z, y, x] = 0
    hypoxia[z, y, x] = 0
    lineage[z, y, x] = 0
    motile[z, y, x] = 0


@numba.njit(inline="always", cache=True)
def is_endothelium(k):
    """Vessel walls, stalks and tips: they bind VEGF and anastomose."""
    return k == VESSEL or k == SPROUT or k == TIP


@numba.njit(inline="always", cache=True)
def table_row(k, organ):
    """Row of the per-cell-type rule tables: 0 for tumour cells, the organ
    label (1..n) for functional cells."""
    return 0 if k == TUMOR else np.int64(organ)
