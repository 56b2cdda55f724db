/* Task bodies and envelopes (task.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#define DEFAULT_NONCE_LEN 16

void task_spec_init(task_spec *t)
{
    memset(t, 0, sizeof *t);
    t->kernel = "stats";
    t->issued_at = NAN;
    t->ttl_s = 300.0;
    t->priority = -1;
    t->max_retries = -1;
    t->timeout_s = NAN;
    t->reply = 1;
}

void task_spec_free(task_spec *t)
{
    for (int i = 0; i < t->param_count; i++)
        param_free(&t->params[i]);
    t->param_count = 0;
}

void task_spec_fresh(task_spec *t)
{
    double now = now_s();
    if (isnan(t->issued_at))
        t->issued_at = now;
    if (t->nonce_len == 0) {
        randombytes_buf(t->nonce, DEFAULT_NONCE_LEN);
        t->nonce_len = DEFAULT_NONCE_LEN;
    }
    if (t->id[0] == '\0')
        snprintf(t->id, sizeof t->id, "d%lld-%08x", (long long)(now * 1000.0), randombytes_random());
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_params(msgpack_packer *pk, const task_spec *t)
{
    msgpack_pack_map(pk, (size_t)t->param_count);
    for (int i = 0; i < t->param_count; i++) {
        pack_str(pk, t->params[i].name);
        param_pack(pk, &t->params[i]);
    }
}

void task_pack_body(const task_spec *t, const char *target, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    size_t fields = 7 + (t->priority >= 0) + !isnan(t->timeout_s) + (t->max_retries >= 0) + (t->trace != NULL) +
                    (t->reply != 0);
    msgpack_pack_map(&pk, fields);
    pack_str(&pk, "id");
    pack_str(&pk, t->id);
    pack_str(&pk, "kernel");
    pack_str(&pk, t->kernel);
    pack_str(&pk, "params");
    pack_params(&pk, t);
    pack_str(&pk, "target");
    pack_str(&pk, target);
    pack_str(&pk, "issued_at");
    msgpack_pack_double(&pk, t->issued_at);
    pack_str(&pk, "expires_at");
    msgpack_pack_double(&pk, t->issued_at + t->ttl_s);
    pack_str(&pk, "nonce");
    msgpack_pack_bin_with_body(&pk, t->nonce, t->nonce_len);
    if (t->priority >= 0) {
        pack_str(&pk, "priority");
        msgpack_pack_int64(&pk, t->priority);
    }
    if (!isnan(t->timeout_s)) {
        pack_str(&pk, "timeout_s");
        msgpack_pack_double(&pk, t->timeout_s);
    }
    if (t->max_retries >= 0) {
        pack_str(&pk, "max_retries");
        msgpack_pack_int64(&pk, t->max_retries);
    }
    if (t->trace != NULL) {
        pack_str(&pk, "trace");
        pack_str(&pk, t->trace);
    }
    if (t->reply) {
        pack_str(&pk, "reply");
        msgpack_pack_true(&pk);
    }
}

void envelope_pack(const signer_t *signer, const char *kid, const msgpack_sbuffer *body, msgpack_sbuffer *out,
                   uint8_t sig[64], size_t *sig_len)
{
    *sig_len = signer_sign(signer, (const uint8_t *)body->data, body->size, sig);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    pack_str(&pk, "v");
    msgpack_pack_int64(&pk, 1);
    pack_str(&pk, "alg");
    pack_str(&pk, alg_name(signer->alg));
    pack_str(&pk, "kid");
    pack_str(&pk, kid);
    pack_str(&pk, "body");
    msgpack_pack_bin_with_body(&pk, body->data, body->size);
    pack_str(&pk, "sig");
    msgpack_pack_bin_with_body(&pk, sig, *sig_len);
}

void task_topic(const char *prefix, const char *target, char out[TOPIC_MAX])
{
    if (strncmp(target, "pool:", 5) == 0)
        snprintf(out, TOPIC_MAX, "%s/tasks/pool/%s", prefix, target + 5);
    else
        snprintf(out, TOPIC_MAX, "%s/tasks/%s", prefix, target);
}

void reply_topic(const char *prefix, const char *kid, const char *id, char out[TOPIC_MAX])
{
    snprintf(out, TOPIC_MAX, "%s/replies/%s/%s", prefix, kid, id);
}
