"""Oxygen: reaction-diffusion relaxed to quasi-steady state every step (a `Field`).

Oxygen equilibrates in seconds while cells act over hours, so each step solves

    0 = D ∇²p − λ(kind, organ) p,        p = p_vessel on perfused vessel voxels,

(an unperfused vessel carries no blood: it only lets oxygen diffuse, like matrix)
with the generic red-black SOR of `field` (no source term), warm-started from the
previous step, to the scenario's tolerance in mmHg.  Uptake is first order (λ p) as
the scenarios ship; `rules.o2_uptake` may instead be Michaelis–Menten
V_max p / (K_m + p) (see `field`), with `rules.o2_coeff` then holding only the linear loss.
"""
from __future__ import annotations

from .field import Field, field_pass


@field_pass(reads=("oxygen", "kind", "organ", "perfused"), writes=("oxygen",))
def relax_oxygen(rules) -> Field:
    """Relax the oxygen field to quasi-steady state; returns (sweeps, residual_mmHg)."""
    return Field("oxygen", array="oxygen", units="mmHg", coeff=rules.o2_coeff,
                 uptake=rules.o2_uptake, vessel_value=rules.vessel_mmHg, omega=rules.o2_omega,
                 tolerance=rules.o2_tolerance_mmHg, max_sweeps=rules.o2_max_sweeps)
