// Dormancy: the CUDA twin of kernels/dormancy.py (rule in its docstring).
// WOKE, DORMANT_DIED and STREAM_DORMANCY are generated from the process declaration there.
#include "lattice.cuh"
#include "philox.cuh"

// Each dormant cell wakes (word 0 < wake_thr), dies (word 0 < wake_or_death_thr) or stays.
OL_ENTRY stay_dormant_or_wake(u8 *kind, u8 *traits, u16 *clock, u8 *hypoxia, u16 *lineage,
                              u8 *motile, u32 wake_thr, u32 wake_or_death_thr, u32 step,
                              i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (kind[i] == DORMANT) {
        const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_DORMANCY, s).w[0];
        if (word < wake_thr) {                       // re-enters the cycle at its start
            kind[i] = TUMOR;
            clock[i] = 0;
            count_event(&events[(i64)WOKE * s.nz + z], 1);
        } else if (word < wake_or_death_thr) {       // dies
            kind[i] = EMPTY;
            clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
            count_event(&events[(i64)DORMANT_DIED * s.nz + z], 1);
        }
    }
    OL_END_FOR_EACH_VOXEL
}
