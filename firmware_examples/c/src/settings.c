/* device.env and flags (settings.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 1024

static const struct {
    const char *key;
    const char *flag; /* NULL: only in the file */
} DEFS[S_COUNT] = {
    [S_NAME] = {"EDGE_DEVICE_NAME", "--name"},
    [S_TARGET] = {"EDGE_DEVICE_TARGET", "--target"},
    [S_HOST] = {"EDGE_MQTT_HOST", "--host"},
    [S_PORT] = {"EDGE_MQTT_PORT", "--port"},
    [S_TLS] = {"EDGE_MQTT_TLS", "--tls"},
    [S_CA_FILE] = {"EDGE_MQTT_CA_FILE", "--ca-file"},
    [S_CERT_FILE] = {"EDGE_MQTT_CERT_FILE", "--cert-file"},
    [S_KEY_FILE] = {"EDGE_MQTT_KEY_FILE", "--key-file"},
    [S_USERNAME] = {"EDGE_MQTT_USERNAME", "--username"},
    [S_PASSWORD_FILE] = {"EDGE_MQTT_PASSWORD_FILE", "--password-file"},
    [S_PREFIX] = {"EDGE_MQTT_PREFIX", "--prefix"},
    [S_KID] = {"EDGE_SECURITY_KID", "--kid"},
    [S_ALG] = {"EDGE_SECURITY_ALG", "--alg"},
    [S_SIGNING_KEY] = {"EDGE_SECURITY_SIGNING_KEY", "--signing-key"},
    [S_TRUST_STORE] = {"EDGE_SECURITY_TRUST_STORE", NULL},
    [S_SUBMIT_REPLY] = {"EDGE_SUBMIT_REPLY", NULL},
    [S_AGENT_KEYS] = {"EDGE_AGENT_KEYS", NULL},
};

#define AGENT_KEY_PREFIX "EDGE_AGENT_KEY_"

const char *settings_flag_of(setting_id id) { return DEFS[id].flag; }
const char *settings_key_of(setting_id id) { return DEFS[id].key; }

void settings_init(settings_t *s)
{
    memset(s, 0, sizeof *s);
}

static void raw_set(raw_setting *r, const char *value, const char *where, int from_file)
{
    free(r->value);
    r->value = malloc(strlen(value) + 1);
    if (r->value == NULL) {
        fputs("edge-device: out of memory\n", stderr);
        exit(EXIT_USAGE);
    }
    strcpy(r->value, value);
    snprintf(r->where, sizeof r->where, "%s", where);
    r->from_file = from_file;
}

void settings_free(settings_t *s)
{
    for (int i = 0; i < S_COUNT; i++)
        free(s->raw[i].value);
    for (int i = 0; i <= MAX_AGENT_KEYS; i++)
        free(s->agent_key[i].value);
    free(s->env_dir);
    memset(s, 0, sizeof *s);
}

/* Where a line's setting lives, for messages: "dir/device.env:12". */
static void where_line(const settings_t *s, int line, char *out)
{
    snprintf(out, WHERE_LEN, "%.300s:%d", s->env_path, line);
}

/* The slot of KEY in the table, or NULL (an unknown key). */
static raw_setting *slot_of(settings_t *s, const char *key, const char *where, err_t *err, int *unknown)
{
    for (int i = 0; i < S_COUNT; i++)
        if (strcmp(key, DEFS[i].key) == 0)
            return &s->raw[i];
    if (strncmp(key, AGENT_KEY_PREFIX, strlen(AGENT_KEY_PREFIX)) == 0) {
        long long n = 0;
        if (parse_int64(key + strlen(AGENT_KEY_PREFIX), &n) != 0 || n < 1 || n > MAX_AGENT_KEYS) {
            err_set(err, "%s: %s: the number must be 1 to %d", where, key, MAX_AGENT_KEYS);
            return NULL;
        }
        return &s->agent_key[n];
    }
    *unknown = 1;
    return NULL;
}

/* The value of a line after `=`: bare, or in double quotes (no escapes). */
static int unquote(char *value, const char *where, const char *key, err_t *err)
{
    size_t len = strlen(value);
    if (value[0] == '"') {
        if (len < 2 || value[len - 1] != '"' || memchr(value + 1, '"', len - 2) != NULL)
            return err_set(err, "%s: %s: a quoted value must end with its only other '\"'", where, key);
        memmove(value, value + 1, len - 2);
        value[len - 2] = '\0';
        return 0;
    }
    if (strpbrk(value, " \t\"'\\") != NULL)
        return err_set(err, "%s: %s: a value with spaces or quotes must be in double quotes", where, key);
    return 0;
}

static int parse_line(settings_t *s, char *line, int number, err_t *err)
{
    char where[WHERE_LEN];
    where_line(s, number, where);
    line[strcspn(line, "\r\n")] = '\0';
    char *p = line + strspn(line, " \t");
    if (*p == '\0' || *p == '#')
        return 0;
    char *eq = strchr(p, '=');
    if (eq == NULL)
        return err_set(err, "%s: expected KEY=VALUE, got '%.60s'", where, p);
    *eq = '\0';
    const char *key = p;
    if (*key == '\0' || strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != strlen(key))
        return err_set(err, "%s: '%.60s' is not a KEY (upper case, digits, _)", where, key);
    if (unquote(eq + 1, where, key, err) != 0)
        return -1;
    int unknown = 0;
    raw_setting *slot = slot_of(s, key, where, err, &unknown);
    if (unknown) {
        fprintf(stderr, "edge-device: warning: %s: unknown setting %s ignored\n", where, key);
        return 0;
    }
    if (slot == NULL)
        return -1;
    if (slot->value != NULL && !slot->from_file)
        return 0; /* a flag gave it: the flag wins */
    if (slot->value != NULL)
        return err_set(err, "%s: %s is set twice (first at %s)", where, key, slot->where);
    raw_set(slot, eq + 1, where, 1);
    return 0;
}

int settings_load_file(settings_t *s, const char *path, int required, err_t *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        if (!required && errno == ENOENT)
            return 0;
        return err_set(err, "--env: cannot read %s: %s", path, strerror(errno));
    }
    snprintf(s->env_path, sizeof s->env_path, "%s", path);
    const char *slash = strrchr(path, '/');
    s->env_dir = malloc(slash == NULL ? 2 : (size_t)(slash - path) + 2);
    if (s->env_dir != NULL) {
        if (slash == NULL)
            strcpy(s->env_dir, ".");
        else
            snprintf(s->env_dir, (size_t)(slash - path) + 2, "%s", slash == path ? "/" : path);
    }
    char line[LINE_MAX_LEN + 2];
    int number = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        number++;
        if (strlen(line) > LINE_MAX_LEN && strchr(line, '\n') == NULL) {
            char where[WHERE_LEN];
            where_line(s, number, where);
            rc = err_set(err, "%s: line longer than %d characters", where, LINE_MAX_LEN);
            break;
        }
        rc = parse_line(s, line, number, err);
    }
    fclose(f);
    return rc;
}

int settings_flag(settings_t *s, const char *flag, const char *value)
{
    if (strcmp(flag, "--agent-key") == 0) {
        if (s->agent_key_flags == 0) /* the flags replace the file's keys */
            for (int i = 0; i <= MAX_AGENT_KEYS; i++) {
                free(s->agent_key[i].value);
                s->agent_key[i].value = NULL;
            }
        if (s->agent_key_flags < MAX_AGENT_KEYS) {
            s->agent_key_flags++;
            raw_set(&s->agent_key[s->agent_key_flags], value, "--agent-key", 0);
        }
        return 1;
    }
    for (int i = 0; i < S_COUNT; i++) {
        if (DEFS[i].flag != NULL && strcmp(flag, DEFS[i].flag) == 0) {
            raw_set(&s->raw[i], value, flag, 0);
            return 1;
        }
    }
    return 0;
}

/* ---- validation ---------------------------------------------------------------------------- */

/* "device.env:9: EDGE_MQTT_PORT" or "--port (EDGE_MQTT_PORT)". */
static void describe(const raw_setting *r, const char *key, char *out)
{
    if (r->from_file)
        snprintf(out, WHERE_LEN, "%.200s: %s", r->where, key);
    else
        snprintf(out, WHERE_LEN, "%.200s (%s)", r->where, key);
}

static int missing(const settings_t *s, setting_id id, err_t *err)
{
    const char *flag = DEFS[id].flag;
    return err_set(err, "%s is not set (in %s%s%s)", DEFS[id].key, s->env_path[0] ? s->env_path : "device.env",
                   flag ? ", or " : "", flag ? flag : "");
}

/* A required text value: set and non-empty. */
static int need_text(const settings_t *s, setting_id id, const char **out, err_t *err)
{
    const raw_setting *r = &s->raw[id];
    if (r->value == NULL || r->value[0] == '\0')
        return missing(s, id, err);
    *out = r->value;
    return 0;
}

/* Topic-safe names (PROTOCOL 1): [A-Za-z0-9_.:-]{1,64}. */
static int name_ok(const char *text)
{
    size_t len = strlen(text);
    return len >= 1 && len <= 64 &&
           strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") == len;
}

static int need_name(const settings_t *s, setting_id id, const char **out, err_t *err)
{
    if (need_text(s, id, out, err) != 0)
        return -1;
    if (!name_ok(*out)) {
        char what[WHERE_LEN];
        describe(&s->raw[id], DEFS[id].key, what);
        return err_set(err, "%s: '%.80s' is not a name ([A-Za-z0-9_.:-], 1 to 64)", what, *out);
    }
    return 0;
}

/* A file setting resolved against the env file's directory and checked readable; NULL if unset
 * and optional. */
static int need_file(const settings_t *s, setting_id id, int required, char **out, err_t *err)
{
    const raw_setting *r = &s->raw[id];
    *out = NULL;
    if (r->value == NULL || r->value[0] == '\0')
        return required ? missing(s, id, err) : 0;
    char *path = join_path(r->from_file ? s->env_dir : NULL, r->value);
    FILE *f = path == NULL ? NULL : fopen(path, "rb");
    if (f == NULL) {
        char what[WHERE_LEN];
        describe(r, DEFS[id].key, what);
        int rc = err_set(err, "%s: cannot read %.200s: %s", what, path ? path : r->value, strerror(errno));
        free(path);
        return rc;
    }
    fclose(f);
    *out = path;
    return 0;
}

static int resolve_signer(const settings_t *s, device_config *cfg, err_t *err)
{
    char *path = NULL;
    char what[WHERE_LEN];
    if (need_name(s, S_KID, &cfg->kid, err) != 0 || need_file(s, S_SIGNING_KEY, 1, &path, err) != 0)
        return -1;
    describe(&s->raw[S_SIGNING_KEY], DEFS[S_SIGNING_KEY].key, what);
    int rc = signer_load(&cfg->signer, path, what, err);
    free(path);
    if (rc != 0)
        return -1;
    const raw_setting *alg = &s->raw[S_ALG];
    if (alg->value != NULL && alg->value[0] != '\0') {
        describe(alg, DEFS[S_ALG].key, what);
        alg_t wanted = alg_parse(alg->value);
        if (wanted == ALG_NONE)
            return err_set(err, "%s: '%.40s' is not ed25519 or hmac-sha256", what, alg->value);
        if (wanted != cfg->signer.alg)
            return err_set(err, "%s: %s, but %s holds an %s key", what, alg->value, DEFS[S_SIGNING_KEY].key,
                           alg_name(cfg->signer.alg));
    }
    return 0;
}

static int resolve_port(const settings_t *s, device_config *cfg, err_t *err)
{
    const char *text = NULL;
    long long port = 0;
    if (need_text(s, S_PORT, &text, err) != 0)
        return -1;
    if (parse_int64(text, &port) != 0 || port < 1 || port > 65535) {
        char what[WHERE_LEN];
        describe(&s->raw[S_PORT], DEFS[S_PORT].key, what);
        return err_set(err, "%s: '%.40s' is not a port number (1 to 65535)", what, text);
    }
    cfg->port = (int)port;
    return 0;
}

static int resolve_tls(const settings_t *s, device_config *cfg, err_t *err)
{
    const raw_setting *r = &s->raw[S_TLS];
    const char *v = r->value == NULL || r->value[0] == '\0' ? "true" : r->value;
    if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
        char what[WHERE_LEN];
        describe(r, DEFS[S_TLS].key, what);
        return err_set(err, "%s: '%.40s' is not true or false", what, v);
    }
    cfg->tls = strcmp(v, "true") == 0;
    if (!cfg->tls)
        return 0;
    if (need_file(s, S_CA_FILE, 1, &cfg->ca_file, err) != 0 ||
        need_file(s, S_CERT_FILE, 0, &cfg->cert_file, err) != 0 ||
        need_file(s, S_KEY_FILE, cfg->cert_file != NULL, &cfg->key_file, err) != 0)
        return -1;
    return 0;
}

static int resolve_password(const settings_t *s, device_config *cfg, err_t *err)
{
    char *path = NULL;
    if (need_file(s, S_PASSWORD_FILE, 0, &path, err) != 0)
        return -1;
    if (path == NULL)
        return 0;
    char *text = read_file(path, sizeof cfg->password - 1, NULL);
    free(path);
    if (text == NULL) {
        char what[WHERE_LEN];
        describe(&s->raw[S_PASSWORD_FILE], DEFS[S_PASSWORD_FILE].key, what);
        return err_set(err, "%s: cannot read the password (%s)", what, strerror(errno));
    }
    text[strcspn(text, "\r\n")] = '\0';
    snprintf(cfg->password, sizeof cfg->password, "%s", text);
    sodium_memzero(text, strlen(text));
    free(text);
    cfg->has_password = 1;
    return 0;
}

static int resolve_broker(const settings_t *s, device_config *cfg, err_t *err)
{
    if (need_text(s, S_HOST, &cfg->host, err) != 0 || resolve_port(s, cfg, err) != 0 ||
        resolve_tls(s, cfg, err) != 0 || resolve_password(s, cfg, err) != 0)
        return -1;
    const raw_setting *user = &s->raw[S_USERNAME];
    cfg->username = user->value != NULL && user->value[0] != '\0' ? user->value : NULL;
    if (cfg->has_password && cfg->username == NULL)
        return missing(s, S_USERNAME, err);
    return 0;
}

/* EDGE_AGENT_KEYS=<n> and EDGE_AGENT_KEY_1..n (or the --agent-key flags). */
static int resolve_agent_keys(const settings_t *s, device_config *cfg, err_t *err)
{
    long long count = s->agent_key_flags;
    if (count == 0) {
        const raw_setting *r = &s->raw[S_AGENT_KEYS];
        const char *text = NULL;
        if (need_text(s, S_AGENT_KEYS, &text, err) != 0)
            return -1;
        if (parse_int64(text, &count) != 0 || count < 1 || count > MAX_AGENT_KEYS) {
            char what[WHERE_LEN];
            describe(r, DEFS[S_AGENT_KEYS].key, what);
            return err_set(err, "%s: '%.40s' is not a key count (1 to %d): this device could verify no reply",
                           what, text, MAX_AGENT_KEYS);
        }
    }
    for (int i = 1; i <= count; i++) {
        const raw_setting *r = &s->agent_key[i];
        char key[32], what[WHERE_LEN];
        snprintf(key, sizeof key, AGENT_KEY_PREFIX "%d", i);
        if (r->value == NULL)
            return err_set(err, "%s is not set (%s says %lld keys)", key, DEFS[S_AGENT_KEYS].key, count);
        describe(r, key, what);
        if (agent_key_parse(&cfg->agent_keys[i - 1], r->value, what, err) != 0)
            return -1;
    }
    cfg->agent_key_count = (int)count;
    return 0;
}

static int resolve_target(const settings_t *s, device_config *cfg, err_t *err)
{
    if (need_text(s, S_TARGET, &cfg->target, err) != 0)
        return -1;
    const char *name = strncmp(cfg->target, "pool:", 5) == 0 ? cfg->target + 5 : cfg->target;
    if (!name_ok(name) || strchr(name, ':') != NULL) {
        char what[WHERE_LEN];
        describe(&s->raw[S_TARGET], DEFS[S_TARGET].key, what);
        return err_set(err, "%s: '%.80s' is not a node id, `all` or `pool:NAME`", what, cfg->target);
    }
    return 0;
}

int settings_resolve(const settings_t *s, int needs, device_config *cfg, err_t *err)
{
    memset(cfg, 0, sizeof *cfg);
    const raw_setting *prefix = &s->raw[S_PREFIX];
    cfg->prefix = prefix->value != NULL && prefix->value[0] != '\0' ? prefix->value : "edge";
    cfg->name = s->raw[S_NAME].value;
    if ((needs & NEED_TASK) && (resolve_target(s, cfg, err) != 0 || resolve_signer(s, cfg, err) != 0))
        return -1;
    if ((needs & NEED_BROKER) && resolve_broker(s, cfg, err) != 0)
        return -1;
    if ((needs & NEED_AGENT_KEYS) && resolve_agent_keys(s, cfg, err) != 0)
        return -1;
    return 0;
}

void config_free(device_config *cfg)
{
    free(cfg->ca_file);
    free(cfg->cert_file);
    free(cfg->key_file);
    signer_wipe(&cfg->signer);
    sodium_memzero(cfg->password, sizeof cfg->password);
    memset(cfg, 0, sizeof *cfg);
}
