// Division (propose -> settle -> place): the CUDA twin of kernels/division.py.
// Event codes and STREAM_* are generated from the process declaration there.
#include "claims.cuh"

OL_HD bool can_take_daughter(u8 parent_kind, u8 parent_organ, u8 site_kind, u8 site_organ,
                             u8 site_vacancy) {
    if (parent_kind == TUMOR) return site_kind == EMPTY || site_kind == FUNCTIONAL;
    return site_kind == EMPTY && site_organ == parent_organ && site_vacancy != 0;
}

// clock + floor(rate * f(pO2)), saturating at CLOCK_FULL.
OL_HD int advance_cycle(u16 clock, float rate, float oxygen, float threshold, float inv_span) {
    float f = (oxygen - threshold) * inv_span;
    f = f > 0.0f ? f : 0.0f;
    f = f < 1.0f ? f : 1.0f;
    const i64 c = (i64)clock + (i64)(rate * f);
    return (int)(c < CLOCK_FULL ? c : CLOCK_FULL);
}

OL_HD void propose_division_voxel(const u8 *kind, const u8 *organ, const u8 *traits, u16 *clock,
                                  const u8 *motile, const u8 *vacancy, const float *oxygen, u8 *intent, const float *cycle_rate,
                                  const float *receptor_factor, float o2_threshold, float o2_inv_span, u32 step, u8 *tile_flags,
                                  const Slab &s, int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    intent[i] = 0;
    const u8 k = kind[i];
    if (!is_live(k) || motile[i] != 0) return;     // no cell, or a motile one (go or grow)
    const u8 o = organ[i];
    float rate = cycle_rate[table_row(k, o) * TRAIT_LEVELS + traits[PROLIFERATION * s.nvox + i]];
    if (k == TUMOR)                                // receptor blockade: * 1.0f untreated
        rate = rate * receptor_factor[traits[RECEPTOR * s.nvox + i]];
    const int c = advance_cycle(clock[i], rate, oxygen[i], o2_threshold, o2_inv_span);
    clock[i] = (u16)c;
    if (c < CLOCK_FULL) return;
    u32 mask = 0;
    for (int d = 1; d <= 6; ++d) {
        int zz, yy, xx;
        if (!neighbour(s, z, y, x, d, zz, yy, xx)) continue;
        const i64 j = at(s, zz, yy, xx);
        if (can_take_daughter(k, o, kind[j], organ[j], vacancy[j]))
            mask |= 1u << (d - 1);
    }
    if (mask == 0) return;
    const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_DIVISION, s).w[0];
    intent[i] = (u8)pick_direction(mask, word);
    mark_tiles_near(tile_flags, s, z, y, x);   // every writer stores the same 1
}

OL_ENTRY propose_division(const u8 *kind, const u8 *organ, const u8 *traits, u16 *clock,
                          const u8 *motile, const u8 *vacancy, const float *oxygen, u8 *intent, const float *cycle_rate,
                          const float *receptor_factor, float o2_prolif_threshold, float o2_prolif_inv_span, u32 step,
                          u8 *tile_flags, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    propose_division_voxel(kind, organ, traits, clock, motile, vacancy, oxygen, intent, cycle_rate,
                           receptor_factor, o2_prolif_threshold, o2_prolif_inv_span, step, tile_flags, s, z, y, x);
    OL_END_FOR_EACH_VOXEL
}

OL_ENTRY settle_division_claims(const u8 *kind, const u8 *intent, u8 *claim, u32 step,
                                OL_TILE_PARAMS, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_TILE_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    claim[i] = (k == EMPTY || k == FUNCTIONAL)
                   ? (u8)strongest_claimant(intent, 0, s, z, y, x, step, STREAM_DIVISION)
                   : 0;
    OL_END_FOR_EACH_TILE_VOXEL
}

// Copy the parent's trait levels; a mutating daughter moves each level down when its
// word is below down_thr, up when below down_thr + up_thr (clipped to 0..15).
OL_HD void inherit_traits(u8 *traits, i64 i, i64 parent, i64 nvox, bool mutate, const Draw &draws,
                          const Draw &more, const u32 *down_thr, const u32 *up_thr) {
    for (int t = 0; t < N_TRAITS; ++t) {
        int level = traits[t * nvox + parent];
        if (mutate) {
            const u32 w = t < 4 ? draws.w[t] : more.w[t - 4];   // streams mutation, mutation_more
            if (w < down_thr[t]) {
                level = level > 0 ? level - 1 : 0;
            } else if ((u64)w < (u64)down_thr[t] + up_thr[t]) {
                level = level < TRAIT_LEVELS - 1 ? level + 1 : TRAIT_LEVELS - 1;
            }
        }
        traits[t * nvox + i] = (u8)level;
    }
}

OL_HD void place_daughter_voxel(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage,
                                u8 *vacancy, const u8 *intent, const u8 *claim, const u32 *down_thr,
                                const u32 *up_thr, u32 step, i64 *events, const Slab &s,
                                int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    const int d = claim[i] & LOW3;
    int zz, yy, xx;
    if (d == 0) {
        const int own = intent[i] & LOW3;
        if (own != 0 && is_live(kind[i])) {
            neighbour(s, z, y, x, own, zz, yy, xx);
            if ((claim[at(s, zz, yy, xx)] & LOW3) == opposite(own)) clock[i] = 0;
        }
        return;
    }
    neighbour(s, z, y, x, d, zz, yy, xx);
    const i64 parent = at(s, zz, yy, xx);
    if ((claim[parent] & LOW3) != 0) return;            // displaced parent forfeits
    if (kind[i] == FUNCTIONAL) {
        const int e = (intent[i] >> ESCAPE_SHIFT) & LOW3;
        bool escaped = false;
        if (e != 0) {
            int ez, ey, ex;
            neighbour(s, z, y, x, e, ez, ey, ex);
            escaped = ((claim[at(s, ez, ey, ex)] >> ESCAPE_SHIFT) & LOW3) == opposite(e);
        }
        if (!escaped) count_event(&events[(i64)COMPRESSION_FUNCTIONAL * s.nz + z], 1);
    }
    const u8 pk = kind[parent];
    const bool tumour = pk == TUMOR;
    const Draw draws = voxel_draw(global_index(s, z, y, x), step, STREAM_MUTATION, s);
    const Draw more = voxel_draw(global_index(s, z, y, x), step, STREAM_MUTATION_MORE, s);
    inherit_traits(traits, i, parent, s.nvox, tumour, draws, more, down_thr, up_thr);
    kind[i] = pk;
    lineage[i] = lineage[parent];
    clock[i] = 0;
    hypoxia[i] = 0;
    vacancy[i] = 0;
    count_event(&events[(i64)(tumour ? BIRTH_TUMOR : BIRTH_FUNCTIONAL) * s.nz + z], 1);
}

OL_ENTRY place_daughters(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage,
                         u8 *vacancy, const u8 *intent, const u8 *claim, const u32 *mutation_down_thr,
                         const u32 *mutation_up_thr, u32 step, i64 *events, OL_TILE_PARAMS,
                         OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_TILE_VOXEL(s)
    place_daughter_voxel(kind, traits, clock, hypoxia, lineage, vacancy, intent, claim, mutation_down_thr,
                         mutation_up_thr, step, events, s, z, y, x);
    OL_END_FOR_EACH_TILE_VOXEL
}
