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
#define OL_COUNT(ptr, n) atomicAdd((unsigned long long *)(ptr), (unsigned long long)(n))
#define OL_MAX_BITS(ptr, bits) atomicMax((ptr), (bits))
#else
#define OL_HD static inline
#define OL_ENTRY extern "C" void
#define OL_COUNT(ptr, n) (*(ptr) += (n))
#define OL_MAX_BITS(ptr, bits) (*(ptr) = (*(ptr) > (bits) ? *(ptr) : (bits)))
#endif

// The local slab and where it sits in the global lattice; key of the Philox stream.
struct Slab {
    int nz, ny, nx;
    i64 z0;
    int ny_g, nx_g;
    u32 lattice, k0, k1;
    i64 nvox;
};

// Every entry point ends with these parameters, in this order.
#define OL_SLAB_PARAMS int nz, int ny, int nx, i64 z0, int ny_g, int nx_g, u32 lattice, u32 k0, u32 k1
#define OL_SLAB {nz, ny, nx, z0, ny_g, nx_g, lattice, k0, k1, (i64)nz * ny * nx}

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
