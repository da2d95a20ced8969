// Every diffusing field (oxygen, VEGF, ...), one red-black colour of one SOR sweep per
// launch: the CUDA twin of kernels/field.py (same rule, same float32 operations in the
// same order, same stopping rule; see its docstring).
#include "lattice.cuh"

// Flags of a field (kernels/field.py has the same constants).
constexpr int FIELD_VESSEL_VALUE = 1;       // Dirichlet value on perfused vessel voxels
constexpr int FIELD_SOURCE = 2;             // a source table
constexpr int FIELD_SOURCE_HYPOXIC = 4;     // ... only in live cells whose pO2 < threshold
constexpr int FIELD_MICHAELIS_MENTEN = 8;   // saturable uptake Vmax f / (Km + f)

// A field's rule: tables [kind * n_labels + organ] and scalars.
struct FieldRule {
    const float *coeff, *source, *vmax;
    int n_labels, flags;
    float vessel_value, secrete_below, km, omega;
};

// Sum of the six face neighbours in the order -x, +x, -y, +y, -z, +z; a neighbour
// beyond a lattice face mirrors the voxel itself (zero flux).
OL_HD float neighbour_sum(const float *f, const Slab &s, int z, int y, int x) {
    const float c = f[at(s, z, y, x)];
    float sum = x > 0 ? f[at(s, z, y, x - 1)] : c;
    sum = sum + (x < s.nx - 1 ? f[at(s, z, y, x + 1)] : c);
    sum = sum + (y > 0 ? f[at(s, z, y - 1, x)] : c);
    sum = sum + (y < s.ny - 1 ? f[at(s, z, y + 1, x)] : c);
    sum = sum + (z > 0 ? f[at(s, z - 1, y, x)] : c);
    sum = sum + (z < s.nz - 1 ? f[at(s, z + 1, y, x)] : c);
    return sum;
}

// f <- f + omega (target - f); returns the bits of |target - f| (sign cleared, so a
// correction of -0.0 counts as +0.0, as abs() does in Numba).
OL_HD u32 over_relax(float *f, i64 i, float target, float omega) {
    const float old = f[i];
    const float correction = target - old;
    f[i] = old + omega * correction;
    return float_bits(correction) & 0x7fffffffu;
}

// One voxel of the colour; returns the bits of |correction| (0 on a Dirichlet voxel).
OL_HD u32 relax_field_voxel(float *f, const u8 *kind, const u8 *organ, const u8 *perfused,
                            const float *oxygen, const FieldRule &r, const Slab &s,
                            int z, int y, int x) {
    const i64 i = at(s, z, y, x);
    const u8 k = kind[i];
    if ((r.flags & FIELD_VESSEL_VALUE) && k == VESSEL && perfused[i]) {
        f[i] = r.vessel_value;
        return 0u;
    }
    const int row = k * r.n_labels + (r.n_labels > 1 ? (int)organ[i] : 0);
    float a = r.coeff[row];
    if (r.flags & FIELD_MICHAELIS_MENTEN) {      // lagged linearisation about f_old
        const float old = f[i];
        const float t = r.vmax[row] / (r.km + (old > 0.0f ? old : 0.0f));
        a = a / (1.0f + a * t);
    }
    float total = neighbour_sum(f, s, z, y, x);
    if (r.flags & FIELD_SOURCE) {
        const bool secretes = !(r.flags & FIELD_SOURCE_HYPOXIC) ||
                              (is_live(k) && oxygen[i] < r.secrete_below);
        total = total + (secretes ? r.source[row] : 0.0f);
    }
    return over_relax(f, i, a * total, r.omega);
}

#ifdef __CUDACC__
// Largest value of the block (valid in thread 0): warp shuffles, then one warp over the
// warps' maxima in shared memory.  Every thread of the block must call it.
__device__ __forceinline__ u32 block_max(u32 v) {
    __shared__ u32 warp_max[32];
    for (int offset = 16; offset > 0; offset >>= 1) {
        const u32 other = __shfl_down_sync(0xffffffffu, v, offset);
        v = other > v ? other : v;
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)((blockDim.x + 31) >> 5) ? warp_max[lane] : 0u;
        for (int offset = 16; offset > 0; offset >>= 1) {
            const u32 other = __shfl_down_sync(0xffffffffu, v, offset);
            v = other > v ? other : v;
        }
    }
    return v;
}
#endif

// Sweep `sweep` (1, 2, ...), colour `colour`: a no-op once sweep - 1 has converged
// (residuals[sweep - 1] <= tolerance, as float bits); otherwise relax every voxel of the
// colour and fold the largest |correction| of the planes [owned_lo, owned_hi) (an MPI
// slab's own planes; all of them on a whole lattice) into residuals[sweep] (one
// atomicMax per block on the GPU).  On the GPU, thread t of the grid visits the colour's voxels
// t, t + stride, ... (row-major over (z, y), two voxels apart along x); the host harness
// loops over them in order.
OL_ENTRY relax_field_colour(float *f, const u8 *kind, const u8 *organ, const u8 *perfused,
                            const float *oxygen, const float *coeff, const float *source,
                            const float *vmax, int n_labels, int flags, float vessel_value,
                            float secrete_below, float km, float omega, int colour,
                            u32 *residuals, int sweep, u32 tolerance_bits, int owned_lo,
                            int owned_hi, OL_SLAB_PARAMS) {
    const Slab s = OL_SLAB;
    if (residuals[sweep - 1] <= tolerance_bits) return;          // uniform across the grid
    const FieldRule r = {coeff, source, vmax, n_labels, flags, vessel_value, secrete_below,
                         km, omega};
    const int parity = (int)((colour + s.z0) & 1);   // x of the colour: (parity + z + y) & 1
    u32 worst = 0u;
#ifdef __CUDACC__
    const int half = (s.nx + 1) / 2;                 // colour voxels per row, rounded up
    const int stride = (int)(gridDim.x * blockDim.x);
    const int t = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    // k = t, t + stride, ... as (z, y, m) with k = (z ny + y) half + m, stepped by adding
    // the stride's digits (no division per voxel).
    const int step_m = stride % half, step_rows = stride / half;
    const int step_y = step_rows % s.ny, step_z = step_rows / s.ny;
    int m = t % half, y = (t / half) % s.ny, z = (t / half) / s.ny;
    while (z < s.nz) {
        const int x = 2 * m + ((parity + z + y) & 1);
        if (x < s.nx) {
            const u32 c = relax_field_voxel(f, kind, organ, perfused, oxygen, r, s, z, y, x);
            if (z >= owned_lo && z < owned_hi) worst = c > worst ? c : worst;
        }
        m += step_m;
        int carry = 0;
        if (m >= half) { m -= half; carry = 1; }
        y += step_y + carry;
        if (y >= s.ny) { y -= s.ny; z += 1; }
        z += step_z;
    }
    worst = block_max(worst);
    if (threadIdx.x == 0) keep_max(&residuals[sweep], worst);
#else
    for (int z = 0; z < s.nz; ++z)
        for (int y = 0; y < s.ny; ++y)
            for (int x = (parity + z + y) & 1; x < s.nx; x += 2) {
                const u32 c = relax_field_voxel(f, kind, organ, perfused, oxygen, r, s, z, y, x);
                if (z >= owned_lo && z < owned_hi) worst = c > worst ? c : worst;
            }
    keep_max(&residuals[sweep], worst);
#endif
}
