// Chemotherapy (the kill of cycling cells): the CUDA twin of kernels/chemotherapy.py (rule
// in its docstring).  CHEMO_KILLED_* and STREAM_CHEMO_KILL are generated from the process
// declaration there.  The drug field itself is relaxed by the generic solver (field.cu).
#include "lattice.cuh"
#include "philox.cuh"

// The clock advance propose_division makes this step: the same float32 steps as
// division.cu's advance_cycle (floor(rate * f(pO2)), the clock saturating at CLOCK_FULL).
OL_HD int chemo_clock_advance(u16 clock, float rate, float oxygen, float threshold,
                              float inv_span) {
    float f = (oxygen - threshold) * inv_span;
    f = f > 0.0f ? f : 0.0f;
    f = f < 1.0f ? f : 1.0f;
    const i64 c = (i64)clock + (i64)(rate * f);
    return (int)((c < CLOCK_FULL ? c : CLOCK_FULL) - (i64)clock);
}

OL_HD void kill_cycling_cell(u8 *kind, const u8 *organ, u8 *traits, u16 *clock, u8 *hypoxia,
                             u16 *lineage, u8 *motile, u8 *vacancy, const float *oxygen,
                             const float *drug, const float *cycle_rate,
                             float o2_prolif_threshold, float o2_prolif_inv_span,
                             float chemo_ec50, const float *chemo_resistance, float chemo_scale,
                             const u32 *chemo_kill_thr, int chemo_bins, u32 step, i64 *events,
                             const Slab &s, int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if ((k != TUMOR && k != FUNCTIONAL) || motile[i] != 0) return;   // dormant: no cycling
    const float c = drug[i];
    if (!(c > 0.0f)) return;
    const float rate = cycle_rate[table_row(k, organ[i]) * TRAIT_LEVELS +
                                  traits[PROLIFERATION * s.nvox + i]];
    // a tumour cell's own clock (full: arrested); a functional cell's from 0
    const u16 start = k == TUMOR ? clock[i] : (u16)0;
    const int advance = chemo_clock_advance(start, rate, oxygen[i], o2_prolif_threshold,
                                            o2_prolif_inv_span);
    if (advance <= 0) return;            // not cycling: hypoxic, or waiting with a full clock
    const float e = c / (c + chemo_ec50);
    const float hazard = (e * chemo_resistance[traits[CHEMO_RESISTANCE * s.nvox + i]]) *
                         (float)advance;
    const float q = hazard * chemo_scale;
    const int b = q >= (float)(chemo_bins - 1) ? chemo_bins - 1 : (int)q;
    const u32 word = voxel_draw(global_index(s, z, y, x), step, STREAM_CHEMO_KILL, s).w[0];
    if (word < chemo_kill_thr[b]) {
        kind[i] = EMPTY;
        clear_cell(i, s.nvox, traits, clock, hypoxia, lineage, motile);
        if (k == TUMOR) {
            count_event(&events[(i64)CHEMO_KILLED_TUMOR * s.nz + z], 1);
        } else {
            vacancy[i] = 1;
            count_event(&events[(i64)CHEMO_KILLED_FUNCTIONAL * s.nz + z], 1);
        }
    }
}

OL_ENTRY kill_cycling_cells(u8 *kind, const u8 *organ, u8 *traits, u16 *clock, u8 *hypoxia,
                            u16 *lineage, u8 *motile, u8 *vacancy, const float *oxygen,
                            const float *drug, const float *cycle_rate,
                            float o2_prolif_threshold, float o2_prolif_inv_span,
                            float chemo_ec50, const float *chemo_resistance, float chemo_scale,
                            const u32 *chemo_kill_thr, int chemo_bins, u32 step, i64 *events,
                            OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    kill_cycling_cell(kind, organ, traits, clock, hypoxia, lineage, motile, vacancy, oxygen, drug,
                      cycle_rate, o2_prolif_threshold, o2_prolif_inv_span, chemo_ec50,
                      chemo_resistance, chemo_scale, chemo_kill_thr, chemo_bins, step, events,
                      s, z, y, x);
    OL_END_FOR_EACH_VOXEL
}
