// Vessel regression: the CUDA twin of kernels/regression.py (rule in its docstring).
#include "lattice.cuh"

OL_HD int tumour_neighbours(const u8 *kind, const Slab &s, int z, int y, int x) {
    int n = 0, zz, yy, xx;
    for (int d = 1; d <= 6; ++d)
        if (neighbour(s, z, y, x, d, zz, yy, xx) && kind[at(s, zz, yy, xx)] == TUMOR) ++n;
    return n;
}

OL_ENTRY regress_vessels(u8 *kind, u8 *perfused, const u8 *lumen, u16 *vessel_threat,
                         int regression_compressing, int regression_steps, i64 *events,
                         OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    if (kind[i] == VESSEL) {
        const bool threatened = (perfused[i] == 0 && lumen[i] == 0) ||
                                tumour_neighbours(kind, s, z, y, x) >= regression_compressing;
        if (!threatened) {
            vessel_threat[i] = 0;
        } else {
            const int t = vessel_threat[i] < 65535 ? vessel_threat[i] + 1 : 65535;
            if (t >= regression_steps) {
                kind[i] = EMPTY;
                perfused[i] = 0;
                vessel_threat[i] = 0;
                count_event(&events[(i64)VESSEL_REGRESSED * s.nz + z], 1);
            } else {
                vessel_threat[i] = (u16)t;
            }
        }
    }
    OL_END_FOR_EACH_VOXEL
}
