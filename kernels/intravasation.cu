// Vessel invasion (intravasation): the CUDA twin of kernels/intravasation.py (rule in its
// docstring).  Event codes and STREAM_INTRAVASATE are generated from the process declaration.
#include "lattice.cuh"
#include "philox.cuh"

constexpr u8 STAY = 0, BLOOD = 1, LYMPHATIC = 2;                 // departure codes
constexpr int MATURE_BIT = 1, NEW_BIT = 2, LYMPH_BIT = 4;       // vessel classes around a cell

// The set of vessel classes at the cell's faces: bit 0 perfused mature blood vessel,
// bit 1 perfused new blood vessel (sprout_age > 0), bit 2 lymphatic.
OL_HD int vessels_around(const u8 *kind, const u8 *perfused, const u16 *sprout_age,
                         const Slab &s, int z, int y, int x) {
    int found = 0;
    for (int d = 1; d <= 6; ++d) {
        int zz, yy, xx;
        if (!neighbour(s, z, y, x, d, zz, yy, xx)) continue;
        const i64 j = at(s, zz, yy, xx);
        if (kind[j] == VESSEL && perfused[j] != 0)
            found |= sprout_age[j] > 0 ? NEW_BIT : MATURE_BIT;
        else if (kind[j] == LYMPH)
            found |= LYMPH_BIT;
    }
    return found;
}

// A motile tumour cell: the only cells that cross a vessel wall.
OL_HD bool is_mover(const u8 *kind, const u8 *motile, i64 i) {
    return kind[i] == TUMOR && motile[i] != 0;
}

// The route by which the cell at (z, y, x) enters a vessel on its own draw, or STAY.
OL_HD u8 enters_on_own(const u8 *kind, const u8 *perfused, const u16 *sprout_age,
                       const u8 *motile, const Slab &s, int z, int y, int x,
                       const u32 *intravasation_thr, const u64 *blood_route_thr, u32 step) {
    if (!is_mover(kind, motile, at(s, z, y, x))) return STAY;
    const int found = vessels_around(kind, perfused, sprout_age, s, z, y, x);
    if (found == 0) return STAY;
    const Draw draw = voxel_draw(global_index(s, z, y, x), step, STREAM_INTRAVASATE, s);
    if (draw.w[0] >= intravasation_thr[found]) return STAY;
    if ((found & LYMPH_BIT) == 0) return BLOOD;
    if ((found & (MATURE_BIT | NEW_BIT)) == 0) return LYMPHATIC;
    return (u64)draw.w[1] < blood_route_thr[found] ? BLOOD : LYMPHATIC;
}

// 1. Each motile tumour cell enters on its own draw, or is carried along by the first face
// neighbour of its lineage (direction order) that does; it writes only its own departure.
OL_ENTRY choose_vessel_entry(const u8 *kind, const u8 *perfused, const u16 *sprout_age,
                             const u8 *motile, const u16 *lineage, u8 *departure,
                             const u32 *intravasation_thr, const u64 *blood_route_thr, u32 step,
                             i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    departure[i] = STAY;
    if (is_mover(kind, motile, i)) {
        u8 route = enters_on_own(kind, perfused, sprout_age, motile, s, z, y, x,
                                 intravasation_thr, blood_route_thr, step);
        for (int d = 1; route == STAY && d <= 6; ++d) {
            int zz, yy, xx;
            if (neighbour(s, z, y, x, d, zz, yy, xx) && lineage[at(s, zz, yy, xx)] == lineage[i])
                route = enters_on_own(kind, perfused, sprout_age, motile, s, zz, yy, xx,
                                      intravasation_thr, blood_route_thr, step);
        }
        if (route != STAY) {
            departure[i] = route;
            count_event(&events[(i64)(route == BLOOD ? INTRAVASATED_BLOOD : INTRAVASATED_LYMPH)
                                * s.nz + z], 1);
        }
    }
    OL_END_FOR_EACH_VOXEL
}

// 2. A departing cell leaves its voxel as empty matrix (not a vacancy), forgetting the cell.
OL_ENTRY leave_lattice(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage, u8 *motile,
                       u8 *vacancy, const u8 *departure, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (departure[i] != STAY) {
        kind[i] = EMPTY;                               // matrix, not a vacancy
        clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
        vacancy[i] = 0;
    }
    OL_END_FOR_EACH_VOXEL
}
