/* registry.c: the operator table built from ops.def. */
#include "engine.h"

#include <string.h>

#define QT_OP(x) extern const struct qt_op qt_op_##x;
#include "ops.def"
#undef QT_OP

static const struct qt_op *const ops[] = {
#define QT_OP(x) &qt_op_##x,
#include "ops.def"
#undef QT_OP
};

const struct qt_qfacts qt_qfacts_none;

/* qtool's own training operators: findable, not listed */
extern const struct qt_op qt_op_fakequant;
static const struct qt_op *const internal_ops[] = {&qt_op_fakequant};

const struct qt_op *qt_op_find(const char *domain, const char *op_type) {
    const char *d = domain ? domain : "";
    if (strcmp(d, "ai.onnx") == 0)
        d = "";
    for (size_t i = 0; i < sizeof internal_ops / sizeof internal_ops[0]; i++)
        if (!strcmp(internal_ops[i]->name, op_type) && !strcmp(internal_ops[i]->domain, d))
            return internal_ops[i];
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        const char *od = ops[i]->domain ? ops[i]->domain : "";
        if (strcmp(ops[i]->name, op_type) == 0 && strcmp(od, d) == 0)
            return ops[i];
    }
    return NULL;
}

int qt_op_count(void) {
    return (int)(sizeof ops / sizeof ops[0]);
}

const struct qt_op *qt_op_at(int i) {
    return i >= 0 && i < qt_op_count() ? ops[i] : NULL;
}
