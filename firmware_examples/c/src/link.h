/* The device's MQTT link on libmosquitto: mutual TLS and a password, MQTT 3.1.1, a clean session
 * whose one subscription (the device's replies) is made again at every connect, QoS 1 publishes,
 * and reconnection with back-off when the broker goes away. Driven by link_pump from the
 * program's own loop: libmosquitto's callbacks run inside it, on the one thread there is. */
#ifndef EDGE_LINK_H
#define EDGE_LINK_H

#include <stddef.h>

#include "settings.h"
#include "util.h"

typedef void (*link_on_message)(void *ctx, const char *topic, const void *payload, size_t len);

typedef struct {
    struct mosquitto *mosq;
    char filter[512];
    link_on_message on_message;
    void *ctx;
    int connected;     /* CONNACK accepted and not lost since */
    int subscribed;    /* SUBACK for the current connection */
    int refused;       /* CONNACK refused (a reason code) or SUBACK refused (-1) */
    int connects;      /* accepted connects so far */
    double retry_at;   /* when to try to reconnect */
    double backoff_s;
} link_t;

/* Connects and subscribes to `filter` (both acknowledged) within `timeout_s`; errors say why. */
int link_open(link_t *link, const device_config *cfg, const char *filter, link_on_message on_message, void *ctx,
              double timeout_s, err_t *err);
/* Runs the network for up to `ms` milliseconds; reconnects (with back-off) when the link was lost. */
void link_pump(link_t *link, int ms);
/* A QoS 1 publish; -1 when not connected. */
int link_publish(link_t *link, const char *topic, const void *payload, size_t len, err_t *err);
/* A clean disconnect (if connected), then frees everything. */
void link_close(link_t *link);

#endif
