/* A task's params from the command line: plain (nested) lists, ndarrays as ext 1 (PROTOCOL 2),
 * ints and floats, each `NAME=SPEC`; packed with msgpack-c in the order given. Single-threaded.
 *
 *   --list NAME=[SHAPE:]NUMBERS          e.g. signal=1.0,2.0,3.0   m=2x2:1,2,3,4 (nested lists)
 *   --array NAME=[DTYPE:][SHAPE:]NUMBERS e.g. a=2x3:0,1,2,3,4,5 (<f8), b=<i4:3:1,2,3
 *   --int NAME=N, --float NAME=X
 *
 * Numbers are written as in JSON or Python: `3` is an int, `3.0`, `1e3`, `nan`, `inf` floats; so a
 * list keeps each element's type, and an array converts them to its dtype. */
#ifndef EDGE_PARAMS_H
#define EDGE_PARAMS_H

#include <stddef.h>

#include <msgpack.h>

#include "util.h"

#define MAX_PARAMS 16
#define MAX_DIMS 8

typedef enum { P_LIST, P_ARRAY, P_INT, P_FLOAT } param_kind;

typedef struct {
    int is_int;
    long long i;
    double f;
} number_t;

typedef struct {
    param_kind kind;
    char name[65];
    char dtype[4];
    size_t shape[MAX_DIMS];
    int ndim;
    number_t *values; /* heap */
    size_t count;
} param_t;

/* Parses `NAME=SPEC` for `kind`; `option` names the flag in messages. */
int param_parse(param_t *p, param_kind kind, const char *option, const char *text, err_t *err);
/* A list param of doubles (the sensor loop's window). */
int param_from_doubles(param_t *p, const char *name, const double *values, size_t count);
void param_free(param_t *p);
/* Packs the value (not the name). */
void param_pack(msgpack_packer *pk, const param_t *p);
/* Packs an ndarray ext 1 value for `DTYPE:SHAPE:NUMBERS` (the encode-array command). */
int array_pack_spec(msgpack_packer *pk, const char *spec, err_t *err);

#endif
