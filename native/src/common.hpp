// Shared plumbing of the exported functions: error reporting, the exception barrier, dispatch.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

#include "edge_kernels.h"

// Hot loops are compiled twice on x86-64 (baseline SSE2 and x86-64-v3 = AVX2 + FMA) and the
// loader's ifunc picks one at run time, so one binary is safe on every x86-64 and fast on most.
// -ffp-contract=off (see the build flags) keeps both clones bit-identical.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(EK_NO_CLONES)
#define EK_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EK_CLONES
#endif

#define EK_INLINE inline __attribute__((always_inline))

namespace ek {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// An error raised inside a kernel; turned into a status code by guarded().
class Failure {
  public:
    __attribute__((format(printf, 4, 5))) Failure(ek_status status, const char *field, const char *format, ...) noexcept
        : status_(status), field_(field) {
        va_list args;
        va_start(args, format);
        std::vsnprintf(message_, sizeof message_, format, args);
        va_end(args);
    }
    ek_status status() const noexcept { return status_; }
    const char *field() const noexcept { return field_; }
    const char *message() const noexcept { return message_; }

  private:
    ek_status status_;
    const char *field_;  // a string literal
    char message_[EK_MESSAGE_LEN];
};

inline int report(ek_error *err, ek_status status, const char *field, const char *message) noexcept {
    if (err != nullptr) {
        std::snprintf(err->field, sizeof err->field, "%s", field);
        std::snprintf(err->message, sizeof err->message, "%s", message);
    }
    return status;
}

// Runs body() behind the exception barrier: no C++ exception crosses the C ABI.
template <class Body>
int guarded(ek_error *err, Body &&body) noexcept {
    try {
        body();
        return EK_OK;
    } catch (const Failure &f) {
        return report(err, f.status(), f.field(), f.message());
    } catch (const std::bad_alloc &) {
        return report(err, EK_OUT_OF_MEMORY, "", "out of memory allocating a work buffer");
    } catch (const std::exception &e) {
        return report(err, EK_INTERNAL_ERROR, "", e.what());
    } catch (...) {
        return report(err, EK_INTERNAL_ERROR, "", "unknown C++ exception");
    }
}

inline void require(bool ok, const char *field, const char *message) {
    if (!ok) {
        throw Failure(EK_INVALID_ARGUMENT, field, "%s", message);
    }
}

inline void require_ptr(const void *p, const char *field) { require(p != nullptr, field, "is a null pointer"); }

}  // namespace ek
