// Displacement of functional tissue: the CUDA twin of kernels/displacement.py.
#include "claims.cuh"

// Empty matrix of the same organ that no daughter claimed this step.
OL_HD bool is_escape_site(const u8 *kind, const u8 *organ, const u8 *claim, i64 j, u8 own_organ) {
    return kind[j] == EMPTY && organ[j] == own_organ && (claim[j] & LOW3) == 0;
}

OL_ENTRY choose_escape(const u8 *kind, const u8 *organ, u8 *intent, const u8 *claim, u32 step,
                       OL_TILE_PARAMS, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_TILE_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (kind[i] == FUNCTIONAL && (claim[i] & LOW3) != 0) {
        u32 mask = 0;
        for (int d = 1; d <= 6; ++d) {
            int zz, yy, xx;
            if (neighbour(s, z, y, x, d, zz, yy, xx) &&
                is_escape_site(kind, organ, claim, at(s, zz, yy, xx), organ[i]))
                mask |= 1u << (d - 1);
        }
        if (mask != 0) {
            const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_ESCAPE, s).w[0];
            intent[i] = (u8)(intent[i] | (pick_direction(mask, word) << ESCAPE_SHIFT));
        }
    }
    OL_END_FOR_EACH_TILE_VOXEL
}

OL_ENTRY settle_escape_claims(const u8 *kind, const u8 *intent, u8 *claim, u32 step,
                              OL_TILE_PARAMS, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_TILE_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (kind[i] == EMPTY && (claim[i] & LOW3) == 0) {
        const int best = strongest_claimant(intent, ESCAPE_SHIFT, s, z, y, x, step, STREAM_ESCAPE);
        if (best != 0) claim[i] = (u8)(claim[i] | (best << ESCAPE_SHIFT));
    }
    OL_END_FOR_EACH_TILE_VOXEL
}

OL_ENTRY move_displaced(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage,
                        u8 *vacancy, const u8 *claim, i64 *events, OL_TILE_PARAMS, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_TILE_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const int from = (claim[i] >> ESCAPE_SHIFT) & LOW3;
    if (from != 0) {
        int zz, yy, xx;
        neighbour(s, z, y, x, from, zz, yy, xx);
        const i64 j = at(s, zz, yy, xx);
        kind[i] = kind[j];
        for (int t = 0; t < N_TRAITS; ++t) traits[t * s.nvox + i] = traits[t * s.nvox + j];
        clock[i] = clock[j];
        hypoxia[i] = hypoxia[j];
        lineage[i] = lineage[j];
        vacancy[i] = 0;
        count_event(&events[(i64)DISPLACED_FUNCTIONAL * s.nz + z], 1);
    }
    OL_END_FOR_EACH_TILE_VOXEL
}
