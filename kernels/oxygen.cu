// Oxygen relaxation, one red-black colour per launch: the CUDA twin of
// kernels/oxygen.py (same rule, same summation order, see its docstring).
#include "relaxation.cuh"

// One voxel of the colour: perfused vessels hold p_vessel, every other voxel relaxes
// toward a Σ p_nb; returns |correction|.
OL_HD float relax_oxygen_voxel(float *p, const u8 *kind, const u8 *organ, const u8 *perfused,
                               const float *coeff, int n_labels, float vessel_mmHg, float omega,
                               const Slab &s, int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (k == VESSEL && perfused[i]) {
        p[i] = vessel_mmHg;
        return 0.0f;
    }
    return over_relax(p, i, coeff[k * n_labels + organ[i]] * neighbour_sum(p, s, z, y, x), omega);
}

OL_ENTRY relax_colour(float *p, const u8 *kind, const u8 *organ, const u8 *perfused,
                      const float *coeff, int n_labels, float vessel_mmHg, float omega,
                      int colour, u32 *residual_bits, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    if (in_colour(s, colour, z, y, x)) {
        const float c = relax_oxygen_voxel(p, kind, organ, perfused, coeff, n_labels, vessel_mmHg,
                                           omega, s, z, y, x);
        keep_max(residual_bits, float_bits(c));
    }
    OL_END_FOR_EACH_VOXEL
}
