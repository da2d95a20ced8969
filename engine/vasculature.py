"""The initial vasculature: connected capillary networks per organ, feeding vessels, lymphatics.

Each organ gets a capillary network built on a jittered node lattice: nodes sit
at ((i + ½) s, (j + ½) s, (k + ½) s) inside the organ's slab (s = the organ's
`capillary_spacing_um`), each moved by a uniform jitter in (−j, +j) µm per
coordinate drawn from Philox with the node's (i, j, k) as counter.  Every node is
joined to its neighbour along x, y and z by a 6-connected path (along x, then y,
then z), and the outermost nodes are joined to the lattice faces, where the block
meets the rest of the organ's circulation.  So the network is connected by
construction and its intercapillary distance is s.

Feeding vessels (arterioles) run along x through every m-th row of nodes in y
and z (m = round(feeding_spacing / s)), widened to `feeding_radius_um`; they join
the capillaries at the nodes they pass.  Lymphatic vessels form a second, sparser
network of the same construction (`lymph_spacing_um`) of their own kind; they do
not carry blood and never overwrite a blood vessel.

Everything is a function of the seed and global coordinates: the builder draws
the whole lattice's network and a slab takes its planes.
"""
from __future__ import annotations

import math

import numpy as np

from kernels.philox import philox4x32_numpy, seed_key
from kernels.process import Process

# Building the initial tissue (host side): where cells and capillary nodes go, and the
# cell-cycle phase of seeded cells.
TISSUE = Process("tissue", streams={"tissue": 5, "cycle_phase": 6})
STREAM_TISSUE, STREAM_CYCLE_PHASE = TISSUE.streams["tissue"], TISSUE.streams["cycle_phase"]

CAPILLARY, LYMPHATIC = 1, 2     # network ids in the Philox counter


# Host bytes the builder holds per node while it draws a network (node positions, Philox
# words, edge lists; a peak of about 350 measured, with a margin), and per voxel (its masks).
BUILD_BYTES_PER_NODE = 512
BUILD_BYTES_PER_VOXEL = 4


def node_counts(z_range, ny, nx, spacing):
    """Nodes (along z, y, x) of one organ slab's network of `spacing` voxels."""
    z_from, z_to = z_range
    return [max(1, int(round((z_to - z_from) / spacing))),
            max(1, int(round(ny / spacing))), max(1, int(round(nx / spacing)))]


def node_lattice(z_range, ny, nx, spacing, jitter, key, organ, network, lattice_id=0):
    """Integer voxel positions (ni, nj, nk, 3) of the jittered nodes of one organ slab."""
    z_from, z_to = z_range
    counts = node_counts(z_range, ny, nx, spacing)
    i, j, k = np.meshgrid(*(np.arange(n) for n in counts), indexing="ij")
    words = philox4x32_numpy((i, j, k, np.uint32(STREAM_TISSUE | organ << 8 | network << 16
                                                  | lattice_id << 24)), key)
    lows, highs = (z_from, 0, 0), (z_to - 1, ny - 1, nx - 1)
    nodes = np.empty(i.shape + (3,), dtype=np.int64)
    for axis, (index, low, high) in enumerate(zip((i, j, k), lows, highs)):
        offset = (words[axis] / 2.0**32 * 2.0 - 1.0) * jitter
        position = low + (index + 0.5) * spacing + offset
        nodes[..., axis] = np.clip(np.floor(position), low, high)
    return nodes


def draw_paths(mask, starts, ends):
    """Mark 6-connected paths from each start to each end (along x, then y, then z)."""
    if len(starts) == 0:
        return
    point = starts.copy()
    for axis in (2, 1, 0):
        delta = ends[:, axis] - point[:, axis]
        step = np.sign(delta)
        for t in range(int(np.abs(delta).max()) + 1):
            moved = point.copy()
            moved[:, axis] += step * np.minimum(t, np.abs(delta))
            mask[moved[:, 0], moved[:, 1], moved[:, 2]] = True
        point[:, axis] = ends[:, axis]


def network_edges(nodes, shape, z_range):
    """(starts, ends) of the edges joining neighbouring nodes, and the outermost
    nodes to the lattice faces (in z only where the organ slab touches a face)."""
    starts, ends = [], []
    for axis in range(3):
        a = np.moveaxis(nodes, axis, 0)
        starts.append(a[:-1].reshape(-1, 3))
        ends.append(a[1:].reshape(-1, 3))
        first, last = a[0].reshape(-1, 3), a[-1].reshape(-1, 3)
        touches_low = axis > 0 or z_range[0] == 0
        touches_high = axis > 0 or z_range[1] == shape[0]
        for touches, outer, face in ((touches_low, first, 0), (touches_high, last, shape[axis] - 1)):
            if touches:
                to_face = outer.copy()
                to_face[:, axis] = face
                starts.append(outer)
                ends.append(to_face)
    return np.concatenate(starts), np.concatenate(ends)


def every_mth(n, m):
    """Row indices i < n with i ≡ m // 2 (mod m); the middle row if there are none."""
    rows = np.arange(n)[np.arange(n) % m == m // 2]
    return rows if rows.size else np.array([n // 2])


def feeding_edges(nodes, m, nx):
    """(starts, ends) of feeding vessels: along x through every m-th node row in z
    and y, from the x = 0 face to the x = nx − 1 face."""
    rows = nodes[np.ix_(every_mth(nodes.shape[0], m), every_mth(nodes.shape[1], m))]
    first, last = rows[:, :, 0].reshape(-1, 3), rows[:, :, -1].reshape(-1, 3)
    at_low, at_high = first.copy(), last.copy()
    at_low[:, 2], at_high[:, 2] = 0, nx - 1
    starts = np.concatenate([rows[:, :, :-1].reshape(-1, 3), at_low, last])
    ends = np.concatenate([rows[:, :, 1:].reshape(-1, 3), first, at_high])
    return starts, ends


def widen_in_yz(mask, radius):
    """Voxels within `radius` voxels (in y and z) of the marked ones (offsets beyond
    the lattice reach nothing, so the loop is bounded by the lattice, not the radius)."""
    out = mask.copy()
    nz, ny, _ = mask.shape
    rz, ry = (min(int(radius), n - 1) for n in (nz, ny))
    for dz in range(-rz, rz + 1):
        for dy in range(-ry, ry + 1):
            if dz * dz + dy * dy > radius * radius:
                continue
            src = mask[max(0, -dz):nz - max(0, dz), max(0, -dy):ny - max(0, dy)]
            out[max(0, dz):nz - max(0, -dz), max(0, dy):ny - max(0, -dy)] |= src
    return out


def organ_slabs(scenario, nz):
    """[(label, organ, (z_from, z_to) in voxels)] of the organs that hold voxels."""
    h = scenario["lattice.voxel_um"]
    centres = (np.arange(nz) + 0.5) * h
    slabs = []
    for label, organ in enumerate(scenario.organs, start=1):
        a, b = organ["z_um"]
        inside = np.flatnonzero((centres >= a) & (centres < b))
        if inside.size:
            slabs.append((label, organ, (int(inside[0]), int(inside[-1]) + 1)))
    return slabs


def build_bytes(scenario, shape) -> int:
    """Host bytes `build_vasculature` needs at its peak for a lattice of `shape`: the
    nodes of the densest organ network (blood or lymphatic) and the masks."""
    h, v = scenario["lattice.voxel_um"], scenario.values["vessels"]
    _, ny, nx = shape
    nodes = [math.prod(node_counts(z_range, ny, nx, spacing_um / h))
             for _, organ, z_range in organ_slabs(scenario, shape[0])
             for spacing_um in (organ["capillary_spacing_um"], v["lymph_spacing_um"])]
    return max(nodes, default=0) * BUILD_BYTES_PER_NODE + math.prod(shape) * BUILD_BYTES_PER_VOXEL


def build_vasculature(scenario, shape):
    """Boolean masks (blood, lymph) of the whole lattice of `shape`."""
    h = scenario["lattice.voxel_um"]
    v = scenario.values["vessels"]
    key = seed_key(scenario["scenario.seed"])
    blood = np.zeros(shape, dtype=bool)
    feeding = np.zeros(shape, dtype=bool)
    lymph = np.zeros(shape, dtype=bool)
    _, ny, nx = shape
    for label, organ, z_range in organ_slabs(scenario, shape[0]):
        spacing = organ["capillary_spacing_um"] / h
        nodes = node_lattice(z_range, ny, nx, spacing, v["jitter_um"] / h, key, label, CAPILLARY,
                             scenario.lattice_id)
        draw_paths(blood, *network_edges(nodes, shape, z_range))
        m = max(1, int(round(v["feeding_spacing_um"] / organ["capillary_spacing_um"])))
        draw_paths(feeding, *feeding_edges(nodes, m, nx))
        lymph_nodes = node_lattice(z_range, ny, nx, v["lymph_spacing_um"] / h, v["jitter_um"] / h,
                                   key, label, LYMPHATIC, scenario.lattice_id)
        draw_paths(lymph, *network_edges(lymph_nodes, shape, z_range))
    blood |= widen_in_yz(feeding, v["feeding_radius_um"] / h)
    return blood, lymph & ~blood
