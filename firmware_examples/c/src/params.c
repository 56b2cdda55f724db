/* Param specs and their MessagePack (params.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "params.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_VALUES (1u << 20)

static const struct {
    const char *name;
    unsigned size;
    int is_float;
    int is_signed;
} DTYPES[] = {
    {"<f8", 8, 1, 1}, {"<f4", 4, 1, 1}, {"<i8", 8, 0, 1}, {"<i4", 4, 0, 1},
    {"<i2", 2, 0, 1}, {"|i1", 1, 0, 1}, {"<u2", 2, 0, 0}, {"|u1", 1, 0, 0},
};
#define N_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

static int dtype_index(const char *name)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(DTYPES[i].name, name) == 0)
            return (int)i;
    return -1;
}

static int parse_number(const char *text, number_t *out)
{
    size_t len = strlen(text);
    int digits_only = len > 0 && strspn(text + (text[0] == '-'), "0123456789") == len - (text[0] == '-');
    if (digits_only && len > (size_t)(text[0] == '-')) {
        out->is_int = 1;
        return parse_int64(text, &out->i);
    }
    out->is_int = 0;
    return parse_double(text, &out->f);
}

static int parse_numbers(param_t *p, char *text, const char *option, err_t *err)
{
    size_t cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    if (*text == '\0')
        cap = 0;
    if (cap > MAX_VALUES)
        return err_set(err, "%s %s: more than %u values", option, p->name, MAX_VALUES);
    p->values = calloc(cap ? cap : 1, sizeof *p->values);
    if (p->values == NULL)
        return err_set(err, "%s %s: out of memory", option, p->name);
    char *save = NULL;
    for (char *tok = cap ? strtok_r(text, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
        if (parse_number(tok, &p->values[p->count]) != 0)
            return err_set(err, "%s %s: '%.40s' is not a number", option, p->name, tok);
        p->count++;
    }
    if (p->count != cap)
        return err_set(err, "%s %s: an empty value in the list", option, p->name);
    return 0;
}

/* "2x3" (or "6") before a ':'; returns 1 if `seg` is a shape, 0 if not. */
static int parse_shape(param_t *p, const char *seg)
{
    if (*seg == '\0' || strspn(seg, "0123456789x") != strlen(seg) || seg[0] == 'x')
        return 0;
    p->ndim = 0;
    const char *c = seg;
    while (*c) {
        char *end = NULL;
        unsigned long dim = strtoul(c, &end, 10);
        if (end == c || p->ndim == MAX_DIMS || dim > MAX_VALUES)
            return 0;
        p->shape[p->ndim++] = dim;
        c = *end == 'x' ? end + 1 : end;
        if (*end == 'x' && *c == '\0')
            return 0;
    }
    return 1;
}

static int check_shape(param_t *p, const char *option, err_t *err)
{
    size_t total = 1;
    if (p->ndim == 0) {
        p->ndim = 1;
        p->shape[0] = p->count;
        return 0;
    }
    for (int i = 0; i < p->ndim; i++)
        total *= p->shape[i];
    if (total != p->count)
        return err_set(err, "%s %s: the shape holds %zu values, %zu given", option, p->name, total, p->count);
    return 0;
}

static int check_dtype(param_t *p, int d, const char *option, err_t *err)
{
    if (DTYPES[d].is_float)
        return 0;
    double lo = DTYPES[d].is_signed ? -ldexp(1.0, (int)DTYPES[d].size * 8 - 1) : 0.0;
    double hi = DTYPES[d].is_signed ? ldexp(1.0, (int)DTYPES[d].size * 8 - 1) : ldexp(1.0, (int)DTYPES[d].size * 8);
    for (size_t i = 0; i < p->count; i++) {
        const number_t *v = &p->values[i];
        if (!v->is_int || (double)v->i < lo || (double)v->i >= hi)
            return err_set(err, "%s %s: value %zu is not an integer of %s", option, p->name, i, p->dtype);
    }
    return 0;
}

/* What follows NAME= for a list or an array: [DTYPE:][SHAPE:]NUMBERS. */
static int parse_sequence(param_t *p, char *spec, const char *option, err_t *err)
{
    char *colon = strchr(spec, ':');
    if (p->kind == P_ARRAY) {
        snprintf(p->dtype, sizeof p->dtype, "<f8");
        if (colon != NULL && colon - spec == 3) {
            *colon = '\0';
            if (dtype_index(spec) < 0)
                return err_set(err, "%s %s: dtype '%s' is not one of <f8 <f4 <i8 <i4 <i2 <u2 |i1 |u1", option,
                               p->name, spec);
            snprintf(p->dtype, sizeof p->dtype, "%s", spec);
            spec = colon + 1;
            colon = strchr(spec, ':');
        }
    }
    if (colon != NULL) {
        *colon = '\0';
        if (!parse_shape(p, spec))
            return err_set(err, "%s %s: '%.40s' is not a shape like 2x3", option, p->name, spec);
        spec = colon + 1;
    }
    if (parse_numbers(p, spec, option, err) != 0 || check_shape(p, option, err) != 0)
        return -1;
    return p->kind == P_ARRAY ? check_dtype(p, dtype_index(p->dtype), option, err) : 0;
}

static int parse_scalar(param_t *p, char *spec, const char *option, err_t *err)
{
    p->values = calloc(1, sizeof *p->values);
    if (p->values == NULL)
        return err_set(err, "%s %s: out of memory", option, p->name);
    p->count = 1;
    number_t *v = &p->values[0];
    if (p->kind == P_INT) {
        v->is_int = 1;
        if (parse_int64(spec, &v->i) != 0)
            return err_set(err, "%s %s: '%.40s' is not an integer", option, p->name, spec);
        return 0;
    }
    if (parse_double(spec, &v->f) != 0)
        return err_set(err, "%s %s: '%.40s' is not a number", option, p->name, spec);
    return 0;
}

int param_parse(param_t *p, param_kind kind, const char *option, const char *text, err_t *err)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    const char *eq = strchr(text, '=');
    if (eq == NULL || eq == text || eq - text > 64)
        return err_set(err, "%s: expected NAME=VALUE (a name of 1 to 64 characters), got '%.60s'", option, text);
    memcpy(p->name, text, (size_t)(eq - text));
    char *spec = malloc(strlen(eq + 1) + 1);
    if (spec == NULL)
        return err_set(err, "%s: out of memory", option);
    strcpy(spec, eq + 1);
    int rc = kind == P_LIST || kind == P_ARRAY ? parse_sequence(p, spec, option, err)
                                               : parse_scalar(p, spec, option, err);
    free(spec);
    return rc;
}

int param_from_doubles(param_t *p, const char *name, const double *values, size_t count)
{
    memset(p, 0, sizeof *p);
    p->kind = P_LIST;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->values = calloc(count ? count : 1, sizeof *p->values);
    if (p->values == NULL)
        return -1;
    for (size_t i = 0; i < count; i++)
        p->values[i].f = values[i];
    p->count = count;
    p->ndim = 1;
    p->shape[0] = count;
    return 0;
}

void param_free(param_t *p)
{
    free(p->values);
    p->values = NULL;
}

static void pack_number(msgpack_packer *pk, const number_t *v)
{
    if (v->is_int)
        msgpack_pack_int64(pk, v->i);
    else
        msgpack_pack_double(pk, v->f);
}

/* Nested lists for dimensions dim.., starting at values[*at]. */
static void pack_nested(msgpack_packer *pk, const param_t *p, int dim, size_t *at)
{
    msgpack_pack_array(pk, p->shape[dim]);
    for (size_t i = 0; i < p->shape[dim]; i++) {
        if (dim + 1 < p->ndim)
            pack_nested(pk, p, dim + 1, at);
        else
            pack_number(pk, &p->values[(*at)++]);
    }
}

/* One element in the dtype's little-endian bytes. */
static void put_element(uint8_t *out, int d, const number_t *v)
{
    uint64_t bits = 0;
    if (DTYPES[d].size == 8 && DTYPES[d].is_float) {
        double f = v->is_int ? (double)v->i : v->f;
        memcpy(&bits, &f, sizeof f);
    } else if (DTYPES[d].is_float) {
        float f = (float)(v->is_int ? (double)v->i : v->f);
        uint32_t b32 = 0;
        memcpy(&b32, &f, sizeof f);
        bits = b32;
    } else {
        bits = (uint64_t)v->i;
    }
    for (unsigned b = 0; b < DTYPES[d].size; b++)
        out[b] = (uint8_t)(bits >> (8 * b));
}

static void pack_ndarray(msgpack_packer *pk, const param_t *p)
{
    int d = dtype_index(p->dtype);
    size_t nbytes = p->count * DTYPES[d].size;
    uint8_t *data = malloc(nbytes ? nbytes : 1);
    if (data == NULL) {
        msgpack_pack_nil(pk);
        return;
    }
    for (size_t i = 0; i < p->count; i++)
        put_element(data + i * DTYPES[d].size, d, &p->values[i]);
    msgpack_sbuffer inner;
    msgpack_sbuffer_init(&inner);
    msgpack_packer ipk;
    msgpack_packer_init(&ipk, &inner, msgpack_sbuffer_write);
    msgpack_pack_array(&ipk, 3);
    msgpack_pack_str_with_body(&ipk, p->dtype, strlen(p->dtype));
    msgpack_pack_array(&ipk, (size_t)p->ndim);
    for (int i = 0; i < p->ndim; i++)
        msgpack_pack_uint64(&ipk, p->shape[i]);
    msgpack_pack_bin_with_body(&ipk, data, nbytes);
    msgpack_pack_ext_with_body(pk, inner.data, inner.size, 1);
    msgpack_sbuffer_destroy(&inner);
    free(data);
}

void param_pack(msgpack_packer *pk, const param_t *p)
{
    size_t at = 0;
    switch (p->kind) {
    case P_LIST:
        pack_nested(pk, p, 0, &at);
        break;
    case P_ARRAY:
        pack_ndarray(pk, p);
        break;
    case P_INT:
        msgpack_pack_int64(pk, p->values[0].i);
        break;
    case P_FLOAT:
        msgpack_pack_double(pk, p->values[0].f);
        break;
    }
}

int array_pack_spec(msgpack_packer *pk, const char *spec, err_t *err)
{
    char text[64 + 4096];
    param_t p;
    if (snprintf(text, sizeof text, "array=%s", spec) >= (int)sizeof text)
        return err_set(err, "encode-array: the spec is too long");
    if (param_parse(&p, P_ARRAY, "encode-array", text, err) != 0) {
        param_free(&p);
        return -1;
    }
    param_pack(pk, &p);
    param_free(&p);
    return 0;
}
