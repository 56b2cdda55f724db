/* The device's settings: device.env (KEY=VALUE lines that `edge-provision bundle` writes), then
 * command-line flags over them; validated into a device_config with messages that name the KEY and
 * where it came from (file:line or the flag). Single-threaded. */
#ifndef EDGE_SETTINGS_H
#define EDGE_SETTINGS_H

#include "keys.h"
#include "util.h"

#define MAX_AGENT_KEYS 64
#define WHERE_LEN 320

typedef enum {
    S_NAME,
    S_TARGET,
    S_HOST,
    S_PORT,
    S_TLS,
    S_CA_FILE,
    S_CERT_FILE,
    S_KEY_FILE,
    S_USERNAME,
    S_PASSWORD_FILE,
    S_PREFIX,
    S_KID,
    S_ALG,
    S_SIGNING_KEY,
    S_TRUST_STORE, /* for TOML readers; this program uses EDGE_AGENT_KEY_<n> */
    S_SUBMIT_REPLY, /* edge-submit's; this program always asks for a reply */
    S_AGENT_KEYS,
    S_COUNT
} setting_id;

typedef struct {
    char *value;           /* heap; NULL when unset */
    char where[WHERE_LEN]; /* "device.env:12" or "--port" */
    int from_file;         /* relative paths are relative to the file's directory */
} raw_setting;

typedef struct {
    raw_setting raw[S_COUNT];
    raw_setting agent_key[MAX_AGENT_KEYS + 1]; /* EDGE_AGENT_KEY_<n>, 1-based */
    int agent_key_flags;                       /* --agent-key given: the file's keys are not used */
    char env_path[WHERE_LEN];
    char *env_dir;
} settings_t;

/* What a command needs from the settings. */
enum { NEED_TASK = 1, NEED_BROKER = 2, NEED_AGENT_KEYS = 4 };

typedef struct {
    const char *name, *target, *host, *username, *prefix, *kid;
    int port, tls;
    char *ca_file, *cert_file, *key_file; /* heap, resolved */
    char password[256];
    int has_password;
    signer_t signer;
    agent_key_t agent_keys[MAX_AGENT_KEYS];
    int agent_key_count;
} device_config;

void settings_init(settings_t *s);
void settings_free(settings_t *s);
/* Reads `path`; a missing file is an error only when `required` (--env given). */
int settings_load_file(settings_t *s, const char *path, int required, err_t *err);
/* A flag's value over the file's; returns 1 if `flag` is a settings flag, 0 if not. */
int settings_flag(settings_t *s, const char *flag, const char *value);
/* Validates what `needs` asks for into `cfg` (its heap parts freed by config_free). */
int settings_resolve(const settings_t *s, int needs, device_config *cfg, err_t *err);
void config_free(device_config *cfg);
/* The flag that sets a key, for help and messages. */
const char *settings_flag_of(setting_id id);
const char *settings_key_of(setting_id id);

#endif
