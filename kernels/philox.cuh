// Philox4x32-10 (Salmon et al. 2011): the CUDA twin of kernels/philox.py.
// Counter (global voxel index low, step, stream | lattice << 8, index high), key = seed.
// Stream ids are declared by each process (kernels/process.py) and generated into its source.
#pragma once
#include "cuda_common.cuh"

struct Draw {
    u32 w[4];
};

OL_HD Draw philox4x32(u32 c0, u32 c1, u32 c2, u32 c3, u32 k0, u32 k1) {
    for (int round = 0; round < 10; ++round) {
        const u64 p0 = (u64)0xD2511F53u * c0;
        const u64 p1 = (u64)0xCD9E8D57u * c2;
        const u32 n0 = (u32)(p1 >> 32) ^ c1 ^ k0;
        const u32 n2 = (u32)(p0 >> 32) ^ c3 ^ k1;
        c0 = n0;
        c1 = (u32)p1;
        c2 = n2;
        c3 = (u32)p0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    Draw d = {{c0, c1, c2, c3}};
    return d;
}

OL_HD Draw voxel_draw(i64 g, u32 step, u32 stream, const Slab &s) {
    return philox4x32((u32)g, step, stream | (s.lattice << 8), (u32)((u64)g >> 32), s.k0, s.k1);
}

// One of n options from a 32-bit word: (word * n) >> 32.
OL_HD int choose(u32 word, u32 n) { return (int)(((u64)word * n) >> 32); }
