/* Small helpers shared by every module: error text, hex, base64, files, the clock.
 * Single-threaded program: nothing here is guarded. */
#ifndef EDGE_UTIL_H
#define EDGE_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Exit statuses, the same as edge-submit's (agent/tools/errors.py). */
enum {
    EXIT_OK = 0,
    EXIT_NOT_COMPLETED = 1, /* the result is not `completed`, or a reply was refused (verify) */
    EXIT_USAGE = 2,         /* bad usage or configuration */
    EXIT_TIMEOUT = 3,       /* no verified reply in time */
    EXIT_BROKER = 4,        /* broker unreachable, login refused, TLS failed */
    EXIT_INTERRUPTED = 130
};

/* One error message, filled by whoever fails first and printed by main. */
#define ERR_LEN 512
typedef struct {
    char text[ERR_LEN];
} err_t;

/* Sets the message; returns -1 so that callers can `return err_set(...)`. */
int err_set(err_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Lower-case hex of `len` bytes to `out` (2*len+1 bytes). */
void hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes an even-length hex string; returns the byte count or -1. */
long hex_decode(const char *hex, uint8_t *out, size_t max);

/* Standard base64 (with padding) to exactly the bytes; returns the byte count or -1. */
long base64_decode(const char *b64, size_t b64_len, uint8_t *out, size_t max);

/* The whole file in a NUL-terminated heap buffer (caller frees); NULL and errno on failure. */
char *read_file(const char *path, size_t max, size_t *len);

/* Seconds since the Unix epoch, as a float (PROTOCOL 2). */
double now_s(void);

/* strtod/strtoll of the whole string; 0 on success. */
int parse_double(const char *text, double *out);
int parse_int64(const char *text, long long *out);

/* `dir/path` unless path is absolute or dir is empty; heap string. */
char *join_path(const char *dir, const char *path);

#endif
