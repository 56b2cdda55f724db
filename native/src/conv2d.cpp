// conv2d: "same" 2-D correlation, zero padded. Padding contributes nothing (no 0 * inf products),
// and each output sums kernel rows then columns in order, exactly as the numpy reference does.
#include <algorithm>

#include "common.hpp"

namespace ek {
namespace {

struct Shape {
    std::size_t h, w, kh, kw;
};

// out[c] += k * in[c] for c < n.
EK_CLONES void axpy(double *__restrict out, const double *__restrict in, double k, std::size_t n) {
    for (std::size_t c = 0; c < n; ++c) {
        out[c] += k * in[c];
    }
}

void correlate_row(const double *image, const double *kernel, const Shape &s, std::size_t i, double *out) {
    const std::ptrdiff_t ci = static_cast<std::ptrdiff_t>(s.kh / 2);
    const std::ptrdiff_t cj = static_cast<std::ptrdiff_t>(s.kw / 2);
    const std::ptrdiff_t w = static_cast<std::ptrdiff_t>(s.w);
    std::fill(out, out + s.w, 0.0);
    for (std::size_t a = 0; a < s.kh; ++a) {
        const std::ptrdiff_t r = static_cast<std::ptrdiff_t>(i + a) - ci;
        if (r < 0 || r >= static_cast<std::ptrdiff_t>(s.h)) {
            continue;
        }
        const double *row = image + static_cast<std::size_t>(r) * s.w;
        for (std::size_t b = 0; b < s.kw; ++b) {
            const std::ptrdiff_t dj = static_cast<std::ptrdiff_t>(b) - cj;  // out[c] uses row[c + dj]
            const std::ptrdiff_t c0 = std::max<std::ptrdiff_t>(0, -dj);
            const std::ptrdiff_t c1 = std::min<std::ptrdiff_t>(w, w - dj);
            if (c1 > c0) {
                axpy(out + c0, row + c0 + dj, kernel[a * s.kw + b], static_cast<std::size_t>(c1 - c0));
            }
        }
    }
}

}  // namespace
}  // namespace ek

extern "C" int ek_conv2d(const double *image, size_t h, size_t w, const double *kernel, size_t kh, size_t kw,
                         double *out, ek_error *err) {
    return ek::guarded(err, [&] {
        ek::require_ptr(image, "image");
        ek::require_ptr(kernel, "kernel");
        ek::require_ptr(out, "out");
        ek::require(h >= 1 && w >= 1, "image", "needs at least 1 row and 1 column");
        ek::require(kh % 2 == 1 && kw % 2 == 1, "kernel", "needs odd numbers of rows and columns");
        const ek::Shape shape{h, w, kh, kw};
        for (size_t i = 0; i < h; ++i) {
            ek::correlate_row(image, kernel, shape, i, out + i * w);
        }
    });
}
