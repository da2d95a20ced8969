// VEGF relaxation, one red-black colour per launch: the CUDA twin of kernels/vegf.py.
#include "relaxation.cuh"

// Hypoxic live cells secrete: s_i = h^2 S(kind) / D where pO2 < the hypoxia threshold.
OL_HD float vegf_source(u8 k, float oxygen, const float *source, float hypoxic_mmHg) {
    return (is_live(k) && oxygen < hypoxic_mmHg) ? source[k] : 0.0f;
}

OL_ENTRY relax_vegf_colour(float *c, const u8 *kind, const float *oxygen, const float *coeff,
                           const float *source, float hypoxic_mmHg, float omega, int colour,
                           u32 *residual_bits, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    if (in_colour(s, colour, z, y, x)) {
        const i64 i = at(s, z, y, x);
        const u8 k = kind[i];
        const float target = coeff[k] * (neighbour_sum(c, s, z, y, x) +
                                         vegf_source(k, oxygen[i], source, hypoxic_mmHg));
        keep_max(residual_bits, float_bits(over_relax(c, i, target, omega)));
    }
    OL_END_FOR_EACH_VOXEL
}
