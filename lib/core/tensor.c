/* tensor.c: heap tensors and checked allocation. */
#include "engine.h"

#include <string.h>

void *qt_malloc(size_t n, struct qt_err *err) {
    void *p = malloc(n ? n : 1);
    if (!p)
        qt_errf(err, QT_ENOMEM, "out of memory (%zu bytes)", n);
    return p;
}

void *qt_calloc(size_t n, size_t size, struct qt_err *err) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        qt_errf(err, QT_ENOMEM, "out of memory (%zu x %zu bytes)", n, size);
    return p;
}

char *qt_strdup(const char *s) {
    return strdup(s ? s : "");
}

struct qt_tensor *qt_tensor_new(int dtype, int ndim, const int64_t *dims) {
    size_t es = qt_dtype_size(dtype);
    int64_t n = qt_numel(ndim, dims);
    struct qt_tensor *t;
    if (!es || n < 0 || ndim < 0 || ndim > QT_MAXDIM || (uint64_t)n > SIZE_MAX / es / 2)
        return NULL;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->dims[i] = dims[i];
    t->nbytes = (size_t)n * es;
    t->data = calloc(t->nbytes ? t->nbytes : 1, 1);
    if (!t->data) {
        free(t);
        return NULL;
    }
    return t;
}

struct qt_tensor *qt_tensor_clone(const struct qt_tensor *s) {
    struct qt_tensor *t = qt_tensor_new(s->dtype, s->ndim, s->dims);
    if (t && s->nbytes)
        memcpy(t->data, s->data, s->nbytes);
    return t;
}

void qt_tensor_free(struct qt_tensor *t) {
    if (!t)
        return;
    free(t->data);
    free(t);
}

int64_t qt_tensor_numel(const struct qt_tensor *t) {
    return qt_numel(t->ndim, t->dims);
}

float qt_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
    if (e == 0x1f) {
        u = sign | 0x7f800000u | (m << 13);
    } else if (e) {
        u = sign | ((e + 112) << 23) | (m << 13);
    } else if (m) { /* subnormal: normalise */
        e = 113;
        while (!(m & 0x400)) {
            m <<= 1;
            e--;
        }
        u = sign | (e << 23) | ((m & 0x3ff) << 13);
    } else {
        u = sign;
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t qt_float_to_half(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) /* inf, NaN (kept quiet) */
        return (uint16_t)(sign | 0x7c00 | (a > 0x7f800000u ? 0x200 | ((a >> 13) & 0x3ff) : 0));
    if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (a < 0x33000000u)
            return sign; /* < 2^-25 rounds to 0 */
        uint32_t m = (a & 0x7fffff) | 0x800000, e = a >> 23, shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((a - 0x38000000u) >> 13), rem = a & 0x1fff; /* rebias 127 -> 15 */
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

double qt_tensor_get(const struct qt_tensor *t, int64_t i) {
    switch (t->dtype) {
    case QT_FLOAT16: return qt_half_to_float(((const uint16_t *)t->data)[i]);
    case QT_FLOAT: return ((const float *)t->data)[i];
    case QT_DOUBLE: return ((const double *)t->data)[i];
    case QT_UINT8: case QT_BOOL: return ((const uint8_t *)t->data)[i];
    case QT_INT8: return ((const int8_t *)t->data)[i];
    case QT_UINT16: return ((const uint16_t *)t->data)[i];
    case QT_INT16: return ((const int16_t *)t->data)[i];
    case QT_INT32: return ((const int32_t *)t->data)[i];
    case QT_UINT32: return ((const uint32_t *)t->data)[i];
    case QT_INT64: return (double)((const int64_t *)t->data)[i];
    case QT_UINT64: return (double)((const uint64_t *)t->data)[i];
    default: return 0;
    }
}

int64_t qt_tensor_geti(const struct qt_tensor *t, int64_t i) {
    switch (t->dtype) {
    case QT_INT64: return ((const int64_t *)t->data)[i];
    case QT_UINT64: return (int64_t)((const uint64_t *)t->data)[i];
    case QT_FLOAT: case QT_DOUBLE: case QT_FLOAT16: {
        double d = qt_tensor_get(t, i);
        if (d != d)
            return 0;
        if (d >= 9.2e18)
            return INT64_MAX;
        if (d <= -9.2e18)
            return INT64_MIN;
        return (int64_t)d;
    }
    default: return (int64_t)qt_tensor_get(t, i);
    }
}
