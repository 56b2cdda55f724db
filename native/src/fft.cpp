// The FFT engine behind fft_magnitude (see fft.hpp).
#include "fft.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

#include "common.hpp"
#include "vec.hpp"

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

std::vector<std::size_t> factorize(std::size_t n) {
    std::vector<std::size_t> out;
    for (; n % 4 == 0; n /= 4) {
        out.push_back(4);
    }
    for (; n % 2 == 0; n /= 2) {
        out.push_back(2);
    }
    for (std::size_t p = 3; p * p <= n; p += 2) {
        for (; n % p == 0; n /= p) {
            out.push_back(p);
        }
    }
    if (n > 1) {
        out.push_back(n);
    }
    return out;
}

// Where a stage's twiddles come from: W^(j k) = roots^(j k step).
struct Walk {
    const Roots &roots;
    std::size_t step;
};

// Two complex numbers in one v4d (re0, im0, re1, im1), for the stages whose inner loop runs over
// pairs of interleaved sub-transforms (stride s even). Macros, so that they compile for the ISA
// of the clone they are used in (see vec.hpp).
typedef long long v4i __attribute__((vector_size(32)));
#define EK_SWAP_PAIRS(v) __builtin_shuffle((v), v4i{1, 0, 3, 2})
#define EK_TIMES_MINUS_I(v) (EK_SWAP_PAIRS(v) * v4d{1.0, -1.0, 1.0, -1.0})
#define EK_CMUL(v, wr, wi) ((v) * (wr) + EK_SWAP_PAIRS(v) * (wi))  // wr = splat(re), wi = (-im, im, ..)

EK_INLINE void twiddle_vectors(cpx w, v4d &wr, v4d &wi) {
    wr = v4d{w.re, w.re, w.re, w.re};
    wi = v4d{-w.im, w.im, -w.im, w.im};
}

// One Stockham stage of radix 4: src holds `len`-point sub-transforms interleaved with stride s.
EK_CLONES void stage4(const cpx *src, cpx *dst, std::size_t m, std::size_t s, Walk twiddle) {
    RootWalk walk(twiddle.roots, twiddle.step);
    const std::size_t vector_end = s % 2 == 0 ? s : 0;
    for (std::size_t j = 0; j < m; ++j, walk.next()) {
        const cpx w1 = walk.value(), w2 = w1 * w1, w3 = w2 * w1;
        const cpx *a = src + s * j;
        cpx *d = dst + s * 4 * j;
        v4d r1, i1, r2, i2, r3, i3;
        twiddle_vectors(w1, r1, i1);
        twiddle_vectors(w2, r2, i2);
        twiddle_vectors(w3, r3, i3);
        for (std::size_t q = 0; q < vector_end; q += 2) {
            const v4d a0 = EK_LOAD4(&a[q].re), a1 = EK_LOAD4(&a[q + s * m].re);
            const v4d a2 = EK_LOAD4(&a[q + 2 * s * m].re), a3 = EK_LOAD4(&a[q + 3 * s * m].re);
            const v4d e0 = a0 + a2, e1 = a0 - a2, o0 = a1 + a3, o1 = EK_TIMES_MINUS_I(a1 - a3);
            EK_STORE4(&d[q].re, e0 + o0);
            EK_STORE4(&d[q + s].re, EK_CMUL(e1 + o1, r1, i1));
            EK_STORE4(&d[q + 2 * s].re, EK_CMUL(e0 - o0, r2, i2));
            EK_STORE4(&d[q + 3 * s].re, EK_CMUL(e1 - o1, r3, i3));
        }
        for (std::size_t q = vector_end; q < s; ++q) {
            const cpx a0 = a[q], a1 = a[q + s * m], a2 = a[q + 2 * s * m], a3 = a[q + 3 * s * m];
            const cpx e0 = a0 + a2, e1 = a0 - a2;
            const cpx o0 = a1 + a3, o1 = times_minus_i(a1 - a3);
            d[q] = e0 + o0;
            d[q + s] = (e1 + o1) * w1;
            d[q + 2 * s] = (e0 - o0) * w2;
            d[q + 3 * s] = (e1 - o1) * w3;
        }
    }
}

EK_CLONES void stage2(const cpx *src, cpx *dst, std::size_t m, std::size_t s, Walk twiddle) {
    RootWalk walk(twiddle.roots, twiddle.step);
    for (std::size_t j = 0; j < m; ++j, walk.next()) {
        const cpx w1 = walk.value();
        const cpx *a = src + s * j;
        cpx *d = dst + s * 2 * j;
        for (std::size_t q = 0; q < s; ++q) {
            const cpx a0 = a[q], a1 = a[q + s * m];
            d[q] = a0 + a1;
            d[q + s] = (a0 - a1) * w1;
        }
    }
}

EK_INLINE cpx scale(cpx a, double f) { return {a.re * f, a.im * f}; }
EK_INLINE cpx times_i(cpx a) { return {-a.im, a.re}; }

EK_CLONES void stage3(const cpx *src, cpx *dst, std::size_t m, std::size_t s, Walk twiddle) {
    const double half_sqrt3 = 0.86602540378443864676372317075294;
    RootWalk walk(twiddle.roots, twiddle.step);
    for (std::size_t j = 0; j < m; ++j, walk.next()) {
        const cpx w1 = walk.value(), w2 = w1 * w1;
        const cpx *a = src + s * j;
        cpx *d = dst + s * 3 * j;
        for (std::size_t q = 0; q < s; ++q) {
            const cpx a0 = a[q], a1 = a[q + s * m], a2 = a[q + 2 * s * m];
            const cpx t1 = a1 + a2;
            const cpx t2 = a0 - scale(t1, 0.5);
            const cpx t3 = scale(times_minus_i(a1 - a2), half_sqrt3);
            d[q] = a0 + t1;
            d[q + s] = (t2 + t3) * w1;
            d[q + 2 * s] = (t2 - t3) * w2;
        }
    }
}

EK_CLONES void stage5(const cpx *src, cpx *dst, std::size_t m, std::size_t s, Walk twiddle) {
    const double c1 = 0.30901699437494742410229341718282, c2 = -0.80901699437494742410229341718282;
    const double s1 = 0.95105651629515357211643933337938, s2 = 0.58778525229247312916870595463907;
    RootWalk walk(twiddle.roots, twiddle.step);
    for (std::size_t j = 0; j < m; ++j, walk.next()) {
        const cpx w1 = walk.value(), w2 = w1 * w1, w3 = w2 * w1, w4 = w2 * w2;
        const cpx *a = src + s * j;
        cpx *d = dst + s * 5 * j;
        for (std::size_t q = 0; q < s; ++q) {
            const cpx a0 = a[q], a1 = a[q + s * m], a2 = a[q + 2 * s * m], a3 = a[q + 3 * s * m];
            const cpx a4 = a[q + 4 * s * m];
            const cpx t1 = a1 + a4, t2 = a2 + a3, t3 = a1 - a4, t4 = a2 - a3;
            const cpx m1 = a0 + scale(t1, c1) + scale(t2, c2), m2 = a0 + scale(t1, c2) + scale(t2, c1);
            const cpx n1 = scale(t3, s1) + scale(t4, s2), n2 = scale(t3, s2) - scale(t4, s1);
            d[q] = a0 + t1 + t2;
            d[q + s] = (m1 + times_minus_i(n1)) * w1;
            d[q + 2 * s] = (m2 + times_minus_i(n2)) * w2;
            d[q + 3 * s] = (m2 + times_i(n2)) * w3;
            d[q + 4 * s] = (m1 + times_i(n1)) * w4;
        }
    }
}

// Any radix p: a p-point DFT by definition (dft[u] = W_p^u), O(p^2) per butterfly.
void stage_generic(const cpx *src, cpx *dst, std::size_t p, std::size_t m, std::size_t s, Walk twiddle,
                   const cpx *dft, cpx *a, cpx *tw) {
    RootWalk walk(twiddle.roots, twiddle.step);
    for (std::size_t j = 0; j < m; ++j, walk.next()) {
        tw[0] = cpx{1.0, 0.0};
        for (std::size_t k = 1; k < p; ++k) {
            tw[k] = tw[k - 1] * walk.value();
        }
        for (std::size_t q = 0; q < s; ++q) {
            for (std::size_t r = 0; r < p; ++r) {
                a[r] = src[q + s * (j + r * m)];
            }
            for (std::size_t k = 0; k < p; ++k) {
                cpx b = a[0];
                for (std::size_t r = 1, u = k; r < p; ++r) {
                    b = b + a[r] * dft[u];
                    u += k;  // u = r k mod p
                    u -= u >= p ? p : 0;
                }
                dst[q + s * (p * j + k)] = k == 0 ? b : b * tw[k];
            }
        }
    }
}

// The smallest 2^a 3^b 5^c >= n: the convolution length of Bluestein's algorithm (radix 4, 2, 3, 5
// stages only; up to 1.7x shorter than the next power of two).
std::size_t smooth_at_least(std::size_t n) {
    std::size_t best = 1;
    while (best < n) {
        best *= 2;
    }
    for (std::size_t p5 = 1; p5 < best; p5 *= 5) {
        for (std::size_t p35 = p5; p35 < best; p35 *= 3) {
            std::size_t m = p35;
            while (m < n) {
                m *= 2;
            }
            best = std::min(best, m);
        }
    }
    return best;
}

}  // namespace

Roots::Roots(std::size_t n) : block_(1) {
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

cpx Roots::at(std::size_t t) const { return coarse_[t / block_] * fine_[t % block_]; }

RootWalk::RootWalk(const Roots &roots, std::size_t step)
    : roots_(roots), dq_(step / roots.block_), dr_(step % roots.block_) {}

// Bluestein: the DFT of length n as a circular convolution of a 5-smooth length.
struct Plan::Bluestein {
    explicit Bluestein(std::size_t n) : inner(smooth_at_least(2 * n - 1)), chirp(n), filter(inner.size()) {
        const std::size_t m = inner.size();
        const Roots roots(2 * n);  // chirp[k] = exp(-i pi k^2 / n) = W_2n^(k^2 mod 2n)
        for (std::size_t k = 0; k < n; ++k) {
            chirp[k] = roots.at(static_cast<std::size_t>((static_cast<unsigned long long>(k) * k) % (2 * n)));
        }
        filter.assign(m, cpx{0.0, 0.0});
        filter[0] = conj(chirp[0]);
        for (std::size_t k = 1; k < n; ++k) {
            filter[k] = filter[m - k] = conj(chirp[k]);
        }
        const Workspace work(inner.workspace());
        inner.forward(filter.data(), work.get());
    }

    std::size_t workspace() const { return 2 * inner.size(); }

    // work: workspace() entries, the convolution's buffer and the inner transforms' own.
    void forward(cpx *data, cpx *work) const {
        const std::size_t n = chirp.size(), m = inner.size();
        cpx *a = work;
        for (std::size_t k = 0; k < n; ++k) {
            a[k] = data[k] * chirp[k];
        }
        std::fill(a + n, a + m, cpx{0.0, 0.0});
        inner.forward(a, work + m);
        for (std::size_t i = 0; i < m; ++i) {
            a[i] = conj(a[i] * filter[i]);  // the inverse transform as conj(forward(conj(.)))
        }
        inner.forward(a, work + m);
        const double scale = 1.0 / static_cast<double>(m);
        for (std::size_t k = 0; k < n; ++k) {
            data[k] = cpx{a[k].re * scale, -a[k].im * scale} * chirp[k];
        }
    }

    Plan inner;
    std::vector<cpx> chirp;
    std::vector<cpx> filter;  // the forward transform of the conjugate chirp, wrapped
};

Plan::Plan(std::size_t n) : n_(n) {
    if (n <= 1) {
        return;
    }
    const std::vector<std::size_t> factors = factorize(n);
    if (factors.back() > kMaxRadix) {
        bluestein_ = std::make_unique<Bluestein>(n);
        return;
    }
    own_roots_ = std::make_unique<Roots>(n);
    roots_ = own_roots_.get();
    build(factors);
}

Plan::Plan(std::size_t n, const Roots &roots, std::size_t step) : n_(n), roots_(&roots), step_(step) {
    if (n <= 1) {
        return;
    }
    const std::vector<std::size_t> factors = factorize(n);
    if (factors.back() > kMaxRadix) {
        roots_ = nullptr;
        bluestein_ = std::make_unique<Bluestein>(n);
        return;
    }
    build(factors);
}

void Plan::build(const std::vector<std::size_t> &factors) {
    std::size_t len = n_, s = 1;
    for (std::size_t p : factors) {
        Stage st{p, len / p, s, {}};
        if (p > 5) {
            st.dft.resize(p);
            for (std::size_t u = 0; u < p; ++u) {
                st.dft[u] = unit(u, p);
            }
        }
        stages_.push_back(std::move(st));
        len /= p;
        s *= p;
    }
}

Plan::~Plan() = default;

void Plan::stockham(cpx *data, cpx *work) const {
    cpx scratch[2 * kMaxRadix];
    cpx *src = data;
    cpx *dst = work;
    for (const Stage &st : stages_) {
        if (st.radix == 4) {
            stage4(src, dst, st.span, st.stride, Walk{*roots_, st.stride * step_});
        } else if (st.radix == 2) {
            stage2(src, dst, st.span, st.stride, Walk{*roots_, st.stride * step_});
        } else if (st.radix == 3) {
            stage3(src, dst, st.span, st.stride, Walk{*roots_, st.stride * step_});
        } else if (st.radix == 5) {
            stage5(src, dst, st.span, st.stride, Walk{*roots_, st.stride * step_});
        } else {
            stage_generic(src, dst, st.radix, st.span, st.stride, Walk{*roots_, st.stride * step_}, st.dft.data(),
                          scratch, scratch + kMaxRadix);
        }
        std::swap(src, dst);
    }
    if (src != data) {
        std::copy(src, src + n_, data);
    }
}

std::size_t Plan::workspace() const { return bluestein_ ? bluestein_->workspace() : n_; }

void Plan::forward(cpx *data, cpx *work) const {
    if (bluestein_) {
        bluestein_->forward(data, work);
    } else if (n_ > 1) {
        stockham(data, work);
    }
}

void Plan::forward(cpx *data) const {
    const Workspace work(workspace());
    forward(data, work.get());
}

}  // namespace ek::fft
