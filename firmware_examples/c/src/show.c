/* Result printing (show.h). Single-threaded. */
#define _POSIX_C_SOURCE 200809L
#include "show.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static void show_double(FILE *out, double v)
{
    if (isnan(v))
        fputs("NaN", out);
    else if (isinf(v))
        fputs(v > 0 ? "Infinity" : "-Infinity", out);
    else if (v == floor(v) && fabs(v) < 1e16)
        fprintf(out, "%.1f", v);
    else
        fprintf(out, "%.17g", v);
}

static void show_string(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20)
            fprintf(out, "\\u%04x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

typedef struct {
    char dtype[4];
    uint64_t shape[8];
    uint32_t ndim;
    const uint8_t *data;
    size_t size;
} ndarray_view;

static unsigned itemsize(const char *dtype)
{
    static const char *const NAMES[] = {"<f8", "<f4", "<i8", "<i4", "<i2", "<u2", "|i1", "|u1"};
    static const unsigned SIZES[] = {8, 4, 8, 4, 2, 2, 1, 1};
    for (size_t i = 0; i < 8; i++)
        if (strcmp(dtype, NAMES[i]) == 0)
            return SIZES[i];
    return 0;
}

/* The ext 1 payload [dtype, shape, data], checked: data length = product(shape) x itemsize. */
static int ndarray_parse(const msgpack_object *ext, ndarray_view *a, msgpack_unpacked *inner)
{
    size_t off = 0;
    if (msgpack_unpack_next(inner, ext->via.ext.ptr, ext->via.ext.size, &off) != MSGPACK_UNPACK_SUCCESS)
        return -1;
    const msgpack_object *o = &inner->data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3)
        return -1;
    const msgpack_object *dt = &o->via.array.ptr[0], *sh = &o->via.array.ptr[1], *da = &o->via.array.ptr[2];
    if (dt->type != MSGPACK_OBJECT_STR || dt->via.str.size != 3 || sh->type != MSGPACK_OBJECT_ARRAY ||
        sh->via.array.size > 8 || da->type != MSGPACK_OBJECT_BIN)
        return -1;
    memcpy(a->dtype, dt->via.str.ptr, 3);
    a->dtype[3] = '\0';
    uint64_t total = itemsize(a->dtype);
    a->ndim = sh->via.array.size;
    for (uint32_t i = 0; i < a->ndim; i++) {
        const msgpack_object *d = &sh->via.array.ptr[i];
        if (d->type != MSGPACK_OBJECT_POSITIVE_INTEGER || d->via.u64 > MAX_PAYLOAD)
            return -1;
        a->shape[i] = d->via.u64;
        total *= a->shape[i];
    }
    a->data = (const uint8_t *)da->via.bin.ptr;
    a->size = da->via.bin.size;
    return total == 0 && itemsize(a->dtype) == 0 ? -1 : (total == a->size ? 0 : -1);
}

static void show_element(FILE *out, const ndarray_view *a, const uint8_t *p)
{
    unsigned size = itemsize(a->dtype);
    uint64_t bits = 0;
    for (unsigned b = 0; b < size; b++)
        bits |= (uint64_t)p[b] << (8 * b);
    if (a->dtype[1] == 'f') {
        if (size == 8) {
            double d;
            memcpy(&d, &bits, sizeof d);
            show_double(out, d);
        } else {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, sizeof f);
            show_double(out, (double)f);
        }
    } else if (a->dtype[1] == 'u') {
        fprintf(out, "%" PRIu64, bits);
    } else {
        unsigned shift = 64 - 8 * size; /* sign-extend */
        fprintf(out, "%" PRId64, (int64_t)(bits << shift) >> shift);
    }
}

static void show_nested(FILE *out, const ndarray_view *a, uint32_t dim, size_t *at)
{
    if (dim == a->ndim) {
        show_element(out, a, a->data + (*at)++ * itemsize(a->dtype));
        return;
    }
    fputc('[', out);
    for (uint64_t i = 0; i < a->shape[dim]; i++) {
        if (i)
            fputs(", ", out);
        show_nested(out, a, dim + 1, at);
    }
    fputc(']', out);
}

static void show_ext(FILE *out, const msgpack_object *o)
{
    msgpack_unpacked inner;
    msgpack_unpacked_init(&inner);
    ndarray_view a;
    size_t at = 0;
    if (o->via.ext.type == 1 && ndarray_parse(o, &a, &inner) == 0)
        show_nested(out, &a, 0, &at);
    else
        fputs("null", out);
    msgpack_unpacked_destroy(&inner);
}

static void show_container(FILE *out, const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        fputc('[', out);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            fputs(i ? ", " : "", out);
            show_json(out, &o->via.array.ptr[i]);
        }
        fputc(']', out);
        return;
    }
    fputc('{', out);
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object_kv *kv = &o->via.map.ptr[i];
        fputs(i ? ", " : "", out);
        if (kv->key.type == MSGPACK_OBJECT_STR)
            show_json(out, &kv->key);
        else {
            fputc('"', out);
            msgpack_object_print(out, kv->key);
            fputc('"', out);
        }
        fputs(": ", out);
        show_json(out, &kv->val);
    }
    fputc('}', out);
}

void show_json(FILE *out, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        fputs("null", out);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        fputs(o->via.boolean ? "true" : "false", out);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        fprintf(out, "%" PRIu64, o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        fprintf(out, "%" PRId64, o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        show_double(out, o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        show_string(out, o->via.str.ptr, o->via.str.size);
        break;
    case MSGPACK_OBJECT_BIN: {
        fputc('"', out);
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            fprintf(out, "%02x", (unsigned char)o->via.bin.ptr[i]);
        fputc('"', out);
        break;
    }
    case MSGPACK_OBJECT_EXT:
        show_ext(out, o);
        break;
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        show_container(out, o);
        break;
    }
}

static void show_field(FILE *out, const msgpack_object *root, const char *label, const char *key)
{
    const msgpack_object *v = map_get(root, key);
    if (v == NULL || v->type == MSGPACK_OBJECT_NIL)
        return;
    fprintf(out, "%s: ", label);
    show_json(out, v);
    fputc('\n', out);
}

void show_reply(FILE *out, const reply_t *reply, int json)
{
    if (json) {
        show_json(out, reply->root);
        fputc('\n', out);
    } else {
        const msgpack_object *kernel = map_get(reply->root, "kernel");
        fprintf(out, "task %s on %s: %s", reply->id, reply->kid, reply->status);
        if (kernel != NULL && kernel->type == MSGPACK_OBJECT_STR)
            fprintf(out, " (%.*s)", (int)kernel->via.str.size, kernel->via.str.ptr);
        fputc('\n', out);
        show_field(out, reply->root, "result", "result");
        show_field(out, reply->root, "error", "error");
        show_field(out, reply->root, "duration_ms", "duration_ms");
    }
    fflush(out);
}
