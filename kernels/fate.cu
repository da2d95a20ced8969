// Cell fate (hypoxic necrosis, apoptosis): the CUDA twin of kernels/fate.py.
// Event codes and STREAM_APOPTOSIS are generated from the process declaration there.
#include "lattice.cuh"
#include "philox.cuh"

OL_HD void decide_fate_voxel(u8 *kind, const u8 *organ, u8 *traits, u16 *clock, u8 *hypoxia,
                             u16 *lineage, u8 *motile, u8 *vacancy, const float *oxygen,
                             float necrosis_mmHg, int necrosis_steps, const u32 *apoptosis_thr, u32 step,
                             i64 *events, const Slab &s, int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if (!is_live(k)) return;
    const bool tumour = k == TUMOR;
    int h = hypoxia[i];
    h = oxygen[i] < necrosis_mmHg ? (h + 1 < 255 ? h + 1 : 255) : 0;
    hypoxia[i] = (u8)h;
    if (h >= necrosis_steps) {
        kind[i] = NECROTIC;
        const u16 keep = lineage[i];
        clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
        lineage[i] = keep;
        count_event(&events[(i64)(tumour ? NECROSIS_TUMOR : NECROSIS_FUNCTIONAL) * s.nz + z], 1);
        return;
    }
    const u32 r = voxel_draw(global_index(s, z, y, x), step, STREAM_APOPTOSIS, s).w[0];
    const int level = traits[APOPTOSIS_RESISTANCE * s.nvox + i];
    if (r < apoptosis_thr[table_row(k, organ[i]) * TRAIT_LEVELS + level]) {
        kind[i] = EMPTY;
        clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
        if (!tumour) vacancy[i] = 1;
        count_event(&events[(i64)(tumour ? APOPTOSIS_TUMOR : APOPTOSIS_FUNCTIONAL) * s.nz + z], 1);
    }
}

OL_ENTRY decide_fate(u8 *kind, const u8 *organ, u8 *traits, u16 *clock, u8 *hypoxia,
                     u16 *lineage, u8 *motile, u8 *vacancy, const float *oxygen, float necrosis_mmHg,
                     int necrosis_steps,
                     const u32 *apoptosis_thr, u32 step, i64 *events, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    decide_fate_voxel(kind, organ, traits, clock, hypoxia, lineage, motile, vacancy, oxygen, necrosis_mmHg,
                      necrosis_steps, apoptosis_thr, step, events, s, z, y, x);
    OL_END_FOR_EACH_VOXEL
}
