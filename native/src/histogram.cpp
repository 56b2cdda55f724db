// histogram: numpy.histogram with equal bins, reproduced step by step (range, linspace edges,
// the bin index and its one-ulp corrections), so counts and edges are identical to numpy's.
#include <cmath>

#include "common.hpp"

namespace ek {
namespace {

struct Range {
    double lo, hi;
};

Range autodetect(const double *x, std::size_t n) {
    double lo = x[0];
    double hi = x[0];
    bool nan = false;
    for (std::size_t i = 0; i < n; ++i) {
        nan |= x[i] != x[i];
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (nan || !std::isfinite(lo) || !std::isfinite(hi)) {
        throw Failure(EK_DOMAIN_ERROR, "signal",
                      "autodetected range of [%g, %g] is not finite: the signal holds NaN or infinity; "
                      "give 'range'",
                      nan ? kNaN : lo, nan ? kNaN : hi);
    }
    return {lo, hi};
}

Range outer_edges(const double *x, std::size_t n, bool has_range, Range given) {
    if (has_range) {
        require(std::isfinite(given.lo) && std::isfinite(given.hi), "range", "must be finite");
        require(given.lo <= given.hi, "range", "max must be larger than min");
    }
    Range r = has_range ? given : autodetect(x, n);
    if (r.lo == r.hi) {
        r.lo -= 0.5;
        r.hi += 0.5;
    }
    if (!std::isfinite(r.hi - r.lo)) {
        throw Failure(has_range ? EK_INVALID_ARGUMENT : EK_DOMAIN_ERROR, has_range ? "range" : "signal",
                      "range width %g - %g overflows", r.hi, r.lo);
    }
    return r;
}

// numpy.linspace(lo, hi, bins + 1).
void linspace(Range r, std::size_t bins, double *edges) {
    const double div = static_cast<double>(bins);
    const double delta = r.hi - r.lo;
    const double step = delta / div;
    for (std::size_t i = 0; i <= bins; ++i) {
        const double y = static_cast<double>(i);
        edges[i] = (step == 0 ? (y / div) * delta : y * step) + r.lo;
    }
    edges[bins] = r.hi;
    for (std::size_t i = 0; i < bins; ++i) {
        if (!(edges[i] < edges[i + 1])) {
            throw Failure(EK_DOMAIN_ERROR, "bins",
                          "too many bins for the range [%.17g, %.17g]: cannot create %zu finite-sized bins",
                          r.lo, r.hi, bins);
        }
    }
}

// numpy's bin of v in [lo, hi], corrected against the edges.
EK_INLINE std::size_t bin_of(double v, Range r, double norm, const double *edges, std::size_t bins) {
    auto index = static_cast<std::size_t>(((v - r.lo) / (r.hi - r.lo)) * norm);
    if (index == bins) {
        --index;
    }
    if (v < edges[index]) {
        --index;
    }
    if (v >= edges[index + 1] && index != bins - 1) {
        ++index;
    }
    return index;
}

void count(const double *x, std::size_t n, Range r, const double *edges, std::size_t bins, int64_t *counts) {
    for (std::size_t b = 0; b < bins; ++b) {
        counts[b] = 0;
    }
    const double norm = static_cast<double>(bins);
    for (std::size_t i = 0; i < n; ++i) {
        const double v = x[i];
        if (v >= r.lo && v <= r.hi) {  // false for NaN
            ++counts[bin_of(v, r, norm, edges, bins)];
        }
    }
}

}  // namespace
}  // namespace ek

extern "C" int ek_histogram(const double *signal, size_t n, size_t bins, int has_range, double lo, double hi,
                            int64_t *counts, double *edges, ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(signal, "signal");
        ek::require_ptr(counts, "counts");
        ek::require_ptr(edges, "edges");
        ek::require(n >= 1, "signal", "needs at least 1 sample");
        ek::require(bins >= 1, "bins", "must be at least 1");
        const ek::Range r = ek::outer_edges(signal, n, has_range != 0, {lo, hi});
        ek::linspace(r, bins, edges);
        ek::count(signal, n, r, edges, bins, counts);
    });
}
