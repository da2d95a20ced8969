"""The colony registry: every colony of the body, from its founder cell on.

A *colony* is the progeny of one founder cell that settled away from the primary
tumour: a disseminated cell placed into a site lattice by extravasation, or a motile
cell that crossed into the neighbouring organ of the primary lattice and adhered there
(`kernels.migration`, lineage `NEW_CLONE`).  Each founder gets a clone id of its own
(`lineage` from `COLONY_LINEAGE_BASE` up, unique within its lattice) that its daughters
inherit, so a colony's cells are the tumour and dormant cells of its lattice carrying
its clone id.

Class (as clinical staging names them): *local* — in the neighbouring organ of the
primary lattice; *regional* — in a lymph node site; *distant* — in any other site
organ.  Size: the cells (tumour and dormant) and the diameter of a ball of that many
voxels and of its necrotic debris, d = h (6 n / π)^(1/3).  Stage by that diameter
(AJCC 8th edition, breast nodal categories, used for every site):
isolated tumour cells up to 0.2 mm, micrometastasis above 0.2 mm up to 2 mm,
macrometastasis above 2 mm.
"""
from __future__ import annotations

import math

import numpy as np

from kernels.lattice import DORMANT, NECROTIC, TUMOR

from .runformat import plain_rows

ITC_MAX_UM = 200.0          # isolated tumour cells: at most 0.2 mm (AJCC 8th ed.)
MICRO_MAX_UM = 2000.0       # micrometastasis: above 0.2 mm, at most 2 mm; beyond: macro
CLASSES = ("local", "regional", "distant")
STAGES = ("extinct", "itc", "micrometastasis", "macrometastasis")
NAME = "S32"                # lattice and organ names in the tables (ASCII identifiers)

COLONY_DTYPE = np.dtype([
    ("id", np.int64), ("lattice", NAME), ("lineage", np.uint16), ("organ", NAME),
    ("class", "S8"), ("founder_clone", np.uint16), ("founder_record", np.int64),
    ("arrival_step", np.int64), ("first_growth_step", np.int64), ("cells", np.int64),
    ("max_cells", np.int64), ("diameter_um", np.float64), ("stage", "S16")])
SIZE_DTYPE = np.dtype([("step", np.int64), ("colony", np.int64), ("cells", np.int64),
                       ("diameter_um", np.float64)])


def diameter_um(voxels: int, voxel_um: float) -> float:
    """Diameter of a ball of `voxels` voxels of edge h: h (6 n / π)^(1/3)."""
    return voxel_um * (6.0 * voxels / math.pi) ** (1.0 / 3.0) if voxels > 0 else 0.0


def stage_of(cells: int, diameter: float) -> str:
    """extinct (no cells), itc (≤ 0.2 mm), micrometastasis (≤ 2 mm), macrometastasis."""
    if cells == 0:
        return "extinct"
    if diameter <= ITC_MAX_UM:
        return "itc"
    return "micrometastasis" if diameter <= MICRO_MAX_UM else "macrometastasis"


class ColonyRegistry:
    """Every colony of a body, its founder and its size over time."""

    def __init__(self):
        self.rows = np.zeros(0, dtype=COLONY_DTYPE)
        self.by_lattice: dict[str, dict[int, int]] = {}      # lattice -> {lineage: row}

    def __len__(self):
        return len(self.rows)

    def register(self, *, lattice: str, lineage: int, organ: str, cls: str,
                 founder_clone: int, founder_record: int, step: int) -> int:
        """A new colony of one founder cell; returns its id."""
        if cls not in CLASSES:
            raise ValueError(f"colony class {cls!r} is not one of {CLASSES}")
        row = np.zeros(1, dtype=COLONY_DTYPE)
        row["id"] = len(self.rows)
        row["lattice"], row["organ"], row["class"] = lattice, organ, cls
        row["lineage"], row["founder_clone"] = lineage, founder_clone
        row["founder_record"], row["arrival_step"] = founder_record, step
        row["first_growth_step"] = -1
        row["cells"] = row["max_cells"] = 1
        row["stage"] = "itc"
        self.by_lattice.setdefault(lattice, {})[int(lineage)] = len(self.rows)
        self.rows = np.concatenate([self.rows, row])
        return int(row["id"][0])

    def measure(self, step: int, lattice: str, kind: np.ndarray, lineage: np.ndarray,
                voxel_um: float) -> np.ndarray:
        """Update the sizes of the colonies of `lattice` from its host kind and lineage
        arrays; returns this step's size rows (SIZE_DTYPE) of its colonies alive or
        just extinct."""
        colonies = self.by_lattice.get(lattice)
        if not colonies:
            return np.zeros(0, dtype=SIZE_DTYPE)
        cells_mask = (kind == TUMOR) | (kind == DORMANT)
        cells = np.bincount(lineage[cells_mask], minlength=65536)
        debris = np.bincount(lineage[kind == NECROTIC], minlength=65536)
        out = []
        for clone, r in colonies.items():
            row = self.rows[r]
            if row["cells"] == 0 and cells[clone] == 0:
                continue                                   # extinct, reported once
            n = int(cells[clone])
            d = diameter_um(n + int(debris[clone]), voxel_um)
            row["cells"], row["diameter_um"] = n, d
            row["max_cells"] = max(int(row["max_cells"]), n)
            if n > 1 and row["first_growth_step"] < 0:
                row["first_growth_step"] = step
            row["stage"] = stage_of(n, d)
            self.rows[r] = row
            out.append((step, int(row["id"]), n, d))
        return np.array(out, dtype=SIZE_DTYPE)

    def census(self) -> dict[str, int]:
        """Colonies alive by class and by stage (for the per-step body table)."""
        alive = self.rows[self.rows["cells"] > 0]
        out = {f"colonies_{c}": int((alive["class"] == c.encode()).sum()) for c in CLASSES}
        for s in STAGES[1:]:
            out[s] = int((alive["stage"] == s.encode()).sum())
        return out

    def summary(self) -> list[dict]:
        """The registry as JSON-ready dicts."""
        return plain_rows(self.rows)


CENSUS_COLUMNS = tuple(f"colonies_{c}" for c in CLASSES) + STAGES[1:]
