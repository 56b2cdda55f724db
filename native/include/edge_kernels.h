/*
 * edge_kernels.h -- the C ABI of the native kernels, and its single source of truth.
 *
 * Every exported function is extern "C", returns an ek_status, lets no C++ exception escape,
 * keeps no global state and may be called from several threads at once. On failure it fills
 * the caller's ek_error (when not NULL) with the offending field and a message.
 *
 * The block between the EK_CDEF markers is read verbatim by native/cdef.py and given to cffi
 * (at build time for the compiled extension, at load time for a dlopen'ed library), so it must
 * stay plain C declarations: no macros, no attributes, no #if. Bump EK_ABI_VERSION on any
 * change to it.
 */
#ifndef EDGE_KERNELS_H
#define EDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

/* EK_CDEF_BEGIN */
enum { EK_ABI_VERSION = 1, EK_FIELD_LEN = 32, EK_MESSAGE_LEN = 224 };

typedef enum ek_status {
    EK_OK = 0,
    EK_INVALID_ARGUMENT = 1, /* a parameter is out of its domain: protocol code invalid_params */
    EK_DOMAIN_ERROR = 2,     /* the data make the result undefined: protocol code kernel_error */
    EK_OUT_OF_MEMORY = 3,    /* a work buffer could not be allocated */
    EK_INTERNAL_ERROR = 4    /* a bug: an unexpected C++ exception was caught */
} ek_status;

typedef struct ek_error {
    char field[32];    /* EK_FIELD_LEN: the parameter at fault, "" if none */
    char message[224]; /* EK_MESSAGE_LEN: NUL-terminated, human readable */
} ek_error;

typedef struct ek_stats_result {
    int64_t count;
    double mean;
    double std; /* population standard deviation */
    double min;
    double max;
    double rms;
} ek_stats_result;

typedef struct ek_zscore_result {
    size_t count; /* number of indices written */
    double mean;
    double std;
} ek_zscore_result;

/* The ABI version this library implements (EK_ABI_VERSION). */
int ek_abi_version(void);

/* A static, human-readable description of the build (compiler, target, dispatch). */
const char *ek_build_info(void);

/* out (m x n) = a (m x k) @ b (k x n); all C order; m, k, n >= 1. */
int ek_matrix_multiply(const double *a, const double *b, double *out, size_t m, size_t k, size_t n,
                       ek_error *err);

/* out[i] = sum_{j <= i, j < t} taps[j] * signal[i - j] for i < n; n, t >= 1. */
int ek_fir_filter(const double *signal, size_t n, const double *taps, size_t t, double *out,
                  ek_error *err);

/* out[i] = mean(signal[i .. i + window - 1]) for i <= n - window; 1 <= window <= n. */
int ek_moving_average(const double *signal, size_t n, size_t window, double *out, ek_error *err);

/* count, mean, population std, min, max and rms of signal; n >= 1. */
int ek_stats(const double *signal, size_t n, ek_stats_result *out, ek_error *err);

/* magnitude[k] = |rfft(signal)[k]| and frequency[k] = k / (n * spacing), k <= n / 2; n >= 2. */
int ek_fft_magnitude(const double *signal, size_t n, double spacing, double *magnitude, double *frequency,
                     ek_error *err);

/* indices (room for n) of samples with |signal - mean| / std > threshold; n >= 2, threshold > 0. */
int ek_zscore_anomalies(const double *signal, size_t n, double threshold, int64_t *indices,
                        ek_zscore_result *out, ek_error *err);

/* out (h x w) = "same" correlation of image (h x w) with kernel (kh x kw, odd), zero padded. */
int ek_conv2d(const double *image, size_t h, size_t w, const double *kernel, size_t kh, size_t kw,
              double *out, ek_error *err);

/* numpy.histogram with bins equal bins over [lo, hi] (or [min, max] when has_range is 0);
 * counts has room for bins, edges for bins + 1. */
int ek_histogram(const double *signal, size_t n, size_t bins, int has_range, double lo, double hi,
                 int64_t *counts, double *edges, ek_error *err);
/* EK_CDEF_END */

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif /* EDGE_KERNELS_H */
