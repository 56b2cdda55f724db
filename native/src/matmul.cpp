// matrix_multiply: a packed, cache-blocked GEMM around a 4 x 8 register-tile micro-kernel.
//
// Only this file lets the compiler fuse multiply-adds: the x86-64-v3 clone and aarch64 get FMA
// instructions, as BLAS does. The result may therefore differ in the last bits between CPUs.
#pragma GCC optimize("fp-contract=fast")

#include <algorithm>
#include <vector>

#include "common.hpp"
#include "vec.hpp"

namespace ek {
namespace {

constexpr std::size_t MR = 4;    // rows of the register tile
constexpr std::size_t NR = 8;    // columns of the register tile (two v4d)
constexpr std::size_t KC = 256;  // depth of a packed block (A panel + B panel stay in L1/L2)
constexpr std::size_t MC = 96;   // rows of A packed at once (L2)
constexpr std::size_t NC = 2048; // columns of B packed at once

struct Dims {
    std::size_t m, k, n;
};

// Rows [i0, i0 + mc) x columns [p0, p0 + kc) of A as MR-row panels, column by column, zero padded.
EK_INLINE void pack_a(const double *a, const Dims &d, std::size_t i0, std::size_t mc, std::size_t p0,
                      std::size_t kc, double *out) {
    for (std::size_t ir = 0; ir < mc; ir += MR) {
        const std::size_t rows = std::min(MR, mc - ir);
        for (std::size_t p = 0; p < kc; ++p) {
            for (std::size_t r = 0; r < MR; ++r) {
                *out++ = r < rows ? a[(i0 + ir + r) * d.k + p0 + p] : 0.0;
            }
        }
    }
}

// Rows [p0, p0 + kc) x columns [j0, j0 + nc) of B as NR-column panels, row by row, zero padded.
EK_INLINE void pack_b(const double *b, const Dims &d, std::size_t p0, std::size_t kc, std::size_t j0,
                      std::size_t nc, double *out) {
    for (std::size_t jr = 0; jr < nc; jr += NR) {
        const std::size_t cols = std::min(NR, nc - jr);
        for (std::size_t p = 0; p < kc; ++p) {
            const double *row = b + (p0 + p) * d.n + j0 + jr;
            for (std::size_t c = 0; c < NR; ++c) {
                *out++ = c < cols ? row[c] : 0.0;
            }
        }
    }
}

// The MR x NR tile of C at c (row stride ldc): written (first block of k) or accumulated.
EK_INLINE void micro_kernel(std::size_t kc, const double *ap, const double *bp, double *c, std::size_t ldc,
                            std::size_t rows, std::size_t cols, bool accumulate) {
    v4d acc[MR][2] = {};
    for (std::size_t p = 0; p < kc; ++p) {
        const v4d b0 = load4(bp);
        const v4d b1 = load4(bp + 4);
        for (std::size_t r = 0; r < MR; ++r) {
            const v4d av = splat4(ap[r]);
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
        }
        ap += MR;
        bp += NR;
    }
    double tile[MR][NR];
    for (std::size_t r = 0; r < MR; ++r) {
        store4(tile[r], acc[r][0]);
        store4(tile[r] + 4, acc[r][1]);
    }
    for (std::size_t r = 0; r < rows; ++r) {
        double *crow = c + r * ldc;
        for (std::size_t col = 0; col < cols; ++col) {
            crow[col] = accumulate ? crow[col] + tile[r][col] : tile[r][col];
        }
    }
}

EK_CLONES void gemm_blocked(const double *a, const double *b, double *c, const Dims &d, double *abuf,
                            double *bbuf) {
    for (std::size_t j0 = 0; j0 < d.n; j0 += NC) {
        const std::size_t nc = std::min(NC, d.n - j0);
        for (std::size_t p0 = 0; p0 < d.k; p0 += KC) {
            const std::size_t kc = std::min(KC, d.k - p0);
            pack_b(b, d, p0, kc, j0, nc, bbuf);
            for (std::size_t i0 = 0; i0 < d.m; i0 += MC) {
                const std::size_t mc = std::min(MC, d.m - i0);
                pack_a(a, d, i0, mc, p0, kc, abuf);
                for (std::size_t jr = 0; jr < nc; jr += NR) {
                    for (std::size_t ir = 0; ir < mc; ir += MR) {
                        micro_kernel(kc, abuf + ir * kc, bbuf + jr * kc, c + (i0 + ir) * d.n + j0 + jr, d.n,
                                     std::min(MR, mc - ir), std::min(NR, nc - jr), p0 > 0);
                    }
                }
            }
        }
    }
}

// Small products: row of C += a[i][p] * row p of B, no packing.
EK_CLONES void gemm_small(const double *__restrict a, const double *__restrict b, double *__restrict c,
                          const Dims &d) {
    for (std::size_t i = 0; i < d.m; ++i) {
        double *crow = c + i * d.n;
        for (std::size_t j = 0; j < d.n; ++j) {
            crow[j] = 0.0;
        }
        for (std::size_t p = 0; p < d.k; ++p) {
            const double av = a[i * d.k + p];
            const double *brow = b + p * d.n;
            for (std::size_t j = 0; j < d.n; ++j) {
                crow[j] += av * brow[j];
            }
        }
    }
}

constexpr std::size_t round_up(std::size_t x, std::size_t to) { return (x + to - 1) / to * to; }

}  // namespace
}  // namespace ek

extern "C" int ek_matrix_multiply(const double *a, const double *b, double *out, size_t m, size_t k, size_t n,
                                  ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(a, "matrix_a");
        ek::require_ptr(b, "matrix_b");
        ek::require_ptr(out, "out");
        ek::require(m >= 1 && k >= 1, "matrix_a", "needs at least 1 row and 1 column");
        ek::require(n >= 1, "matrix_b", "needs at least 1 column");
        const ek::Dims d{m, k, n};
        if (m * k * n <= 16 * 16 * 16 || n < 4) {
            ek::gemm_small(a, b, out, d);
            return;
        }
        const size_t kc = std::min(ek::KC, k);
        std::vector<double> abuf(ek::round_up(std::min(ek::MC, m), ek::MR) * kc);
        std::vector<double> bbuf(ek::round_up(std::min(ek::NC, n), ek::NR) * kc);
        ek::gemm_blocked(a, b, out, d, abuf.data(), bbuf.data());
    });
}
