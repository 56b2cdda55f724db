// The FFT engine behind fft_magnitude (see fft.hpp).
#include "fft.hpp"

#include <cmath>
#include <utility>

#include "common.hpp"

namespace ek::fft {
namespace {

constexpr double kTwoPi = 6.283185307179586476925286766559;

EK_INLINE cpx operator+(cpx a, cpx b) { return {a.re + b.re, a.im + b.im}; }
EK_INLINE cpx operator-(cpx a, cpx b) { return {a.re - b.re, a.im - b.im}; }
EK_INLINE cpx operator*(cpx a, cpx b) { return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re}; }
EK_INLINE cpx conj(cpx a) { return {a.re, -a.im}; }
EK_INLINE cpx times_minus_i(cpx a) { return {a.im, -a.re}; }

cpx unit(std::size_t t, std::size_t n) {
    const double angle = kTwoPi * static_cast<double>(t) / static_cast<double>(n);
    return {std::cos(angle), -std::sin(angle)};
}

std::vector<std::size_t> radices(std::size_t n) {
    std::vector<std::size_t> out;
    while (n % 4 == 0) {
        out.push_back(4);
        n /= 4;
    }
    if (n % 2 == 0) {
        out.push_back(2);
        n /= 2;
    }
    for (std::size_t p = 3; p * p <= n; p += 2) {
        while (n % p == 0) {
            out.push_back(p);
            n /= p;
        }
    }
    if (n > 1) {
        out.push_back(n);
    }
    return out;
}

bool smooth(const std::vector<std::size_t> &factors) {
    for (std::size_t p : factors) {
        if (p > kMaxRadix) {
            return false;
        }
    }
    return true;
}

// One Stockham stage of radix 4: src holds n-point sub-transforms with stride s.
EK_CLONES void stage4(const cpx *src, cpx *dst, std::size_t n, std::size_t s, const cpx *w) {
    const std::size_t m = n / 4;
    for (std::size_t j = 0; j < m; ++j) {
        const cpx w1 = w[j * s];
        const cpx w2 = w[2 * j * s];
        const cpx w3 = w[3 * j * s];
        for (std::size_t q = 0; q < s; ++q) {
            const cpx a0 = src[q + s * j];
            const cpx a1 = src[q + s * (j + m)];
            const cpx a2 = src[q + s * (j + 2 * m)];
            const cpx a3 = src[q + s * (j + 3 * m)];
            const cpx e0 = a0 + a2;
            const cpx e1 = a0 - a2;
            const cpx o0 = a1 + a3;
            const cpx o1 = times_minus_i(a1 - a3);
            cpx *d = dst + q + s * 4 * j;
            d[0] = e0 + o0;
            d[s] = (e1 + o1) * w1;
            d[2 * s] = (e0 - o0) * w2;
            d[3 * s] = (e1 - o1) * w3;
        }
    }
}

EK_CLONES void stage2(const cpx *src, cpx *dst, std::size_t n, std::size_t s, const cpx *w) {
    const std::size_t m = n / 2;
    for (std::size_t j = 0; j < m; ++j) {
        const cpx w1 = w[j * s];
        for (std::size_t q = 0; q < s; ++q) {
            const cpx a0 = src[q + s * j];
            const cpx a1 = src[q + s * (j + m)];
            cpx *d = dst + q + s * 2 * j;
            d[0] = a0 + a1;
            d[s] = (a0 - a1) * w1;
        }
    }
}

// Any radix p: a p-point DFT by definition, O(p^2) per butterfly.
void stage_generic(const cpx *src, cpx *dst, std::size_t n, std::size_t s, std::size_t p, const cpx *w,
                   std::size_t total, std::vector<cpx> &a) {
    const std::size_t m = n / p;
    const std::size_t root = total / p;  // w[u * root] = exp(-2 pi i u / p)
    for (std::size_t j = 0; j < m; ++j) {
        for (std::size_t q = 0; q < s; ++q) {
            for (std::size_t r = 0; r < p; ++r) {
                a[r] = src[q + s * (j + r * m)];
            }
            for (std::size_t k = 0; k < p; ++k) {
                cpx b = a[0];
                for (std::size_t r = 1; r < p; ++r) {
                    b = b + a[r] * w[(r * k % p) * root];
                }
                dst[q + s * (p * j + k)] = b * w[j * k * s];
            }
        }
    }
}

void stockham(cpx *data, std::size_t n, const std::vector<std::size_t> &factors) {
    std::vector<cpx> w(n);
    const Twiddles tw(n);
    for (std::size_t t = 0; t < n; ++t) {
        w[t] = tw(t);
    }
    std::vector<cpx> work(n);
    std::vector<cpx> scratch(factors.empty() ? 0 : factors.back());
    cpx *src = data;
    cpx *dst = work.data();
    std::size_t len = n;
    std::size_t s = 1;
    for (std::size_t p : factors) {
        if (p == 4) {
            stage4(src, dst, len, s, w.data());
        } else if (p == 2) {
            stage2(src, dst, len, s, w.data());
        } else {
            stage_generic(src, dst, len, s, p, w.data(), n, scratch);
        }
        len /= p;
        s *= p;
        std::swap(src, dst);
    }
    if (src != data) {
        for (std::size_t i = 0; i < n; ++i) {
            data[i] = src[i];
        }
    }
}

// Bluestein: the DFT of length n as a circular convolution of power-of-two length.
void bluestein(cpx *data, std::size_t n) {
    std::size_t m = 1;
    while (m < 2 * n - 1) {
        m *= 2;
    }
    const Twiddles half(2 * n);  // chirp[k] = exp(-i pi k^2 / n) = half(k^2 mod 2n)
    std::vector<cpx> chirp(n);
    for (std::size_t k = 0; k < n; ++k) {
        chirp[k] = half(static_cast<std::size_t>((static_cast<unsigned long long>(k) * k) % (2 * n)));
    }
    std::vector<cpx> a(m, cpx{0.0, 0.0});
    std::vector<cpx> b(m, cpx{0.0, 0.0});
    for (std::size_t k = 0; k < n; ++k) {
        a[k] = data[k] * chirp[k];
    }
    b[0] = conj(chirp[0]);
    for (std::size_t k = 1; k < n; ++k) {
        b[k] = b[m - k] = conj(chirp[k]);
    }
    forward(a.data(), m);
    forward(b.data(), m);
    for (std::size_t i = 0; i < m; ++i) {
        a[i] = conj(a[i] * b[i]);  // inverse transform as conj(forward(conj(.)))
    }
    forward(a.data(), m);
    const double scale = 1.0 / static_cast<double>(m);
    for (std::size_t k = 0; k < n; ++k) {
        const cpx c{a[k].re * scale, -a[k].im * scale};
        data[k] = c * chirp[k];
    }
}

}  // namespace

Twiddles::Twiddles(std::size_t n) : block_(1) {
    while (block_ * block_ < n) {
        ++block_;
    }
    fine_.resize(block_);
    coarse_.resize(n / block_ + 1);
    for (std::size_t r = 0; r < block_; ++r) {
        fine_[r] = unit(r, n);
    }
    for (std::size_t q = 0; q < coarse_.size(); ++q) {
        coarse_[q] = unit(q * block_, n);
    }
}

cpx Twiddles::operator()(std::size_t t) const { return coarse_[t / block_] * fine_[t % block_]; }

void forward(cpx *data, std::size_t n) {
    if (n <= 1) {
        return;
    }
    const std::vector<std::size_t> factors = radices(n);
    if (smooth(factors)) {
        stockham(data, n, factors);
    } else {
        bluestein(data, n);
    }
}

}  // namespace ek::fft
