/* err.c: error messages (struct qt_err) and small utilities shared by lib/. */
#include "qtool.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int qt_errf(struct qt_err *err, int code, const char *fmt, ...) {
    if (!err || err->code)
        return err && err->code ? err->code : code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
    return code;
}

int qt_err_prefix(struct qt_err *err, const char *fmt, ...) {
    char pre[256];
    va_list ap;
    if (!err->code)
        return 0;
    va_start(ap, fmt);
    int n = vsnprintf(pre, sizeof pre - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return err->code;
    size_t pl = strlen(pre);
    pre[pl++] = ':';
    pre[pl++] = ' ';
    size_t ml = strlen(err->msg);
    if (pl + ml >= sizeof err->msg)
        ml = sizeof err->msg - 1 - pl;
    memmove(err->msg + pl, err->msg, ml);
    memcpy(err->msg, pre, pl);
    err->msg[pl + ml] = 0;
    return err->code;
}
