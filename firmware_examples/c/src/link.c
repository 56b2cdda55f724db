/* libmosquitto link (link.h). Single-threaded: mosquitto_loop runs the callbacks in link_pump. */
#define _POSIX_C_SOURCE 200809L
#include "link.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <sodium.h>

#define KEEPALIVE_S 30
#define BACKOFF_MIN_S 0.5
#define BACKOFF_MAX_S 10.0

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
    link_t *link = obj;
    if (rc != 0) {
        link->refused = rc;
        return;
    }
    link->connected = 1;
    link->subscribed = 0;
    link->connects++;
    link->backoff_s = BACKOFF_MIN_S;
    if (link->connects > 1)
        fprintf(stderr, "edge-device: reconnected to the broker\n");
    mosquitto_subscribe(mosq, NULL, link->filter, 1);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted)
{
    (void)mosq;
    (void)mid;
    link_t *link = obj;
    if (count < 1 || granted[0] > 2)
        link->refused = -1;
    else
        link->subscribed = 1;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
    (void)mosq;
    link_t *link = obj;
    if (link->connected && rc != 0)
        fprintf(stderr, "edge-device: lost the broker (%s); reconnecting\n", mosquitto_strerror(rc));
    link->connected = 0;
    link->subscribed = 0;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
    (void)mosq;
    link_t *link = obj;
    link->on_message(link->ctx, msg->topic, msg->payload, (size_t)msg->payloadlen);
}

static int configure(link_t *link, const device_config *cfg, err_t *err)
{
    char client_id[128];
    snprintf(client_id, sizeof client_id, "%.64s-device-%08x", cfg->username ? cfg->username : cfg->kid,
             randombytes_random());
    link->mosq = mosquitto_new(client_id, true, link);
    if (link->mosq == NULL)
        return err_set(err, "cannot create an MQTT client");
    mosquitto_int_option(link->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_int_option(link->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_connect_callback_set(link->mosq, on_connect);
    mosquitto_subscribe_callback_set(link->mosq, on_subscribe);
    mosquitto_disconnect_callback_set(link->mosq, on_disconnect);
    mosquitto_message_callback_set(link->mosq, on_message);
    if (cfg->username != NULL &&
        mosquitto_username_pw_set(link->mosq, cfg->username, cfg->has_password ? cfg->password : NULL) != 0)
        return err_set(err, "EDGE_MQTT_USERNAME: refused by libmosquitto");
    if (cfg->tls) {
        int rc = mosquitto_tls_set(link->mosq, cfg->ca_file, NULL, cfg->cert_file, cfg->key_file, NULL);
        if (rc != MOSQ_ERR_SUCCESS)
            return err_set(err, "TLS files (EDGE_MQTT_CA_FILE, _CERT_FILE, _KEY_FILE): %s", mosquitto_strerror(rc));
    }
    return 0;
}

/* Runs the loop until `done` says so, the broker refuses, or the time is up. */
static int wait_until(link_t *link, const int *flag, double deadline)
{
    while (!*flag && link->refused == 0 && now_s() < deadline) {
        int rc = mosquitto_loop(link->mosq, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS && link->refused == 0)
            return rc;
    }
    return *flag ? 0 : link->refused != 0 ? -1 : MOSQ_ERR_CONN_LOST;
}

int link_open(link_t *link, const device_config *cfg, const char *filter, link_on_message handler, void *ctx,
              double timeout_s, err_t *err)
{
    memset(link, 0, sizeof *link);
    snprintf(link->filter, sizeof link->filter, "%s", filter);
    link->on_message = handler;
    link->ctx = ctx;
    link->backoff_s = BACKOFF_MIN_S;
    if (configure(link, cfg, err) != 0)
        return -1;
    double deadline = now_s() + timeout_s;
    int rc = mosquitto_connect(link->mosq, cfg->host, cfg->port, KEEPALIVE_S);
    if (rc != MOSQ_ERR_SUCCESS)
        return err_set(err, "cannot connect to %s:%d: %s", cfg->host, cfg->port,
                       rc == MOSQ_ERR_ERRNO ? "connection refused or unreachable" : mosquitto_strerror(rc));
    rc = wait_until(link, &link->connected, deadline);
    if (rc != 0)
        return err_set(err, "the broker at %s:%d %s", cfg->host, cfg->port,
                       link->refused > 0 ? mosquitto_connack_string(link->refused)
                                         : "closed the connection (TLS or login refused?) or did not answer");
    rc = wait_until(link, &link->subscribed, deadline);
    if (rc != 0)
        return err_set(err, "the broker %s the subscription to %s", link->refused ? "refused" : "did not acknowledge",
                       filter);
    return 0;
}

static void reconnect(link_t *link)
{
    double now = now_s();
    if (now < link->retry_at) {
        struct timespec pause = {0, 50000000L};
        nanosleep(&pause, NULL);
        return;
    }
    link->retry_at = now + link->backoff_s;
    link->backoff_s = link->backoff_s * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : link->backoff_s * 2;
    mosquitto_reconnect(link->mosq);
}

void link_pump(link_t *link, int ms)
{
    int rc = mosquitto_loop(link->mosq, ms, 1);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO || rc == MOSQ_ERR_TLS ||
        rc == MOSQ_ERR_PROTOCOL || rc == MOSQ_ERR_KEEPALIVE) {
        link->connected = 0;
        reconnect(link);
    }
}

int link_publish(link_t *link, const char *topic, const void *payload, size_t len, err_t *err)
{
    if (!link->connected || !link->subscribed)
        return err_set(err, "not connected to the broker");
    int rc = mosquitto_publish(link->mosq, NULL, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS)
        return err_set(err, "publish to %s: %s", topic, mosquitto_strerror(rc));
    return 0;
}

void link_close(link_t *link)
{
    if (link->mosq == NULL)
        return;
    if (link->connected) {
        mosquitto_disconnect(link->mosq);
        for (int i = 0; i < 10 && link->connected; i++)
            mosquitto_loop(link->mosq, 50, 1);
    }
    mosquitto_destroy(link->mosq);
    link->mosq = NULL;
}
