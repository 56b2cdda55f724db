/* Helpers of util.h. Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

int err_set(err_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    return -1;
}

void hex_encode(const uint8_t *in, size_t len, char *out)
{
    sodium_bin2hex(out, 2 * len + 1, in, len);
}

long hex_decode(const char *hex, uint8_t *out, size_t max)
{
    size_t n = 0;
    const char *end = NULL;
    size_t len = strlen(hex);
    if (len % 2 != 0 || sodium_hex2bin(out, max, hex, len, NULL, &n, &end) != 0 || *end != '\0')
        return -1;
    return (long)n;
}

long base64_decode(const char *b64, size_t b64_len, uint8_t *out, size_t max)
{
    size_t n = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, max, b64, b64_len, NULL, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    if (end != b64 + b64_len)
        return -1;
    return (long)n;
}

char *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(max + 1);
    if (buf == NULL) {
        fclose(f);
        errno = ENOMEM;
        return NULL;
    }
    size_t n = fread(buf, 1, max + 1, f);
    int failed = ferror(f);
    fclose(f);
    if (failed || n > max) {
        free(buf);
        errno = failed ? EIO : EFBIG;
        return NULL;
    }
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int parse_double(const char *text, double *out)
{
    char *end = NULL;
    if (*text == '\0')
        return -1;
    errno = 0;
    double v = strtod(text, &end);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

int parse_int64(const char *text, long long *out)
{
    char *end = NULL;
    if (*text == '\0')
        return -1;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (*end != '\0' || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

char *join_path(const char *dir, const char *path)
{
    size_t dl = dir == NULL ? 0 : strlen(dir);
    if (path[0] == '/' || dl == 0) {
        char *copy = malloc(strlen(path) + 1);
        if (copy != NULL)
            strcpy(copy, path);
        return copy;
    }
    char *out = malloc(dl + 1 + strlen(path) + 1);
    if (out != NULL)
        sprintf(out, "%s/%s", dir, path);
    return out;
}
