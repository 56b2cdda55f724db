/* A task body (PROTOCOL 4), its signed envelope (PROTOCOL 3) and the topic of its target
 * (PROTOCOL 1). The body's fields are packed in a fixed order, so that given the same id, times
 * and nonce the bytes are those of firmware_examples/vectors. Single-threaded. */
#ifndef EDGE_TASK_H
#define EDGE_TASK_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "keys.h"
#include "params.h"
#include "util.h"

#define TASK_ID_MAX 64
#define TOPIC_MAX 512

typedef struct {
    char id[TASK_ID_MAX + 1]; /* empty: made up from the clock and random bytes */
    const char *kernel;
    param_t params[MAX_PARAMS];
    int param_count;
    double issued_at; /* NAN: now */
    double ttl_s;
    uint8_t nonce[32];
    size_t nonce_len; /* 0: 16 random bytes */
    long long priority, max_retries; /* -1: left off */
    double timeout_s;                /* NAN: left off */
    const char *trace;               /* NULL: left off */
    int reply;
} task_spec;

void task_spec_init(task_spec *t);
void task_spec_free(task_spec *t);
/* Fills the id, time and nonce when not given (each call: a new task). */
void task_spec_fresh(task_spec *t);
/* The body's MessagePack into `out` (initialised by the caller). */
void task_pack_body(const task_spec *t, const char *target, msgpack_sbuffer *out);
/* The envelope {v, alg, kid, body, sig} in this order; `sig` gets the signature. */
void envelope_pack(const signer_t *signer, const char *kid, const msgpack_sbuffer *body, msgpack_sbuffer *out,
                   uint8_t sig[64], size_t *sig_len);
/* {p}/tasks/{node}, {p}/tasks/all or {p}/tasks/pool/{name}. */
void task_topic(const char *prefix, const char *target, char out[TOPIC_MAX]);
/* {p}/replies/{kid}/{id}; `id` "+" for every reply. */
void reply_topic(const char *prefix, const char *kid, const char *id, char out[TOPIC_MAX]);

#endif
