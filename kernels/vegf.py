"""VEGF: the angiogenic signal of hypoxic tissue, relaxed to quasi-steady state every step
(a `Field`).

VEGF (ng/mL) diffuses and decays within minutes, so each step solves

    0 = D_V ∇²c − (λ_decay + λ_uptake [endothelium]) c + S(kind) [live cell with pO2 < p_hypoxic],

hypoxic tumour and functional cells secreting at their own rates, endothelial cells
(blood vessels, sprouts and tips, perfused or not) binding and internalising it, with
the generic red-black SOR of `field` to the scenario's tolerance in ng/mL.  It runs
right after oxygen, so secretion follows this step's hypoxia (`oxygen.hypoxic_mmHg`).
"""
from __future__ import annotations

import numpy as np

from .field import FIRST_ORDER, Field, diffusion_coefficient, field_pass
from .lattice import FUNCTIONAL, N_KINDS, SPROUT, TIP, TUMOR, VESSEL
from .process import Array, Param, Process, float32_of, nonnegative, positive

RATE_GUARD = "; bound: a guard (a half-life of 40 ms)"
SECRETION_GUARD = "; bound: a guard, 10**6 x the tissue level"

VEGF = Process("vegf", arrays={"vegf": Array(np.float32, "VEGF, ng/mL")}, params={"vegf": {
    "diffusion_um2_per_s": Param("float", 70.0, lo=1e-3, hi=1e5, unit="µm²/s",
                                 source="VEGF 40-100 µm²/s (Kihara 2013; Mac Gabhann & Popel); "
                                        "lower bound: a guard, below any protein in tissue"),
    "decay_per_min": nonnegative(0.0206, "1/min",
                                 "plasma clearance 0.0206 /min, half-life ~34 min (Stefanini 2008)"
                                 + RATE_GUARD, hi=1e3),
    "endothelial_uptake_per_min": nonnegative(0.2, "1/min",
                                              "(approx.) receptor binding and internalisation"
                                              + RATE_GUARD, hi=1e3),
    "tumor_secretion_ng_per_mL_per_h": nonnegative(
        50.0, "ng/mL/h", "(approx.) a hypoxic nodule of ~100 µm reaches ~1 ng/mL" + SECRETION_GUARD,
        hi=1e6),
    "functional_secretion_ng_per_mL_per_h": nonnegative(10.0, "ng/mL/h",
                                                        "(approx.) hypoxic normal tissue"
                                                        + SECRETION_GUARD, hi=1e6),
    "tolerance_ng_per_mL": positive(1e-4, "ng/mL", "largest correction of the last sweep", hi=10.0),
    "max_sweeps": Param("int", 500, lo=1, hi=10**6, unit="sweeps per step"),
    "sor_omega": Param("float", 1.9, lo=0.0, hi=2.0, lo_open=True, hi_open=True,
                       unit="-", source="red-black SOR factor (weak decay: near 2)"),
}})


@VEGF.rules_from
def vegf_rules(scenario) -> dict:
    """vegf_coeff [kind] = 1/(6 + λ h²/D_V) with λ the decay plus endothelial uptake;
    vegf_source [kind] = h² S/D_V of a hypoxic live cell; the solver's settings."""
    h = scenario["lattice.voxel_um"]
    d = scenario["vegf.diffusion_um2_per_s"] * 3600.0                 # µm²/h
    loss = np.full(N_KINDS, scenario["vegf.decay_per_min"] * 60.0)
    for endothelium in (VESSEL, SPROUT, TIP):
        loss[endothelium] += scenario["vegf.endothelial_uptake_per_min"] * 60.0
    source = np.zeros(N_KINDS)
    source[TUMOR] = scenario["vegf.tumor_secretion_ng_per_mL_per_h"] * h * h / d
    source[FUNCTIONAL] = scenario["vegf.functional_secretion_ng_per_mL_per_h"] * h * h / d
    return {
        "vegf_coeff": np.array([diffusion_coefficient(lam, h, d) for lam in loss],
                               dtype=np.float32),
        "vegf_source": float32_of(source),
        "vegf_uptake": FIRST_ORDER,
        "vegf_omega": float32_of(scenario["vegf.sor_omega"]),
        "vegf_tolerance": float(np.float32(scenario["vegf.tolerance_ng_per_mL"])),
        "vegf_max_sweeps": int(scenario["vegf.max_sweeps"]),
    }


@field_pass(VEGF, reads=("vegf", "kind", "oxygen"), writes=("vegf",))
def relax_vegf(rules) -> Field:
    """Relax the VEGF field to quasi-steady state; returns (sweeps, residual_ng_per_mL)."""
    return Field("vegf", array="vegf", units="ng/mL", coeff=rules.vegf_coeff,
                 uptake=rules.vegf_uptake, source=rules.vegf_source,
                 secrete_below_mmHg=rules.hypoxic_mmHg, omega=rules.vegf_omega,
                 tolerance=rules.vegf_tolerance, max_sweeps=rules.vegf_max_sweeps)
