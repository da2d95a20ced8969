"""The circulation: where cells go between leaving a lattice and entering another.

A host-side compartment model, not a lattice.  Cells that intravasate leave their
lattice as *departures* (`enter`); each one becomes a *record* and travels, alone or in
a cluster (a *unit*: all its cells share every decision), through the lymph and the
blood until it extravasates into a site lattice of the body (`advance` returns it as an
`Arrival`), dies, or arrests in an organ the body has no lattice for.  One step of
Δt = `time.step_h` hours moves every unit once (one decision per unit per step).

Rules (Δt the step; every probability becomes a uint32 threshold on the host in float64,
`kernels.philox.probability_threshold`, and a decision compares a Philox word `w < t`):

1. Blood clearance.  A unit in the blood is cleared with

       P_clear = 1 − exp(−ln 2 · Δt / t½),      t½ = `ctc_half_life_h`

   (CTC half-life 1–2.4 h after removal of the primary, Meng et al. 2004, Clin Cancer
   Res 10:8152).  A cleared unit arrests with probability a = `arrest_fraction`
   (approx.: most cells survive the transit and arrest in capillaries, Luzzi et al.
   1998 / Chambers et al. 2002) and dies in the blood (shear, anoikis) otherwise; one
   word decides: w0 < t(P_clear · a) arrests, else w0 < t(P_clear) dies.

2. Where it arrests.  Capillary beds in the order the blood meets them:

   * the *first bed*: the lungs for systemic venous drainage (all venous blood passes
     the lungs first, ICRP Publication 89), the liver for blood leaving a colorectal
     primary (`primary_type` = "colorectal" and the unit left the primary, not a site:
     portal vein).  A unit that passes the liver meets the lungs next (the hepatic
     veins drain to the vena cava), so a colorectal unit has two beds in series;
     cells joining the blood from the lymph (thoracic duct → subclavian vein) meet the
     lungs first whatever the primary.
   * a bed retains a unit of n cells with

         r_n = 1 − (1 − r)^n,      r = `first_bed_retention`

     (approx.: most cells arrest in the first capillary bed they meet, Chambers et al.
     2002; clusters arrest more readily, Aceto et al. 2014; the power law — each cell
     independently able to lodge the cluster — is a modelling choice).
   * a unit that passes every bed reaches a systemic organ o drawn with weight

         W_o = Q_o · A_o

     Q_o the organ's fraction of resting cardiac output (`BLOOD_FLOW`), A_o the
     primary's organotropism affinity (`ORGANOTROPISM`, derived in `organotropism`).
   Words: w1 first bed, w2 second bed (colorectal), w3 the systemic draw (cumulative
   thresholds of W_o / ΣW).  An organ with no site lattice in the body is *elsewhere*:
   the record's state becomes `arrested_elsewhere` and its path names the organ
   (never dropped silently).  Lymph-node sites are reached only via the lymph.

3. Arrested in a site.  Each step an arrested unit extravasates or dies in the vessel,
   competing risks with hazards k_ex = `extravasation_per_h` (Koop et al. 1995,
   > 80 % of arrested cells out within a day: the default 0.1 /h puts 92 % of the
   survivors out at 24 h) and k_d = `arrested_death_per_h` (approx.):

       P_ex = k_ex / k · (1 − exp(−k Δt)),   P_die = k_d / k · (1 − exp(−k Δt)),  k = k_ex + k_d

   one word of stream `extravasation` with the site's lattice id: w < t(P_ex)
   extravasates, else w < t(P_ex + P_die) dies.  An extravasating cluster yields one
   `Arrival` per cell; the body then reports each one placed (`settled`) or not
   (`fail_arrival`, state `failed`, with the reason).

4. Lymph.  A unit that enters the lymph travels to the sentinel node station
   (`sentinel_node`, a lymph-node site; "" = no lymphatic drainage modelled: the lymph
   goes straight to the thoracic duct) and arrives with

       P_transit = 1 − exp(−Δt / τ),      τ = `lymph_transit_h`   (mean transit, approx.)

   per step (word 0).  At a node it is retained with n-cell probability
   1 − (1 − ρ)^n, ρ = `node_retention` (approx.; word 1), and is then arrested in that
   node's lattice (rule 3); otherwise it passes on along the node's `drains_to`, to the
   next node (another transit) or, for "blood", into the blood (thoracic duct; first
   bed the lungs).  A unit moves once per step: a unit joining the blood is first
   moved there at the next step.

Random numbers: Philox4x32-10 keyed by the scenario seed with counter
(unit id low 32 bits, step, stream | (location << 8), unit id high 32 bits), where the
unit id is the record id of the cluster's first cell and the location is 0 in the
blood or lymph and the site's lattice id when arrested there.  A unit's draws do not
depend on other units or on the order of processing.  Record ids are given in a
canonical order (origin entered, then cluster number, then z, y, x), so the same
departures in any row order give the same records.

Records (`Circulation.records`): one row per cell, fields in `RECORD_FIELDS`; `path`
holds the first `PATH_LEN` location codes visited (codes index `Circulation.locations`:
"blood", "lymph", the site names, then "elsewhere:<organ>"), −1 padded, `path_len` how
many there were (more than PATH_LEN: the rest is not kept).  The path is the record's
event log: entry route, each node reached, "blood" on leaving the lymph, the arrest
site.  States: in_lymph, in_blood, arrested (in a site's vessels, node retention
included), extravasated (placed or awaiting the body), dead, arrested_elsewhere,
failed.

Bookkeeping (`audit`): each record is in one valid state; cells created = the sum of
the state counts; this step's events balance the change of each compartment:

    Δ in_lymph  = entered_lymph − node_retained − to_blood_from_lymph
    Δ in_blood  = entered_blood + to_blood_from_lymph − died_in_blood − Σ arrested_*
    Δ arrested  = Σ arrested_<site> + node_retained − extravasated − died_arrested
    Δ extravasated (state) = extravasated − failed
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kernels.lattice import N_TRAITS
from kernels.philox import philox4x32_numpy, probability_threshold, step_probability
from kernels.process import Param, Process

SITE_ORGANS = ("lymph_node", "lung", "liver", "bone_marrow", "brain", "bone", "kidney",
               "adrenal")
PRIMARY_TYPES = ("breast", "colorectal", "lung_nsclc", "lung_sclc", "prostate", "melanoma")
IDENTIFIER = r"[A-Za-z][A-Za-z0-9_]{0,63}"

BLOOD, LYMPH = 1, 2                          # departure routes
STATES = ("in_lymph", "in_blood", "arrested", "extravasated", "dead", "arrested_elsewhere",
          "failed")
IN_LYMPH, IN_BLOOD, ARRESTED, EXTRAVASATED, DEAD, ARRESTED_ELSEWHERE, FAILED = range(len(STATES))
TERMINAL = (EXTRAVASATED, DEAD, ARRESTED_ELSEWHERE, FAILED)
PATH_LEN = 8

CIRCULATION = Process(
    "circulation",
    params={"circulation": {
        "primary_type": Param(
            "str", "breast", choices=PRIMARY_TYPES,
            source="sets the first capillary bed (colorectal: liver via the portal vein, "
                   "else lungs) and the organotropism row (engine.circulation.ORGANOTROPISM)"),
        "sentinel_node": Param(
            "str", "", pattern=rf"|{IDENTIFIER}",
            pattern_text='"" (no lymphatic drainage modelled) or a lymph-node site name',
            source="the first lymph-node site the lymph reaches; \"\": lymph drains to "
                   "the blood (thoracic duct)"),
        "ctc_half_life_h": Param(
            "float", 1.7, lo=0.0, lo_open=True, hi=1e4, unit="h",
            source="CTC half-life in blood 1-2.4 h, Meng et al. 2004 (midpoint); "
                   "bound: a guard"),
        "arrest_fraction": Param(
            "float", 0.8, lo=0.0, hi=1.0, unit="fraction",
            source="(approx.) cleared CTCs that arrest in a capillary bed, the rest die "
                   "in the blood; most survive the transit (Luzzi et al. 1998; Chambers "
                   "et al. 2002)"),
        "first_bed_retention": Param(
            "float", 0.9, lo=0.0, hi=1.0, unit="fraction",
            source="(approx.) a single cell is retained by a capillary bed it meets; most "
                   "arrest in the first bed (Chambers et al. 2002); n cells: 1-(1-r)^n"),
        "extravasation_per_h": Param(
            "float", 0.1, lo=0.0, hi=1e3, unit="1/h",
            source="> 80 % of arrested cells extravasate within a day (Koop et al. 1995): "
                   "0.1 /h puts 92 % of survivors out at 24 h; bound: a guard"),
        "arrested_death_per_h": Param(
            "float", 0.01, lo=0.0, hi=1e3, unit="1/h",
            source="(approx.) arrested cells die in the vessel; most stay intact for days "
                   "(Luzzi et al. 1998); bound: a guard"),
        "lymph_transit_h": Param(
            "float", 2.0, lo=0.0, lo_open=True, hi=1e4, unit="h",
            source="(approx.) mean lymphatic transit to the next node station (tracers "
                   "reach the sentinel node within minutes to an hour; cells are slower)"),
        "node_retention": Param(
            "float", 0.8, lo=0.0, hi=1.0, unit="fraction",
            source="(approx.) a lymph node retains a passing single cell (nodes filter "
                   "lymph; skip metastases beyond the sentinel are uncommon); "
                   "n cells: 1-(1-rho)^n"),
        "blood_volume_mL": Param(
            "float", 5000.0, lo=0.0, lo_open=True, hi=1e5, unit="mL",
            source="adult blood volume about 5 L (physiology texts): CTCs per 7.5 mL draw"),
    }},
    streams={"circulation": 13,      # blood: w0 clear/arrest/die, w1 first bed, w2 second
                                     # bed, w3 systemic organ; lymph: w0 transit, w1 node
             "extravasation": 14})   # arrested: w0 extravasate / die (counter: site id)
STREAM_CIRCULATION = CIRCULATION.streams["circulation"]
STREAM_EXTRAVASATION = CIRCULATION.streams["extravasation"]
PARAMS = CIRCULATION.params["circulation"]

# -- resting blood flow -------------------------------------------------------------------
# Fraction of resting cardiac output reaching each organ through the systemic arteries,
# reference adult (ICRP Publication 89, 2002, after Williams & Leggett 1989, Clin Phys
# Physiol Meas 10:187).  Liver: hepatic artery 0.065 + portal 0.19 (the splanchnic
# organs' venous blood reaches the liver through the portal vein; counting all of it as
# the liver's is an approximation: gut capillaries are met first).  Bone/marrow ~0.05,
# split red marrow 0.03 / rest of the skeleton 0.02 (approx.).  Lung: the bronchial
# arteries (approx.).  Adrenals 0.003 (approx.).  "other": skeletal muscle 0.17, skin
# 0.05, adipose 0.05, heart 0.04, thyroid 0.015, lymph nodes 0.017 (reached by tumour
# cells through the lymph in this model), the rest: the remainder, so the table sums to 1.
BLOOD_FLOW = {"liver": 0.255, "kidney": 0.19, "brain": 0.12, "bone_marrow": 0.03,
              "bone": 0.02, "lung": 0.025, "adrenal": 0.003}
BLOOD_FLOW["other"] = 1.0 - sum(BLOOD_FLOW.values())
SYSTEMIC_ORGANS = tuple(BLOOD_FLOW)

# Mass of each site organ in the reference adult (g; ICRP Publication 89, 2002, male/female
# mean, rounded): lungs 1.05 kg (tissue with its blood), liver 1.6 kg, brain 1.4 kg, red
# marrow 1.05 kg, skeleton without marrow (bone) 4.5 kg, kidneys 0.29 kg, adrenals 13 g;
# one lymph node about 1 g (approx.: axillary nodes weigh a fraction of a gram to a few
# grams).  A site block is this fraction of its organ: V_block · 1 g/cm³ / mass
# (engine.body.block_fraction), written into the run file and the summary.
ORGAN_MASS_G = {"lymph_node": 1.0, "lung": 1050.0, "liver": 1600.0, "bone_marrow": 1050.0,
                "brain": 1400.0, "bone": 4500.0, "kidney": 290.0, "adrenal": 13.0}

# -- organotropism --------------------------------------------------------------------------
# Site frequencies f (% of metastatic patients with that site) by primary, from
# REFERENCES.md "Distant sites by primary": breast SEER stage IV, isolated sites (BMC
# Cancer 2019;19:1091); colorectal (Visc Med 33:70); NSCLC and SCLC isolated sites (Li
# et al., J Cancer 2019;10:3079); prostate (Gandaglia 2014; "thorax" read as lung);
# melanoma autopsy (Patel et al. 1978).  Lymph-node and peritoneal sites are left out:
# they are reached through the lymph or the coelom, not by arrest from the blood.
# "bone" is skeletal metastasis, which starts in the marrow: bone and bone_marrow share
# it (one affinity, split by flow).  A site a primary's row does not name (and "other":
# muscle, skin, fat, heart ...) gets UNLISTED_PCT.
SITE_FREQUENCY_PCT = {
    "breast": {"bone": 39.8, "lung": 10.9, "liver": 7.3, "brain": 1.5},
    "colorectal": {"liver": 70.0, "lung": 24.0},
    "lung_nsclc": {"bone": 22.3, "lung": 20.1, "brain": 15.4, "liver": 6.1},
    "lung_sclc": {"liver": 24.3, "brain": 14.3, "bone": 12.5, "lung": 7.9},
    "prostate": {"bone": 84.0, "liver": 10.2, "lung": 9.1},
    "melanoma": {"lung": 71.3, "liver": 58.3, "brain": 49.1, "bone": 48.6, "adrenal": 46.8},
}
UNLISTED_PCT = 1.0      # (approx.) below the rarest listed site (brain-only 1.5 %, breast)
GROUPS = {"bone": ("bone", "bone_marrow")}      # one table entry, several organs


def organotropism(primary: str) -> dict[str, float]:
    """A_o, the affinity of a `primary` for systemic organ o (a modelling choice).

    Derivation: the systemic arrest distribution W_o / ΣW with W_o = Q_o A_o is made to
    reproduce the primary's relative site frequencies f_g (SITE_FREQUENCY_PCT; an organ
    group g such as bone + bone marrow shares one f_g and one affinity, its organs
    splitting f_g by flow).  With A normalised as enrichment over flow,

        A_o = (f_g / Σ f) / (Q_g / Σ Q),      Q_g = Σ_{o in g} Q_o,

    A = 1 is an organ that receives exactly its share of cardiac output (breast → bone
    and marrow A ≈ 13).  So W_o ∝ f_g for the table's organs, and an unlisted organ (or
    "other") gets the weight of UNLISTED_PCT whatever its flow.  Approximations: the
    clinical frequencies also reflect survival after arrest, and folding all of it into
    arrest is the modelling choice (colonisation processes may add organ factors); the
    lung's frequency, largely the first bed's doing, is also given to its bronchial
    supply in the systemic draw, which overstates it there.
    """
    row = SITE_FREQUENCY_PCT[primary]
    groups, seen = [], set()
    for organ in SYSTEMIC_ORGANS:
        if organ in seen:
            continue
        head = next((g for g, members in GROUPS.items() if organ in members), organ)
        members = GROUPS.get(head, (organ,))
        seen.update(members)
        groups.append((row.get(head, UNLISTED_PCT), members))
    total_f = sum(f for f, _ in groups)
    total_q = sum(BLOOD_FLOW.values())
    out = {}
    for f, members in groups:
        q = sum(BLOOD_FLOW[o] for o in members)
        for o in members:
            out[o] = (f / total_f) / (q / total_q)
    return out


ORGANOTROPISM = {p: organotropism(p) for p in PRIMARY_TYPES}


@dataclass(frozen=True)
class Site:
    """One site lattice of the body."""

    name: str               # e.g. "axillary_node", "lung"
    organ: str              # one of SITE_ORGANS
    lattice_id: int         # 1..n
    drains_to: str | None = None   # lymph nodes only: the next node's site name, or "blood"


@dataclass(frozen=True)
class Arrival:
    """A cell that extravasates into `site` this step; the body places it."""

    record_id: int
    site: str
    lineage: int
    traits: tuple
    cluster_size: int


RECORD_FIELDS = [
    ("id", np.int64), ("unit", np.int64),          # unit: id of its cluster's first cell
    ("origin", np.uint8),                          # index into Circulation.origins
    ("origin_z", np.int32), ("origin_y", np.int32), ("origin_x", np.int32),
    ("origin_voxel", np.int64),                    # global index in the origin lattice, or -1
    ("vessel", np.uint8), ("lineage", np.uint16), ("traits", np.uint8, (N_TRAITS,)),
    ("cluster_size", np.int32), ("route", np.uint8), ("entered_step", np.int64),
    ("state", np.uint8), ("where", np.int16),      # site index (arrested/extravasated) or -1
    ("portal", np.bool_),                          # blood: the liver is its first bed
    ("next_node", np.int16),                       # lymph: node site index heading to, -1 blood
    ("fate_step", np.int64),                       # step of the terminal state, or -1
    ("voxel", np.int64),                           # global voxel index where settled, or -1
    ("fail_reason", np.uint8),                     # 1 + index into Circulation.fail_reasons
    ("path", np.int16, (PATH_LEN,)), ("path_len", np.int16),
]
RECORD_DTYPE = np.dtype(RECORD_FIELDS)
DEPARTURE_FIELDS = ("z", "y", "x", "route", "vessel", "lineage", "traits", "cluster",
                    "cluster_size")


def counts_columns(sites) -> tuple[str, ...]:
    """Column names of the per-step table, in order."""
    arrest = [f"arrested_{s.name}" for s in sites if s.organ != "lymph_node"]
    return ("step", "entered_blood", "entered_lymph", "clusters_entered", "died_in_blood",
            *arrest, "arrested_elsewhere", "node_retained", "node_passed",
            "to_blood_from_lymph", "extravasated", "died_arrested", "settled", "failed",
            "in_blood", "in_lymph", "arrested", "ctc_per_7_5_mL")


def counts_dtype(sites) -> np.dtype:
    """The per-step table's dtype: int64 columns, ctc_per_7_5_mL float64."""
    return np.dtype([(c, np.float64 if c == "ctc_per_7_5_mL" else np.int64)
                     for c in counts_columns(sites)])


def record_draw(ids, step: int, stream: int, location, key) -> tuple:
    """The four Philox words of records `ids` (uint64) for `stream` at `step`: counter
    (id low 32 bits, step, stream | location << 8, id high 32 bits), `location` 0 in the
    blood or lymph and a site's lattice id there (the body's placement draws too)."""
    u = np.asarray(ids).astype(np.uint64)
    c2 = np.uint64(stream) | (np.asarray(location, dtype=np.uint64) << np.uint64(8))
    words = philox4x32_numpy((u & np.uint64(0xFFFFFFFF), np.uint64(step & 0xFFFFFFFF), c2,
                              u >> np.uint64(32)), key)
    return tuple(w.astype(np.uint64) for w in words)


def _params(params) -> dict:
    """The scenario's [circulation] values, defaults filled; unknown keys refused."""
    unknown = set(params) - set(PARAMS)
    if unknown:
        raise ValueError(f"unknown circulation parameter(s): {', '.join(sorted(unknown))}")
    return {k: params.get(k, p.default) for k, p in PARAMS.items()}


def _retention_threshold(r: float, n: np.ndarray) -> np.ndarray:
    """uint64 thresholds of 1 − (1 − r)^n for cluster sizes n (float64 on the host)."""
    sizes, inverse = np.unique(n, return_inverse=True)
    table = np.array([probability_threshold(1.0 - (1.0 - r) ** int(s)) for s in sizes],
                     dtype=np.uint64)
    return table[inverse.reshape(np.shape(n))]


class Circulation:
    """Blood and lymph between the lattices of a body (rules: the module docstring)."""

    def __init__(self, params: dict, sites: list[Site], key: tuple[int, int], step_h: float):
        self.params = p = _params(params)
        self.sites = list(sites)
        self.key = (int(key[0]), int(key[1]))
        self.step_h = float(step_h)
        self._check_sites()
        self.site_index = {s.name: i for i, s in enumerate(self.sites)}
        self.site_of_organ = {s.organ: i for i, s in enumerate(self.sites) if s.organ != "lymph_node"}
        elsewhere = [o for o in SYSTEMIC_ORGANS if o not in self.site_of_organ]
        self.locations = ("blood", "lymph", *(s.name for s in self.sites),
                          *(f"elsewhere:{o}" for o in elsewhere))
        self._code = {name: i for i, name in enumerate(self.locations)}
        sentinel = p["sentinel_node"]
        if sentinel and (sentinel not in self.site_index
                         or self.sites[self.site_index[sentinel]].organ != "lymph_node"):
            raise ValueError(f"circulation.sentinel_node = {sentinel!r} is not a lymph-node "
                             f"site of the body (sites: {', '.join(self.site_index) or 'none'})")
        self.sentinel = self.site_index[sentinel] if sentinel else -1
        self.drains = np.array([self._drain_index(s) for s in self.sites] or [-1], np.int16)
        self.lattice_ids = np.array([s.lattice_id for s in self.sites] or [0], np.uint64)

        # thresholds (host float64 -> uint32, held as uint64 to compare with words)
        dt = self.step_h
        p_clear = step_probability(math.log(2.0) / p["ctc_half_life_h"], dt)
        self.t_clear_arrest = probability_threshold(p_clear * p["arrest_fraction"])
        self.t_clear = probability_threshold(p_clear)
        self.t_transit = probability_threshold(step_probability(1.0 / p["lymph_transit_h"], dt))
        k_ex, k_d = p["extravasation_per_h"], p["arrested_death_per_h"]
        k = k_ex + k_d
        p_any = step_probability(k, dt) if k > 0 else 0.0
        p_ex = k_ex / k * p_any if k > 0 else 0.0
        self.t_extravasate = probability_threshold(p_ex)
        self.t_arrest_end = probability_threshold(p_any)
        affinity = ORGANOTROPISM[p["primary_type"]]
        weights = np.array([BLOOD_FLOW[o] * affinity[o] for o in SYSTEMIC_ORGANS])
        cumulative = np.cumsum(weights) / weights.sum()
        self.t_systemic = np.array([probability_threshold(c) for c in cumulative[:-1]]
                                   + [2**32], dtype=np.uint64)
        self.systemic_code = np.array(
            [self._code[self.sites[self.site_of_organ[o]].name] if o in self.site_of_organ
             else self._code[f"elsewhere:{o}"] for o in SYSTEMIC_ORGANS], np.int16)

        self.origins: list[str] = []
        self.fail_reasons: list[str] = []
        self._rec = np.zeros(64, RECORD_DTYPE)
        self._n = 0
        self._step = None              # the step whose events are being counted
        self._last_advance = None
        self._events = self._zero_events()
        self._start = self.contents()

    # -- set-up -------------------------------------------------------------------------------
    def _check_sites(self):
        names, ids = set(), set()
        for s in self.sites:
            if s.organ not in SITE_ORGANS:
                raise ValueError(f"site {s.name!r}: organ {s.organ!r} is not one of "
                                 f"{', '.join(SITE_ORGANS)}")
            if s.name in names or s.name == "blood":
                raise ValueError(f"site name {s.name!r} is repeated or reserved")
            if not (1 <= int(s.lattice_id) < 2**24) or s.lattice_id in ids:
                raise ValueError(f"site {s.name!r}: lattice_id {s.lattice_id} must be unique "
                                 "and in 1..2**24-1")
            names.add(s.name)
            ids.add(s.lattice_id)
        organs = [s.organ for s in self.sites if s.organ != "lymph_node"]
        if len(organs) != len(set(organs)):
            raise ValueError("one site per organ (lymph nodes excepted): "
                             + ", ".join(organs))
        nodes = {s.name: s for s in self.sites if s.organ == "lymph_node"}
        for s in self.sites:
            if s.organ != "lymph_node":
                if s.drains_to is not None:
                    raise ValueError(f"site {s.name!r}: only lymph nodes drain (drains_to)")
                continue
            seen, at = [s.name], s
            while at.drains_to != "blood":
                if at.drains_to not in nodes:
                    raise ValueError(f"lymph node {at.name!r} drains_to {at.drains_to!r}: "
                                     "expected another lymph-node site or 'blood'")
                at = nodes[at.drains_to]
                if at.name in seen:
                    raise ValueError(f"lymph nodes drain in a loop: {' -> '.join(seen + [at.name])}")
                seen.append(at.name)

    def _drain_index(self, site: Site) -> int:
        if site.organ != "lymph_node" or site.drains_to == "blood":
            return -1
        return self.site_index[site.drains_to]

    # -- records ------------------------------------------------------------------------------
    @property
    def records(self) -> np.ndarray:
        """Every record so far (a view: one row per cell, id = row)."""
        return self._rec[:self._n]

    def _grow(self, extra: int):
        need = self._n + extra
        if need > len(self._rec):
            capacity = len(self._rec)
            while capacity < need:
                capacity *= 2
            bigger = np.zeros(capacity, RECORD_DTYPE)
            bigger[:self._n] = self._rec[:self._n]
            self._rec = bigger

    def _visit(self, rows: np.ndarray, codes):
        """Append location code(s) to the paths of `rows`."""
        rec = self._rec
        n = rec["path_len"][rows]
        keep = n < PATH_LEN
        rec["path"][rows[keep], n[keep]] = np.broadcast_to(codes, rows.shape)[keep]
        rec["path_len"][rows] = n + 1

    # -- events -------------------------------------------------------------------------------
    def _zero_events(self) -> dict:
        names = counts_columns(self.sites)
        last = names.index("in_blood")
        return {c: 0 for c in names[1:last]}

    def contents(self) -> dict:
        """Records (cells) in each state now."""
        state = self._rec["state"][:self._n]
        return {STATES[s]: int(np.count_nonzero(state == s)) for s in range(len(STATES))}

    def _begin(self, step: int):
        step = int(step)
        if self._last_advance is not None and step < self._last_advance:
            raise ValueError(f"step {step} is before the last step moved ({self._last_advance})")
        if step != self._step:
            self._step = step
            self._events = self._zero_events()
            self._start = self.contents()

    # -- entering -----------------------------------------------------------------------------
    def enter(self, step: int, departures: np.ndarray, origin: str, shape=None) -> None:
        """Cells leaving lattice `origin` at `step` join the lymph or the blood.

        One record per departure row; a row with cluster_size 1 is a single cell whatever
        its cluster number.  Ids are given in canonical order (cluster number, then z, y,
        x), so the row order does not matter; the cells of a cluster get
        consecutive ids, the first one's id is the unit's.  `shape` (nz, ny, nx) of the
        origin lattice, if given, fills `origin_voxel` (else a departures field `voxel`
        does, else -1)."""
        self._begin(step)
        missing = [f for f in DEPARTURE_FIELDS if departures.dtype.names is None
                   or f not in departures.dtype.names]
        if missing:
            raise ValueError(f"departures lack field(s) {', '.join(missing)}")
        n = len(departures)
        if n == 0:
            return
        d = departures[np.lexsort((departures["x"], departures["y"], departures["z"],
                                   departures["cluster"]))]
        cluster, size = d["cluster"].astype(np.int64), d["cluster_size"].astype(np.int64)
        single = size == 1
        starts = np.flatnonzero(np.r_[True, (cluster[1:] != cluster[:-1]) | single[1:]
                                      | single[:-1]])
        lengths = np.diff(np.r_[starts, n])
        lead_of_row = np.repeat(starts, lengths)
        if not (np.array_equal(np.repeat(lengths, lengths), size)
                and np.array_equal(d["route"], d["route"][lead_of_row])):
            raise ValueError("departures: every cluster's rows must number cluster_size and "
                             "share one route")
        if not np.isin(d["route"], (BLOOD, LYMPH)).all():
            raise ValueError("departures: route must be 1 (blood) or 2 (lymph)")
        if origin not in self.origins:
            if len(self.origins) == 255:
                raise ValueError("at most 255 origins")
            self.origins.append(origin)
        self._grow(n)
        rows = np.arange(self._n, self._n + n)
        rec = self._rec
        rec[rows] = np.zeros(n, RECORD_DTYPE)
        rec["id"][rows] = rows
        rec["unit"][rows] = rows[lead_of_row]
        rec["origin"][rows] = self.origins.index(origin)
        for f in ("z", "y", "x"):
            rec[f"origin_{f}"][rows] = d[f]
        if shape is not None:
            _, ny, nx = shape
            rec["origin_voxel"][rows] = (d["z"].astype(np.int64) * ny + d["y"]) * nx + d["x"]
        elif "voxel" in d.dtype.names:
            rec["origin_voxel"][rows] = d["voxel"]
        else:
            rec["origin_voxel"][rows] = -1
        for f in ("vessel", "lineage", "traits", "cluster_size", "route"):
            rec[f][rows] = d[f]
        rec["entered_step"][rows] = step
        blood = d["route"] == BLOOD
        rec["state"][rows] = np.where(blood, IN_BLOOD, IN_LYMPH)
        rec["where"][rows] = -1
        rec["portal"][rows] = (blood & (self.params["primary_type"] == "colorectal")
                               & (origin not in self.site_index))
        rec["next_node"][rows] = np.where(blood, -1, self.sentinel)
        rec["fate_step"][rows] = -1
        rec["voxel"][rows] = -1
        rec["path"][rows] = -1
        self._n += n
        self._visit(rows, np.where(blood, self._code["blood"], self._code["lymph"]))
        self._events["entered_blood"] += int(blood.sum())
        self._events["entered_lymph"] += int((~blood).sum())
        self._events["clusters_entered"] += int((lengths > 1).sum())

    # -- moving -------------------------------------------------------------------------------
    def _draw(self, units: np.ndarray, step: int, stream: int, location) -> tuple:
        return record_draw(units, step, stream, location, self.key)

    def _members(self, leads: np.ndarray) -> np.ndarray:
        """Rows of every cell of the units led by `leads` (consecutive ids)."""
        sizes = self._rec["cluster_size"][leads].astype(np.int64)
        offsets = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        return np.repeat(leads, sizes) + offsets

    def advance(self, step: int) -> list[Arrival]:
        """Move every unit once (rules 1-4); the cells that extravasate this step."""
        if self._last_advance is not None and step <= self._last_advance:
            raise ValueError(f"advance({step}): steps must increase (last {self._last_advance})")
        self._begin(step)
        self._last_advance = int(step)
        rec = self._rec[:self._n]
        is_lead = rec["id"] == rec["unit"]
        state = rec["state"].copy()              # decisions read the state at step start
        blood = np.flatnonzero(is_lead & (state == IN_BLOOD))
        lymph = np.flatnonzero(is_lead & (state == IN_LYMPH))
        arrested = np.flatnonzero(is_lead & (state == ARRESTED))
        arrivals = self._move_arrested(arrested, step)
        self._move_blood(blood, step)
        self._move_lymph(lymph, step)
        return arrivals

    def _move_blood(self, leads, step):
        if not len(leads):
            return
        rec, ev = self._rec, self._events
        w0, w1, w2, w3 = self._draw(leads, step, STREAM_CIRCULATION, 0)
        arrest = w0 < self.t_clear_arrest
        die = ~arrest & (w0 < self.t_clear)
        dead = self._members(leads[die])
        rec["state"][dead] = DEAD
        rec["fate_step"][dead] = step
        ev["died_in_blood"] += len(dead)

        leads, w1, w2, w3 = leads[arrest], w1[arrest], w2[arrest], w3[arrest]
        size = rec["cluster_size"][leads]
        retained = w1 < _retention_threshold(self.params["first_bed_retention"], size)
        portal = rec["portal"][leads]
        lung_after_liver = portal & ~retained & (w2 < _retention_threshold(
            self.params["first_bed_retention"], size))
        systemic = self.systemic_code[np.searchsorted(self.t_systemic, w3, side="right")]
        liver, lung = self._organ_code("liver"), self._organ_code("lung")
        code = np.where(retained, np.where(portal, liver, lung),
                        np.where(lung_after_liver, lung, systemic)).astype(np.int16)
        for c in np.unique(code):
            units = leads[code == c]
            rows = self._members(units)
            name = self.locations[c]
            self._visit(rows, c)
            if name.startswith("elsewhere:"):
                rec["state"][rows] = ARRESTED_ELSEWHERE
                rec["fate_step"][rows] = step
                ev["arrested_elsewhere"] += len(rows)
            else:
                rec["state"][rows] = ARRESTED
                rec["where"][rows] = self.site_index[name]
                ev[f"arrested_{name}"] += len(rows)

    def _organ_code(self, organ: str) -> int:
        if organ in self.site_of_organ:
            return self._code[self.sites[self.site_of_organ[organ]].name]
        return self._code[f"elsewhere:{organ}"]

    def _move_lymph(self, leads, step):
        if not len(leads):
            return
        rec, ev = self._rec, self._events
        w0, w1, _, _ = self._draw(leads, step, STREAM_CIRCULATION, 0)
        arrive = w0 < self.t_transit
        leads, w1 = leads[arrive], w1[arrive]
        node = rec["next_node"][leads].astype(np.int64)
        to_blood = leads[node < 0]
        rows = self._members(to_blood)
        rec["state"][rows] = IN_BLOOD
        rec["portal"][rows] = False
        self._visit(rows, self._code["blood"])
        ev["to_blood_from_lymph"] += len(rows)

        at_node, w1, node = leads[node >= 0], w1[node >= 0], node[node >= 0]
        rows = self._members(at_node)
        self._visit(rows, (node + 2)[np.repeat(np.arange(len(at_node)),
                                               rec["cluster_size"][at_node])])
        retained = w1 < _retention_threshold(self.params["node_retention"],
                                             rec["cluster_size"][at_node])
        rows = self._members(at_node[retained])
        rec["state"][rows] = ARRESTED
        rec["where"][rows] = np.repeat(node[retained], rec["cluster_size"][at_node[retained]])
        ev["node_retained"] += len(rows)

        passing, after = at_node[~retained], self.drains[node[~retained]]
        rows = self._members(passing)
        ev["node_passed"] += len(rows)
        after_rows = np.repeat(after, rec["cluster_size"][passing])
        rec["next_node"][rows] = after_rows
        into_blood = rows[after_rows < 0]          # drains to "blood": thoracic duct
        rec["state"][into_blood] = IN_BLOOD
        rec["portal"][into_blood] = False
        self._visit(into_blood, self._code["blood"])
        ev["to_blood_from_lymph"] += len(into_blood)

    def _move_arrested(self, leads, step) -> list[Arrival]:
        if not len(leads):
            return []
        rec, ev = self._rec, self._events
        where = rec["where"][leads].astype(np.int64)
        (w0, *_) = self._draw(leads, step, STREAM_EXTRAVASATION, self.lattice_ids[where])
        out = w0 < self.t_extravasate
        die = ~out & (w0 < self.t_arrest_end)
        rows = self._members(leads[die])
        rec["state"][rows] = DEAD
        rec["fate_step"][rows] = step
        ev["died_arrested"] += len(rows)
        rows = self._members(leads[out])
        rec["state"][rows] = EXTRAVASATED
        rec["fate_step"][rows] = step
        ev["extravasated"] += len(rows)
        r = rec[rows]
        return [Arrival(int(r["id"][i]), self.sites[int(r["where"][i])].name,
                        int(r["lineage"][i]), tuple(int(t) for t in r["traits"][i]),
                        int(r["cluster_size"][i])) for i in range(len(rows))]

    # -- the body's answers ---------------------------------------------------------------------
    def _arrival(self, record_id: int, what: str) -> np.void:
        record_id = int(record_id)
        if not 0 <= record_id < self._n:
            raise ValueError(f"{what}: no record {record_id}")
        r = self._rec[record_id]
        if r["state"] != EXTRAVASATED or r["voxel"] >= 0:
            raise ValueError(f"{what}: record {record_id} is {STATES[r['state']]}"
                             + (" and already settled" if r["voxel"] >= 0 else "")
                             + ", not an arrival awaiting placement")
        return r

    def fail_arrival(self, step: int, record_id: int, why: str) -> None:
        """The body could not place arrival `record_id` (e.g. no room): state failed."""
        self._begin(step)
        self._arrival(record_id, "fail_arrival")
        if why not in self.fail_reasons:
            if len(self.fail_reasons) == 255:
                raise ValueError("at most 255 distinct failure reasons")
            self.fail_reasons.append(why)
        rec = self._rec
        rec["state"][record_id] = FAILED
        rec["fate_step"][record_id] = step
        rec["fail_reason"][record_id] = self.fail_reasons.index(why) + 1
        self._events["failed"] += 1

    def settled(self, step: int, record_id: int, site: str, voxel: int) -> None:
        """The body placed arrival `record_id` in `site` at global voxel index `voxel`."""
        self._begin(step)
        r = self._arrival(record_id, "settled")
        expected = self.sites[int(r["where"])].name
        if site != expected:
            raise ValueError(f"settled: record {record_id} extravasated into {expected!r}, "
                             f"not {site!r}")
        if int(voxel) < 0:
            raise ValueError(f"settled: voxel {voxel} is not a global voxel index")
        self._rec["voxel"][int(record_id)] = int(voxel)
        self._events["settled"] += 1

    # -- reporting ------------------------------------------------------------------------------
    def counts(self) -> dict:
        """This step's events (cells) and the compartments' contents (cells)."""
        now = self.contents()
        out = {"step": -1 if self._step is None else self._step, **self._events,
               "in_blood": now["in_blood"], "in_lymph": now["in_lymph"],
               "arrested": now["arrested"]}
        out["ctc_per_7_5_mL"] = now["in_blood"] * 7.5 / self.params["blood_volume_mL"]
        return out

    def counts_row(self) -> np.ndarray:
        """`counts()` as one row of `counts_dtype(sites)`."""
        row = np.zeros((), counts_dtype(self.sites))
        for name, value in self.counts().items():
            row[name] = value
        return row

    def audit(self) -> None:
        """The bookkeeping invariants (module docstring); RuntimeError on a violation."""
        rec = self._rec[:self._n]
        problems = []
        if not np.array_equal(rec["id"], np.arange(self._n)):
            problems.append("record ids are not 0..n-1")
        state = rec["state"]
        if (state >= len(STATES)).any():
            problems.append("a record has no valid state")
        now = self.contents()
        if sum(now.values()) != self._n:
            problems.append(f"{self._n} cells created but states hold {sum(now.values())}")
        active = np.isin(state, (IN_BLOOD, IN_LYMPH, ARRESTED))
        lead_state = state[rec["unit"]]
        if (active & (lead_state != state)).any():
            problems.append("a cluster's cells are in different compartments")
        placed = np.isin(state, (ARRESTED, EXTRAVASATED, FAILED))
        moving = np.isin(state, (IN_BLOOD, IN_LYMPH, ARRESTED_ELSEWHERE))
        if (placed & (rec["where"] < 0)).any() or (moving & (rec["where"] >= 0)).any():
            problems.append("'where' does not match the state")
        terminal = np.isin(state, TERMINAL)
        if (terminal != (rec["fate_step"] >= 0)).any():
            problems.append("fate_step is set exactly for terminal states")
        if ((rec["voxel"] >= 0) & (state != EXTRAVASATED)).any():
            problems.append("a settled voxel on a record that is not extravasated")
        ev, start = self._events, self._start
        arrested_sites = sum(v for k, v in ev.items()
                             if k.startswith("arrested_") and k != "arrested_elsewhere")
        balance = {
            "in_lymph": ev["entered_lymph"] - ev["node_retained"] - ev["to_blood_from_lymph"],
            "in_blood": (ev["entered_blood"] + ev["to_blood_from_lymph"] - ev["died_in_blood"]
                         - arrested_sites - ev["arrested_elsewhere"]),
            "arrested": (arrested_sites + ev["node_retained"] - ev["extravasated"]
                         - ev["died_arrested"]),
            "extravasated": ev["extravasated"] - ev["failed"],
            "dead": ev["died_in_blood"] + ev["died_arrested"],
            "arrested_elsewhere": ev["arrested_elsewhere"],
            "failed": ev["failed"],
        }
        for name, change in balance.items():
            if now[name] - start[name] != change:
                problems.append(f"{name}: changed by {now[name] - start[name]} but this "
                                f"step's events give {change}")
        if problems:
            raise RuntimeError("circulation bookkeeping: " + "; ".join(problems))
