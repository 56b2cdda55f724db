/* Key material: the device's signing key (Ed25519 PKCS#8 PEM or an `hmac-sha256:` line) and the
 * agents' public keys (EDGE_AGENT_KEY_<n> lines). Secrets live in these structs only and are wiped
 * by signer_wipe. Single-threaded. */
#ifndef EDGE_KEYS_H
#define EDGE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>

#include "util.h"

#define KID_MAX 64
#define HMAC_SECRET_MAX 256

typedef enum { ALG_NONE = 0, ALG_ED25519, ALG_HMAC } alg_t;

typedef struct {
    alg_t alg;
    uint8_t ed_secret[crypto_sign_SECRETKEYBYTES]; /* seed + public key, libsodium's form */
    uint8_t hmac_secret[HMAC_SECRET_MAX];
    size_t hmac_len;
} signer_t;

typedef struct {
    char kid[KID_MAX + 1];
    uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
    double not_before; /* -inf when none */
    double not_after;  /* +inf when none */
} agent_key_t;

const char *alg_name(alg_t alg);
/* "ed25519" or "hmac-sha256" to the enum; ALG_NONE otherwise. */
alg_t alg_parse(const char *name);

/* Reads a signing key file; `what` names the setting in messages. */
int signer_load(signer_t *signer, const char *path, const char *what, err_t *err);
/* The signature of `body` (64 bytes Ed25519, 32 bytes HMAC-SHA256); returns its length. */
size_t signer_sign(const signer_t *signer, const uint8_t *body, size_t len, uint8_t sig[64]);
void signer_wipe(signer_t *signer);

/* "<kid> ed25519 <base64 public key> <not_before|-> <not_after|->"; `what` names the setting. */
int agent_key_parse(agent_key_t *key, const char *line, const char *what, err_t *err);

#endif
