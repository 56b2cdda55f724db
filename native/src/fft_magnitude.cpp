// fft_magnitude: |rfft(signal)| and its frequencies, like numpy.fft.rfft and rfftfreq.
#include <cmath>
#include <utility>
#include <vector>

#include "common.hpp"
#include "fft.hpp"

namespace ek {
namespace {

using fft::cpx;

// sqrt(a^2 + b^2) without overflow or underflow; not std::hypot, whose glibc 2.35 symbol version
// would keep the library off older boards (deploy/arm/README.md).
double scaled_hypot(double a, double b) {
    a = std::fabs(a);
    b = std::fabs(b);
    if (a < b) {
        std::swap(a, b);
    }
    if (a == 0 || !std::isfinite(a)) {
        return a;
    }
    const double r = b / a;
    return a * std::sqrt(1.0 + r * r);
}

// mag[k] = |re[k] + i im[k]|, in place over re: vectorised square roots, or the scaled form for the
// whole array when a square would underflow or overflow.
EK_CLONES void magnitudes(double *re, const double *im, std::size_t n) {
    bool plain = true;
    for (std::size_t k = 0; k < n; ++k) {
        const double s = re[k] * re[k] + im[k] * im[k];
        plain &= (s >= 1e-290 && s <= 1e290) || (re[k] == 0 && im[k] == 0);
    }
    if (plain) {
        for (std::size_t k = 0; k < n; ++k) {
            re[k] = std::sqrt(re[k] * re[k] + im[k] * im[k]);
        }
    } else {
        for (std::size_t k = 0; k < n; ++k) {
            re[k] = scaled_hypot(re[k], im[k]);
        }
    }
}

// Even n: the n/2-point complex DFT of (x[0] + i x[1], x[2] + i x[3], ...), then one split pass.
// Writes the spectrum's real parts to re and imaginary parts to im (h + 1 each).
void even_length(const double *x, std::size_t n, double *re, double *im) {
    const std::size_t h = n / 2;
    const fft::Roots roots(n);
    const fft::Plan plan(h, roots, 2);
    const fft::Workspace buffer(h + plan.workspace());  // the data, then the transform's work area
    cpx *z = buffer.get();
    for (std::size_t k = 0; k < h; ++k) {
        z[k] = {x[2 * k], x[2 * k + 1]};
    }
    plan.forward(z, z + h);
    re[0] = z[0].re + z[0].im;  // the DC and Nyquist bins are real
    im[0] = 0.0;
    re[h] = z[0].re - z[0].im;
    im[h] = 0.0;
    fft::RootWalk w(roots, 1);  // W_n^k
    for (std::size_t k = 1; k < h; ++k) {
        w.next();
        const cpx a = z[k];
        const cpx b = z[h - k];  // conj(b) pairs with a
        const cpx even{0.5 * (a.re + b.re), 0.5 * (a.im - b.im)};
        const cpx odd{0.5 * (a.im + b.im), -0.5 * (a.re - b.re)};
        const cpx tw = w.value();
        re[k] = even.re + tw.re * odd.re - tw.im * odd.im;
        im[k] = even.im + tw.re * odd.im + tw.im * odd.re;
    }
}

void odd_length(const double *x, std::size_t n, double *re, double *im) {
    const fft::Plan plan(n);
    const fft::Workspace buffer(n + plan.workspace());
    cpx *z = buffer.get();
    for (std::size_t k = 0; k < n; ++k) {
        z[k] = {x[k], 0.0};
    }
    plan.forward(z, z + n);
    for (std::size_t k = 0; k <= n / 2; ++k) {
        re[k] = z[k].re;
        im[k] = z[k].im;
    }
}

struct NonFinite {
    bool nan, inf;
};

EK_CLONES bool all_finite(const double *x, std::size_t n) {
    unsigned bad = 0;
    for (std::size_t i = 0; i < n; ++i) {
        bad |= !(x[i] - x[i] == 0.0);  // NaN - NaN and inf - inf are NaN
    }
    return bad == 0;
}

NonFinite scan(const double *x, std::size_t n) {
    if (all_finite(x, n)) {
        return {false, false};
    }
    bool nan = false;
    for (std::size_t i = 0; i < n; ++i) {
        nan |= x[i] != x[i];
    }
    return {nan, !nan};
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
        } else {
            // The spectrum's imaginary parts go where the frequencies will, until magnitudes are taken.
            (n % 2 == 0 ? ek::even_length : ek::odd_length)(signal, n, magnitude, frequency);
            ek::magnitudes(magnitude, frequency, bins);
        }
        const double step = 1.0 / (static_cast<double>(n) * spacing);  // numpy.fft.rfftfreq
        for (size_t k = 0; k < bins; ++k) {
            frequency[k] = static_cast<double>(k) * step;
        }
    });
}
