"""Diffusing fields: one quasi-steady solver for every substance (oxygen, VEGF; drugs and
chemokines to come), each substance a small declaration (`Field`).

A field f (in its own units) reaches steady state in seconds to minutes, far faster
than cells act, so every step solves

    0 = D ∇²f − λ(kind, organ) f − U(f) + S(kind, organ) [gate]

with zero flux through the lattice faces and, where the field declares a vessel value,
f = f_vessel held on perfused vessel voxels (Dirichlet: oxygen).  λ is the linear loss
(decay, and first-order uptake λ f); U is the saturable uptake of the declaration's
kinetics (none for first order, Michaelis–Menten V_max f / (K_m + f)); S is secretion,
which a field may restrict to live cells whose pO2 is below a threshold (VEGF:
hypoxic secretion).  On the 7-point stencil with voxel edge h

    f_i = a_i (Σ_{6 neighbours} f_j + s_i),   a_i = 1 / (6 + λ_i h² / D),   s_i = S_i h² / D,

where a neighbour beyond a lattice face mirrors f_i (zero flux).  `a`, `s` (and
V_max h² / D) are computed on the host in float64 and rounded to float32 (rules).

Red-black successive over-relaxation, f_i ← f_i + ω (a_i (Σ f_j + s_i) − f_i), updates
the voxels with (x + y + z_global) even, then odd, so every update is a gather; the six
neighbours are summed in the fixed order −x, +x, −y, +y, −z, +z, the source added
after them (only for a field that has one), all in float32.

Michaelis–Menten kinetics (lagged linearisation): inside the update the uptake is
linearised about the voxel's value before the update, λ_eff = V_max / (K_m + max(f_old, 0)),
so with t = (V_max h²/D) / (K_m + max(f_old, 0)) the weight becomes

    a_eff = a / (1 + a t)          (= 1 / (6 + λ h²/D + t), without forming 1/a),

computed in float32 in this order on every backend (two divisions, no exp/log/pow).
A fixed point of the sweep (every correction zero) is exactly the discrete
Michaelis–Menten steady state, so the same stopping rule and tolerance apply.
Where V_max is 0, a_eff = a exactly; clamping f_old at 0 keeps λ_eff ≤ V_max/K_m
while over-relaxation overshoots below zero.

Stopping rule (identical on every backend): sweep n (colour 0, then colour 1) is
done while n ≤ max_sweeps and sweep n − 1's largest |correction| (the residual;
+inf before sweep 1) is > tolerance; the result is (sweeps done, residual of the
last sweep).  A perfused vessel's Dirichlet write is no correction.
* Numba: each colour pass keeps one maximum per z plane; the host takes the maximum
  after every sweep (`relax_until`).
* CUDA (`field.cu`): no host-device synchronisation per sweep.  A device array
  `residuals[0..max_sweeps]` (float bits, 0 = +0.0; residuals[0] = +inf) receives one
  atomicMax per thread block (warp-shuffle and shared-memory maximum inside the
  block; sign bit cleared, so a correction of −0.0 counts as +0.0 as abs() does in
  Numba) into residuals[n] for sweep n.  The host queues sweeps in batches of
  SWEEPS_PER_BATCH without reading back; each colour launch of sweep n first reads
  residuals[n − 1] and returns at once if it is ≤ tolerance (compared as float bits:
  residuals are non-negative), so the sweeps queued after convergence are no-ops and
  the field is exactly what the one-sweep-at-a-time loop gives.  After each batch the
  host reads that batch's residuals once: the first n with residuals[n] ≤ tolerance is
  the sweep count.  A colour launch covers only that colour's voxels (thread k → the
  k-th voxel of the colour, grid-stride; the order within a colour does not matter in
  red-black SOR).  The host harness runs the same entry as plain loops.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Union

import numba
import numpy as np
from numba import prange

from .cuda import THREADS_PER_BLOCK, slab_args
from .process import launch_args, prototype
from .lattice import N_KINDS, VESSEL, is_live
from .twin import kernel

# Flags of a field (the same constants in field.cu; a test checks they agree).
FIELD_VESSEL_VALUE = 1        # Dirichlet value on perfused vessel voxels
FIELD_SOURCE = 2              # a source table
FIELD_SOURCE_HYPOXIC = 4      # ... only in live cells whose pO2 is below a threshold
FIELD_MICHAELIS_MENTEN = 8    # saturable uptake V_max f / (K_m + f)

FIELD_ARGS = tuple(a.name for a in prototype("field.cu", "relax_field_colour"))
SWEEPS_PER_BATCH = 8          # CUDA: sweeps queued between two reads of the residuals
FIELD_BLOCKS = 4096           # CUDA: most thread blocks of one colour launch (grid-stride)
INF_BITS = np.uint32(0x7F800000)
_NO_TABLE = np.zeros((1, 1), dtype=np.float32)     # stands in for an absent table
_NO_KEY = SimpleNamespace(key=(0, 0))              # fields draw no random numbers


@dataclass(frozen=True, eq=False)
class FirstOrder:
    """Uptake λ f: linear, so it is part of the coefficient table a = 1/(6 + λ h²/D)."""


FIRST_ORDER = FirstOrder()


@dataclass(frozen=True, eq=False)
class MichaelisMenten:
    """Saturable uptake V_max f / (K_m + f), on top of the linear loss in the coefficient
    table (which then holds only decay and any first-order part)."""

    vmax: np.ndarray        # float32, shape of the field's tables: h² V_max / D (field units)
    km: np.float32          # field units, > 0


Uptake = Union[FirstOrder, MichaelisMenten]


def diffusion_coefficient(lam_per_h: float, h_um: float, d_um2_per_h: float) -> np.float32:
    """a = 1 / (6 + λ h² / D), the 7-point steady-state update weight (float64, then float32)."""
    return np.float32(1.0 / (6.0 + lam_per_h * h_um * h_um / d_um2_per_h))


def michaelis_menten(vmax_per_h, km, h_um: float, d_um2_per_h: float) -> MichaelisMenten:
    """Michaelis–Menten uptake from V_max (field units per hour, a table shaped like the
    field's coefficients) and K_m (field units); h² V_max / D in float64, then float32."""
    vmax = np.asarray(vmax_per_h, dtype=np.float64) * h_um * h_um / d_um2_per_h
    return MichaelisMenten(vmax=np.ascontiguousarray(vmax, dtype=np.float32), km=np.float32(km))


@dataclass(frozen=True, eq=False)
class Field:
    """A diffusing substance: everything `relax_field` needs.

    Tables are float32, indexed by kind ([kind]) or by kind and organ label
    ([kind, organ]); all tables of one field have the same shape."""

    name: str                              # e.g. "oxygen"
    array: str                             # the lattice array relaxed in place
    units: str                             # of the field, its tolerance and residual
    coeff: np.ndarray                      # a = 1 / (6 + λ h² / D)
    omega: np.float32                      # SOR factor, 0 < ω < 2
    tolerance: float                       # stop when the largest correction ≤ this
    max_sweeps: int
    uptake: Uptake = FIRST_ORDER
    source: np.ndarray | None = None       # s = h² S / D
    secrete_below_mmHg: np.float32 | None = None   # source only where a live cell's pO2 < this
    vessel_value: np.float32 | None = None         # Dirichlet value on perfused vessels

    def __post_init__(self):
        tables = [self.coeff] + [t for t in (self.source, self.vmax) if t is not None]
        for t in tables:
            if t.dtype != np.float32 or t.shape != self.coeff.shape:
                raise ValueError(f"field {self.name}: tables must be float32 of shape "
                                 f"{self.coeff.shape}, got {t.dtype} {t.shape}")
        if self.coeff.ndim not in (1, 2) or self.coeff.shape[0] != N_KINDS:
            raise ValueError(f"field {self.name}: tables are [kind] or [kind, organ]")
        if self.secrete_below_mmHg is not None and self.source is None:
            raise ValueError(f"field {self.name}: hypoxic secretion needs a source table")
        if isinstance(self.uptake, MichaelisMenten) and not self.uptake.km > 0:
            raise ValueError(f"field {self.name}: Michaelis–Menten K_m must be > 0")
        if not (0 < self.omega < 2 and self.tolerance > 0 and self.max_sweeps >= 1):
            raise ValueError(f"field {self.name}: need 0 < omega < 2, tolerance > 0, "
                             "max_sweeps >= 1")

    @property
    def vmax(self) -> np.ndarray | None:
        return self.uptake.vmax if isinstance(self.uptake, MichaelisMenten) else None

    @property
    def labels(self) -> int:
        """Organ labels of the tables (1: per kind only)."""
        return 1 if self.coeff.ndim == 1 else self.coeff.shape[1]

    @property
    def flags(self) -> int:
        return ((FIELD_VESSEL_VALUE if self.vessel_value is not None else 0)
                | (FIELD_SOURCE if self.source is not None else 0)
                | (FIELD_SOURCE_HYPOXIC if self.secrete_below_mmHg is not None else 0)
                | (FIELD_MICHAELIS_MENTEN if isinstance(self.uptake, MichaelisMenten) else 0))

    @property
    def reads(self) -> tuple[str, ...]:
        """The voxel arrays one sweep streams through (what the pass must declare)."""
        out = [self.array, "kind"]
        if self.labels > 1:
            out.append("organ")
        if self.vessel_value is not None:
            out.append("perfused")
        if self.secrete_below_mmHg is not None and self.array != "oxygen":
            out.append("oxygen")
        return tuple(out)

    def scalars(self) -> tuple:
        """(vessel value, pO2 threshold of secretion, K_m, ω) as float32."""
        return (np.float32(0.0 if self.vessel_value is None else self.vessel_value),
                np.float32(0.0 if self.secrete_below_mmHg is None else self.secrete_below_mmHg),
                np.float32(self.uptake.km if isinstance(self.uptake, MichaelisMenten) else 1.0),
                np.float32(self.omega))


# -- Numba --------------------------------------------------------------------------------

@numba.njit(inline="always", cache=True)
def neighbour_sum(f, z, y, x, nz, ny, nx):
    """Σ of the six face neighbours in the order −x, +x, −y, +y, −z, +z; a neighbour
    beyond a lattice face mirrors the voxel itself (zero flux)."""
    c = f[z, y, x]
    s = f[z, y, x - 1] if x > 0 else c
    s = s + (f[z, y, x + 1] if x < nx - 1 else c)
    s = s + (f[z, y - 1, x] if y > 0 else c)
    s = s + (f[z, y + 1, x] if y < ny - 1 else c)
    s = s + (f[z - 1, y, x] if z > 0 else c)
    s = s + (f[z + 1, y, x] if z < nz - 1 else c)
    return s


@numba.njit(inline="always", cache=True)
def over_relax(f, z, y, x, target, omega):
    """f ← f + ω (target − f); returns |target − f| (the correction)."""
    old = f[z, y, x]
    correction = target - old
    f[z, y, x] = old + omega * correction
    return abs(correction)


@numba.njit(parallel=True, cache=True)
def _relax_colour_numba(f, kind, organ, perfused, oxygen, coeff, source, vmax, flags,
                        vessel_value, secrete_below, km, omega, colour, z0, plane_max):
    nz, ny, nx = f.shape
    per_organ = coeff.shape[1] > 1
    dirichlet = (flags & FIELD_VESSEL_VALUE) != 0
    has_source = (flags & FIELD_SOURCE) != 0
    hypoxic_only = (flags & FIELD_SOURCE_HYPOXIC) != 0
    michaelis = (flags & FIELD_MICHAELIS_MENTEN) != 0
    zero, one = np.float32(0.0), np.float32(1.0)
    for z in prange(nz):
        worst = zero
        for y in range(ny):
            for x in range((colour + z0 + z + y) & 1, nx, 2):
                k = kind[z, y, x]
                if dirichlet and k == VESSEL and perfused[z, y, x]:
                    f[z, y, x] = vessel_value
                    continue
                o = organ[z, y, x] if per_organ else 0
                a = coeff[k, o]
                if michaelis:
                    old = f[z, y, x]
                    t = vmax[k, o] / (km + (old if old > zero else zero))
                    a = a / (one + a * t)
                total = neighbour_sum(f, z, y, x, nz, ny, nx)
                if has_source:
                    secretes = not hypoxic_only or (is_live(k) and oxygen[z, y, x] < secrete_below)
                    total = total + (source[k, o] if secretes else zero)
                worst = max(worst, over_relax(f, z, y, x, a * total, omega))
        plane_max[z] = worst


def relax_until(sweep, tolerance, max_sweeps):
    """Call `sweep()` (both colours; returns its largest correction) until the largest
    correction is at most `tolerance` or `max_sweeps` is reached: (sweeps, residual)."""
    residual = np.float32(np.inf)
    sweeps = 0
    while sweeps < max_sweeps and not residual <= tolerance:
        residual = sweep()
        sweeps += 1
    return sweeps, float(residual)


def _as_2d(table):
    return table if table.ndim == 2 else table.reshape(table.shape[0], 1)


# -- the solver on every backend ----------------------------------------------------------

@kernel(reads=(), writes=())
def _relax(lattice, field, step):
    """Relax `field` on `lattice` (the `rules` slot carries the Field)."""


@_relax.on("numba")
def _relax_numba(lattice, field, step):
    f = lattice.arrays[field.array]
    tables = [_as_2d(t) if t is not None else _NO_TABLE
              for t in (field.coeff, field.source, field.vmax)]
    scalars = field.scalars()

    domain = lattice.domain
    owned = lattice.plane_max[domain.interior]

    def sweep():
        worst = np.float32(0.0)
        for colour in (0, 1):
            _relax_colour_numba(f, lattice.kind, lattice.organ, lattice.perfused, lattice.oxygen,
                                *tables, field.flags, *scalars, colour, lattice.z0,
                                lattice.plane_max)
            domain.exchange(lattice, (field.array,))
            worst = max(worst, owned.max())
        return domain.max(worst)
    return relax_until(sweep, field.tolerance, field.max_sweeps)


@_relax.cuda
def _relax_cuda(launch, lattice, field, step):
    colour_voxels = lattice.nz * lattice.ny * ((lattice.nx + 1) // 2)
    threads = min(colour_voxels, FIELD_BLOCKS * THREADS_PER_BLOCK)
    residuals = launch.zeros(field.max_sweeps + 1, np.uint32)
    residuals[0] = INF_BITS
    tolerance_bits = np.float32(field.tolerance).view(np.uint32)
    tables = tuple(launch.table(t if t is not None else _NO_TABLE)
                   for t in (field.coeff, field.source, field.vmax))
    vessel_value, secrete_below, km, omega = field.scalars()
    values = dict(f=lattice.arrays[field.array], kind=lattice.kind, organ=lattice.organ,
                  perfused=lattice.perfused, oxygen=lattice.oxygen, coeff=tables[0],
                  source=tables[1], vmax=tables[2], n_labels=field.labels, flags=field.flags,
                  vessel_value=vessel_value, secrete_below=secrete_below, km=km, omega=omega,
                  colour=0, residuals=residuals, sweep=1, tolerance_bits=tolerance_bits,
                  owned_lo=lattice.domain.interior.start, owned_hi=lattice.domain.interior.stop)
    args = list(launch_args("field.cu", "relax_field_colour", values))   # checked once
    at_colour, at_sweep = FIELD_ARGS.index("colour"), FIELD_ARGS.index("sweep")
    slab = slab_args(lattice, _NO_KEY)
    if lattice.domain.size > 1:
        return _relax_cuda_slab(launch, lattice, field, args, slab, threads, residuals)
    done, last = 0, None
    while done < field.max_sweeps:
        n = min(SWEEPS_PER_BATCH, field.max_sweeps - done)
        for sweep in range(done + 1, done + n + 1):
            for colour in (0, 1):
                args[at_colour], args[at_sweep] = np.int32(colour), np.int32(sweep)
                launch.launch("field.cu", "relax_field_colour", threads, (*args, *slab))
        batch = launch.to_host(residuals[done + 1:done + n + 1])
        converged = np.flatnonzero(batch <= tolerance_bits)
        if converged.size:
            j = int(converged[0])
            return done + j + 1, float(batch[j:j + 1].view(np.float32)[0])
        done, last = done + n, batch[-1:]
    return done, float(last.view(np.float32)[0])


def _relax_cuda_slab(launch, lattice, field, args, slab, threads, residuals):
    """The CUDA solver on an MPI slab: one sweep at a time, the field's halo refreshed
    after each colour, the sweep's residual (of the slab's own planes) maximised over
    the ranks and written back before the next sweep reads it: every rank stops after
    the same sweep, with the field the whole lattice would have."""
    at_colour, at_sweep = FIELD_ARGS.index("colour"), FIELD_ARGS.index("sweep")
    domain, tolerance_bits = lattice.domain, np.float32(field.tolerance).view(np.uint32)
    residual = INF_BITS
    for sweep in range(1, field.max_sweeps + 1):
        for colour in (0, 1):
            args[at_colour], args[at_sweep] = np.int32(colour), np.int32(sweep)
            launch.launch("field.cu", "relax_field_colour", threads, (*args, *slab))
            domain.exchange(lattice, (field.array,))
        residual = domain.max(launch.to_host(residuals[sweep:sweep + 1])[0])
        residuals[sweep] = residual
        if residual <= tolerance_bits:
            break
    return sweep, float(np.uint32(residual).view(np.float32))


def relax_field(lattice, field: Field) -> tuple[int, float]:
    """Relax `field` to quasi-steady state on `lattice`, in place, on the lattice's
    backend: (sweeps, residual in the field's units)."""
    return _relax(lattice, field, 0)


def field_pass(process, *, reads, writes):
    """Declare a step pass that relaxes one field of `process` (which declares the
    field's parameters, rule constants and array): the decorated function maps the
    rules to the `Field` and carries the pass's name and docstring; the pass
    `relax(lattice, rules, step)` returns (sweeps, residual).  `reads`/`writes` are what
    the benchmark counts per sweep (they must match `Field.reads`)."""
    def declare(field_of):
        relax = kernel(reads=reads, writes=writes, process=process)(field_of)
        for backend in _relax.implementations:
            relax.on(backend)(lambda lattice, rules, step: relax_field(lattice, field_of(rules)))
        relax.field = field_of
        return relax
    return declare
