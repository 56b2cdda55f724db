// stats and zscore_anomalies: numpy's mean and std, reproduced bit for bit.
#include <cmath>

#include "common.hpp"
#include "pairwise.hpp"

namespace ek {

MeanStd mean_std(const double *a, std::size_t n) {
    const double count = static_cast<double>(n);
    const double mean = pairwise_sum(a, n, Identity{}) / count;
    const double var = pairwise_sum(a, n, SquaredDeviation{mean}) / count;
    return {mean, std::sqrt(var)};
}

namespace {

struct MinMax {
    double min;
    double max;
};

// numpy's min and max: NaN as soon as one sample is NaN.
EK_CLONES MinMax min_max(const double *a, std::size_t n) {
    double lo = a[0];
    double hi = a[0];
    bool nan = false;
    for (std::size_t i = 0; i < n; ++i) {
        const double v = a[i];
        nan |= v != v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    return nan ? MinMax{kNaN, kNaN} : MinMax{lo, hi};
}

EK_CLONES std::size_t exceeding(const double *a, std::size_t n, double mean, double std, double threshold,
                                int64_t *indices) {
    std::size_t count = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (std::fabs((a[i] - mean) / std) > threshold) {
            indices[count++] = static_cast<int64_t>(i);
        }
    }
    return count;
}

}  // namespace
}  // namespace ek

extern "C" int ek_stats(const double *signal, size_t n, ek_stats_result *out, ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(signal, "signal");
        ek::require_ptr(out, "out");
        ek::require(n >= 1, "signal", "needs at least 1 sample");
        const ek::MeanStd ms = ek::mean_std(signal, n);
        const ek::MinMax mm = ek::min_max(signal, n);
        out->count = static_cast<int64_t>(n);
        out->mean = ms.mean;
        out->std = ms.std;
        out->min = mm.min;
        out->max = mm.max;
        out->rms = std::sqrt(ek::pairwise_sum(signal, n, ek::Square{}) / static_cast<double>(n));
    });
}

extern "C" int ek_zscore_anomalies(const double *signal, size_t n, double threshold, int64_t *indices,
                                   ek_zscore_result *out, ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(signal, "signal");
        ek::require_ptr(indices, "indices");
        ek::require_ptr(out, "out");
        ek::require(n >= 2, "signal", "needs at least 2 samples");
        ek::require(threshold > 0, "threshold", "must be > 0");
        const ek::MeanStd ms = ek::mean_std(signal, n);
        out->mean = ms.mean;
        out->std = ms.std;
        // A constant signal has no anomalies (the z-score is 0 / 0 there).
        out->count = ms.std == 0 ? 0 : ek::exceeding(signal, n, ms.mean, ms.std, threshold, indices);
    });
}
