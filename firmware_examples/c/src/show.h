/* Printing a verified result: JSON of any MessagePack value (ndarrays, ext 1, as nested lists;
 * NaN and infinities as Python's json writes them), a readable summary, or one JSON line.
 * Single-threaded. */
#ifndef EDGE_SHOW_H
#define EDGE_SHOW_H

#include <stdio.h>

#include <msgpack.h>

#include "reply.h"

void show_json(FILE *out, const msgpack_object *o);
/* `--json`: the whole result body as one line; otherwise a summary and the result or error. */
void show_reply(FILE *out, const reply_t *reply, int json);

#endif
