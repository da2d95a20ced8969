// The Philox stream itself, per voxel: out[4 i + w] = word w of voxel i's draw.
// Used by the conformance tests to compare the random numbers of every backend.
#include "lattice.cuh"
#include "philox.cuh"

OL_ENTRY draw_words(u32 *out, u32 step, u32 stream, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    OL_FOR_EACH_VOXEL(s)
    const Draw d = voxel_draw(global_index(s, z, y, x), step, stream, s);
    const i64 i = at(s, z, y, x);
    for (int w = 0; w < 4; ++w) out[4 * i + w] = d.w[w];
    OL_END_FOR_EACH_VOXEL
}
