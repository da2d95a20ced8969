// The propose -> resolve primitive: the CUDA twin of kernels/claims.py.
#pragma once
#include "lattice.cuh"
#include "philox.cuh"

// Direction (1..6) of the k-th set bit of the 6-bit mask, k drawn from word; 0 if none.
OL_HD int pick_direction(u32 mask, u32 word) {
    u32 n = 0;
    for (int d = 1; d <= 6; ++d) n += (mask >> (d - 1)) & 1u;
    if (n == 0) return 0;
    int k = choose(word, n);
    for (int d = 1; d <= 6; ++d) {
        if ((mask >> (d - 1)) & 1u) {
            if (k == 0) return d;
            --k;
        }
    }
    return 0;
}

// Direction (1..6) of the proposer aimed at (z, y, x) with the highest
// (Philox word 1, global index); 0 if no proposal points here.
OL_HD int strongest_claimant(const u8 *intent, int shift, const Slab &s, int z, int y, int x,
                             u32 step, u32 stream) {
    int best = 0;
    u32 best_key = 0;
    i64 best_g = -1;
    for (int d = 1; d <= 6; ++d) {
        int zz, yy, xx;
        if (!neighbour(s, z, y, x, d, zz, yy, xx)) continue;
        if (((intent[at(s, zz, yy, xx)] >> shift) & LOW3) != opposite(d)) continue;
        const i64 g = global_index(s, zz, yy, xx);
        const u32 key = voxel_draw(g, step, stream, s).w[1];
        if (best == 0 || key > best_key || (key == best_key && g > best_g)) {
            best = d;
            best_key = key;
            best_g = g;
        }
    }
    return best;
}
