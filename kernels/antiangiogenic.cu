// Anti-angiogenic therapy (pruning of immature vessels): the CUDA twin of
// kernels/antiangiogenic.py (rule in its docstring).  VESSEL_PRUNED and STREAM_PRUNE are
// generated from the process declaration there.
#include "lattice.cuh"
#include "philox.cuh"

OL_ENTRY prune_immature_vessels(u8 *kind, u8 *perfused, u8 *lumen, u16 *sprout_age, u8 *trail,
                                u16 *vessel_threat, u32 prune_thr, u32 step, i64 *events,
                                OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (k == TIP || k == SPROUT || (k == VESSEL && sprout_age[i] > 0)) {
        const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_PRUNE, s).w[0];
        if (word < prune_thr) {
            kind[i] = EMPTY;
            perfused[i] = 0;
            lumen[i] = 0;
            sprout_age[i] = 0;
            trail[i] = 0;
            vessel_threat[i] = 0;
            count_event(&events[(i64)VESSEL_PRUNED * s.nz + z], 1);
        }
    }
    OL_END_FOR_EACH_VOXEL
}
