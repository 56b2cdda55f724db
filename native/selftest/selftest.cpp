// Self-test of the kernel library against golden vectors made by the numpy references.
//
//   edge_selftest native/selftest/golden.txt
//
// Built for every target (host, aarch64, armhf, ASan) and run natively or under qemu-user.
// Compares like PROTOCOL 9: allclose(out, ref, rtol=R, atol=R * max(1, max|ref|)), R = 1e-9
// (1e-6 for fft_magnitude), NaN equal to NaN, infinities exactly, integer outputs exactly.
// Prints one line per failure and "N passed, N failed"; exits 1 on any failure.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "edge_kernels.h"

namespace {

struct Array {
    std::size_t rows = 0;  // 0: one-dimensional
    std::vector<double> values;
    std::size_t cols() const { return rows ? values.size() / rows : values.size(); }
};

struct Case {
    std::string kernel, label;
    std::map<std::string, Array> in, expect;
    std::map<std::string, double> scalar;
    int status = 0;
};

using Outputs = std::map<std::string, std::vector<double>>;

Array read_array(std::istringstream &line) {
    Array a;
    std::size_t cols = 0;
    line >> a.rows >> cols;
    std::string token;
    while (line >> token) {
        a.values.push_back(std::strtod(token.c_str(), nullptr));  // C99 hex floats, nan, inf
    }
    return a;
}

std::vector<Case> read_cases(const char *path) {
    std::ifstream file(path);
    if (!file) {
        std::fprintf(stderr, "cannot read %s\n", path);
        std::exit(2);
    }
    std::vector<Case> cases;
    std::string text;
    while (std::getline(file, text)) {
        std::istringstream line(text);
        std::string tag, name;
        line >> tag;
        if (tag == "case") {
            cases.emplace_back();
            line >> cases.back().kernel >> cases.back().label;
        } else if (tag == "in" || tag == "expect") {
            line >> name;
            (tag == "in" ? cases.back().in : cases.back().expect)[name] = read_array(line);
        } else if (tag == "scalar") {
            std::string value;
            line >> name >> value;
            cases.back().scalar[name] = std::strtod(value.c_str(), nullptr);
        } else if (tag == "status") {
            line >> cases.back().status;
        }
    }
    return cases;
}

std::vector<double> as_doubles(const std::vector<int64_t> &v) { return std::vector<double>(v.begin(), v.end()); }

// Runs the case's kernel; returns its status and fills outputs by name.
int run(const Case &c, Outputs &out, ek_error *err) {
    const auto &in = c.in;
    auto arr = [&](const char *name) -> const Array & { return in.at(name); };
    auto size = [&](const char *name) { return static_cast<std::size_t>(c.scalar.at(name)); };
    if (c.kernel == "matrix_multiply") {
        const Array &a = arr("a"), &b = arr("b");
        auto &o = out["out"] = std::vector<double>(a.rows * b.cols());
        return ek_matrix_multiply(a.values.data(), b.values.data(), o.data(), a.rows, a.cols(), b.cols(), err);
    }
    const Array &x = in.count("signal") ? arr("signal") : arr("image");
    const std::size_t n = x.values.size();
    if (c.kernel == "fir_filter") {
        const Array &t = arr("taps");
        auto &o = out["out"] = std::vector<double>(n);
        return ek_fir_filter(x.values.data(), n, t.values.data(), t.values.size(), o.data(), err);
    }
    if (c.kernel == "moving_average") {
        auto &o = out["out"] = std::vector<double>(n - size("window") + 1);
        return ek_moving_average(x.values.data(), n, size("window"), o.data(), err);
    }
    if (c.kernel == "stats") {
        ek_stats_result s{};
        const int status = ek_stats(x.values.data(), n, &s, err);
        out = {{"count", {static_cast<double>(s.count)}}, {"mean", {s.mean}}, {"std", {s.std}},
               {"min", {s.min}},                          {"max", {s.max}},   {"rms", {s.rms}}};
        return status;
    }
    if (c.kernel == "fft_magnitude") {
        auto &m = out["magnitude"] = std::vector<double>(n / 2 + 1);
        auto &f = out["frequency"] = std::vector<double>(n / 2 + 1);
        return ek_fft_magnitude(x.values.data(), n, c.scalar.at("spacing"), m.data(), f.data(), err);
    }
    if (c.kernel == "zscore_anomalies") {
        std::vector<int64_t> idx(n);
        ek_zscore_result z{};
        const int status = ek_zscore_anomalies(x.values.data(), n, c.scalar.at("threshold"), idx.data(), &z, err);
        idx.resize(z.count);
        out = {{"indices", as_doubles(idx)}, {"mean", {z.mean}}, {"std", {z.std}}};
        return status;
    }
    if (c.kernel == "conv2d") {
        const Array &k = arr("kernel");
        auto &o = out["out"] = std::vector<double>(n);
        return ek_conv2d(x.values.data(), x.rows, x.cols(), k.values.data(), k.rows, k.cols(), o.data(), err);
    }
    if (c.kernel == "histogram") {
        std::vector<int64_t> counts(size("bins"));
        auto &e = out["edges"] = std::vector<double>(size("bins") + 1);
        const int status = ek_histogram(x.values.data(), n, size("bins"), c.scalar.at("has_range") != 0,
                                        c.scalar.at("lo"), c.scalar.at("hi"), counts.data(), e.data(), err);
        out["counts"] = as_doubles(counts);
        return status;
    }
    std::snprintf(err->message, sizeof err->message, "unknown kernel %s", c.kernel.c_str());
    return -1;
}

bool close(const std::vector<double> &got, const std::vector<double> &want, double r, std::string &why) {
    if (got.size() != want.size()) {
        why = "size " + std::to_string(got.size()) + " != " + std::to_string(want.size());
        return false;
    }
    double scale = 1.0;
    for (double v : want) {
        if (std::isfinite(v)) {
            scale = std::fmax(scale, std::fabs(v));
        }
    }
    for (std::size_t i = 0; i < want.size(); ++i) {
        const double g = got[i], w = want[i];
        const bool ok = std::isnan(w)      ? std::isnan(g)
                        : std::isinf(w)    ? g == w
                                           : std::fabs(g - w) <= r * scale + r * std::fabs(w);
        if (!ok) {
            char text[128];
            std::snprintf(text, sizeof text, "[%zu] got %.17g want %.17g", i, g, w);
            why = text;
            return false;
        }
    }
    return true;
}

bool check(const Case &c) {
    Outputs out;
    ek_error err{};
    const int status = run(c, out, &err);
    if (status != c.status) {
        std::printf("FAIL %s %s: status %d (want %d) %s: %s\n", c.kernel.c_str(), c.label.c_str(), status, c.status,
                    err.field, err.message);
        return false;
    }
    if (status != EK_OK) {
        return true;
    }
    const double r = c.kernel == "fft_magnitude" ? 1e-6 : 1e-9;
    for (const auto &[name, want] : c.expect) {
        std::string why;
        const bool exact = name == "indices" || name == "counts" || name == "count";
        if (!close(out[name], want.values, exact ? 0.0 : r, why)) {
            std::printf("FAIL %s %s: %s %s\n", c.kernel.c_str(), c.label.c_str(), name.c_str(), why.c_str());
            return false;
        }
    }
    return true;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s GOLDEN_FILE\n", argv[0]);
        return 2;
    }
    std::printf("%s\n", ek_build_info());
    if (ek_abi_version() != EK_ABI_VERSION) {
        std::printf("FAIL abi version %d, header %d\n", ek_abi_version(), EK_ABI_VERSION);
        return 1;
    }
    int passed = 0, failed = 0;
    for (const Case &c : read_cases(argv[1])) {
        (check(c) ? passed : failed) += 1;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 && passed > 0 ? 0 : 1;
}
