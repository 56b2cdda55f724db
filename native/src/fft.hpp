// A forward complex DFT of any length: mixed-radix Stockham (radices 4, 2, 3, 5 and odd primes up to
// kMaxRadix) and Bluestein's chirp-z algorithm over a 5-smooth length for lengths with a larger
// prime factor. A Plan holds the twiddle tables of one length; each call builds its own plans:
// no global state.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace ek::fft {

struct cpx {
    double re, im;
};

constexpr std::size_t kMaxRadix = 61;

// An uninitialised buffer of complex numbers (std::vector would zero it first: one more pass).
class Workspace {
  public:
    explicit Workspace(std::size_t n) : data_(new cpx[n]) {}
    cpx *get() const { return data_.get(); }

  private:
    std::unique_ptr<cpx[]> data_;
};

// exp(-2 pi i t / n) for any t < n from two tables of about sqrt(n) directly computed entries:
// each value is one complex product (within a few ulp), and nothing of size n is allocated,
// because every page of fresh memory costs a page fault on each call.
class Roots {
  public:
    explicit Roots(std::size_t n);
    cpx at(std::size_t t) const;

  private:
    friend class RootWalk;
    std::size_t block_;
    std::vector<cpx> fine_;    // W_n^r, r < block_
    std::vector<cpx> coarse_;  // W_n^(q block_)
};

// W_n^(j step) for j = 0, 1, 2, ... without a division per step.
class RootWalk {
  public:
    RootWalk(const Roots &roots, std::size_t step);  // step < the roots' n
    cpx value() const {
        const cpx a = roots_.coarse_[q_], b = roots_.fine_[r_];
        return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
    }
    void next() {
        q_ += dq_;
        r_ += dr_;
        if (r_ >= roots_.block_) {
            r_ -= roots_.block_;
            ++q_;
        }
    }

  private:
    const Roots &roots_;
    std::size_t dq_, dr_, q_ = 0, r_ = 0;
};

class Plan {
  public:
    explicit Plan(std::size_t n);
    // A plan that takes W_n^t from roots of a multiple of n: W_n^t = W_(n step)^(t step). Saves
    // building a second table when the caller has one (the real FFT's split pass).
    Plan(std::size_t n, const Roots &roots, std::size_t step);
    ~Plan();
    Plan(const Plan &) = delete;
    Plan &operator=(const Plan &) = delete;

    std::size_t size() const { return n_; }
    // Entries of the work buffer that forward(data, work) needs.
    std::size_t workspace() const;
    // In-place forward DFT of data[0 .. size()), with a caller's work buffer (one allocation for
    // several transforms: fresh pages cost a page fault each, on every call) or its own.
    void forward(cpx *data, cpx *work) const;
    void forward(cpx *data) const;

  private:
    struct Stage {
        std::size_t radix, span, stride;  // p, m = len / p, s; twiddle (j, k) = W_n^(j k s)
        std::vector<cpx> dft;             // generic radix: [u] = W_p^u
    };
    struct Bluestein;

    void stockham(cpx *data, cpx *work) const;

    void build(const std::vector<std::size_t> &factors);

    std::size_t n_;
    std::vector<Stage> stages_;
    std::unique_ptr<Roots> own_roots_;
    const Roots *roots_ = nullptr;
    std::size_t step_ = 1;
    std::unique_ptr<Bluestein> bluestein_;
};

}  // namespace ek::fft
