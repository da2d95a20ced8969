// Shared by every CUDA kernel source: integer types, the slab geometry, and the
// OL_ENTRY / OL_FOR_EACH_VOXEL pair that makes one kernel text either a CUDA
// __global__ kernel (under nvcc / NVRTC) or, in the host harness built with a C++
// compiler (-DOL_HOST_HARNESS), a plain loop over every voxel.  The per-voxel
// functions are OL_HD (__host__ __device__), so the GPU and the harness run the
// same code.  Compile CUDA with -fmad=false and the harness with
// -ffp-contract=off: no fused multiply-add, no fast-math, anywhere.
#pragma once

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef long long i64;

#ifdef __CUDACC__
#define OL_HD __host__ __device__ __forceinline__
#define OL_ENTRY extern "C" __global__ void
#else
#define OL_HD static inline
#define OL_ENTRY extern "C" void
#endif

// Counters and maxima that many threads update: atomics on the GPU, plain updates
// in the (sequential) host harness.  Functions, not macros, so every argument is
// evaluated exactly once.
OL_HD void count_event(i64 *counter, i64 n) {
#ifdef __CUDACC__
    atomicAdd((unsigned long long *)counter, (unsigned long long)n);
#else
    *counter += n;
#endif
}

OL_HD void keep_max(u32 *value, u32 bits) {
#ifdef __CUDACC__
    atomicMax(value, bits);
#else
    if (bits > *value) *value = bits;
#endif
}

// The local slab and where it sits in the global lattice; key of the Philox stream.
struct Slab {
    int nz, ny, nx;
    i64 z0;
    int ny_g, nx_g;
    u32 lattice, k0, k1;
    i64 nvox;
};

// Every entry point ends with these parameters, in this order.
// (kernels/process.py reads both parameter macros of this file: the names are the ones
// the Numba twins take, and kernels/cuda.py's slab_args fills them by name.)
#define OL_SLAB_PARAMS int nz, int ny, int nx, i64 z0, int ny_global, int nx_global, u32 lattice_id, u32 k0, u32 k1
#define OL_SLAB {nz, ny, nx, z0, ny_global, nx_global, lattice_id, k0, k1, (i64)nz * ny * nx}

#ifdef __CUDACC__
#define OL_FOR_EACH_VOXEL(s)                                                   \
    const i64 i_ = (i64)blockIdx.x * blockDim.x + threadIdx.x;                 \
    if (i_ < (s).nvox) {                                                       \
        const int x = (int)(i_ % (s).nx);                                      \
        const int y = (int)((i_ / (s).nx) % (s).ny);                           \
        const int z = (int)(i_ / ((i64)(s).nx * (s).ny));
#else
#define OL_FOR_EACH_VOXEL(s)                                                   \
    for (i64 i_ = 0; i_ < (s).nvox; ++i_) {                                    \
        const int x = (int)(i_ % (s).nx);                                      \
        const int y = (int)((i_ / (s).nx) % (s).ny);                           \
        const int z = (int)(i_ / ((i64)(s).nx * (s).ny));
#endif
#define OL_END_FOR_EACH_VOXEL }

OL_HD i64 at(const Slab &s, int z, int y, int x) { return ((i64)z * s.ny + y) * s.nx + x; }

// Bits of a non-negative float: their unsigned order is the float order, so a
// maximum of residuals can be taken with an integer atomicMax.
OL_HD u32 float_bits(float f) {
    union { float f; u32 u; } v;
    v.f = f;
    return v.u;
}

// Active tiles: the resolve/apply passes of division and displacement visit only
// TILE^3 blocks near a cell that chose a daughter site this step (see kernels/tiles.py).
// On the GPU one thread block serves one tile of the list; in the host harness a
// loop does.  `tiles` holds tile indices ((tz * tiles_y) + ty) * tiles_x + tx.
constexpr int TILE = 8;
constexpr int TILE_VOXELS = TILE * TILE * TILE;
#define OL_TILE_PARAMS const int *tiles, int n_tiles
OL_HD int tiles_along(int n) { return (n + TILE - 1) / TILE; }

#ifdef __CUDACC__
#define OL_TILE_LOOP_                                                          \
    {                                                                          \
        const int t_ = tiles[blockIdx.x];                                      \
        const int v_ = threadIdx.x;
#else
#define OL_TILE_LOOP_                                                          \
    for (int k_ = 0; k_ < n_tiles * TILE_VOXELS; ++k_) {                       \
        const int t_ = tiles[k_ / TILE_VOXELS];                                \
        const int v_ = k_ % TILE_VOXELS;
#endif
#define OL_FOR_EACH_TILE_VOXEL(s)                                              \
    OL_TILE_LOOP_                                                              \
        const int ty_n_ = tiles_along((s).ny), tx_n_ = tiles_along((s).nx);    \
        const int z = (t_ / (ty_n_ * tx_n_)) * TILE + v_ / (TILE * TILE);      \
        const int y = ((t_ / tx_n_) % ty_n_) * TILE + (v_ / TILE) % TILE;      \
        const int x = (t_ % tx_n_) * TILE + v_ % TILE;                         \
        if (z < (s).nz && y < (s).ny && x < (s).nx) {
#define OL_END_FOR_EACH_TILE_VOXEL }}

OL_HD int tile_of(const Slab &s, int z, int y, int x) {
    return ((z / TILE) * tiles_along(s.ny) + y / TILE) * tiles_along(s.nx) + x / TILE;
}

// A proposal at (z, y, x) can change voxels up to REACH away (a daughter one voxel,
// an escaping cell two): mark every tile the (2 REACH + 1)^3 box overlaps.  With
// TILE > 2 REACH that is the tiles of the box's corners (1 to 8 tiles).
constexpr int REACH = 2;
OL_HD void mark_tiles_near(u8 *tile_flags, const Slab &s, int z, int y, int x) {
    const int zs[2] = {z - REACH > 0 ? z - REACH : 0, z + REACH < s.nz - 1 ? z + REACH : s.nz - 1};
    const int ys[2] = {y - REACH > 0 ? y - REACH : 0, y + REACH < s.ny - 1 ? y + REACH : s.ny - 1};
    const int xs[2] = {x - REACH > 0 ? x - REACH : 0, x + REACH < s.nx - 1 ? x + REACH : s.nx - 1};
    for (int a = 0; a < 2; ++a)
        for (int b = 0; b < 2; ++b)
            for (int c = 0; c < 2; ++c) tile_flags[tile_of(s, zs[a], ys[b], xs[c])] = 1;
}

// One thread (GPU) or iteration (host harness) per index 0 <= k < n: for passes that
// are not one-per-voxel, such as scans along lattice lines.
#ifdef __CUDACC__
#define OL_FOR_EACH_INDEX(k, n)                                                \
    {                                                                          \
        const i64 k = (i64)blockIdx.x * blockDim.x + threadIdx.x;              \
        if (k < (n)) {
#else
#define OL_FOR_EACH_INDEX(k, n)                                                \
    for (i64 k = 0; k < (n); ++k) {                                            \
        {
#endif
#define OL_END_FOR_EACH_INDEX }}
