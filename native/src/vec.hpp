// Portable 4-wide double vectors (GCC vector extension): AVX2 registers in the x86-64-v3 clones,
// pairs of SSE2 / NEON registers elsewhere.
#pragma once

#include <cstddef>
#include <cstring>

#include "common.hpp"

namespace ek {

typedef double v4d __attribute__((vector_size(32)));

EK_INLINE v4d load4(const double *p) {
    v4d v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

EK_INLINE void store4(double *p, v4d v) { std::memcpy(p, &v, sizeof v); }

EK_INLINE v4d splat4(double x) { return v4d{x, x, x, x}; }

}  // namespace ek
