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

from kernels.field import FIRST_ORDER, Uptake
from kernels.lattice import EMPTY, FUNCTIONAL, LYMPH, N_KINDS, NECROTIC, SPROUT, TIP, TUMOR, VESSEL
from kernels.philox import probability_threshold, seed_key



@dataclass(frozen=True)
class Rules:
    key: tuple[int, int]
    step_h: float
    # oxygen
    o2_coeff: np.ndarray            # float32 [kind, organ]: 1 / (6 + λ h² / D)
    o2_uptake: Uptake               # FIRST_ORDER (λ p, in o2_coeff) or MichaelisMenten
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

    n_labels = len(organs) + 1
    uptake = np.zeros((N_KINDS, n_labels))                     # λ in 1/h
    uptake[EMPTY, :] = ox["matrix_decay_per_min"] * 60.0
    uptake[NECROTIC, :] = ox["matrix_decay_per_min"] * 60.0
    uptake[LYMPH, :] = ox["matrix_decay_per_min"] * 60.0
    for matrix_like in (VESSEL, SPROUT, TIP):          # (unperfused) endothelium supplies nothing
        uptake[matrix_like, :] = ox["matrix_decay_per_min"] * 60.0
    uptake[TUMOR, :] = tumor["o2_uptake_per_min"] * 60.0
    uptake[FUNCTIONAL, 0] = ox["matrix_decay_per_min"] * 60.0
    for label, organ in enumerate(organs, start=1):
        uptake[FUNCTIONAL, label] = organ["o2_uptake_per_min"] * 60.0
    o2_coeff = np.array([[diffusion_coefficient(lam, h, d_um2_per_h) for lam in row]
                         for row in uptake], dtype=np.float32)

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
        o2_uptake=FIRST_ORDER,
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
