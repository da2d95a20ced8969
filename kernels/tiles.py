"""Active tiles: where the resolve/apply passes of division and displacement have work.

Early in a run the tumour fills a tiny part of the lattice, yet every functional
cell still ages and may die, so oxygen, fate, the cycle and the census visit every
voxel.  The five passes after `propose_division` only matter near a cell that chose
a daughter site: on the CUDA backends they visit only the TILE³ tiles

    (marked this step) ∪ (marked last step),

where `propose_division` marks, for each cell that chose a site, every tile that
the box of REACH = 2 voxels around it overlaps (a daughter lands one voxel away, an
escaping functional cell two).  The union with last step's tiles clears every claim
written then.  So every voxel outside the visited tiles holds claim 0 and no
intent, exactly as after a full pass (a test compares with full passes).

Every backend uses the same list: on a GPU one thread block per tile; in Numba one
thread per layer of tiles along z (the list is sorted, so a layer is a run of it),
so that the per-plane event counters of a layer are written by one thread only.
"""
from __future__ import annotations

import numba
import numpy as np

TILE = 8
TILE_VOXELS = TILE ** 3
REACH = 2


@numba.njit(inline="always", cache=True)
def tiles_along(n):
    return (n + TILE - 1) // TILE


@numba.njit(inline="always", cache=True)
def mark_tiles_near(tile_flags, z, y, x, nz, ny, nx):
    """Flag every tile the box of REACH voxels around (z, y, x) overlaps (the tiles of
    its corners, since TILE > 2 REACH); every writer stores the same 1."""
    for zz in (max(z - REACH, 0), min(z + REACH, nz - 1)):
        for yy in (max(y - REACH, 0), min(y + REACH, ny - 1)):
            for xx in (max(x - REACH, 0), min(x + REACH, nx - 1)):
                tile_flags[zz // TILE, yy // TILE, xx // TILE] = 1


@numba.njit(inline="always", cache=True)
def layer_tiles(tiles, n_tiles, layer, ny, nx):
    """(first, last) positions in the sorted tile list of the tiles of z layer `layer`."""
    per_layer = tiles_along(ny) * tiles_along(nx)
    listed = tiles[:n_tiles]
    return (np.searchsorted(listed, layer * per_layer),
            np.searchsorted(listed, (layer + 1) * per_layer))


@numba.njit(inline="always", cache=True)
def tile_box(tile, nz, ny, nx):
    """(z0, z1, y0, y1, x0, x1): the voxel ranges of tile index `tile`."""
    ty_n, tx_n = tiles_along(ny), tiles_along(nx)
    z0 = (tile // (ty_n * tx_n)) * TILE
    y0 = ((tile // tx_n) % ty_n) * TILE
    x0 = (tile % tx_n) * TILE
    return z0, min(z0 + TILE, nz), y0, min(y0 + TILE, ny), x0, min(x0 + TILE, nx)


def tile_grid(shape) -> tuple[int, int, int]:
    return tuple(-(-n // TILE) for n in shape)


class ActiveTiles:
    """Per lattice: the flags `propose_division` sets, and the sorted list of tiles the
    following passes visit (arrays on the lattice's backend)."""

    def __init__(self, lattice):
        from engine.backend import architecture
        self.arch = architecture(lattice.backend)
        self.grid = tile_grid(lattice.shape)
        self.flags = self.arch.to_device(np.zeros(self.grid, dtype=np.uint8))
        self.previous = np.zeros(self.grid, dtype=bool)
        self.list = self.arch.to_device(np.zeros(1, dtype=np.int32))
        self.count = 0
        self.at_cuts = cut_layers(lattice.domain, self.grid)

    def refresh(self) -> None:
        """Turn this step's flags into the list of tiles to visit, and reset the flags."""
        now = self.arch.to_host(self.flags).astype(bool)
        self.flags[...] = 0
        visit = np.flatnonzero(now | self.previous | self.at_cuts).astype(np.int32)
        self.previous = now
        self.list = self.arch.to_device(np.append(visit, np.int32(0)))   # never empty
        self.count = int(visit.size)

    def args(self) -> dict:
        """The OL_TILE_PARAMS of a tile pass, by name."""
        return {"tiles": self.list, "n_tiles": np.int32(self.count)}


def cut_layers(domain, grid) -> np.ndarray:
    """Tiles always visited on an MPI slab: those within REACH of its halo planes.  A
    cell on the outermost halo plane proposes from an incomplete neighbourhood, so its
    marks there cannot be trusted, while its true proposal (the owner's, exchanged
    after the pass) may reach REACH planes into this slab; visiting more tiles than
    needed is exact (a visited tile without claims changes nothing)."""
    flags = np.zeros(grid, dtype=bool)
    n = domain.local_nz
    for lo, hi in ((0, domain.below + REACH), (n - domain.above - REACH, n)):
        if (domain.below if lo == 0 else domain.above):
            flags[max(lo, 0) // TILE:(min(hi, n) - 1) // TILE + 1] = True
    return flags


def active_tiles(lattice) -> ActiveTiles:
    """The lattice's active-tile state (created on first use)."""
    state = lattice.__dict__.get("active_tiles")
    if state is None:
        state = lattice.__dict__["active_tiles"] = ActiveTiles(lattice)
    return state
