/* edge-device: a Linux device's side of the edge task protocol. main() and the five commands;
 * the pieces live in settings (device.env), keys, params, task, link (libmosquitto), reply
 * (verification), show (printing) and sensor. One thread: signals only set a flag that the loops
 * read; libmosquitto's callbacks run inside link_pump. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <sodium.h>

#include "args.h"
#include "link.h"
#include "reply.h"
#include "sensor.h"
#include "show.h"
#include "task.h"

#define MAX_PENDING 64
#define CONNECT_TIMEOUT_S 15.0

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void trap_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- the tasks waiting for their replies ------------------------------------------------------- */

typedef struct {
    char id[TASK_ID_MAX + 1];
    double deadline;
} pending_t;

typedef struct {
    const device_config *cfg;
    const options_t *opt;
    char reply_prefix[TOPIC_MAX]; /* "{p}/replies/{kid}/" */
    pending_t pending[MAX_PENDING];
    int pending_count;
    int forged;
    int answered;
    int last_exit;
} session_t;

static int pending_find(const session_t *s, const char *id)
{
    for (int i = 0; i < s->pending_count; i++)
        if (strcmp(s->pending[i].id, id) == 0)
            return i;
    return -1;
}

static void pending_remove(session_t *s, int i)
{
    s->pending[i] = s->pending[--s->pending_count];
}

static void pending_add(session_t *s, const char *id, double deadline)
{
    if (s->pending_count == MAX_PENDING) {
        fprintf(stderr, "edge-device: too many tasks waiting; giving up on %s\n", s->pending[0].id);
        pending_remove(s, 0);
    }
    snprintf(s->pending[s->pending_count].id, TASK_ID_MAX + 1, "%s", id);
    s->pending[s->pending_count++].deadline = deadline;
}

/* Tasks whose reply did not come in time (the sensor loop goes on). */
static void pending_expire(session_t *s, double now)
{
    for (int i = s->pending_count - 1; i >= 0; i--)
        if (now > s->pending[i].deadline) {
            fprintf(stderr, "edge-device: no verified reply for task %s within %g s\n", s->pending[i].id,
                    s->opt->wait_timeout_s);
            pending_remove(s, i);
        }
}

/* A message on the replies topic: verified, then printed once, or refused on stderr. */
static void on_reply(void *ctx, const char *topic, const void *payload, size_t len)
{
    session_t *s = ctx;
    size_t plen = strlen(s->reply_prefix);
    const char *id = strncmp(topic, s->reply_prefix, plen) == 0 ? topic + plen : NULL;
    reply_t reply;
    err_t err;
    if (id == NULL || reply_open(&reply, payload, len, s->cfg->agent_keys, s->cfg->agent_key_count, id, now_s(),
                                 &err) != 0) {
        s->forged++;
        fprintf(stderr, "edge-device: refused a reply on %s: %s (not shown as a result)\n", topic,
                id == NULL ? "not a replies topic of this device" : err.text);
        return;
    }
    int i = pending_find(s, reply.id);
    if (i >= 0) { /* else a duplicate (at least once delivery) or a task given up on */
        pending_remove(s, i);
        show_reply(stdout, &reply, s->opt->json);
        s->answered++;
        s->last_exit = strcmp(reply.status, "completed") == 0 ? EXIT_OK : EXIT_NOT_COMPLETED;
    }
    reply_free(&reply);
}

/* ---- commands ------------------------------------------------------------------------------------ */

/* One signed task, ready to publish (built_free releases it). */
typedef struct {
    char topic[TOPIC_MAX];
    msgpack_sbuffer body, envelope;
    uint8_t sig[64];
    size_t sig_len;
} built_t;

static void built_make(built_t *b, const device_config *cfg, task_spec *t)
{
    msgpack_sbuffer_init(&b->body);
    msgpack_sbuffer_init(&b->envelope);
    task_spec_fresh(t);
    task_pack_body(t, cfg->target, &b->body);
    envelope_pack(&cfg->signer, cfg->kid, &b->body, &b->envelope, b->sig, &b->sig_len);
    task_topic(cfg->prefix, cfg->target, b->topic);
}

static void built_free(built_t *b)
{
    msgpack_sbuffer_destroy(&b->body);
    msgpack_sbuffer_destroy(&b->envelope);
}

static void print_hex_line(const char *label, const void *data, size_t len)
{
    char *hex = malloc(2 * len + 1);
    if (hex == NULL)
        return;
    hex_encode(data, len, hex);
    printf("%s %s\n", label, hex);
    free(hex);
}

static int cmd_encode(options_t *o, const device_config *cfg)
{
    built_t b;
    built_make(&b, cfg, &o->task);
    printf("topic %s\nid %s\n", b.topic, o->task.id);
    print_hex_line("body", b.body.data, b.body.size);
    print_hex_line("sig", b.sig, b.sig_len);
    print_hex_line("envelope", b.envelope.data, b.envelope.size);
    built_free(&b);
    return EXIT_OK;
}

static int cmd_encode_array(const options_t *o, err_t *err)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    int rc = array_pack_spec(&pk, o->operand, err);
    if (rc == 0)
        print_hex_line("msgpack", out.data, out.size);
    msgpack_sbuffer_destroy(&out);
    return rc == 0 ? EXIT_OK : EXIT_USAGE;
}

static int cmd_verify(const options_t *o, const device_config *cfg, err_t *err)
{
    size_t cap = strlen(o->operand) / 2 + 1;
    uint8_t *payload = malloc(cap);
    long len = payload == NULL ? -1 : hex_decode(o->operand, payload, cap);
    if (len < 0) {
        free(payload);
        err_set(err, "verify: the envelope must be hex");
        return EXIT_USAGE;
    }
    reply_t reply;
    int rc = reply_open(&reply, payload, (size_t)len, cfg->agent_keys, cfg->agent_key_count, o->expect_id, now_s(),
                        err);
    free(payload);
    if (rc != 0) {
        fprintf(stderr, "edge-device: refused: %s\n", err->text);
        err->text[0] = '\0';
        return EXIT_NOT_COMPLETED;
    }
    show_reply(stdout, &reply, o->json);
    rc = strcmp(reply.status, "completed") == 0 ? EXIT_OK : EXIT_NOT_COMPLETED;
    reply_free(&reply);
    return rc;
}

static int publish_task(link_t *link, session_t *s, task_spec *t, err_t *err)
{
    built_t b;
    built_make(&b, s->cfg, t);
    int rc = link_publish(link, b.topic, b.envelope.data, b.envelope.size, err);
    if (rc == 0)
        pending_add(s, t->id, now_s() + s->opt->wait_timeout_s);
    built_free(&b);
    return rc;
}

static int timed_out(const session_t *s)
{
    if (s->forged > 0)
        fprintf(stderr, "edge-device: no verified reply within %g s; only %d forged or invalid replies came, all refused\n",
                s->opt->wait_timeout_s, s->forged);
    else
        fprintf(stderr, "edge-device: no reply within %g s\n", s->opt->wait_timeout_s);
    return EXIT_TIMEOUT;
}

/* One task: subscribe to its reply topic, publish, wait for the verified reply. */
static int cmd_send(options_t *o, session_t *s, err_t *err)
{
    link_t link;
    char filter[TOPIC_MAX];
    task_spec_fresh(&o->task); /* the id first: the subscription names it */
    reply_topic(s->cfg->prefix, s->cfg->kid, o->task.id, filter);
    int rc = link_open(&link, s->cfg, filter, on_reply, s, CONNECT_TIMEOUT_S, err);
    if (rc == 0 && publish_task(&link, s, &o->task, err) != 0)
        rc = -1;
    if (rc != 0) {
        link_close(&link);
        return EXIT_BROKER;
    }
    fprintf(stderr, "edge-device: sent task %s, waiting for its reply on %s\n", o->task.id, filter);
    double deadline = now_s() + o->wait_timeout_s;
    while (s->answered == 0 && !stop_requested && now_s() < deadline)
        link_pump(&link, 100);
    link_close(&link);
    if (s->answered > 0)
        return s->last_exit;
    return stop_requested ? EXIT_INTERRUPTED : timed_out(s);
}

/* The window of readings as the `signal` list after the task's own params. */
static int loop_tick(link_t *link, session_t *s, options_t *o, double *window, int *filled)
{
    err_t err;
    double value = 0;
    if (sensor_read(o->sensor_file, now_s(), &value, &err) != 0) {
        fprintf(stderr, "edge-device: %s; reading skipped\n", err.text);
        return 0;
    }
    memmove(window, window + 1, sizeof *window * (size_t)(o->window - 1));
    window[o->window - 1] = value;
    *filled += *filled < o->window;
    task_spec *t = &o->task;
    if (param_from_doubles(&t->params[t->param_count], "signal", window + o->window - *filled, (size_t)*filled) != 0)
        return -1;
    t->param_count++;
    t->id[0] = '\0';
    t->nonce_len = 0;
    t->issued_at = NAN;
    if (publish_task(link, s, t, &err) != 0)
        fprintf(stderr, "edge-device: reading %g not sent: %s\n", value, err.text);
    param_free(&t->params[--t->param_count]);
    return 0;
}

/* --every: a task per period until SIGINT/SIGTERM; reconnects when the broker goes away. */
static int cmd_loop(options_t *o, session_t *s, err_t *err)
{
    link_t link;
    char filter[TOPIC_MAX];
    if (o->task.param_count >= MAX_PARAMS) {
        err_set(err, "--every: at most %d params besides the signal", MAX_PARAMS - 1);
        return EXIT_USAGE;
    }
    reply_topic(s->cfg->prefix, s->cfg->kid, "+", filter);
    if (link_open(&link, s->cfg, filter, on_reply, s, CONNECT_TIMEOUT_S, err) != 0) {
        link_close(&link);
        return EXIT_BROKER;
    }
    fprintf(stderr, "edge-device: connected; a task every %g s, replies on %s\n", o->every_s, filter);
    double *window = calloc((size_t)o->window, sizeof *window);
    int filled = 0, rc = EXIT_OK;
    double next = now_s();
    while (!stop_requested && window != NULL) {
        double now = now_s();
        if (now >= next) {
            next += o->every_s * (1 + floor((now - next) / o->every_s)); /* skip missed periods */
            if (loop_tick(&link, s, o, window, &filled) != 0)
                break;
        }
        link_pump(&link, 50);
        pending_expire(s, now_s());
        fflush(stdout);
    }
    free(window);
    link_close(&link);
    fprintf(stderr, "edge-device: stopped (%d replies verified, %d refused)\n", s->answered, s->forged);
    return rc;
}

static int needs_of(const options_t *o)
{
    switch (o->command) {
    case CMD_ENCODE:
        return NEED_TASK;
    case CMD_VERIFY:
        return NEED_AGENT_KEYS;
    case CMD_SEND:
        return NEED_TASK | NEED_BROKER | NEED_AGENT_KEYS;
    default:
        return 0;
    }
}

static int run(options_t *o, err_t *err)
{
    device_config cfg;
    if (o->command == CMD_HELP) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (o->command == CMD_ENCODE_ARRAY)
        return cmd_encode_array(o, err);
    if (settings_load_file(&o->settings, o->env_path, o->env_given, err) != 0 ||
        settings_resolve(&o->settings, needs_of(o), &cfg, err) != 0) {
        config_free(&cfg);
        return EXIT_USAGE;
    }
    session_t s;
    memset(&s, 0, sizeof s);
    s.cfg = &cfg;
    s.opt = o;
    snprintf(s.reply_prefix, sizeof s.reply_prefix, "%s/replies/%s/", cfg.prefix, cfg.kid ? cfg.kid : "");
    int rc = o->command == CMD_ENCODE ? cmd_encode(o, &cfg)
             : o->command == CMD_VERIFY ? cmd_verify(o, &cfg, err)
             : o->every_s > 0          ? cmd_loop(o, &s, err)
                                       : cmd_send(o, &s, err);
    config_free(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    options_t o;
    err_t err = {{0}};
    if (sodium_init() < 0) {
        fputs("edge-device: libsodium failed to initialise\n", stderr);
        return EXIT_USAGE;
    }
    trap_signals();
    mosquitto_lib_init();
    int rc = args_parse(&o, argc, argv, &err) != 0 ? EXIT_USAGE : run(&o, &err);
    if (err.text[0] != '\0')
        fprintf(stderr, "edge-device: %s\n", err.text);
    args_free(&o);
    mosquitto_lib_cleanup();
    return rc;
}
