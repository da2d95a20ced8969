// Perfusion and lumen along connected endothelium: the CUDA twin of kernels/perfusion.py.
#include "lattice.cuh"

// Seed: a blood vessel voxel on a lattice face is perfused; every other voxel is not.
OL_ENTRY seed_perfusion(const u8 *kind, u8 *perfused, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const bool face = z == 0 || y == 0 || x == 0 || z == s.nz - 1 || y == s.ny - 1 || x == s.nx - 1;
    perfused[at(s, z, y, x)] = (kind[at(s, z, y, x)] == VESSEL && face) ? 1 : 0;
    OL_END_FOR_EACH_VOXEL
}

// One thread per lattice line along `axis` (0: z, 1: y, 2: x): a forward and a backward
// scan turn every voxel of kind `source_kind` whose predecessor carries `value` in `mark`
// into `target_kind` marked `value`; `changed` is set when any voxel changed.
OL_ENTRY flood_lines(u8 *kind, u8 *mark, int axis, u8 source_kind, u8 target_kind, u8 value,
                     u32 *changed, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    const int len = axis == 0 ? s.nz : axis == 1 ? s.ny : s.nx;
    const i64 stride = axis == 0 ? (i64)s.ny * s.nx : axis == 1 ? s.nx : 1;
    const i64 lines = s.nvox / len;
    OL_FOR_EACH_INDEX(line, lines)
    // the line's first voxel: its coordinate along `axis` is 0
    const i64 base = axis == 0 ? line : axis == 1 ? (line / s.nx) * s.ny * s.nx + line % s.nx
                                                  : line * s.nx;
    u32 grew = 0;
    for (int pass = 0; pass < 2; ++pass) {
        const int first = pass == 0 ? 1 : len - 2, last = pass == 0 ? len : -1, step = pass == 0 ? 1 : -1;
        for (int t = first; t != last; t += step) {
            const i64 i = base + t * stride;
            if (kind[i] == source_kind && mark[i] != value && mark[i - step * stride] == value) {
                kind[i] = target_kind;
                mark[i] = value;
                grew = 1;
            }
        }
    }
    if (grew) keep_max(changed, 1u);
    OL_END_FOR_EACH_INDEX
}
