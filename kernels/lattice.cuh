// The per-voxel vocabulary: the CUDA twin of kernels/lattice.py (a test checks
// that every constant here equals its Python twin).
#pragma once
#include "cuda_common.cuh"

constexpr u8 EMPTY = 0;
constexpr u8 FUNCTIONAL = 1;
constexpr u8 TUMOR = 2;
constexpr u8 NECROTIC = 3;
constexpr u8 VESSEL = 4;
constexpr u8 LYMPH = 5;
constexpr u8 SPROUT = 6;
constexpr u8 TIP = 7;
constexpr u8 DORMANT = 8;     // not live: an obstacle that neither cycles, moves nor dies in fate
constexpr u8 T_CELL = 9;      // cytotoxic T cell (kernels/immune.py)
constexpr u8 NK_CELL = 10;    // natural killer cell
constexpr int N_KINDS = 11;

// Clone ids: below COLONY_LINEAGE_BASE clones of a primary; from it up, colonies;
// FOUNDING_BASE + c a founder of primary clone c waiting for the colony id the host
// assigns at the end of the step (kernels/lattice.py).
constexpr u16 COLONY_LINEAGE_BASE = 1024;
constexpr u16 FOUNDING_BASE = 65536 - COLONY_LINEAGE_BASE;
// Organ labels: 0 none, 1 the lattice's own organ, 2.. neighbouring organs.
constexpr u8 OWN_ORGAN = 1;

constexpr int PROLIFERATION = 0;
constexpr int ADHESION = 1;
constexpr int APOPTOSIS_RESISTANCE = 2;
constexpr int CHEMO_RESISTANCE = 3;
constexpr int ANTIGEN = 4;
constexpr int CHECKPOINT = 5;
constexpr int RECEPTOR = 6;
constexpr int N_TRAITS = 7;
constexpr int TRAIT_LEVELS = 16;

constexpr int CLOCK_FULL = 65535;

constexpr u8 LOW3 = 7;
constexpr int ESCAPE_SHIFT = 3;

// Face neighbours 1..6: -x, +x, -y, +y, -z, +z.
OL_HD int opposite(int d) { return ((d - 1) ^ 1) + 1; }

OL_HD bool neighbour(const Slab &s, int z, int y, int x, int d, int &zz, int &yy, int &xx) {
    zz = z + (d == 5 ? -1 : d == 6 ? 1 : 0);
    yy = y + (d == 3 ? -1 : d == 4 ? 1 : 0);
    xx = x + (d == 1 ? -1 : d == 2 ? 1 : 0);
    return 0 <= zz && zz < s.nz && 0 <= yy && yy < s.ny && 0 <= xx && xx < s.nx;
}

OL_HD i64 global_index(const Slab &s, int z, int y, int x) {
    return ((s.z0 + z) * s.ny_g + y) * s.nx_g + x;
}

OL_HD bool is_live(u8 k) { return k == FUNCTIONAL || k == TUMOR; }   // not DORMANT

OL_HD bool is_immune(u8 k) { return k == T_CELL || k == NK_CELL; }

// Forget the cell that occupied voxel i (its motility with it).
OL_HD void clear_cell(i64 i, i64 nvox, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage,
                      u8 *motile) {
    for (int t = 0; t < N_TRAITS; ++t) traits[t * nvox + i] = 0;
    clock[i] = 0;
    hypoxia[i] = 0;
    lineage[i] = 0;
    motile[i] = 0;
}

OL_HD bool is_endothelium(u8 k) { return k == VESSEL || k == SPROUT || k == TIP; }

// Row of the per-cell-type tables: 0 for tumour cells, the organ label for functional cells.
OL_HD int table_row(u8 k, u8 organ) { return k == TUMOR ? 0 : organ; }
