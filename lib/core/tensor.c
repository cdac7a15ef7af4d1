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

double qt_tensor_get(const struct qt_tensor *t, int64_t i) {
    switch (t->dtype) {
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
    case QT_FLOAT: case QT_DOUBLE: {
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
