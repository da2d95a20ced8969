// Radiotherapy (one fraction): the CUDA twin of kernels/radiation.py (rule in its docstring).
// Event codes and STREAM_RADIATION are generated from the process declaration there.
#include "lattice.cuh"
#include "philox.cuh"

OL_HD void irradiate_voxel(u8 *kind, const u8 *organ, u8 *traits, u16 *clock, u8 *hypoxia,
                           u16 *lineage, u8 *motile, const float *oxygen,
                           const u32 *radiation_kill_thr, int radiation_rows, int radiation_bins,
                           float radiation_bins_per_mmHg, int dose_index, int box_z0,
                           int box_z1, int box_y0, int box_y1, int box_x0, int box_x1,
                           int sphere, float centre_z, float centre_y, float centre_x,
                           float radius2, u32 step, i64 *events, const Slab &s, int z, int y,
                           int x) {
    const i64 gz = s.z0 + z;
    if (gz < box_z0 || gz >= box_z1 || y < box_y0 || y >= box_y1 || x < box_x0 || x >= box_x1)
        return;
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (k != TUMOR && k != FUNCTIONAL && k != DORMANT) return;
    if (sphere != 0) {
        const float dz = (float)gz + 0.5f - centre_z;
        const float dy = (float)y + 0.5f - centre_y;
        const float dx = (float)x + 0.5f - centre_x;
        const float d2z = dz * dz;           // the order of the sum is the Numba twin's
        const float d2y = dy * dy;
        const float d2x = dx * dx;
        if ((d2z + d2y) + d2x > radius2) return;
    }
    const float q = oxygen[i] * radiation_bins_per_mmHg;     // p / bin width, exact
    int b = 0;
    if (q >= (float)(radiation_bins - 1)) b = radiation_bins - 1;
    else if (q > 0.0f) b = (int)q;
    const int row = k == FUNCTIONAL ? (int)organ[i] : 0;      // dormant: the tumour's row
    const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_RADIATION, s).w[0];
    if (word < radiation_kill_thr[((i64)dose_index * radiation_rows + row) * radiation_bins + b]) {
        kind[i] = NECROTIC;
        const u16 keep = lineage[i];
        clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
        lineage[i] = keep;
        const int event = k == TUMOR ? IRRADIATED_TUMOR_KILLED
                        : k == FUNCTIONAL ? IRRADIATED_FUNCTIONAL_KILLED : IRRADIATED_DORMANT_KILLED;
        count_event(&events[(i64)event * s.nz + z], 1);
    }
}

OL_ENTRY irradiate(u8 *kind, const u8 *organ, u8 *traits, u16 *clock, u8 *hypoxia,
                   u16 *lineage, u8 *motile, const float *oxygen, const u32 *radiation_kill_thr,
                   int radiation_rows, int radiation_bins, float radiation_bins_per_mmHg,
                   int dose_index, int box_z0, int box_z1, int box_y0, int box_y1, int box_x0,
                   int box_x1, int sphere, float centre_z, float centre_y, float centre_x,
                   float radius2, u32 step, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    irradiate_voxel(kind, organ, traits, clock, hypoxia, lineage, motile, oxygen,
                    radiation_kill_thr, radiation_rows, radiation_bins, radiation_bins_per_mmHg,
                    dose_index, box_z0, box_z1, box_y0, box_y1, box_x0, box_x1, sphere, centre_z,
                    centre_y, centre_x, radius2, step, events, s, z, y, x);
    OL_END_FOR_EACH_VOXEL
}
