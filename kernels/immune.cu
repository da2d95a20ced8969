// Immune cells on the lattice (recruitment, killing, migration): the CUDA twin of
// kernels/immune.py (rules in its docstring).  Event codes and STREAM_* are generated from
// the process declaration there; the chemokine field runs on the generic solver (field.cu).
#include "claims.cuh"

constexpr int RECRUIT_BINS = 256;
constexpr u8 TARGET_BITS = 7;      // immune_state bits 0-2: direction of the engaged target
constexpr u8 LETHAL = 8;           // the contact ends in a kill
constexpr u8 EXHAUSTING = 16;      // the contact exhausts the T cell
constexpr u8 EXHAUSTED = 32;       // kills no more

// floor(256 c / (c + K)) in float32 (c clamped at 0), at most RECRUIT_BINS - 1.
OL_HD int recruit_bin(float c, float half) {
    c = c > 0.0f ? c : 0.0f;
    const float u = c / (c + half);
    const int b = (int)(u * 256.0f);
    return b < RECRUIT_BINS - 1 ? b : RECRUIT_BINS - 1;
}

// 2a. A perfused vessel with empty neighbours releases a cell into one (w0, w2).
OL_ENTRY propose_recruitment(const u8 *kind, const u8 *perfused, const float *chemokine,
                             u8 *hop, const u32 *recruit_thr,
                             float chemokine_half_saturation, u32 step, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    hop[i] = 0;
    if (kind[i] == VESSEL && perfused[i] != 0) {
        u32 mask = 0;
        for (int d = 1; d <= 6; ++d) {
            int zz, yy, xx;
            if (neighbour(s, z, y, x, d, zz, yy, xx) && kind[at(s, zz, yy, xx)] == EMPTY)
                mask |= 1u << (d - 1);
        }
        if (mask != 0) {
            const Draw draw = voxel_draw(global_index(s, z, y, x), step, STREAM_IMMUNE_RECRUIT, s);
            if (draw.w[0] < recruit_thr[recruit_bin(chemokine[i], chemokine_half_saturation)])
                hop[i] = (u8)pick_direction(mask, draw.w[2]);
        }
    }
    OL_END_FOR_EACH_VOXEL
}

// 2b. Each empty voxel keeps the releasing vessel with the highest (w1, global index).
OL_ENTRY settle_recruitment(const u8 *kind, const u8 *hop, u8 *hop_claim, u32 step,
                            OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    hop_claim[i] = kind[i] == EMPTY
                          ? (u8)strongest_claimant(hop, 0, s, z, y, x, step,
                                                   STREAM_IMMUNE_RECRUIT)
                          : 0;
    OL_END_FOR_EACH_VOXEL
}

// 2c. A won voxel receives a T cell, or an NK cell when the vessel's w3 < nk_share_thr.
OL_ENTRY place_recruits(u8 *kind, u8 *vacancy, u8 *immune_state, u8 *immune_busy,
                        u8 *immune_kills, const u8 *hop_claim, u32 nk_share_thr, u32 step,
                        i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const int d = hop_claim[i];
    if (d != 0) {
        int vz, vy, vx;
        neighbour(s, z, y, x, d, vz, vy, vx);
        const u32 word = voxel_draw(global_index(s, vz, vy, vx), step, STREAM_IMMUNE_RECRUIT, s).w[3];
        const bool nk = word < nk_share_thr;
        kind[i] = nk ? NK_CELL : T_CELL;
        vacancy[i] = 0;
        immune_state[i] = 0;
        immune_busy[i] = 0;
        immune_kills[i] = 0;
        count_event(&events[(i64)(nk ? RECRUITED_NK_CELL : RECRUITED_T_CELL) * s.nz + z], 1);
    }
    OL_END_FOR_EACH_VOXEL
}

// Whether the immune cell at voxel j ends a lethal contact aimed in direction `back` now.
OL_HD bool ends_lethal_contact(const u8 *kind, const u8 *immune_state, const u8 *immune_busy,
                               i64 j, int back) {
    return is_immune(kind[j]) && immune_busy[j] == 1 && (immune_state[j] & TARGET_BITS) == back &&
           (immune_state[j] & LETHAL) != 0;
}

// 3a. A tumour cell dies when a neighbour ends a lethal contact with it (first in
// direction order is the killer, remembered in hop_claim).
OL_ENTRY end_contacts(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage, u8 *motile,
                      const u8 *immune_state, const u8 *immune_busy, u8 *hop_claim,
                      i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    hop_claim[i] = 0;
    if (kind[i] == TUMOR) {
        for (int d = 1; d <= 6; ++d) {
            int zz, yy, xx;
            if (!neighbour(s, z, y, x, d, zz, yy, xx)) continue;
            const i64 j = at(s, zz, yy, xx);
            if (ends_lethal_contact(kind, immune_state, immune_busy, j, opposite(d))) {
                const u8 killer = kind[j];
                kind[i] = EMPTY;
                clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
                hop_claim[i] = (u8)d;
                count_event(&events[(i64)(killer == NK_CELL ? KILLED_BY_NK_CELL : KILLED_BY_T_CELL) *
                                    s.nz + z], 1);
                break;
            }
        }
    }
    OL_END_FOR_EACH_VOXEL
}

// 3b. Contacts count down (credit and exhaustion at their end, abort if the target is
// gone); then every immune cell dies at its rate (w0 of immune_death).
OL_ENTRY advance_contacts(u8 *kind, u8 *immune_state, u8 *immune_busy, u8 *immune_kills,
                          const u8 *hop_claim, const u32 *immune_death_thr, int t_kill_capacity,
                          int nk_kill_capacity, u32 step, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (is_immune(k)) {
        const int busy = immune_busy[i];
        const u8 state = immune_state[i];
        if (busy > 0) {
            const int d = state & TARGET_BITS;
            int tz, ty, tx;
            const bool inside = neighbour(s, z, y, x, d, tz, ty, tx);
            const i64 t = at(s, tz, ty, tx);
            if (busy == 1) {
                int kills = immune_kills[i];
                if (inside && hop_claim[t] == opposite(d)) kills = kills + 1 < 255 ? kills + 1 : 255;
                immune_kills[i] = (u8)kills;
                const int capacity = k == NK_CELL ? nk_kill_capacity : t_kill_capacity;
                bool exhausted = (state & EXHAUSTED) != 0;
                if (!exhausted && ((state & EXHAUSTING) != 0 || kills >= capacity)) {
                    exhausted = true;
                    count_event(&events[(i64)IMMUNE_EXHAUSTED * s.nz + z], 1);
                }
                immune_state[i] = exhausted ? EXHAUSTED : 0;
                immune_busy[i] = 0;
            } else if (inside && kind[t] == TUMOR) {
                immune_busy[i] = (u8)(busy - 1);
            } else {
                immune_state[i] = state & EXHAUSTED;
                immune_busy[i] = 0;
            }
        }
        const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_IMMUNE_DEATH, s).w[0];
        if (word < immune_death_thr[k == NK_CELL ? 1 : 0]) {
            kind[i] = EMPTY;
            immune_state[i] = 0;
            immune_busy[i] = 0;
            immune_kills[i] = 0;
            count_event(&events[(i64)IMMUNE_DIED * s.nz + z], 1);
        }
    }
    OL_END_FOR_EACH_VOXEL
}

// A tumour cell with no tumour or dormant face neighbour.
OL_HD bool is_solitary(const u8 *kind, const Slab &s, int z, int y, int x) {
    for (int d = 1; d <= 6; ++d) {
        int zz, yy, xx;
        if (!neighbour(s, z, y, x, d, zz, yy, xx)) continue;
        const u8 k = kind[at(s, zz, yy, xx)];
        if (k == TUMOR || k == DORMANT) return false;
    }
    return true;
}

// 3c. A free, non-exhausted immune cell picks an adjacent tumour cell (w2) and engages it
// (w0 < engage_thr[type, solitary, antigen]); the outcome is drawn now: lethal (w1), and
// exhausting (w3), from the target's checkpoint level.
OL_ENTRY engage(const u8 *kind, const u8 *traits, u8 *immune_state, u8 *immune_busy,
                const u32 *engage_thr, const u32 *lethal_thr, const u32 *exhaust_thr,
                int t_contact_steps, int nk_contact_steps, u32 step, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (is_immune(k) && immune_busy[i] == 0 && (immune_state[i] & EXHAUSTED) == 0) {
        u32 mask = 0;
        for (int d = 1; d <= 6; ++d) {
            int zz, yy, xx;
            if (neighbour(s, z, y, x, d, zz, yy, xx) && kind[at(s, zz, yy, xx)] == TUMOR)
                mask |= 1u << (d - 1);
        }
        if (mask != 0) {
            const Draw draw = voxel_draw(global_index(s, z, y, x), step, STREAM_IMMUNE_ENGAGE, s);
            const int d = pick_direction(mask, draw.w[2]);
            int tz, ty, tx;
            neighbour(s, z, y, x, d, tz, ty, tx);
            const i64 t = at(s, tz, ty, tx);
            const int row = k == NK_CELL ? 1 : 0;
            const int solitary = is_solitary(kind, s, tz, ty, tx) ? 1 : 0;
            if (draw.w[0] < engage_thr[(row * 2 + solitary) * TRAIT_LEVELS +
                                       traits[ANTIGEN * s.nvox + t]]) {
                const int q = traits[CHECKPOINT * s.nvox + t];
                u8 state = (u8)d;
                if (draw.w[1] < lethal_thr[row * TRAIT_LEVELS + q]) state |= LETHAL;
                if (draw.w[3] < exhaust_thr[row * TRAIT_LEVELS + q]) state |= EXHAUSTING;
                immune_state[i] = state;
                immune_busy[i] = (u8)(row == 1 ? nk_contact_steps : t_contact_steps);
            }
        }
    }
    OL_END_FOR_EACH_VOXEL
}

// 0 where an immune cell may not go (only empty matrix, or an organ cell of the organ it
// is in), else 1 + bias * max(0, c(site) - c(here)).
OL_HD float immune_hop_weight(const u8 *kind, const u8 *organ, const float *chemokine,
                              const Slab &s, int z, int y, int x, int d, float bias) {
    int zz, yy, xx;
    if (!neighbour(s, z, y, x, d, zz, yy, xx)) return 0.0f;
    const i64 j = at(s, zz, yy, xx);
    if (kind[j] != EMPTY && (kind[j] != FUNCTIONAL || organ[j] != organ[at(s, z, y, x)])) return 0.0f;
    float rise = chemokine[j] - chemokine[at(s, z, y, x)];
    rise = rise > 0.0f ? rise : 0.0f;
    return 1.0f + bias * rise;
}

// Direction 1..6 with probability weight / sum (as choose_hop in migration.cu).
OL_HD int choose_immune_hop(const u8 *kind, const u8 *organ, const float *chemokine, const Slab &s,
                            int z, int y, int x, float bias, u32 word) {
    float total = 0.0f;
    int last = 0;
    for (int d = 1; d <= 6; ++d) {
        const float w = immune_hop_weight(kind, organ, chemokine, s, z, y, x, d, bias);
        if (w > 0.0f) {
            total = total + w;
            last = d;
        }
    }
    if (last == 0) return 0;
    const float u = (float)(word >> 8) * 5.9604644775390625e-08f * total;
    float acc = 0.0f;
    for (int d = 1; d <= 6; ++d) {
        const float w = immune_hop_weight(kind, organ, chemokine, s, z, y, x, d, bias);
        if (w > 0.0f) {
            acc = acc + w;
            if (u < acc) return d;
        }
    }
    return last;
}

// 4a. A free immune cell that hops this sub-step (w0 < immune_hop_thr[type]) picks its site (w2).
OL_ENTRY propose_immune_hop(const u8 *kind, const u8 *organ, const float *chemokine,
                            const u8 *immune_busy,
                            u8 *hop, const u32 *immune_hop_thr, float chemotaxis, u32 tick,
                            OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    hop[i] = 0;
    const u8 k = kind[i];
    if (is_immune(k) && immune_busy[i] == 0) {
        const Draw draw = voxel_draw(global_index(s, z, y, x), tick, STREAM_IMMUNE_MOVE, s);
        if (draw.w[0] < immune_hop_thr[k == NK_CELL ? 1 : 0])
            hop[i] = (u8)choose_immune_hop(kind, organ, chemokine, s, z, y, x, chemotaxis, draw.w[2]);
    }
    OL_END_FOR_EACH_VOXEL
}

// 4b. Each open site keeps the mover with the highest (w1, global index).
OL_ENTRY settle_immune_hops(const u8 *kind, const u8 *hop, u8 *hop_claim, u32 tick,
                            OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    hop_claim[i] = (k == EMPTY || k == FUNCTIONAL)
                          ? (u8)strongest_claimant(hop, 0, s, z, y, x, tick, STREAM_IMMUNE_MOVE)
                          : 0;
    OL_END_FOR_EACH_VOXEL
}

template <typename T> OL_HD void swap_values(T *a, i64 i, i64 j) {
    const T v = a[i];
    a[i] = a[j];
    a[j] = v;
}

// 4c. A won site and its mover trade places with all they carry (the site's thread alone
// writes the pair).
OL_ENTRY make_immune_hops(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage, u8 *motile,
                          u8 *vacancy, u8 *immune_state, u8 *immune_busy, u8 *immune_kills,
                          const u8 *hop_claim, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const int d = hop_claim[i];
    if (d != 0) {
        int zz, yy, xx;
        neighbour(s, z, y, x, d, zz, yy, xx);
        const i64 j = at(s, zz, yy, xx);
        swap_values(kind, i, j);
        for (int t = 0; t < N_TRAITS; ++t) swap_values(traits, t * s.nvox + i, t * s.nvox + j);
        swap_values(clock, i, j);
        swap_values(hypoxia, i, j);
        swap_values(lineage, i, j);
        swap_values(motile, i, j);
        swap_values(immune_state, i, j);
        swap_values(immune_busy, i, j);
        swap_values(immune_kills, i, j);
        vacancy[i] = 0;
        vacancy[j] = 0;
        count_event(&events[(i64)IMMUNE_MIGRATED * s.nz + z], 1);
    }
    OL_END_FOR_EACH_VOXEL
}
