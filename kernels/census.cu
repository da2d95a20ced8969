// Census: the CUDA twin of kernels/census.py.  Integer counts per z plane of voxels
// by (kind, organ), of hypoxic live cells by kind, of perfused vessel voxels and of
// motile tumour cells, and
// the bits of the plane's largest VEGF; the host sums (and maximises over) the planes.
#include "lattice.cuh"

OL_ENTRY take_census(const u8 *kind, const u8 *organ, const float *oxygen, const u8 *perfused,
                     const float *vegf, const u8 *motile, float hypoxic_mmHg, int n_labels,
                     i64 *by_kind_organ, i64 *hypoxic, i64 *perfused_count, u32 *vegf_max_bits,
                     i64 *motile_count, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    count_event(&by_kind_organ[((i64)z * N_KINDS + k) * n_labels + organ[i]], 1);
    if (is_live(k) && oxygen[i] < hypoxic_mmHg) count_event(&hypoxic[(i64)z * N_KINDS + k], 1);
    if (perfused[i]) count_event(&perfused_count[z], 1);
    if (motile[i]) count_event(&motile_count[z], 1);
    keep_max(&vegf_max_bits[z], float_bits(vegf[i]));   // VEGF is never negative
    OL_END_FOR_EACH_VOXEL
}
