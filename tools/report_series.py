"""The data of a report, read from a run file (:class:`tools.runfile.RunFile`):
the counts series with the quantities derived from it, the snapshots' tumour
planes and kind tallies, and the headline numbers of ``summary.json``.

Derived quantities (one cell or structure per voxel):

* tumour volume = (tumour + necrotic voxels) x voxel volume; the
  equivalent-sphere radius is that of a ball of the same volume;
* vessel density = blood-vessel length per tissue volume, in mm/mm³, with
  each vessel, sprout or tip voxel counted as one voxel edge of vessel length
  (lymphatics excluded) and the tissue volume the voxels inside an organ
  (the whole lattice if no voxel has an organ label);
* functional fraction = functional cells relative to the first counts row,
  overall and per organ (``functional_<organ>``).  The run's own
  ``functional_fraction`` column (primary organ only) is reported as well.

Voxel kinds are identified by the names the file stores with its kind codes
(:mod:`engine.runformat`), so a snapshot is read by its own file's numbering
and a kind this version does not know is still counted under its name.
Snapshots are read in slabs of z planes, never a whole float field at once.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine.runformat import CHUNK_EDGE, EMPTY_KIND, KIND, KindCodes, json_number
from tools.palette import KIND_COLOURS, kind_colour

DAYS_ABOVE_H = 72.0                 # time axes in days once a run is longer than this
BLOOD_VESSEL_KINDS = ("vessel", "sprout", "tip")
TUMOUR_KINDS = ("tumor", "necrotic")     # the tumour mass


# -- the counts series --------------------------------------------------------------

@dataclass
class Series:
    """The counts of a run with everything the plots derive from them."""

    counts: np.ndarray               # structured, one row per step
    time_h: np.ndarray
    voxel_um: float
    tissue_voxels: int               # voxels inside an organ (or the whole lattice)
    organs: tuple[str, ...]          # organ names with a functional_<organ> column
    kinds: KindCodes                 # the lattice's kind codes, as the file stores them
    derived: dict = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.counts.dtype.names or ()

    def has(self, *cols) -> bool:
        return all(c in self.names for c in cols)

    def col(self, name) -> np.ndarray:
        return self.counts[name].astype(np.float64)

    @property
    def voxel_mm3(self) -> float:
        return (self.voxel_um / 1000.0) ** 3

    @property
    def tissue_mm3(self) -> float:
        return self.tissue_voxels * self.voxel_mm3

    @property
    def time_unit(self) -> str:
        return time_unit(self.time_h)

    @property
    def t(self) -> np.ndarray:
        """Times in :attr:`time_unit`."""
        return to_unit(self.time_h, self.time_unit)


def time_unit(times_h) -> str:
    times_h = np.asarray(times_h, dtype=np.float64)
    return "days" if len(times_h) and float(np.nanmax(times_h)) > DAYS_ABOVE_H else "h"


def to_unit(times_h, unit: str):
    return np.asarray(times_h, dtype=np.float64) / (24.0 if unit == "days" else 1.0)


def fmt_time(time_h: float, unit: str) -> str:
    if unit == "days":
        return f"{time_h / 24.0:.3g} d"
    return f"{time_h:.4g} h"


def load_series(run, lattice: str | None = None) -> Series:
    """The counts of `run` (a :class:`tools.runfile.RunFile`) and derived curves."""
    meta = run.lattice(lattice)
    counts = run.counts(meta.name)          # a site lattice's own counts, where it has them
    if counts is None:
        counts = run.counts()
    names = counts.dtype.names or ()
    if "time_h" in names:
        time_h = counts["time_h"].astype(np.float64)
    elif "step" in names:
        time_h = counts["step"].astype(np.float64) * float(run.attrs.get("step_h", 1.0))
    else:
        time_h = np.arange(len(counts), dtype=np.float64) * float(run.attrs.get("step_h", 1.0))
    tissue = int(np.count_nonzero(meta.organ))
    s = Series(counts=counts, time_h=time_h, voxel_um=meta.voxel_um,
               tissue_voxels=tissue or int(np.prod(meta.shape)),
               organs=tuple(o for o in meta.organ_names[1:] if f"functional_{o}" in names),
               kinds=meta.kinds)
    d = s.derived
    if s.has(*TUMOUR_KINDS):
        mass = s.col("tumor") + s.col("necrotic")
        d["tumour_volume_mm3"] = mass * s.voxel_mm3
        d["necrotic_volume_mm3"] = s.col("necrotic") * s.voxel_mm3
        d["radius_um"] = (3.0 * mass * s.voxel_um ** 3 / (4.0 * math.pi)) ** (1.0 / 3.0)
    if s.has(*BLOOD_VESSEL_KINDS):
        voxels = sum(s.col(k) for k in BLOOD_VESSEL_KINDS)
        d["vessel_length_mm"] = voxels * s.voxel_um / 1000.0
        d["vessel_density_mm_per_mm3"] = d["vessel_length_mm"] / s.tissue_mm3
    if s.has("functional") and len(counts):
        d["functional_overall"] = _relative(s.col("functional"))
        for organ in s.organs:
            d[f"functional_{organ}"] = _relative(s.col(f"functional_{organ}"))
    return s


def _relative(a: np.ndarray) -> np.ndarray:
    """`a` relative to its first value (NaN throughout if that is zero)."""
    return a / a[0] if a[0] else np.full_like(a, np.nan)


# -- snapshots ------------------------------------------------------------------------

def tumour_mask(kind: np.ndarray, kinds: KindCodes) -> np.ndarray:
    """Tumour and necrotic voxels (the tumour mass) of codes `kind`, numbered
    as the kind codes `kinds` of their file say."""
    codes = [kinds.code(k) for k in TUMOUR_KINDS if k in kinds]
    return np.isin(kind, codes)


def tumour_plane(kind: np.ndarray, kinds: KindCodes) -> int | None:
    """The z index nearest the centroid of the tumour (tumour + necrotic voxels)."""
    return _centroid_index(np.count_nonzero(tumour_mask(kind, kinds), axis=(1, 2)))


def _centroid_index(per_z: np.ndarray) -> int | None:
    total = int(per_z.sum())
    if not total:
        return None
    return round(float((per_z * np.arange(len(per_z))).sum() / total))


def snapshot_plane(run, meta, field: str, index: int, z: int) -> np.ndarray:
    """Plane `z` of `field` at snapshot `index`, read without the rest of the
    volume (a report of a large lattice never loads whole float fields)."""
    return run.snapshot(meta.name, field, index, z=z)


def _kind_slabs(run, meta, index: int):
    """The kind array of a snapshot in slabs of z planes: (z0, slab)."""
    for z0 in range(0, meta.shape[0], CHUNK_EDGE):
        yield z0, run.snapshot(meta.name, KIND, index, z=slice(z0, z0 + CHUNK_EDGE))


def snapshot_tumour_plane(run, meta, index: int) -> int | None:
    """:func:`tumour_plane` of a snapshot's kinds, read in slabs of z planes."""
    per_z = np.zeros(meta.shape[0], dtype=np.int64)
    for z0, slab in _kind_slabs(run, meta, index):
        per_z[z0:z0 + len(slab)] = np.count_nonzero(tumour_mask(slab, meta.kinds), axis=(1, 2))
    return _centroid_index(per_z)


def snapshot_kind_counts(run, meta, index: int) -> np.ndarray:
    """Voxels of each code 0..255 in a snapshot, read in slabs of z planes."""
    counts = np.zeros(256, dtype=np.int64)
    for _, slab in _kind_slabs(run, meta, index):
        counts += np.bincount(slab.ravel(), minlength=256)
    return counts


def kind_table(run, meta) -> list[dict]:
    """One row per voxel kind of lattice `meta`: the kinds its file stores
    codes for, and any other code found in the last snapshot (named
    ``code_<N>``), with the colour the report and views give it and its voxel
    count in the last snapshot (None without snapshots); empty if the run
    has no kind field."""
    if KIND not in run.fields:
        return []
    counts = snapshot_kind_counts(run, meta, -1) if run.n_snapshots else None
    codes = set(meta.kinds.codes)
    if counts is not None:
        codes |= {int(c) for c in np.flatnonzero(counts)}
    rows = []
    for code in sorted(codes):
        name = meta.kinds.name(code)
        rows.append({"code": code, "name": name, "stored": name in meta.kinds,
                     "colour": "#{:02x}{:02x}{:02x}".format(
                         *(round(255 * c) for c in kind_colour(name))),
                     "designed_colour": name in KIND_COLOURS,
                     "drawn": name != EMPTY_KIND,
                     "voxels_last_snapshot": None if counts is None else int(counts[code])})
    return rows


# -- the headline numbers ------------------------------------------------------------


def scenario_name(attrs: dict, fallback: str) -> str:
    import tomllib
    try:
        return str(tomllib.loads(attrs.get("scenario_toml", ""))["scenario"]["name"])
    except (tomllib.TOMLDecodeError, KeyError, TypeError):
        return fallback


def summarise(run, s: Series, lattice: str | None = None) -> dict:
    """The headline numbers of a run."""
    meta = run.lattice(lattice)
    attrs = run.attrs
    c = s.counts

    def first(k):
        return json_number(c[k][0]) if s.has(k) and len(c) else None

    def last(k):
        return json_number(c[k][-1]) if s.has(k) and len(c) else None
    d = s.derived

    def ends(key):
        a = d.get(key)
        return (None, None) if a is None or not len(a) else (json_number(float(a[0])), json_number(float(a[-1])))

    t0, t1 = first("tumor"), last("tumor")
    vol0, vol1 = ends("tumour_volume_mm3")
    out = {
        "run": str(run.path),
        "scenario": scenario_name(attrs, run.path.stem),
        "seed": json_number(attrs.get("seed")),
        "backend": attrs.get("backend"),
        "version": attrs.get("version"),
        "created_utc": attrs.get("created_utc"),
        "status": run.status,
        "lattice": meta.name,
        "shape_zyx": list(meta.shape),
        "voxel_um": meta.voxel_um,
        "steps": int(c["step"][-1]) if s.has("step") and len(c) else max(len(c) - 1, 0),
        "steps_planned": json_number(attrs.get("steps_planned")),
        "counts_rows": len(c),
        "model_time_h": json_number(float(s.time_h[-1])) if len(c) else None,
        "snapshots": run.n_snapshots,
        "snapshot_times_h": [float(t) for t in run.times_h],
        "tumor_cells_initial": t0,
        "tumor_cells_final": t1,
        "tumor_growth_factor": json_number(t1 / t0) if t0 else None,
        "necrotic_cells_final": last("necrotic"),
        "tumour_volume_mm3_initial": vol0,
        "tumour_volume_mm3_final": vol1,
        "tumour_radius_um_final": ends("radius_um")[1],
        "functional_fraction": last("functional_fraction"),
        "functional_fraction_organ": meta.organ_names[1] if len(meta.organ_names) > 1 else None,
        "functional_fraction_overall": ends("functional_overall")[1],
        "functional_fraction_by_organ": {o: ends(f"functional_{o}")[1] for o in s.organs},
        "vessel_density_mm_per_mm3_initial": ends("vessel_density_mm_per_mm3")[0],
        "vessel_density_mm_per_mm3_final": ends("vessel_density_mm_per_mm3")[1],
        "perfused_fraction_final": last("perfused_fraction"),
        "hypoxic_tumor_cells_final": last("hypoxic_tumor"),
        "vegf_max_ng_per_mL_peak": (json_number(float(np.max(c["vegf_max_ng_per_mL"])))
                                    if s.has("vegf_max_ng_per_mL") and len(c) else None),
        "new_vessel_length_mm_total": (json_number(float(np.sum(c["new_vessel_length_um"])) / 1000.0)
                                       if s.has("new_vessel_length_um") and len(c) else None),
        "kinds": kind_table(run, meta),
        "assumptions": {
            "vessel_length": "each vessel, sprout or tip voxel is one voxel edge of vessel length",
            "tissue_volume_mm3": s.tissue_mm3,
            "tumour_volume": "(tumour + necrotic voxels) x voxel volume",
        },
    }
    return out


# -- the body: metastasis ----------------------------------------------------------------
#
# A run file with a body (a primary lattice with site lattices, the circulation and
# a colony registry; :attr:`tools.runfile.RunFile.has_body`) gets a metastasis page.
# Tables are read by column name; a column a file lacks is left out, never guessed.

COLONY_CLASSES = ("local", "regional", "distant")
COLONY_STAGES = ("extinct", "itc", "micrometastasis", "macrometastasis")
ITC_MAX_UM = 200.0                  # isolated tumour cells: at most 0.2 mm across
MICROMETASTASIS_MAX_UM = 2000.0     # micrometastasis: at most 2 mm; larger is macro
BURDEN_KINDS = ("tumor", "dormant")     # a site's tumour burden: live and dormant cells
CIRCULATION_COLUMNS = ("in_blood", "in_lymph")
# /body columns that are not events (everything else matching EVENT_WORDS is one)
BODY_STOCK_COLUMNS = ("step", "time_h", "shed_cells", "shedding_per_g_per_day", "in_blood",
                      "in_lymph", "arrested", "ctc_per_7_5_mL", "disseminated_dormant",
                      "disseminated_tumor", "itc", "micrometastasis", "macrometastasis",
                      *(f"colonies_{c}" for c in COLONY_CLASSES))
EVENT_WORDS = ("entered", "intravasat", "arrest", "extravasat", "died", "killed", "cleared",
               "trapped", "lodged", "seeded", "drained")
REGISTRY_COLUMNS = ("id", "lattice", "organ", "class", "founder_clone", "arrival_step",
                    "first_growth_step", "cells", "diameter_um", "stage")


@dataclass
class Body:
    """What the metastasis page shows: the lattices with their burdens, the /body
    table over time, the colony registry and each colony's size over time."""

    lattices: list                   # dicts: name, role, organ, class, burden, colonies...
    body: np.ndarray | None          # the /body table (None if the file lacks it)
    time_h: np.ndarray               # the /body rows' times
    colonies: list                   # registry rows as dicts (REGISTRY_COLUMNS), by id
    sizes: dict                      # colony id -> (time_h array, cells, diameter_um)
    ctcs: int | None                 # CTC records in /ctcs (None if the file lacks it)

    @property
    def names(self) -> tuple[str, ...]:
        return () if self.body is None else (self.body.dtype.names or ())

    def has(self, *cols) -> bool:
        return all(c in self.names for c in cols)

    def col(self, name) -> np.ndarray:
        return self.body[name].astype(np.float64)

    @property
    def event_columns(self) -> tuple[str, ...]:
        """/body columns counting events (entered_blood, arrested..., extravasated, ...)."""
        return tuple(n for n in self.names if n not in BODY_STOCK_COLUMNS
                     and not n.startswith("colonies_")
                     and any(w in n.lower() for w in EVENT_WORDS))

    @property
    def time_unit(self) -> str:
        return time_unit(self.time_h)


def _step_times(run, table) -> np.ndarray:
    """Times (h) of a table's rows: its time_h, else step × the run's step_h, else the row."""
    from tools.runfile import number_column
    names = table.dtype.names or ()
    if "time_h" in names:
        return number_column(table, "time_h")
    step_h = float(run.attrs.get("step_h", 1.0) or 1.0)
    if "step" in names:
        return number_column(table, "step") * step_h
    return np.arange(len(table), dtype=np.float64) * step_h


def _step_to_time(run, body) -> dict:
    """step -> time_h, from every table that has both (body, then the counts)."""
    table = {}
    for t in (run.counts(), body):
        if t is not None and {"step", "time_h"} <= set(t.dtype.names or ()):
            table.update(zip(t["step"].astype(np.int64).tolist(),
                             t["time_h"].astype(np.float64).tolist()))
    return table


def colony_rows(registry) -> list[dict]:
    """The colony registry as dicts with the :data:`REGISTRY_COLUMNS` (text decoded;
    None where the file lacks a column), sorted by id."""
    from tools.runfile import number_column, text_column
    if registry is None or not len(registry):
        return []
    names = registry.dtype.names or ()
    cols = {}
    for c in REGISTRY_COLUMNS + ("lineage", "founder_record", "max_cells"):
        if c not in names:
            cols[c] = [None] * len(registry)
        elif registry.dtype.fields[c][0].kind in "SOU":
            cols[c] = text_column(registry, c)
        elif registry.dtype.fields[c][0].kind == "f":
            cols[c] = [json_number(float(v)) for v in number_column(registry, c)]
        else:
            cols[c] = [int(v) for v in registry[c].tolist()]
    rows = [{c: cols[c][i] for c in cols} for i in range(len(registry))]
    return sorted(rows, key=lambda r: (r["id"] is None, r["id"] or 0))


def lattice_burden(run, meta, colonies: list[dict]) -> dict:
    """One lattice of the body with its tumour burden: tumour + dormant cells in the last
    row of its counts (``source`` "counts"), else the cells of its colonies in the
    registry ("colonies"), else none (0, "none")."""
    counts = run.counts(meta.name)
    mine = [c for c in colonies if c["lattice"] == meta.name]
    out = {"name": meta.name, "role": meta.role, "organ": meta.organ_label,
           "class": meta.site_class,
           "lattice_id": meta.lattice_id,
           "colonies": len(mine),
           "colonies_live": sum(1 for c in mine if c["stage"] != "extinct"
                                and (c["cells"] is None or c["cells"] > 0))}
    names = () if counts is None else (counts.dtype.names or ())
    if counts is not None and len(counts) and any(k in names for k in BURDEN_KINDS):
        for k in BURDEN_KINDS:
            out[f"{k}_cells"] = int(counts[k][-1]) if k in names else None
        out["burden_cells"] = sum(out[f"{k}_cells"] or 0 for k in BURDEN_KINDS)
        out["burden_source"] = "counts"
    elif any(c["cells"] is not None for c in mine):
        out.update({f"{k}_cells": None for k in BURDEN_KINDS})
        out["burden_cells"] = sum(c["cells"] or 0 for c in mine)
        out["burden_source"] = "colonies"
    else:
        out.update({f"{k}_cells": None for k in BURDEN_KINDS})
        out["burden_cells"] = 0
        out["burden_source"] = "none"
    return out


def load_body(run) -> Body:
    """The body of `run` (a :class:`tools.runfile.RunFile` with a body)."""
    from tools.runfile import number_column
    body = run.body()
    colonies = colony_rows(run.colonies())
    order = [run.primary] + [m for m in run.lattices.values() if m.name != run.primary.name]
    lattices = [lattice_burden(run, meta, colonies) for meta in order
                if meta.role is not None or meta is run.primary]
    times = _step_to_time(run, body)
    step_h = float(run.attrs.get("step_h", 1.0) or 1.0)
    sizes = {}
    table = run.colony_sizes()
    if table is not None and len(table):
        ids = table["colony"].astype(np.int64)
        steps = table["step"].astype(np.int64)
        cells = number_column(table, "cells")
        diam = number_column(table, "diameter_um")
        for cid in np.unique(ids):
            hit = np.flatnonzero(ids == cid)
            hit = hit[np.argsort(steps[hit], kind="stable")]
            t = np.array([times.get(int(s), s * step_h) for s in steps[hit]], dtype=np.float64)
            sizes[int(cid)] = (t, cells[hit], diam[hit])
    ctcs = run.ctcs()
    return Body(lattices=lattices, body=body,
                time_h=_step_times(run, body) if body is not None else np.zeros(0),
                colonies=colonies, sizes=sizes, ctcs=None if ctcs is None else len(ctcs))


def stage_of(diameter_um) -> str | None:
    """The stage a colony of this diameter is in (ITC ≤ 0.2 mm, micro ≤ 2 mm, macro)."""
    if diameter_um is None or not math.isfinite(diameter_um):
        return None
    if diameter_um <= ITC_MAX_UM:
        return "itc"
    return "micrometastasis" if diameter_um <= MICROMETASTASIS_MAX_UM else "macrometastasis"


def summarise_body(b: Body) -> dict:
    """The ``metastasis`` block of summary.json."""
    def last(k):
        return json_number(b.body[k][-1]) if b.has(k) and len(b.body) else None

    def total(k):
        return json_number(b.body[k].sum()) if b.has(k) and len(b.body) else None

    def peak(k):
        return json_number(b.body[k].max()) if b.has(k) and len(b.body) else None

    by_class = {c: sum(1 for r in b.colonies if r["class"] == c) for c in COLONY_CLASSES}
    others = sorted({r["class"] for r in b.colonies} - set(COLONY_CLASSES) - {None})
    by_class.update({c: sum(1 for r in b.colonies if r["class"] == c) for c in others})
    by_stage = {s: sum(1 for r in b.colonies if r["stage"] == s) for s in COLONY_STAGES}
    diameters = [r["diameter_um"] for r in b.colonies if r["diameter_um"] is not None]
    return {
        "lattices": b.lattices,
        "body_rows": 0 if b.body is None else len(b.body),
        "colonies": len(b.colonies),
        "colonies_by_class": by_class,
        "colonies_by_stage": by_stage,
        "largest_colony_diameter_um": json_number(max(diameters)) if diameters else None,
        "colony_size_rows": sum(len(v[0]) for v in b.sizes.values()),
        "ctc_records": b.ctcs,
        "shed_cells_total": total("shed_cells"),
        "ctc_in_blood_final": last("in_blood"),
        "ctc_in_lymph_final": last("in_lymph"),
        "ctc_in_blood_peak": peak("in_blood"),
        "ctc_per_7_5_mL_final": last("ctc_per_7_5_mL"),
        "ctc_per_7_5_mL_peak": peak("ctc_per_7_5_mL"),
        "events_total": {k: total(k) for k in b.event_columns},
        "final": {k: last(k) for k in ("disseminated_dormant", "disseminated_tumor",
                                        *(f"colonies_{c}" for c in COLONY_CLASSES),
                                        "itc", "micrometastasis", "macrometastasis")
                  if b.has(k)},
    }
