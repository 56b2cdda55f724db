// matrix_multiply: a cache-blocked GEMM around a 4 x 8 register-tile micro-kernel (B packed, A read
// in place).
//
// Only this file lets the compiler fuse multiply-adds: the x86-64-v3 clone and aarch64 get FMA
// instructions, as BLAS does. The result may therefore differ in the last bits between CPUs.
#pragma GCC optimize("fp-contract=fast")

#include <algorithm>
#include <memory>

#include "common.hpp"
#include "vec.hpp"

namespace ek {
namespace {

constexpr std::size_t MR = 6;    // rows of the register tile
constexpr std::size_t NR = 8;    // columns of the register tile (two v4d)
constexpr std::size_t KC = 256;  // depth of a packed block of B (one NR panel stays in L1)
constexpr std::size_t MC = 96;   // rows of A swept per B panel (they stay in L2)
constexpr std::size_t NC = 2048; // columns of B packed at once

struct Dims {
    std::size_t m, k, n;
};

// Rows [p0, p0 + kc) x columns [j0, j0 + nc) of B as NR-column panels, row by row, zero padded.
EK_INLINE void pack_b(const double *b, const Dims &d, std::size_t p0, std::size_t kc, std::size_t j0,
                      std::size_t nc, double *out) {
    for (std::size_t jr = 0; jr < nc; jr += NR) {
        const std::size_t cols = std::min(NR, nc - jr);
        const double *row = b + p0 * d.n + j0 + jr;
        if (cols == NR) {
            for (std::size_t p = 0; p < kc; ++p, row += d.n, out += NR) {
                EK_STORE4(out, EK_LOAD4(row));
                EK_STORE4(out + 4, EK_LOAD4(row + 4));
            }
            continue;
        }
        for (std::size_t p = 0; p < kc; ++p, row += d.n) {
            for (std::size_t c = 0; c < NR; ++c) {
                *out++ = c < cols ? row[c] : 0.0;
            }
        }
    }
}

// The rows x cols (<= MR x NR) tile of C at c += or = the tile of products.
EK_INLINE void store_tile(const v4d (&acc)[MR][2], double *c, std::size_t ldc, std::size_t rows, std::size_t cols,
                          bool accumulate) {
    if (cols == NR) {
        for (std::size_t r = 0; r < rows; ++r) {
            double *crow = c + r * ldc;
            EK_STORE4(crow, accumulate ? EK_LOAD4(crow) + acc[r][0] : acc[r][0]);
            EK_STORE4(crow + 4, accumulate ? EK_LOAD4(crow + 4) + acc[r][1] : acc[r][1]);
        }
        return;
    }
    double tile[MR][NR];
    for (std::size_t r = 0; r < rows; ++r) {
        EK_STORE4(tile[r], acc[r][0]);
        EK_STORE4(tile[r] + 4, acc[r][1]);
        double *crow = c + r * ldc;
        for (std::size_t col = 0; col < cols; ++col) {
            crow[col] = accumulate ? crow[col] + tile[r][col] : tile[r][col];
        }
    }
}

// C tile (rows <= MR) = A rows (read in place, row stride lda) x packed B panel, over kc.
// Missing rows read row 0 again; their products are never stored.
EK_INLINE void micro_kernel(std::size_t kc, const double *a, std::size_t lda, std::size_t rows, const double *bp,
                            double *c, std::size_t ldc, std::size_t cols, bool accumulate) {
    const double *ar[MR];
    for (std::size_t r = 0; r < MR; ++r) {
        ar[r] = a + (r < rows ? r : 0) * lda;
    }
    v4d acc[MR][2];
    for (std::size_t r = 0; r < MR; ++r) {  // not "= {}": GCC zero-fills that with a slow rep stos
        acc[r][0] = acc[r][1] = v4d{};
    }
    for (std::size_t p = 0; p < kc; ++p, bp += NR) {
        const v4d b0 = EK_LOAD4(bp);
        const v4d b1 = EK_LOAD4(bp + 4);
        for (std::size_t r = 0; r < MR; ++r) {
            const v4d av = EK_SPLAT4(ar[r][p]);
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
        }
    }
    store_tile(acc, c, ldc, rows, cols, accumulate);
}

EK_CLONES void gemm_blocked(const double *a, const double *b, double *c, const Dims &d, double *bbuf) {
    for (std::size_t j0 = 0; j0 < d.n; j0 += NC) {
        const std::size_t nc = std::min(NC, d.n - j0);
        for (std::size_t p0 = 0; p0 < d.k; p0 += KC) {
            const std::size_t kc = std::min(KC, d.k - p0);
            pack_b(b, d, p0, kc, j0, nc, bbuf);
            for (std::size_t i0 = 0; i0 < d.m; i0 += MC) {
                const std::size_t mc = std::min(MC, d.m - i0);
                for (std::size_t jr = 0; jr < nc; jr += NR) {
                    for (std::size_t ir = 0; ir < mc; ir += MR) {
                        micro_kernel(kc, a + (i0 + ir) * d.k + p0, d.k, std::min(MR, mc - ir), bbuf + jr * kc,
                                     c + (i0 + ir) * d.n + j0 + jr, d.n, std::min(NR, nc - jr), p0 > 0);
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
        // Not std::vector: zero-filling a buffer that packing overwrites costs a 64 x 64 product 5%.
        const std::unique_ptr<double[]> bbuf(new double[ek::round_up(std::min(ek::NC, n), ek::NR) * std::min(ek::KC, k)]);
        ek::gemm_blocked(a, b, out, d, bbuf.get());
    });
}
