// A forward complex DFT of any length: mixed-radix Stockham (radices 4, 2 and odd primes up to
// kMaxRadix) and Bluestein's chirp-z algorithm over a power of two for lengths with a larger
// prime factor. Every call builds its own tables: no global state.
#pragma once

#include <cstddef>
#include <vector>

namespace ek::fft {

struct cpx {
    double re, im;
};

constexpr std::size_t kMaxRadix = 61;

// exp(-2 pi i t / n) for any 0 <= t < n, from two tables of about sqrt(n) entries each
// (every entry computed directly, so the product is within a few ulp).
class Twiddles {
  public:
    explicit Twiddles(std::size_t n);
    cpx operator()(std::size_t t) const;

  private:
    std::size_t block_;
    std::vector<cpx> coarse_;  // t = q * block_
    std::vector<cpx> fine_;    // t = r < block_
};

// In-place forward DFT of data[0 .. n).
void forward(cpx *data, std::size_t n);

}  // namespace ek::fft
