"""Geometry of a lattice scene: which voxel faces can be seen, downsampling in
blocks when there are too many, and the triangle meshes of those faces.

Only the visible surface is drawn: the faces of drawn voxels that touch open
space (non-drawn voxels connected through faces to the lattice edge, after
hiding switched-off kinds and clipped voxels) or the edge itself.  Faces
between two drawn voxels or toward an enclosed pocket could never be seen and
are skipped.  Above a face budget the lattice is drawn in blocks of b**3
voxels, each block showing the code that dominates it, counts weighted by
rarity (so thin vessels and small tumours survive).

Pure NumPy on (nz, ny, nx) arrays of kind codes (0 = not drawn); scene units
are voxels, voxel (z, y, x) filling the cube [x, x+1] x [y, y+1] x [z, z+1].
"""
from __future__ import annotations

import math

import numpy as np

# spatial axis -> array axis of a (nz, ny, nx) array
AXES = {"x": 2, "y": 1, "z": 0}
# the six face directions as (array axis, sign): -x, +x, -y, +y, -z, +z
DIRECTIONS = ((2, -1), (2, 1), (1, -1), (1, 1), (0, -1), (0, 1))
FACE_BUDGET = 600_000           # faces drawn before the lattice is drawn in blocks


# -- open space: what a camera outside can see into ------------------------------

def open_space(solid: np.ndarray) -> np.ndarray:
    """The non-solid voxels connected (through faces) to the lattice edge: the
    space a camera outside could see into.  Enclosed pockets are not open.

    Vectorised connected components over runs: the non-solid voxels of each
    row along x form runs; runs in neighbouring rows (y or z) that overlap are
    joined; runs touching the lattice edge start joined to a virtual root 0.
    The components are then found by union-find on the runs in rounds: each
    round finds the roots of the links still joining two trees and hooks the
    larger root onto the smaller, so the number of rounds grows about with the
    logarithm of a component's size, not with the length of the paths through
    a maze of matrix voxels.
    """
    solid = np.asarray(solid, dtype=bool)
    free = ~solid
    start = free.copy()                                # the first voxel of each run
    start[:, :, 1:] &= solid[:, :, :-1]
    run = np.cumsum(start, axis=None, dtype=np.int32).reshape(solid.shape)  # 1-based run id
    n_runs = int(run[-1, -1, -1]) if run.size else 0
    if n_runs == 0:
        return np.zeros(solid.shape, bool)
    parent = np.arange(n_runs + 1, dtype=np.int32)
    for edge in (run[:, :, 0][free[:, :, 0]], run[:, :, -1][free[:, :, -1]],
                 run[:, 0, :][free[:, 0, :]], run[:, -1, :][free[:, -1, :]],
                 run[0][free[0]], run[-1][free[-1]]):
        parent[edge] = 0                               # runs on the lattice edge are open
    return (_join(parent, *_run_links(run, free)) == 0)[run] & free


def _run_links(run, free):
    """(u, v) run ids of each pair of runs that touch across a y or a z face,
    each pair once: two runs in neighbouring rows overlap in one interval of
    x, so only its first x is kept."""
    nz, ny, nx = run.shape
    flat_run, flat_free = run.ravel(), free.ravel()
    us, vs = [], []
    for step, along_y in ((nx, True), (ny * nx, False)):      # neighbours at y + 1, z + 1
        both = np.zeros(run.size, bool)
        np.logical_and(flat_free[:-step], flat_free[step:], out=both[:-step])
        if along_y:
            both.reshape(nz, ny, nx)[:, -1] = False    # y + 1 of the last row is the next plane
        first = both.copy()
        np.greater(both[1:], both[:-1], out=first[1:])
        first.reshape(-1, nx)[:, 0] = both.reshape(-1, nx)[:, 0]   # each row starts afresh
        at = np.flatnonzero(first)
        us.append(flat_run[at])
        vs.append(flat_run[at + step])
    return np.concatenate(us), np.concatenate(vs)


def _join(parent: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Union-find: join the trees of the forest `parent` along the links
    (u[i], v[i]); return it with every node pointing at its root, the
    smallest node of its tree.  Parents only ever decrease, so no cycles.

    Each round hooks the larger root of every link still joining two trees
    onto the smaller; once few such links are left, the roots they join are
    renumbered 0..m-1 (keeping their order) and the rest is solved on those
    alone, so rounds never sweep the whole forest more than a few times."""
    while True:
        parent = _compress(parent)
        a, b = parent[u], parent[v]
        differ = a != b
        if not differ.any():
            return parent
        u, v = a[differ], b[differ]                    # links between roots
        if 4 * len(u) < len(parent):
            roots, inverse = np.unique(np.concatenate([u, v]), return_inverse=True)
            joined = _join(np.arange(len(roots), dtype=parent.dtype),
                           inverse[:len(u)], inverse[len(u):])
            parent[roots] = roots[joined]
            return _compress(parent)
        parent[np.maximum(u, v)] = np.minimum(u, v)   # any of several writes is a join


def _compress(parent: np.ndarray) -> np.ndarray:
    """Every node pointing straight at its root."""
    while True:
        up = parent[parent]
        if np.array_equal(up, parent):
            return parent
        parent = up


# -- visible faces -----------------------------------------------------------------

def drawn_codes(kind: np.ndarray, visible_codes, plane=None) -> np.ndarray:
    """`kind` with every voxel not drawn set to 0: voxels of hidden kinds and
    voxels the clip `plane` hides (a :class:`tools.scene_options.Plane`; None:
    no clip)."""
    lut = np.zeros(256, np.uint8)
    for code in visible_codes:
        lut[code] = code
    out = lut[kind]
    if plane is not None:
        axis = AXES[plane.axis]
        lo, hi = plane.kept(kind.shape[axis])
        for part in (slice(0, lo), slice(hi, None)):
            cut = [slice(None)] * 3
            cut[axis] = part
            out[tuple(cut)] = 0
    return out


def surface_faces(drawn: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    """(code, direction) -> (n, 3) int32 (z, y, x) indices of drawn voxels whose
    face in that direction touches open space or the lattice edge, in C order.

    Faces between two drawn voxels, or toward an enclosed pocket, can never be
    seen from outside and are left out.
    """
    solid = drawn != 0
    nz, ny, nx = drawn.shape
    seen = np.ones((nz + 2, ny + 2, nx + 2), bool)     # open space, and open beyond the edge
    seen[1:-1, 1:-1, 1:-1] = open_space(solid)
    flat_codes = drawn.ravel()
    out = {}
    for d, (axis, sign) in enumerate(DIRECTIONS):
        shift = [slice(1, -1)] * 3
        shift[axis] = slice(1 + sign, (1 + sign - 2) or None)
        flat = np.flatnonzero(solid & seen[tuple(shift)])
        codes = flat_codes[flat]
        order = np.argsort(codes, kind="stable")
        flat, codes = flat[order], codes[order]
        zyx = np.empty((len(flat), 3), np.int32)
        zyx[:, 0], rest = np.divmod(flat, ny * nx)
        zyx[:, 1], zyx[:, 2] = np.divmod(rest, nx)
        present, starts = np.unique(codes, return_index=True)
        for code, lo, hi in zip(present, starts, list(starts[1:]) + [len(codes)]):
            out[int(code), d] = zyx[lo:hi]
    return out


def block_codes(kind: np.ndarray, b: int) -> np.ndarray:
    """Downsample by blocks of b**3 voxels: each block takes the code with the
    most voxels, counts of non-empty codes weighted by 1/sqrt(their fraction of
    the lattice), so that rare kinds (vessels, tips, a small tumour) survive
    while scattered matrix voxels inside tissue do not punch holes.  Ties go
    to the lower code."""
    if b == 1:
        return kind
    pad = [(0, -n % b) for n in kind.shape]
    k = np.pad(kind, pad)                        # pads with 0 (empty)
    nz, ny, nx = (n // b for n in k.shape)
    total = np.bincount(kind.ravel(), minlength=256).astype(np.float64)
    present = np.flatnonzero(total)
    weights = np.ones(256)
    weights[present] = 1.0 / np.sqrt(total[present] / kind.size)
    weights[0] = 1.0
    best = np.zeros((nz, ny, nx), np.uint8)
    best_score = np.zeros((nz, ny, nx))
    for code in present:
        count = k == code
        count = count.view(np.uint8) if b ** 3 < 256 else count.astype(np.uint32)
        for axis in (2, 1, 0):                   # sum the b voxels of each block, axis by axis
            count = sum(_take(count, axis, slice(i, None, b)) for i in range(b))
        score = count * weights[code]
        better = score > best_score
        best[better], best_score[better] = code, score[better]
    return best


def _take(a, axis, part):
    index = [slice(None)] * a.ndim
    index[axis] = part
    return a[tuple(index)]


def choose_block(drawn: np.ndarray, budget: int = FACE_BUDGET):
    """The smallest block edge b whose downsampled lattice has at most `budget`
    surface faces (b stops growing once the lattice is 8 blocks across).
    Returns (b, faces of the downsampled lattice)."""
    b = 1
    limit = max(1, max(drawn.shape) // 8)
    faces = surface_faces(drawn)
    while (n := sum(map(len, faces.values()))) > budget and b < limit:
        # a surface's face count falls about as 1/b**2: aim there, at least b + 1
        b = min(limit, max(b + 1, math.ceil(b * math.sqrt(n / budget))))
        faces = surface_faces(block_codes(drawn, b))
    return b, faces


# -- meshes ------------------------------------------------------------------------

def _face_corners() -> np.ndarray:
    """(6, 4, 3) unit-quad corners (x, y, z) per direction, counter-clockwise
    seen from outside the voxel, so back faces can be culled."""
    corners = np.zeros((6, 4, 3), np.float32)
    for d, (axis, sign) in enumerate(DIRECTIONS):
        n = 2 - axis                             # normal as an (x, y, z) index
        u, v = (n + 1) % 3, (n + 2) % 3          # (u, v, n) right-handed
        quad = [(0, 0), (1, 0), (1, 1), (0, 1)]
        if sign < 0:
            quad = quad[::-1]
        for i, (a, c) in enumerate(quad):
            corners[d, i, n] = 1.0 if sign > 0 else 0.0
            corners[d, i, u], corners[d, i, v] = a, c
    return corners


FACE_CORNERS = _face_corners()
FACE_NORMALS = np.array([[(s if 2 - a == i else 0) for i in range(3)] for a, s in DIRECTIONS],
                        np.float32)
# a slight fixed tone per axis so that faces equally lit still differ (z faces exact)
FACE_TONES = np.array([{2: 0.86, 1: 0.93, 0: 1.0}[a] for a, _ in DIRECTIONS])


def face_mesh(zyx: np.ndarray, direction: int, b: int, extent_xyz) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (4n, 3) and triangles (2n, 3) for the faces of `zyx` voxels of a
    lattice downsampled by b, clamped to the lattice extent (x, y, z)."""
    base = zyx[:, ::-1].astype(np.float32) * b
    verts = base[:, None, :] + FACE_CORNERS[direction][None] * b
    verts = np.minimum(verts, np.asarray(extent_xyz, np.float32)).reshape(-1, 3)
    first = np.arange(len(zyx), dtype=np.uint32)[:, None] * 4
    tris = np.concatenate([first + [0, 1, 2], first + [0, 2, 3]], axis=1).reshape(-1, 3)
    return verts, tris
