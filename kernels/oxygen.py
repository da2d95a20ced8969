"""Oxygen: reaction-diffusion relaxed to quasi-steady state every step (a `Field`).

Oxygen equilibrates in seconds while cells act over hours, so each step solves

    0 = D ∇²p − λ_bg p − U(p),        p = p_vessel on perfused vessel voxels,

(an unperfused vessel carries no blood: it only lets oxygen diffuse, like matrix)
with the generic red-black SOR of `field`, warm-started from the previous step, to the
scenario's tolerance in mmHg.  Every voxel loses oxygen by the background decay λ_bg
(matrix, debris, endothelium); live cells take it up by the kinetics of `oxygen.uptake`:

* michaelis_menten: U = V_max p / (K_m + p), nearly constant down to a few mmHg, so
  oxygen runs out at a finite depth (V_max per cell type, one K_m);
* first_order: U = λ p, an exponential decay that never runs out (PhysiCell's rate).
"""
from __future__ import annotations

import numpy as np

from .field import FIRST_ORDER, Field, diffusion_coefficient, field_pass, michaelis_menten
from .lattice import FUNCTIONAL, N_KINDS, TUMOR
from .process import Array, Param, Process, float32_of, nonnegative, positive

MICHAELIS_MENTEN, FIRST_ORDER_NAME = "michaelis_menten", "first_order"
# V_max in mmHg/s of tissue: a consumption rate in mL O2 per mL of tissue per s divided by
# the O2 solubility in tissue, 3.0e-5 mL O2/mL/mmHg (1 g of tissue taken as 1 mL).
KM_SOURCE = ("p50 of respiration of intact cells 0.05 kPa = 0.375 mmHg "
             "(Scandurra & Gnaiger 2010, Adv Exp Med Biol 662:7)")
PHYSICELL_UPTAKE = "PhysiCell uptake rate (oxygen.uptake = first_order)"
UPTAKE_GUARD = "; bound: a guard, 1000 x PhysiCell's rate"



def uptake_params(vmax_mmHg_per_s: float, measured: str) -> dict:
    """A cell type's uptake keys: first-order rate, and V_max (from `measured`, a
    consumption rate, over the solubility) and K_m of Michaelis–Menten kinetics."""
    return {
        "o2_uptake_per_min": nonnegative(10.0, "1/min", PHYSICELL_UPTAKE + UPTAKE_GUARD, hi=1e4),
        "o2_vmax_mmHg_per_s": nonnegative(vmax_mmHg_per_s, "mmHg/s",
                                          f"{measured} / 3.0e-5 mL O2/mL/mmHg", hi=1e4),
        "o2_km_mmHg": positive(0.375, "mmHg", KM_SOURCE, hi=760.0),
    }


OXYGEN = Process("oxygen", arrays={"oxygen": Array(np.float32, "pO2, mmHg")}, params={
    "oxygen": {
        "diffusion_um2_per_s": Param("float", 1750.0, lo=1e-3, hi=1e6, unit="µm²/s",
                                     source="Grote/Vaupel: 1.75e-5 cm²/s in tissue; lower "
                                            "bound: a guard, below any solute in tissue"),
        "vessel_mmHg": positive(38.0, "mmHg", "PhysiCell: about 38 mmHg (5 % O2) in tissue",
                                hi=760.0),
        "initial_mmHg": nonnegative(38.0, "mmHg", "warm start of the first solve", hi=760.0),
        "matrix_decay_per_min": nonnegative(0.1, "1/min", "PhysiCell background decay", hi=1e3),
        "hypoxic_mmHg": positive(15.0, "mmHg", "PhysiCell hypoxic threshold (counts; "
                                 "migration's hypoxic EMT)", hi=760.0),
        "tolerance_mmHg": positive(1e-3, "mmHg", "largest correction of the last sweep", hi=10.0),
        "max_sweeps": Param("int", 500, lo=1, hi=10**6, unit="sweeps per step"),
        "sor_omega": Param("float", 1.5, lo=0.0, hi=2.0, lo_open=True, hi_open=True,
                           unit="-", source="red-black SOR relaxation factor"),
        "uptake": Param("str", FIRST_ORDER_NAME, choices=(MICHAELIS_MENTEN, FIRST_ORDER_NAME),
                        source="cells' uptake: michaelis_menten V_max p/(K_m + p), nearly constant "
                               "down to a few mmHg (o2_vmax_mmHg_per_s, o2_km_mmHg); first_order "
                               "λ p (o2_uptake_per_min)"),
    },
    "tumor": uptake_params(8.44, "R3230AC mammary adenocarcinoma in vivo 1.52 cm³ O2/100 g/min "
                                 "(Dewhirst et al. 1994, Cancer Res 54:3333)"),
    "organs": uptake_params(0.245, "whole breast 1.97 µmol O2/100 mL/min (Carp et al. 2006, "
                                   "J Biomed Opt 11:064016)"),
})


@OXYGEN.checks
def one_km(scenario):
    """The solver takes one K_m for every cell type (`field`: one K_m per field)."""
    if scenario["oxygen.uptake"] != MICHAELIS_MENTEN:
        return []
    km = scenario["tumor.o2_km_mmHg"]
    return [(f"organs[{i}].o2_km_mmHg",
             f"organs[{i}].o2_km_mmHg = {organ['o2_km_mmHg']!r} differs from tumor.o2_km_mmHg "
             f"= {km!r}: the oxygen solver takes one K_m for every cell type")
            for i, organ in enumerate(scenario.organs) if organ["o2_km_mmHg"] != km]


@OXYGEN.rules_from
def oxygen_rules(scenario) -> dict:
    """o2_coeff [kind, organ label] = 1/(6 + λ h²/D) with λ the background decay, plus a
    live cell's first-order uptake (first_order); o2_uptake: FIRST_ORDER, or
    Michaelis–Menten with h² V_max/D [kind, organ label] and K_m; the solver's settings."""
    h = scenario["lattice.voxel_um"]
    d = scenario["oxygen.diffusion_um2_per_s"] * 3600.0               # µm²/h
    organs = scenario.organs
    lam = np.full((N_KINDS, len(organs) + 1), scenario["oxygen.matrix_decay_per_min"] * 60.0)
    uptake = FIRST_ORDER
    if scenario["oxygen.uptake"] == FIRST_ORDER_NAME:
        lam[TUMOR, :] = scenario["tumor.o2_uptake_per_min"] * 60.0
        for label, organ in enumerate(organs, start=1):
            lam[FUNCTIONAL, label] = organ["o2_uptake_per_min"] * 60.0
    else:
        vmax = np.zeros_like(lam)                                      # mmHg/h
        vmax[TUMOR, :] = scenario["tumor.o2_vmax_mmHg_per_s"] * 3600.0
        for label, organ in enumerate(organs, start=1):
            vmax[FUNCTIONAL, label] = organ["o2_vmax_mmHg_per_s"] * 3600.0
        uptake = michaelis_menten(vmax, scenario["tumor.o2_km_mmHg"], h, d)
    return {
        "o2_coeff": np.array([[diffusion_coefficient(x, h, d) for x in row] for row in lam],
                             dtype=np.float32),
        "o2_uptake": uptake,
        "vessel_mmHg": float32_of(scenario["oxygen.vessel_mmHg"]),
        "o2_omega": float32_of(scenario["oxygen.sor_omega"]),
        "o2_tolerance_mmHg": float(np.float32(scenario["oxygen.tolerance_mmHg"])),
        "o2_max_sweeps": int(scenario["oxygen.max_sweeps"]),
        "hypoxic_mmHg": float32_of(scenario["oxygen.hypoxic_mmHg"]),
    }


@field_pass(OXYGEN, reads=("oxygen", "kind", "organ", "perfused"), writes=("oxygen",))
def relax_oxygen(rules) -> Field:
    """Relax the oxygen field to quasi-steady state; returns (sweeps, residual_mmHg)."""
    return Field("oxygen", array="oxygen", units="mmHg", coeff=rules.o2_coeff,
                 uptake=rules.o2_uptake, vessel_value=rules.vessel_mmHg, omega=rules.o2_omega,
                 tolerance=rules.o2_tolerance_mmHg, max_sweeps=rules.o2_max_sweeps)
