// numpy's pairwise summation, reproduced operation for operation so sums, means and standard
// deviations are bit-identical to numpy.add.reduce on a contiguous float64 array.
#pragma once

#include <cstddef>

#include "common.hpp"

namespace ek {

constexpr std::size_t kPairwiseBlock = 128;  // numpy's PW_BLOCKSIZE

// sum of f(a[i]) for i < n in numpy's order.
template <class F>
double pairwise_sum(const double *a, std::size_t n, const F &f) {
    if (n < 8) {
        double res = -0.0;
        for (std::size_t i = 0; i < n; ++i) {
            res += f(a[i]);
        }
        return res;
    }
    if (n <= kPairwiseBlock) {
        double r[8];
        for (std::size_t j = 0; j < 8; ++j) {
            r[j] = f(a[j]);
        }
        std::size_t i = 8;
        for (; i < n - n % 8; i += 8) {
            for (std::size_t j = 0; j < 8; ++j) {
                r[j] += f(a[i + j]);
            }
        }
        double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) {
            res += f(a[i]);
        }
        return res;
    }
    std::size_t n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum(a, n2, f) + pairwise_sum(a + n2, n - n2, f);
}

struct Identity {
    double operator()(double v) const { return v; }
};

struct Square {
    double operator()(double v) const { return v * v; }
};

struct SquaredDeviation {
    double mean;
    double operator()(double v) const {
        const double d = v - mean;
        return d * d;
    }
};

// numpy's x.mean() and x.std() (ddof 0).
struct MeanStd {
    double mean;
    double std;
};

MeanStd mean_std(const double *a, std::size_t n);

}  // namespace ek
