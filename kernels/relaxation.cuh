// Quasi-steady relaxation shared by every diffusing field: the CUDA twin of
// kernels/relaxation.py (same rule, same summation order; see its docstring).
#pragma once
#include "lattice.cuh"

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

// f <- f + omega (target - f); returns |target - f|.
OL_HD float over_relax(float *f, i64 i, float target, float omega) {
    const float old = f[i];
    const float correction = target - old;
    f[i] = old + omega * correction;
    return correction < 0.0f ? -correction : correction;
}

OL_HD bool in_colour(const Slab &s, int colour, int z, int y, int x) {
    return ((colour + s.z0 + z + y + x) & 1) == 0;
}
