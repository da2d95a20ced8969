// Adhesion loss and migration: the CUDA twin of kernels/migration.py (rules in its docstring).
// Event codes and STREAM_* are generated from the process declaration there.
#include "claims.cuh"

// 1. Adherent tumour cells detach; motile ones adhere again (word 0 of stream `detach`).
// A primary clone's cell (lineage < COLONY_LINEAGE_BASE) that re-adheres in a neighbouring
// organ (label >= 2) founds a local metastasis: lineage FOUNDING_BASE + its clone.
OL_ENTRY lose_adhesion(const u8 *kind, const u8 *organ, const u8 *traits, const float *oxygen,
                       u8 *motile, u16 *lineage, float hypoxic_mmHg, const u32 *detach_thr,
                       u32 readhere_thr, u32 step, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (kind[i] == TUMOR) {
        const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_DETACH, s).w[0];
        if (motile[i] != 0) {
            if (word < readhere_thr) {
                motile[i] = 0;
                count_event(&events[(i64)READHERED * s.nz + z], 1);
                if (organ[i] > OWN_ORGAN && lineage[i] < COLONY_LINEAGE_BASE) {
                    lineage[i] = (u16)(FOUNDING_BASE + lineage[i]);
                    count_event(&events[(i64)SETTLED_ABROAD * s.nz + z], 1);
                }
            }
        } else {
            const int hypoxic = oxygen[i] < hypoxic_mmHg ? 1 : 0;
            if (word < detach_thr[hypoxic * TRAIT_LEVELS + traits[ADHESION * s.nvox + i]]) {
                motile[i] = 1;
                count_event(&events[(i64)DETACHED * s.nz + z], 1);
            }
        }
    }
    OL_END_FOR_EACH_VOXEL
}

// Weight of a hop in direction d: 0 where the cell may not go, else
// 1 + bias * max(0, pO2(site) - pO2(here)).
OL_HD float hop_weight(const u8 *kind, const float *oxygen, const Slab &s, int z, int y, int x,
                       int d, float bias) {
    int zz, yy, xx;
    if (!neighbour(s, z, y, x, d, zz, yy, xx)) return 0.0f;
    const i64 j = at(s, zz, yy, xx);
    if (kind[j] != EMPTY && kind[j] != FUNCTIONAL) return 0.0f;
    float rise = oxygen[j] - oxygen[at(s, z, y, x)];
    rise = rise > 0.0f ? rise : 0.0f;
    return 1.0f + bias * rise;
}

// Direction 1..6 with probability weight / sum (float32, summed in direction order;
// u = (word >> 8) * 2^-24 * sum); 0 if no site is open.
OL_HD int choose_hop(const u8 *kind, const float *oxygen, const Slab &s, int z, int y, int x,
                     float bias, u32 word) {
    float total = 0.0f;
    int last = 0;
    for (int d = 1; d <= 6; ++d) {
        const float w = hop_weight(kind, oxygen, s, z, y, x, d, bias);
        if (w > 0.0f) {
            total = total + w;
            last = d;
        }
    }
    if (last == 0) return 0;
    const float u = (float)(word >> 8) * 5.9604644775390625e-08f * total;
    float acc = 0.0f;
    for (int d = 1; d <= 6; ++d) {
        const float w = hop_weight(kind, oxygen, s, z, y, x, d, bias);
        if (w > 0.0f) {
            acc = acc + w;
            if (u < acc) return d;
        }
    }
    return last;
}

// 2a. A motile cell that hops this sub-step (word 0) picks its site (word 2).
OL_ENTRY propose_hop(const u8 *kind, const float *oxygen, const u8 *motile, u8 *hop, u32 hop_thr,
                     float oxygen_bias, u32 tick, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    hop[i] = 0;
    if (kind[i] == TUMOR && motile[i] != 0) {
        const Draw draw = voxel_draw(global_index(s, z, y, x), tick, STREAM_MIGRATE, s);
        if (draw.w[0] < hop_thr)
            hop[i] = (u8)choose_hop(kind, oxygen, s, z, y, x, oxygen_bias, draw.w[2]);
    }
    OL_END_FOR_EACH_VOXEL
}

// 2b. Each open site keeps the mover with the highest (word 1, global index).
OL_ENTRY settle_hops(const u8 *kind, const u8 *hop, u8 *hop_claim, u32 tick, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    hop_claim[i] = (k == EMPTY || k == FUNCTIONAL)
                       ? (u8)strongest_claimant(hop, 0, s, z, y, x, tick, STREAM_MIGRATE)
                       : 0;
    OL_END_FOR_EACH_VOXEL
}

template <typename T> OL_HD void trade(T *a, i64 i, i64 j) {
    const T v = a[i];
    a[i] = a[j];
    a[j] = v;
}

// 2c. A won site and its mover trade cells, with all they carry; the site's thread
// alone writes the pair (a site has one winner, a mover one site).
OL_ENTRY make_hops(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage, u8 *motile,
                   u8 *vacancy, const u8 *hop_claim, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const int d = hop_claim[i];
    if (d != 0) {
        int zz, yy, xx;
        neighbour(s, z, y, x, d, zz, yy, xx);
        const i64 j = at(s, zz, yy, xx);
        trade(kind, i, j);
        for (int t = 0; t < N_TRAITS; ++t) trade(traits, t * s.nvox + i, t * s.nvox + j);
        trade(clock, i, j);
        trade(hypoxia, i, j);
        trade(lineage, i, j);
        trade(motile, i, j);
        vacancy[i] = 0;
        vacancy[j] = 0;
        count_event(&events[(i64)MIGRATED * s.nz + z], 1);
    }
    OL_END_FOR_EACH_VOXEL
}
