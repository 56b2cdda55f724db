// fft_magnitude: |rfft(signal)| and its frequencies, like numpy.fft.rfft and rfftfreq.
#include <cmath>
#include <vector>

#include "common.hpp"
#include "fft.hpp"

namespace ek {
namespace {

using fft::cpx;

EK_INLINE double magnitude(cpx z) {
    const double s = z.re * z.re + z.im * z.im;
    return std::isfinite(s) && s >= 1e-290 ? std::sqrt(s) : std::hypot(z.re, z.im);
}

// Even n: the n/2-point complex DFT of (x[0] + i x[1], x[2] + i x[3], ...), then one split pass.
void even_length(const double *x, std::size_t n, double *mag) {
    const std::size_t h = n / 2;
    std::vector<cpx> z(h);
    for (std::size_t k = 0; k < h; ++k) {
        z[k] = {x[2 * k], x[2 * k + 1]};
    }
    fft::forward(z.data(), h);
    const fft::Twiddles w(n);
    for (std::size_t k = 0; k <= h; ++k) {
        const cpx a = z[k % h];
        const cpx b = z[(h - k) % h];  // conj(b) pairs with a
        const cpx even{0.5 * (a.re + b.re), 0.5 * (a.im - b.im)};
        const cpx odd{0.5 * (a.im + b.im), -0.5 * (a.re - b.re)};
        const cpx tw = w(k);
        mag[k] = magnitude({even.re + tw.re * odd.re - tw.im * odd.im, even.im + tw.re * odd.im + tw.im * odd.re});
    }
}

void odd_length(const double *x, std::size_t n, double *mag) {
    std::vector<cpx> z(n);
    for (std::size_t k = 0; k < n; ++k) {
        z[k] = {x[k], 0.0};
    }
    fft::forward(z.data(), n);
    for (std::size_t k = 0; k <= n / 2; ++k) {
        mag[k] = magnitude(z[k]);
    }
}

struct NonFinite {
    bool nan, inf;
};

EK_CLONES NonFinite scan(const double *x, std::size_t n) {
    bool nan = false;
    bool inf = false;
    for (std::size_t i = 0; i < n; ++i) {
        nan |= x[i] != x[i];
        inf |= std::fabs(x[i]) == HUGE_VAL;
    }
    return {nan, inf};
}

}  // namespace
}  // namespace ek

extern "C" int ek_fft_magnitude(const double *signal, size_t n, double spacing, double *magnitude,
                                double *frequency, ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(signal, "signal");
        ek::require_ptr(magnitude, "magnitude");
        ek::require_ptr(frequency, "frequency");
        ek::require(n >= 2, "signal", "needs at least 2 samples");
        ek::require(std::isfinite(spacing) && spacing > 0, "sample_rate", "must be finite and > 0");
        const size_t bins = n / 2 + 1;
        const ek::NonFinite bad = ek::scan(signal, n);
        if (bad.nan || bad.inf) {
            // Specified, not left to the algorithm: NaN anywhere makes every bin NaN, otherwise an
            // infinite sample makes every bin infinite.
            for (size_t k = 0; k < bins; ++k) {
                magnitude[k] = bad.nan ? ek::kNaN : HUGE_VAL;
            }
        } else if (n % 2 == 0) {
            ek::even_length(signal, n, magnitude);
        } else {
            ek::odd_length(signal, n, magnitude);
        }
        const double step = 1.0 / (static_cast<double>(n) * spacing);  // numpy.fft.rfftfreq
        for (size_t k = 0; k < bins; ++k) {
            frequency[k] = static_cast<double>(k) * step;
        }
    });
}
