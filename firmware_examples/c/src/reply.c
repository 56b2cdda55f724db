/* Reply verification (reply.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

/* A str object copied to `out` (NUL-terminated); -1 if not a str or too long. */
static int copy_str(const msgpack_object *o, char *out, size_t cap)
{
    if (o == NULL || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap)
        return -1;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return 0;
}

typedef struct {
    char alg[16];
    const msgpack_object *body, *sig;
} envelope_view;

/* Check 1: exactly the five fields, v = 1, a known alg, a kid, bin body and sig. */
static int check_form(const msgpack_object *env, envelope_view *view, char *kid, err_t *err)
{
    static const char *const FIELDS[] = {"v", "alg", "kid", "body", "sig"};
    if (env->type != MSGPACK_OBJECT_MAP || env->via.map.size != 5)
        return err_set(err, "malformed: not an envelope (a map of v, alg, kid, body, sig)");
    for (size_t i = 0; i < 5; i++)
        if (map_get(env, FIELDS[i]) == NULL)
            return err_set(err, "malformed: the envelope has no '%s'", FIELDS[i]);
    const msgpack_object *v = map_get(env, "v");
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 != 1)
        return err_set(err, "malformed: envelope version is not 1");
    if (copy_str(map_get(env, "alg"), view->alg, sizeof view->alg) != 0 ||
        (strcmp(view->alg, "ed25519") != 0 && strcmp(view->alg, "hmac-sha256") != 0))
        return err_set(err, "malformed: alg is not ed25519 or hmac-sha256");
    if (copy_str(map_get(env, "kid"), kid, KID_MAX + 1) != 0 || kid[0] == '\0')
        return err_set(err, "unknown_key: the kid is not a name of 1 to %d characters", KID_MAX);
    view->body = map_get(env, "body");
    view->sig = map_get(env, "sig");
    if (view->body->type != MSGPACK_OBJECT_BIN || view->sig->type != MSGPACK_OBJECT_BIN)
        return err_set(err, "malformed: body and sig must be bin");
    return 0;
}

/* Checks 2 and 3 against the agents' keys of this kid. */
static int check_signature(const envelope_view *view, const char *kid, const agent_key_t *keys, int key_count,
                           double now, err_t *err)
{
    int known = 0, current = 0;
    for (int i = 0; i < key_count; i++) {
        if (strcmp(keys[i].kid, kid) != 0)
            continue;
        known++;
        if (now < keys[i].not_before || now > keys[i].not_after)
            continue;
        current++;
        if (strcmp(view->alg, "ed25519") == 0 && view->sig->via.bin.size == crypto_sign_BYTES &&
            crypto_sign_verify_detached((const unsigned char *)view->sig->via.bin.ptr,
                                        (const unsigned char *)view->body->via.bin.ptr, view->body->via.bin.size,
                                        keys[i].public_key) == 0)
            return 0;
    }
    if (known == 0)
        return err_set(err, "unknown_key: '%s' is not an agent this device trusts (EDGE_AGENT_KEY_*)", kid);
    if (current == 0)
        return err_set(err, "revoked_key: the key of '%s' is outside its validity window", kid);
    if (strcmp(view->alg, "ed25519") != 0)
        return err_set(err, "bad_signature: agents sign with ed25519, this is %s", view->alg);
    return err_set(err, "bad_signature: the signature by '%s' (ed25519) does not verify with its key", kid);
}

/* The body: a result map naming this node and (when given) this task. */
static int check_body(reply_t *reply, const char *expected_id, err_t *err)
{
    const msgpack_object *root = reply->root;
    char node[KID_MAX + 1];
    if (root->type != MSGPACK_OBJECT_MAP)
        return err_set(err, "malformed: the result body is not a map");
    if (copy_str(map_get(root, "node"), node, sizeof node) != 0 || strcmp(node, reply->kid) != 0)
        return err_set(err, "wrong_node: the body names another node than its signer '%s'", reply->kid);
    if (copy_str(map_get(root, "id"), reply->id, sizeof reply->id) != 0 ||
        copy_str(map_get(root, "status"), reply->status, sizeof reply->status) != 0)
        return err_set(err, "malformed: the result has no id or status");
    if (expected_id != NULL && strcmp(reply->id, expected_id) != 0)
        return err_set(err, "wrong_task: the body names task '%s', not '%s'", reply->id, expected_id);
    return 0;
}

int reply_open(reply_t *reply, const void *payload, size_t len, const agent_key_t *keys, int key_count,
               const char *expected_id, double now, err_t *err)
{
    memset(reply, 0, sizeof *reply);
    msgpack_unpacked_init(&reply->body);
    if (len > MAX_PAYLOAD)
        return err_set(err, "too_large: %zu bytes", len);
    msgpack_unpacked env;
    msgpack_unpacked_init(&env);
    size_t off = 0;
    envelope_view view;
    int rc = -1;
    if (msgpack_unpack_next(&env, payload, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        err_set(err, "malformed: not one MessagePack value");
    else if (check_form(&env.data, &view, reply->kid, err) == 0 &&
             check_signature(&view, reply->kid, keys, key_count, now, err) == 0) {
        size_t boff = 0, blen = view.body->via.bin.size;
        reply->body_bytes = malloc(blen ? blen : 1);
        if (reply->body_bytes != NULL)
            memcpy(reply->body_bytes, view.body->via.bin.ptr, blen);
        if (reply->body_bytes == NULL ||
            msgpack_unpack_next(&reply->body, reply->body_bytes, blen, &boff) != MSGPACK_UNPACK_SUCCESS ||
            boff != blen)
            err_set(err, "malformed: the body is not one MessagePack value");
        else {
            reply->root = &reply->body.data;
            rc = check_body(reply, expected_id, err);
        }
    }
    msgpack_unpacked_destroy(&env);
    if (rc != 0)
        reply_free(reply);
    return rc;
}

void reply_free(reply_t *reply)
{
    msgpack_unpacked_destroy(&reply->body);
    free(reply->body_bytes);
    reply->body_bytes = NULL;
    reply->root = NULL;
}
