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
intent, exactly as after a full pass: the Numba twin visits everything and the
results are bit-identical (the CUDA conformance tests check it).
"""
from __future__ import annotations

import numpy as np

TILE = 8
TILE_VOXELS = TILE ** 3


def tile_grid(shape) -> tuple[int, int, int]:
    return tuple(-(-n // TILE) for n in shape)


class ActiveTiles:
    """Per lattice: the flags `propose_division` sets on the device, and the list of
    tiles the following passes visit."""

    def __init__(self, launch, shape):
        self.grid = tile_grid(shape)
        self.flags = launch.zeros(self.grid, np.uint8)
        self.previous = np.zeros(self.grid, dtype=bool)
        self.list = launch.upload(np.zeros(0, dtype=np.int32))
        self.count = 0

    def refresh(self, launch) -> None:
        """Turn this step's flags into the list of tiles to visit, and reset the flags."""
        now = launch.to_host(self.flags).astype(bool)
        self.flags[...] = 0
        visit = np.flatnonzero(now | self.previous).astype(np.int32)
        self.previous = now
        self.list = launch.upload(visit)
        self.count = int(visit.size)

    def args(self) -> tuple:
        """The OL_TILE_PARAMS of a tile pass."""
        return (self.list, np.int32(self.count))


def active_tiles(launch, lattice) -> ActiveTiles:
    """The lattice's active-tile state on this launcher (created on first use)."""
    state = lattice.__dict__.get("active_tiles")
    if state is None:
        state = lattice.__dict__["active_tiles"] = ActiveTiles(launch, lattice.shape)
    return state
