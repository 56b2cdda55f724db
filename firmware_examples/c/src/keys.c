/* Key files and agent key lines (keys.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "keys.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_FILE_MAX 4096
#define HMAC_PREFIX "hmac-sha256:"
#define PEM_BEGIN "-----BEGIN PRIVATE KEY-----"
#define PEM_END "-----END PRIVATE KEY-----"

/* PKCS#8 DER of an Ed25519 private key: this prefix, then the 32-byte seed (RFC 8410). */
static const uint8_t ED25519_PKCS8_PREFIX[16] = {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06,
                                                 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20};

const char *alg_name(alg_t alg)
{
    return alg == ALG_ED25519 ? "ed25519" : alg == ALG_HMAC ? "hmac-sha256" : "none";
}

alg_t alg_parse(const char *name)
{
    if (strcmp(name, "ed25519") == 0)
        return ALG_ED25519;
    if (strcmp(name, "hmac-sha256") == 0)
        return ALG_HMAC;
    return ALG_NONE;
}

static int load_hmac(signer_t *signer, const char *text, const char *what, err_t *err)
{
    const char *b64 = text + strlen(HMAC_PREFIX);
    size_t len = strcspn(b64, "\r\n");
    if (b64[len + strspn(b64 + len, "\r\n")] != '\0')
        return err_set(err, "%s: an HMAC key file is one line `hmac-sha256:<base64>`", what);
    long n = base64_decode(b64, len, signer->hmac_secret, sizeof signer->hmac_secret);
    if (n <= 0)
        return err_set(err, "%s: the HMAC secret is not base64 (of 1 to %d bytes)", what, HMAC_SECRET_MAX);
    signer->alg = ALG_HMAC;
    signer->hmac_len = (size_t)n;
    return 0;
}

static int load_pem(signer_t *signer, const char *text, const char *what, err_t *err)
{
    const char *begin = strstr(text, PEM_BEGIN);
    const char *end = begin == NULL ? NULL : strstr(begin, PEM_END);
    if (begin == NULL || end == NULL)
        return err_set(err, "%s: neither a PKCS#8 PEM (%s) nor an `hmac-sha256:` line", what, PEM_BEGIN);
    char b64[256];
    size_t n = 0;
    for (const char *p = begin + strlen(PEM_BEGIN); p < end; p++) {
        if (*p == '\n' || *p == '\r' || *p == ' ')
            continue;
        if (n + 1 >= sizeof b64)
            return err_set(err, "%s: not an Ed25519 key (the PEM is too long)", what);
        b64[n++] = *p;
    }
    uint8_t der[64];
    long len = base64_decode(b64, n, der, sizeof der);
    sodium_memzero(b64, sizeof b64);
    if (len != 48 || memcmp(der, ED25519_PKCS8_PREFIX, sizeof ED25519_PKCS8_PREFIX) != 0) {
        sodium_memzero(der, sizeof der);
        return err_set(err, "%s: the PEM is not an unencrypted Ed25519 PKCS#8 key", what);
    }
    uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_seed_keypair(public_key, signer->ed_secret, der + 16);
    sodium_memzero(der, sizeof der);
    signer->alg = ALG_ED25519;
    return 0;
}

int signer_load(signer_t *signer, const char *path, const char *what, err_t *err)
{
    memset(signer, 0, sizeof *signer);
    char *text = read_file(path, KEY_FILE_MAX, NULL);
    if (text == NULL)
        return err_set(err, "%s: cannot read %s: %s", what, path, strerror(errno));
    int rc = strncmp(text, HMAC_PREFIX, strlen(HMAC_PREFIX)) == 0 ? load_hmac(signer, text, what, err)
                                                                  : load_pem(signer, text, what, err);
    sodium_memzero(text, strlen(text));
    free(text);
    return rc;
}

size_t signer_sign(const signer_t *signer, const uint8_t *body, size_t len, uint8_t sig[64])
{
    if (signer->alg == ALG_ED25519) {
        crypto_sign_detached(sig, NULL, body, len, signer->ed_secret);
        return crypto_sign_BYTES;
    }
    crypto_auth_hmacsha256_state state;
    crypto_auth_hmacsha256_init(&state, signer->hmac_secret, signer->hmac_len);
    crypto_auth_hmacsha256_update(&state, body, len);
    crypto_auth_hmacsha256_final(&state, sig);
    sodium_memzero(&state, sizeof state);
    return crypto_auth_hmacsha256_BYTES;
}

void signer_wipe(signer_t *signer)
{
    sodium_memzero(signer, sizeof *signer);
}

static int parse_when(const char *text, double none, double *out)
{
    long long v = 0;
    if (strcmp(text, "-") == 0) {
        *out = none;
        return 0;
    }
    if (parse_int64(text, &v) != 0)
        return -1;
    *out = (double)v;
    return 0;
}

int agent_key_parse(agent_key_t *key, const char *line, const char *what, err_t *err)
{
    char kid[128], alg[32], b64[128], nb[32], na[32], extra[2];
    int fields = sscanf(line, "%127s %31s %127s %31s %31s %1s", kid, alg, b64, nb, na, extra);
    if (fields != 5)
        return err_set(err, "%s: expected `<kid> ed25519 <base64 public key> <not_before|-> <not_after|->`",
                       what);
    if (strlen(kid) > KID_MAX)
        return err_set(err, "%s: the kid is longer than %d characters", what, KID_MAX);
    if (strcmp(alg, "ed25519") != 0)
        return err_set(err, "%s: agents sign with ed25519, not '%s'", what, alg);
    if (base64_decode(b64, strlen(b64), key->public_key, sizeof key->public_key) !=
        (long)sizeof key->public_key)
        return err_set(err, "%s: the public key is not base64 of 32 bytes", what);
    if (parse_when(nb, -INFINITY, &key->not_before) != 0 || parse_when(na, INFINITY, &key->not_after) != 0)
        return err_set(err, "%s: not_before and not_after are epoch seconds or '-'", what);
    strcpy(key->kid, kid);
    return 0;
}
