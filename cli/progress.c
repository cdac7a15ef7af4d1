/* progress.c: the one progress reporter of the subcommands that stream
 * images (calib, finetune, qat, eval). The library reports through its
 * progress callbacks only; this turns the calls into a bar with rate and ETA
 * on a terminal, or into a plain line every 10% or 5 s when stderr is a file
 * or a pipe (CI logs). --quiet passes no callback at all. */
#include "cli.h"

#include <string.h>
#include <unistd.h>

void cli_progress_init(struct cli_progress *p, const char *label, const char *unit) {
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->tty = isatty(2);
    p->t0 = p->last = qt_now();
    p->last_tenth = -1;
}

static void fmt_time(double s, char *b, size_t n) {
    if (s < 0 || s != s || s > 359999)
        snprintf(b, n, "--:--");
    else if (s >= 3600)
        snprintf(b, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
    else
        snprintf(b, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

void cli_progress_clear(FILE *f) {
    if (f == stderr && isatty(2))
        fputs("\r\033[K", stderr);
}

/* "12.3 images/s", or "4.2 s/layer" below one a second */
static void fmt_rate(double rate, const char *unit, char *b, size_t n) {
    size_t l = strlen(unit);
    if (rate >= 1 || rate <= 0)
        snprintf(b, n, "%.1f %s/s", rate, unit);
    else /* "layers" -> "layer" */
        snprintf(b, n, "%.1f s/%.*s", 1 / rate, (int)(l > 1 && unit[l - 1] == 's' ? l - 1 : l), unit);
}

void cli_progress_cb(void *ud, int done, int total) {
    struct cli_progress *p = ud;
    double now = qt_now(), el = now - p->t0;
    double rate = el > 0 ? done / el : 0;
    double eta = rate > 0 && total > done ? (total - done) / rate : 0;
    char e1[16], e2[16], rs[48];
    if (total <= 0)
        return;
    if (done < p->prev_done) { /* a new phase (qat epoch, finetune layer pass) restarts the count */
        p->t0 = now;
        p->last_tenth = -1;
        el = 0;
        rate = 0;
    }
    p->prev_done = done;
    fmt_rate(rate, p->unit, rs, sizeof rs);
    fmt_time(el, e1, sizeof e1);
    fmt_time(done < total ? eta : 0, e2, sizeof e2);
    if (p->tty) {
        /* redraw at most 10 times a second, and always the last call */
        if (done < total && now - p->last < 0.1 && done > 0)
            return;
        p->last = now;
        int width = 30, fill = (int)((long long)width * done / total);
        char bar[64];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        fprintf(stderr, "\r%s: [%s] %d/%d %s %3d%% %s %s ETA %s\033[K", p->label, bar, done, total, p->unit,
                (int)(100LL * done / total), rs, e1, e2);
        if (done >= total)
            fputc('\n', stderr);
        return;
    }
    if (done < total && el < 1)
        return; /* a short run gets its closing line only */
    int tenth = (int)(10LL * done / total);
    if (tenth == p->last_tenth && now - p->last < 5 && done < total)
        return;
    if (done >= total && p->last_tenth == 10)
        return;
    p->last_tenth = done >= total ? 10 : tenth;
    p->last = now;
    fprintf(stderr, "%s: %d/%d %s (%d%%), %s, elapsed %s, ETA %s\n", p->label, done, total, p->unit,
            (int)(100LL * done / total), rs, e1, e2);
}
