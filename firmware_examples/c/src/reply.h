/* Verifying what an agent publishes on a device's replies topic, as PROTOCOL 3 and 7 and the
 * protocol library's open_agent_message do: the envelope's form (check 1), an Ed25519 key of the
 * envelope's kid among EDGE_AGENT_KEY_* within its validity window (check 2), the signature
 * (check 3), then a result body whose `node` is that kid and whose `id` is the task's.
 * Nothing of a refused reply is ever shown as a result. Single-threaded. */
#ifndef EDGE_REPLY_H
#define EDGE_REPLY_H

#include <stddef.h>

#include <msgpack.h>

#include "keys.h"
#include "util.h"

#define MAX_PAYLOAD (1u << 20)

typedef struct {
    msgpack_unpacked body;      /* the decoded result body (reply_free) */
    char *body_bytes;           /* its bytes, owned: msgpack-c's objects point into them */
    const msgpack_object *root; /* its map */
    char kid[KID_MAX + 1];
    char status[32];
    char id[65];
} reply_t;

/* 0 and a verified reply, or -1 and why in `err` (starting with the protocol's code: malformed,
 * unknown_key, revoked_key, bad_signature, wrong_node, wrong_task). `expected_id` NULL: any id. */
int reply_open(reply_t *reply, const void *payload, size_t len, const agent_key_t *keys, int key_count,
               const char *expected_id, double now, err_t *err);
void reply_free(reply_t *reply);
/* The value of `key` in a map object, or NULL. */
const msgpack_object *map_get(const msgpack_object *map, const char *key);

#endif
