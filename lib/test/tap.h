/* tap.h: the tiny test harness of lib/test drivers.
 *
 * Each driver is its own program. T_OK(cond, fmt, ...) records one check and
 * prints "ok N - ..." or "not ok N - ..."; t_done() prints the driver's
 * "# N passed, N failed" line, which scripts/run-tests.sh adds up, and
 * returns the exit status (0 when nothing failed). */
#ifndef QT_TAP_H
#define QT_TAP_H
#include <stdio.h>

static int t_npass, t_nfail;

#define T_OK(cond, ...)                                                                 \
    do {                                                                                \
        int t_c_ = (cond) ? 1 : 0;                                                      \
        printf("%s %d - ", t_c_ ? "ok" : "not ok", t_npass + t_nfail + 1);              \
        printf(__VA_ARGS__);                                                            \
        printf("%s\n", t_c_ ? "" : "  (" __FILE__ ")");                                 \
        if (t_c_)                                                                       \
            t_npass++;                                                                  \
        else                                                                            \
            t_nfail++;                                                                  \
    } while (0)

#define T_SKIP(...)                                                                     \
    do {                                                                                \
        printf("# skip: ");                                                             \
        printf(__VA_ARGS__);                                                            \
        printf("\n");                                                                   \
    } while (0)

static inline int t_done(void) {
    printf("# %d passed, %d failed\n", t_npass, t_nfail);
    fflush(stdout);
    return t_nfail ? 1 : 0;
}
#endif
