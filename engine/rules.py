"""Rule tables: the scenario's physiology turned into what kernels compare against.

Everything here is computed once, on the host, in float64, and rounded to the
kernel types (float32 coefficients, uint32 probability thresholds), so both
backends read identical numbers.  Rows of the per-cell-type tables: 0 = tumour,
1..n = functional cells of organ 1..n.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from kernels.field import FIRST_ORDER, Uptake, michaelis_menten
from kernels.lattice import FUNCTIONAL, N_KINDS, SPROUT, TIP, TUMOR, VESSEL
from kernels.philox import probability_threshold, seed_key



@dataclass(frozen=True)
class Rules:
    key: tuple[int, int]
    step_h: float
    # oxygen
    o2_coeff: np.ndarray            # float32 [kind, organ]: 1 / (6 + λ h² / D)
    o2_uptake: Uptake               # FIRST_ORDER (λ p, in o2_coeff) or MichaelisMenten
                                    # (h² V_max / D [kind, organ], K_m; o2_coeff: decay only)
    vessel_mmHg: np.float32
    o2_omega: np.float32
    o2_tolerance_mmHg: float
    o2_max_sweeps: int
    hypoxic_mmHg: np.float32
    # VEGF
    vegf_coeff: np.ndarray          # float32 [kind]: 1 / (6 + λ h² / D_V)
    vegf_source: np.ndarray         # float32 [kind]: h² S / D_V of a hypoxic live cell
    vegf_uptake: Uptake             # FIRST_ORDER (λ c, in vegf_coeff) or MichaelisMenten
    vegf_omega: np.float32
    vegf_tolerance: float
    vegf_max_sweeps: int
    # rule constants each declared process derives itself (kernels.process.Process.rules_from)
    processes: dict = field(default_factory=dict)

    def __getattr__(self, name):
        """A process's rule constant by name (names are unique across processes)."""
        for constants in self.__dict__.get("processes", {}).values():
            if name in constants:
                return constants[name]
        raise AttributeError(name)

    def replace(self, **changes) -> "Rules":
        """A copy with some fields or process rule constants changed (experiments, tests)."""
        processes = {p: dict(c) for p, c in self.processes.items()}
        fields = {}
        for name, value in changes.items():
            owner = [p for p, c in processes.items() if name in c]
            if owner:
                processes[owner[0]][name] = value
            else:
                fields[name] = value
        return dataclasses.replace(self, processes=processes, **fields)


def diffusion_coefficient(lam_per_h: float, h_um: float, d_um2_per_h: float) -> np.float32:
    """a = 1 / (6 + λ h² / D), the 7-point steady-state update weight."""
    return np.float32(1.0 / (6.0 + lam_per_h * h_um * h_um / d_um2_per_h))


def build_rules(scenario) -> Rules:
    v = scenario.values
    h = v["lattice"]["voxel_um"]
    dt = v["time"]["step_h"]
    ox, tumor = v["oxygen"], v["tumor"]
    organs = scenario.organs
    d_um2_per_h = ox["diffusion_um2_per_s"] * 3600.0

    o2_coeff, o2_uptake = oxygen_uptake(ox, tumor, organs, h, d_um2_per_h)

    vegf = v["vegf"]
    d_vegf = vegf["diffusion_um2_per_s"] * 3600.0
    vegf_loss = np.full(N_KINDS, vegf["decay_per_min"] * 60.0)
    for endothelium in (VESSEL, SPROUT, TIP):
        vegf_loss[endothelium] += vegf["endothelial_uptake_per_min"] * 60.0
    vegf_source = np.zeros(N_KINDS)
    vegf_source[TUMOR] = vegf["tumor_secretion_ng_per_mL_per_h"] * h * h / d_vegf
    vegf_source[FUNCTIONAL] = vegf["functional_secretion_ng_per_mL_per_h"] * h * h / d_vegf

    return Rules(
        key=seed_key(v["scenario"]["seed"]),
        step_h=dt,
        o2_coeff=o2_coeff,
        o2_uptake=o2_uptake,
        vessel_mmHg=np.float32(ox["vessel_mmHg"]),
        o2_omega=np.float32(ox["sor_omega"]),
        o2_tolerance_mmHg=float(np.float32(ox["tolerance_mmHg"])),
        o2_max_sweeps=int(ox["max_sweeps"]),
        hypoxic_mmHg=np.float32(ox["hypoxic_mmHg"]),
        vegf_coeff=np.array([diffusion_coefficient(lam, h, d_vegf) for lam in vegf_loss],
                            dtype=np.float32),
        vegf_source=vegf_source.astype(np.float32),
        vegf_uptake=FIRST_ORDER,
        vegf_omega=np.float32(vegf["sor_omega"]),
        vegf_tolerance=float(np.float32(vegf["tolerance_ng_per_mL"])),
        vegf_max_sweeps=int(vegf["max_sweeps"]),
        processes=process_rules(scenario),
    )


def oxygen_uptake(ox, tumor, organs, h, d_um2_per_h) -> tuple[np.ndarray, Uptake]:
    """(o2_coeff, o2_uptake) for `oxygen.uptake`, tables [kind, organ label].

    Every voxel loses oxygen by the background decay (matrix, debris, endothelium,
    functional cells outside any organ).  first_order: live cells take up λ p instead
    (`o2_uptake_per_min`), all of it linear, in o2_coeff.  michaelis_menten: live cells
    take up V_max p / (K_m + p) on top of the background decay, which is then all that
    o2_coeff holds; V_max (`o2_vmax_mmHg_per_s`) per kind and organ, one K_m (the
    scenario checks every cell type states the same)."""
    decay = ox["matrix_decay_per_min"] * 60.0                  # 1/h
    lam = np.full((N_KINDS, len(organs) + 1), decay)           # λ in 1/h
    uptake = FIRST_ORDER
    if ox["uptake"] == "first_order":
        lam[TUMOR, :] = tumor["o2_uptake_per_min"] * 60.0
        for label, organ in enumerate(organs, start=1):
            lam[FUNCTIONAL, label] = organ["o2_uptake_per_min"] * 60.0
    else:
        vmax = np.zeros_like(lam)                              # mmHg/h
        vmax[TUMOR, :] = tumor["o2_vmax_mmHg_per_s"] * 3600.0
        for label, organ in enumerate(organs, start=1):
            vmax[FUNCTIONAL, label] = organ["o2_vmax_mmHg_per_s"] * 3600.0
        uptake = michaelis_menten(vmax, tumor["o2_km_mmHg"], h, d_um2_per_h)
    coeff = np.array([[diffusion_coefficient(x, h, d_um2_per_h) for x in row] for row in lam],
                     dtype=np.float32)
    return coeff, uptake


def process_rules(scenario) -> dict[str, dict]:
    """{process name: {constant: value}} from every process that derives its own rules."""
    from kernels.process import PROCESSES
    out, seen = {}, {}
    for p in PROCESSES.values():
        if p.derive:
            out[p.name] = dict(p.derive(scenario))
            for name in out[p.name]:
                if name in seen:
                    raise RuntimeError(f"rule constant {name!r} of {p.name} is also {seen[name]}'s")
                seen[name] = p.name
    return out
