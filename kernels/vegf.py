"""VEGF: the angiogenic signal of hypoxic tissue, relaxed to quasi-steady state every step
(a `Field`).

VEGF (ng/mL) diffuses and decays within minutes, so each step solves

    0 = D_V ∇²c − (λ_decay + λ_uptake [endothelium]) c + S(kind) [live cell with pO2 < p_hypoxic],

hypoxic tumour and functional cells secreting at their own rates, endothelial cells
(blood vessels, perfused or not) binding and internalising it, with the generic
red-black SOR of `field` to the scenario's tolerance in ng/mL.  It runs right after
oxygen, so secretion follows this step's hypoxia.  Uptake is first order as the
scenarios ship (`rules.vegf_uptake` may be Michaelis–Menten, see `field`).
"""
from __future__ import annotations

from .field import Field, field_pass


@field_pass(reads=("vegf", "kind", "oxygen"), writes=("vegf",))
def relax_vegf(rules) -> Field:
    """Relax the VEGF field to quasi-steady state; returns (sweeps, residual_ng_per_mL)."""
    return Field("vegf", array="vegf", units="ng/mL", coeff=rules.vegf_coeff,
                 uptake=rules.vegf_uptake, source=rules.vegf_source,
                 secrete_below_mmHg=rules.hypoxic_mmHg, omega=rules.vegf_omega,
                 tolerance=rules.vegf_tolerance, max_sweeps=rules.vegf_max_sweeps)
