// Portable 4-wide double vectors (GCC vector extension): AVX2 registers in the x86-64-v3 clones,
// pairs of SSE2 / NEON registers elsewhere.
//
// Loads, stores and broadcasts are macros, not inline functions: a helper function is compiled
// for the baseline ISA before it is inlined into an x86-64-v3 clone, and a broadcast lowered for
// SSE2 costs two shuffles in the hottest loop.
#pragma once

namespace ek {

typedef double v4d __attribute__((vector_size(32)));
typedef double v4d_unaligned __attribute__((vector_size(32), aligned(8), may_alias));

}  // namespace ek

#define EK_LOAD4(p) (*reinterpret_cast<const ::ek::v4d_unaligned *>(p))
#define EK_STORE4(p, v) (*reinterpret_cast<::ek::v4d_unaligned *>(p) = (v))
#define EK_SPLAT4(x) (::ek::v4d{(x), (x), (x), (x)})
