/* Command-line parsing (args.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "args.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char USAGE[] =
    "usage: edge-device [send] [options]            sign a task, publish it, print its verified reply\n"
    "       edge-device --every 1s [options]        sensor loop: a task per period until SIGINT/SIGTERM\n"
    "       edge-device encode [task options]       print the body, signature and envelope in hex\n"
    "       edge-device encode-array DTYPE:SHAPE:NUMBERS   print an ndarray's ext 1 in hex\n"
    "       edge-device verify [--expect-id ID] HEX  verify an agent's reply envelope, print it\n"
    "\n"
    "settings (device.env, the flags win):\n"
    "  --env FILE (./device.env)  --name --target --host --port --tls true|false --ca-file --cert-file\n"
    "  --key-file --username --password-file --prefix --kid --alg --signing-key\n"
    "  --agent-key \"KID ed25519 BASE64 NOT_BEFORE|- NOT_AFTER|-\" (repeat; replaces EDGE_AGENT_KEY_*)\n"
    "task:\n"
    "  --kernel K (stats)  --signal NUMBERS  --list NAME=[SHAPE:]NUMBERS  --array NAME=[DTYPE:][SHAPE:]NUMBERS\n"
    "  --int NAME=N  --float NAME=X  --id ID  --ttl S (300)  --priority 0-9  --timeout S  --max-retries N\n"
    "  --trace TRACEPARENT  --issued-at T  --nonce HEX  --no-reply (encode only)\n"
    "run:\n"
    "  --wait-timeout S (30)  --json  --every PERIOD  --sensor-file PATH  --window N (10)\n"
    "exit status: 0 completed; 1 not completed or refused; 2 usage or configuration; 3 no verified reply\n"
    "in time; 4 broker unreachable, login refused or TLS failed\n";

double parse_period(const char *text)
{
    char *end = NULL;
    double v = strtod(text, &end);
    if (end == text || !isfinite(v) || v <= 0)
        return -1;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        return v;
    if (strcmp(end, "ms") == 0)
        return v / 1000.0;
    if (strcmp(end, "m") == 0)
        return v * 60.0;
    return -1;
}

static int add_param(options_t *o, param_kind kind, const char *flag, const char *value, err_t *err)
{
    if (o->task.param_count == MAX_PARAMS)
        return err_set(err, "%s: at most %d params", flag, MAX_PARAMS);
    param_t *p = &o->task.params[o->task.param_count];
    int rc = param_parse(p, kind, flag, value, err);
    o->task.param_count++; /* freed by args_free even when it failed */
    return rc;
}

static int number_option(const char *flag, const char *value, double lo, double hi, double *out, err_t *err)
{
    if (parse_double(value, out) != 0 || !(*out >= lo && *out <= hi))
        return err_set(err, "%s: '%.40s' is not a number from %g to %g", flag, value, lo, hi);
    return 0;
}

static int int_option(const char *flag, const char *value, long long lo, long long hi, long long *out, err_t *err)
{
    if (parse_int64(value, out) != 0 || *out < lo || *out > hi)
        return err_set(err, "%s: '%.40s' is not an integer from %lld to %lld", flag, value, lo, hi);
    return 0;
}

static int set_id(options_t *o, const char *value, err_t *err)
{
    size_t len = strlen(value);
    if (len < 1 || len > TASK_ID_MAX ||
        strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") != len)
        return err_set(err, "--id: '%.80s' is not an id ([A-Za-z0-9_.:-], 1 to 64)", value);
    strcpy(o->task.id, value);
    return 0;
}

static int set_nonce(options_t *o, const char *value, err_t *err)
{
    long n = hex_decode(value, o->task.nonce, sizeof o->task.nonce);
    if (n < 8 || n > 32)
        return err_set(err, "--nonce: hex of 8 to 32 bytes");
    o->task.nonce_len = (size_t)n;
    return 0;
}

/* The task's own options; 1 if `flag` was not one of them. */
static int task_option(options_t *o, const char *flag, const char *value, err_t *err)
{
    task_spec *t = &o->task;
    long long n = 0;
    if (strcmp(flag, "--kernel") == 0)
        t->kernel = value;
    else if (strcmp(flag, "--signal") == 0) {
        char text[16 + 8192];
        if (snprintf(text, sizeof text, "signal=%s", value) >= (int)sizeof text)
            return err_set(err, "--signal: too long (use --array)");
        return add_param(o, P_LIST, flag, text, err);
    } else if (strcmp(flag, "--list") == 0)
        return add_param(o, P_LIST, flag, value, err);
    else if (strcmp(flag, "--array") == 0)
        return add_param(o, P_ARRAY, flag, value, err);
    else if (strcmp(flag, "--int") == 0)
        return add_param(o, P_INT, flag, value, err);
    else if (strcmp(flag, "--float") == 0)
        return add_param(o, P_FLOAT, flag, value, err);
    else if (strcmp(flag, "--id") == 0)
        return set_id(o, value, err);
    else if (strcmp(flag, "--nonce") == 0)
        return set_nonce(o, value, err);
    else if (strcmp(flag, "--ttl") == 0)
        return number_option(flag, value, 1, 86400, &t->ttl_s, err);
    else if (strcmp(flag, "--issued-at") == 0)
        return number_option(flag, value, 0, 1e11, &t->issued_at, err);
    else if (strcmp(flag, "--timeout") == 0)
        return number_option(flag, value, 0.001, 86400, &t->timeout_s, err);
    else if (strcmp(flag, "--priority") == 0)
        return int_option(flag, value, 0, 9, &t->priority, err);
    else if (strcmp(flag, "--max-retries") == 0)
        return int_option(flag, value, 0, 10, &t->max_retries, err);
    else if (strcmp(flag, "--trace") == 0)
        t->trace = value;
    else if (strcmp(flag, "--window") == 0) {
        if (int_option(flag, value, 1, 4096, &n, err) != 0)
            return -1;
        o->window = (int)n;
    } else
        return 1;
    return 0;
}

/* The program's options that take a value; 1 if `flag` is not one. */
static int run_option(options_t *o, const char *flag, const char *value, err_t *err)
{
    if (strcmp(flag, "--env") == 0) {
        o->env_path = value;
        o->env_given = 1;
    } else if (strcmp(flag, "--wait-timeout") == 0)
        return number_option(flag, value, 0.1, 86400, &o->wait_timeout_s, err);
    else if (strcmp(flag, "--every") == 0) {
        o->every_s = parse_period(value);
        if (o->every_s < 0.05 || o->every_s > 86400)
            return err_set(err, "--every: '%.40s' is not a period like 1s, 500ms or 2m (50ms to 1 day)", value);
    } else if (strcmp(flag, "--sensor-file") == 0)
        o->sensor_file = value;
    else if (strcmp(flag, "--expect-id") == 0)
        o->expect_id = value;
    else if (settings_flag(&o->settings, flag, value))
        return 0;
    else
        return task_option(o, flag, value, err);
    return 0;
}

static int switch_option(options_t *o, const char *flag)
{
    if (strcmp(flag, "--json") == 0)
        o->json = 1;
    else if (strcmp(flag, "--no-reply") == 0)
        o->task.reply = 0;
    else if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0)
        o->command = CMD_HELP;
    else
        return 1;
    return 0;
}

static int command_word(options_t *o, const char *word)
{
    static const struct {
        const char *word;
        command_t command;
    } WORDS[] = {{"send", CMD_SEND}, {"encode", CMD_ENCODE}, {"encode-array", CMD_ENCODE_ARRAY},
                 {"verify", CMD_VERIFY}, {"help", CMD_HELP}};
    for (size_t i = 0; i < sizeof WORDS / sizeof WORDS[0]; i++)
        if (strcmp(word, WORDS[i].word) == 0) {
            o->command = WORDS[i].command;
            return 1;
        }
    return 0;
}

/* One `--flag value`, `--flag=value` or switch at argv[*i]. */
static int one_option(options_t *o, int argc, char **argv, int *i, err_t *err)
{
    char flag[64];
    const char *arg = argv[*i], *value = NULL;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    snprintf(flag, sizeof flag, "%.*s", (int)(len < sizeof flag ? len : sizeof flag - 1), arg);
    if (eq == NULL && switch_option(o, flag) == 0)
        return 0;
    if (eq != NULL)
        value = eq + 1;
    else if (*i + 1 < argc)
        value = argv[++*i];
    else
        return err_set(err, "%s: needs a value (or is unknown; see --help)", flag);
    int rc = run_option(o, flag, value, err);
    if (rc == 1)
        return err_set(err, "%s: unknown option (see --help)", flag);
    return rc;
}

int args_parse(options_t *o, int argc, char **argv, err_t *err)
{
    memset(o, 0, sizeof *o);
    settings_init(&o->settings);
    task_spec_init(&o->task);
    o->command = CMD_SEND;
    o->env_path = "device.env";
    o->wait_timeout_s = 30.0;
    o->window = 10;
    int first = 1;
    if (argc > 1 && command_word(o, argv[1]))
        first = 2;
    for (int i = first; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) == 0 || strcmp(argv[i], "-h") == 0) {
            if (one_option(o, argc, argv, &i, err) != 0)
                return -1;
        } else if (o->operand == NULL && (o->command == CMD_ENCODE_ARRAY || o->command == CMD_VERIFY))
            o->operand = argv[i];
        else
            return err_set(err, "'%.60s': unexpected argument (see --help)", argv[i]);
    }
    if ((o->command == CMD_ENCODE_ARRAY || o->command == CMD_VERIFY) && o->operand == NULL)
        return err_set(err, "%s: needs its argument (see --help)",
                       o->command == CMD_VERIFY ? "verify" : "encode-array");
    if (o->command == CMD_SEND && !o->task.reply)
        return err_set(err, "--no-reply: only for encode (this program waits for its reply)");
    return 0;
}

void args_free(options_t *o)
{
    task_spec_free(&o->task);
    settings_free(&o->settings);
}
