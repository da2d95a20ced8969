// Lysis of necrotic debris: the CUDA twin of kernels/lysis.py (rule in its docstring).
// DEBRIS_LYSED and STREAM_LYSIS are generated from the process declaration there.
#include "lattice.cuh"
#include "philox.cuh"

OL_ENTRY lyse_debris(u8 *kind, u16 *lineage, u32 lysis_thr, u32 step, i64 *events,
                     OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (kind[i] == NECROTIC &&
        voxel_draw(global_index(s, z, y, x), step, STREAM_LYSIS, s).w[0] < lysis_thr) {
        kind[i] = EMPTY;
        lineage[i] = 0;
        count_event(&events[(i64)DEBRIS_LYSED * s.nz + z], 1);
    }
    OL_END_FOR_EACH_VOXEL
}
