"""Fixed categorical colours for voxel kinds, shared by the viewer, the
renderer and the report, so a kind looks the same everywhere.

Colours are RGB in 0..1.  ``empty`` (matrix) is never drawn.  A kind added to
``kernels.lattice.KIND_NAMES`` later must be given a colour here; the test
suite checks that every kind has one and that they are distinct.
"""
from __future__ import annotations

from kernels.lattice import KIND_NAMES

KIND_COLOURS: dict[str, tuple[float, float, float]] = {
    "empty": (0.0, 0.0, 0.0),
    "functional": (0.55, 0.78, 0.55),   # sage green: the organ's own tissue
    "tumor": (0.85, 0.15, 0.55),        # magenta
    "necrotic": (0.45, 0.32, 0.22),     # brown
    "vessel": (0.86, 0.10, 0.10),       # blood red
    "lymph_vessel": (0.95, 0.85, 0.25), # lymph yellow
    "sprout": (1.00, 0.55, 0.10),       # orange: new capillary stalk
    "tip": (0.10, 0.85, 0.95),          # cyan: endothelial tip cell
}

# Drawn by default in 3D views: everything but matrix.
DRAWN_KINDS = tuple(k for k in KIND_NAMES if k != "empty")


def kind_colour(name: str) -> tuple[float, float, float]:
    """The RGB colour of kind `name`."""
    return KIND_COLOURS[name]


def kind_code(name: str) -> int:
    """The voxel code of kind `name` (its index in ``KIND_NAMES``)."""
    return KIND_NAMES.index(name)
