// fir_filter and moving_average.
#include <cmath>
#include <vector>

#include "common.hpp"
#include "vec.hpp"

namespace ek {
namespace {

// y[i] for one i, the taps that reach back before the start of the signal left out.
double fir_at(const double *x, std::size_t i, const double *taps, std::size_t t) {
    const std::size_t last = i < t - 1 ? i : t - 1;
    double acc = 0.0;
    for (std::size_t j = 0; j <= last; ++j) {
        acc += taps[j] * x[i - j];
    }
    return acc;
}

// Every output once all taps are inside the signal, 16 at a time in registers (four independent
// sums hide the latency of the additions).
EK_CLONES void fir_full(const double *x, std::size_t n, const double *taps, std::size_t t, double *y) {
    std::size_t i = t - 1;
    for (; i + 16 <= n; i += 16) {
        v4d acc[4] = {};
        for (std::size_t j = 0; j < t; ++j) {
            const v4d c = EK_SPLAT4(taps[j]);
            const double *xj = x + i - j;
            for (std::size_t u = 0; u < 4; ++u) {
                acc[u] += c * EK_LOAD4(xj + 4 * u);
            }
        }
        for (std::size_t u = 0; u < 4; ++u) {
            EK_STORE4(y + i + 4 * u, acc[u]);
        }
    }
    for (; i < n; ++i) {
        y[i] = fir_at(x, i, taps, t);
    }
}

// Window sum of the finite samples, compensated (Neumaier), with NaN / +inf / -inf counted apart
// so that one infinity does not poison every later window.
class WindowSum {
  public:
    void add(double v, int sign) {
        if (std::isfinite(v)) {
            accumulate(sign > 0 ? v : -v);
        } else if (v != v) {
            nans_ += sign;
        } else if (v > 0) {
            pos_inf_ += sign;
        } else {
            neg_inf_ += sign;
        }
    }
    double mean(double window) const {
        if (nans_ > 0 || (pos_inf_ > 0 && neg_inf_ > 0)) {
            return kNaN;
        }
        if (pos_inf_ > 0 || neg_inf_ > 0) {
            return pos_inf_ > 0 ? HUGE_VAL : -HUGE_VAL;
        }
        return (sum_ + compensation_) / window;
    }
    bool finite() const { return std::isfinite(sum_) && std::isfinite(compensation_); }

  private:
    void accumulate(double v) {
        const double t = sum_ + v;
        compensation_ += std::fabs(sum_) >= std::fabs(v) ? (sum_ - t) + v : (v - t) + sum_;
        sum_ = t;
    }
    double sum_ = 0.0;
    double compensation_ = 0.0;
    long nans_ = 0;
    long pos_inf_ = 0;
    long neg_inf_ = 0;
};

// Short windows: every window summed directly, 16 windows at a time in registers. NaN and
// infinities then behave as in any sum, like the reference's.
constexpr std::size_t kDirectWindow = 64;

double window_mean(const double *x, std::size_t w) {
    double acc = 0.0;
    for (std::size_t j = 0; j < w; ++j) {
        acc += x[j];
    }
    return acc / static_cast<double>(w);
}

EK_CLONES void moving_average_direct(const double *x, std::size_t n, std::size_t w, double *y) {
    const std::size_t windows = n - w + 1;
    const v4d window = EK_SPLAT4(static_cast<double>(w));
    std::size_t i = 0;
    for (; i + 16 <= windows; i += 16) {
        v4d acc[4] = {};
        for (std::size_t j = 0; j < w; ++j) {
            for (std::size_t u = 0; u < 4; ++u) {
                acc[u] += EK_LOAD4(x + i + j + 4 * u);
            }
        }
        for (std::size_t u = 0; u < 4; ++u) {
            EK_STORE4(y + i + 4 * u, acc[u] / window);
        }
    }
    for (; i < windows; ++i) {
        y[i] = window_mean(x + i, w);
    }
}

// Long windows: one running sum.
void moving_average_running(const double *x, std::size_t n, std::size_t w, double *y) {
    WindowSum s;
    for (std::size_t i = 0; i < w; ++i) {
        s.add(x[i], 1);
    }
    const double window = static_cast<double>(w);
    y[0] = s.mean(window);
    for (std::size_t i = 1; i + w <= n; ++i) {
        s.add(x[i + w - 1], 1);
        s.add(x[i - 1], -1);
        if (!s.finite()) {  // a finite overflow: start the window afresh, exactly
            s = WindowSum{};
            for (std::size_t j = i; j < i + w; ++j) {
                s.add(x[j], 1);
            }
        }
        y[i] = s.mean(window);
    }
}

}  // namespace
}  // namespace ek

extern "C" int ek_fir_filter(const double *signal, size_t n, const double *taps, size_t t, double *out,
                             ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(signal, "signal");
        ek::require_ptr(taps, "taps");
        ek::require_ptr(out, "out");
        ek::require(n >= 1, "signal", "needs at least 1 sample");
        ek::require(t >= 1, "taps", "needs at least 1 tap");
        const size_t reach = t < n ? t : n;  // taps past the signal's length never touch it
        for (size_t i = 0; i < reach - 1; ++i) {
            out[i] = ek::fir_at(signal, i, taps, reach);
        }
        ek::fir_full(signal, n, taps, reach, out);
    });
}

extern "C" int ek_moving_average(const double *signal, size_t n, size_t window, double *out, ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(signal, "signal");
        ek::require_ptr(out, "out");
        ek::require(n >= 1, "signal", "needs at least 1 sample");
        ek::require(window >= 1 && window <= n, "window", "must be between 1 and the signal's length");
        if (window <= ek::kDirectWindow) {
            ek::moving_average_direct(signal, n, window, out);
        } else {
            ek::moving_average_running(signal, n, window, out);
        }
    });
}
