// Sprouting angiogenesis: the CUDA twin of kernels/angiogenesis.py (rules in its docstring).
#include "claims.cuh"

constexpr u8 ANASTOMOSE = 7;
constexpr u8 NEW_TIP = 8;

// A float in [0, 1) from the top 24 bits of a Philox word.
OL_HD float uniform(u32 word) { return (float)(word >> 8) * 5.9604644775390625e-08f; }

OL_HD bool is_free(u8 k) { return k == EMPTY || k == FUNCTIONAL || k == NECROTIC; }

// w = w0 + chi max(0, c_j - c_i) + rho [matrix], summed in this order.
OL_HD float sprout_weight(float c_here, float c_there, float chi, u8 target_kind, float base,
                          float haptotaxis) {
    const float rise = c_there - c_here;
    const float w = base + chi * (rise > 0.0f ? rise : 0.0f);
    return w + (target_kind == EMPTY ? haptotaxis : 0.0f);
}

OL_HD int choose_target(const u8 *kind, const float *vegf, const Slab &s, int z, int y, int x,
                        u32 word, float chi0, float inv_csat, float base, float haptotaxis) {
    const float c_here = vegf[at(s, z, y, x)];
    const float chi = chi0 / (1.0f + c_here * inv_csat);
    float total = 0.0f;
    int zz, yy, xx;
    for (int d = 1; d <= 6; ++d) {
        if (neighbour(s, z, y, x, d, zz, yy, xx) && is_free(kind[at(s, zz, yy, xx)])) {
            const i64 j = at(s, zz, yy, xx);
            total = total + sprout_weight(c_here, vegf[j], chi, kind[j], base, haptotaxis);
        }
    }
    if (total == 0.0f) return 0;
    const float pick = uniform(word) * total;
    float running = 0.0f;
    int last = 0;
    for (int d = 1; d <= 6; ++d) {
        if (neighbour(s, z, y, x, d, zz, yy, xx) && is_free(kind[at(s, zz, yy, xx)])) {
            const i64 j = at(s, zz, yy, xx);
            running = running + sprout_weight(c_here, vegf[j], chi, kind[j], base, haptotaxis);
            last = d;
            if (pick < running) return d;
        }
    }
    return last;
}

constexpr int ANY_ENDOTHELIUM = 0, TIP_OR_STALK = 1, TIP_ONLY = 2;

// Whether a face neighbour other than direction `skip` is `what`: any endothelium,
// a tip or stalk, or a tip.
OL_HD bool touches(const u8 *kind, const Slab &s, int z, int y, int x, int what, int skip) {
    int zz, yy, xx;
    for (int d = 1; d <= 6; ++d) {
        if (!neighbour(s, z, y, x, d, zz, yy, xx) || d == skip) continue;
        const u8 k = kind[at(s, zz, yy, xx)];
        if (k == TIP || (what == TIP_OR_STALK && k == SPROUT) ||
            (what == ANY_ENDOTHELIUM && is_endothelium(k)))
            return true;
    }
    return false;
}

OL_ENTRY propose_sprouting(const u8 *kind, const u8 *perfused, const float *vegf,
                           const u16 *sprout_age, const u8 *trail, u8 *sprout_intent, float sprout_vegf, u32 sprout_thr,
                           float move_p, float chi0, float inv_csat, float base, float haptotaxis,
                           int branch_age, float branch_p, float inv_cbranch, int anastomosis_age,
                           u32 step, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    sprout_intent[i] = 0;
    const u8 k = kind[i];
    if (k == TIP || k == SPROUT || k == VESSEL) {
        const Draw w = voxel_draw(global_index(s, z, y, x), step, STREAM_SPROUT, s);
        bool act = false, anastomose = false;
        u8 new_tip = 0;
        if (k == TIP) {
            if (sprout_age[i] >= anastomosis_age && touches(kind, s, z, y, x, ANY_ENDOTHELIUM, trail[i])) {
                anastomose = true;
            } else {
                act = uniform(w.w[0]) < move_p;
            }
        } else if (k == VESSEL) {
            act = perfused[i] == 1 && vegf[i] >= sprout_vegf && w.w[0] < sprout_thr &&
                  !touches(kind, s, z, y, x, TIP_OR_STALK, 0);
            new_tip = NEW_TIP;
        } else {
            const float scaled = vegf[i] * inv_cbranch;
            const float level = scaled < 1.0f ? scaled : 1.0f;
            act = sprout_age[i] >= branch_age && uniform(w.w[0]) < branch_p * level &&
                  !touches(kind, s, z, y, x, TIP_ONLY, 0);
            new_tip = NEW_TIP;
        }
        if (anastomose) {
            sprout_intent[i] = ANASTOMOSE;
        } else if (act) {
            const int d = choose_target(kind, vegf, s, z, y, x, w.w[2], chi0, inv_csat, base, haptotaxis);
            if (d != 0) sprout_intent[i] = (u8)(d | new_tip);
        }
    }
    OL_END_FOR_EACH_VOXEL
}

OL_HD void grow_sprout_voxel(u8 *kind, u8 *perfused, u8 *lumen, u16 *sprout_age, u8 *trail,
                             u16 *clock, u8 *hypoxia, u8 *vacancy, u8 *traits, u16 *lineage,
                             const u8 *sprout_intent, u32 step, i64 *events, const Slab &s,
                             int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    lumen[i] = 0;
    const u8 k = kind[i];
    if (is_free(k)) {
        const int w = strongest_claimant(sprout_intent, 0, s, z, y, x, step, STREAM_SPROUT);
        if (w == 0) return;
        int uz, uy, ux;
        neighbour(s, z, y, x, w, uz, uy, ux);
        const i64 u = at(s, uz, uy, ux);
        if (k == FUNCTIONAL) count_event(&events[(i64)FUNCTIONAL_CLEARED_BY_SPROUT * s.nz + z], 1);
        else if (k == NECROTIC) count_event(&events[(i64)DEBRIS_CLEARED * s.nz + z], 1);
        const bool new_tip = (sprout_intent[u] & NEW_TIP) != 0;
        if (new_tip) count_event(&events[(i64)TIP_SPROUTED * s.nz + z], 1);
        kind[i] = TIP;
        sprout_age[i] = new_tip ? 0 : (u16)(sprout_age[u] < 65535 ? sprout_age[u] + 1 : 65535);
        trail[i] = (u8)w;
        for (int t = 0; t < N_TRAITS; ++t) traits[t * s.nvox + i] = 0;   // the cell or vacancy it replaced
        lineage[i] = 0;
        clock[i] = 0;
        hypoxia[i] = 0;
        vacancy[i] = 0;
        perfused[i] = 0;
    } else if (k == TIP) {
        const int d = sprout_intent[i] & 7;
        if (d == ANASTOMOSE) {
            kind[i] = VESSEL;
            lumen[i] = 1;
            trail[i] = 0;
            count_event(&events[(i64)ANASTOMOSIS * s.nz + z], 1);
            return;
        }
        bool moved = false;
        if (d != 0 && (sprout_intent[i] & NEW_TIP) == 0) {
            int tz, ty, tx;
            neighbour(s, z, y, x, d, tz, ty, tx);
            moved = strongest_claimant(sprout_intent, 0, s, tz, ty, tx, step, STREAM_SPROUT) == opposite(d);
        }
        if (moved) {
            kind[i] = SPROUT;                  // the stalk keeps the sprout's age
            count_event(&events[(i64)STALK_LAID * s.nz + z], 1);
        } else {
            sprout_age[i] = (u16)(sprout_age[i] < 65535 ? sprout_age[i] + 1 : 65535);
        }
    } else if (k == SPROUT) {
        sprout_age[i] = (u16)(sprout_age[i] < 65535 ? sprout_age[i] + 1 : 65535);
    }
}

OL_ENTRY grow_sprouts(u8 *kind, u8 *perfused, u8 *lumen, u16 *sprout_age, u8 *trail, u16 *clock,
                      u8 *hypoxia, u8 *vacancy, u8 *traits, u16 *lineage, const u8 *sprout_intent,
                      u32 step, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    grow_sprout_voxel(kind, perfused, lumen, sprout_age, trail, clock, hypoxia, vacancy, traits,
                      lineage, sprout_intent, step, events, s, z, y, x);
    OL_END_FOR_EACH_VOXEL
}
