// Oxygen relaxation, one red-black colour per launch: the CUDA twin of
// kernels/oxygen.py (same rule, same summation order, see its docstring).
#include "lattice.cuh"

// Sum of the six face neighbours in the order -x, +x, -y, +y, -z, +z; a neighbour
// beyond a lattice face mirrors the voxel itself (zero flux).
OL_HD float neighbour_sum(const float *p, const Slab &s, int z, int y, int x) {
    const float c = p[at(s, z, y, x)];
    float sum = x > 0 ? p[at(s, z, y, x - 1)] : c;
    sum = sum + (x < s.nx - 1 ? p[at(s, z, y, x + 1)] : c);
    sum = sum + (y > 0 ? p[at(s, z, y - 1, x)] : c);
    sum = sum + (y < s.ny - 1 ? p[at(s, z, y + 1, x)] : c);
    sum = sum + (z > 0 ? p[at(s, z - 1, y, x)] : c);
    sum = sum + (z < s.nz - 1 ? p[at(s, z + 1, y, x)] : c);
    return sum;
}

// p <- p + omega (a Σ p_nb - p) on one voxel of the colour; returns |correction|.
OL_HD float relax_voxel(float *p, const u8 *kind, const u8 *organ, const u8 *perfused,
                        const float *coeff, int n_labels, float vessel_mmHg, float omega,
                        const Slab &s, int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (k == VESSEL && perfused[i]) {
        p[i] = vessel_mmHg;
        return 0.0f;
    }
    const float old = p[i];
    const float target = coeff[k * n_labels + organ[i]] * neighbour_sum(p, s, z, y, x);
    const float correction = target - old;
    p[i] = old + omega * correction;
    return correction < 0.0f ? -correction : correction;
}

OL_ENTRY relax_colour(float *p, const u8 *kind, const u8 *organ, const u8 *perfused,
                      const float *coeff,
                      int n_labels, float vessel_mmHg, float omega, int colour,
                      u32 *residual_bits, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    if (((colour + s.z0 + z + y + x) & 1) == 0) {
        const float c = relax_voxel(p, kind, organ, perfused, coeff, n_labels, vessel_mmHg, omega,
                                    s, z, y, x);
        OL_MAX_BITS(residual_bits, float_bits(c));
    }
    OL_END_FOR_EACH_VOXEL
}
