/* optim.c: SGD with momentum, Adam, gradient clipping and learning-rate
 * schedules (see train.h for the update rules). */
#include "train/train.h"

#include <math.h>
#include <string.h>

void qt_optim_init(struct qt_optim *o, int kind, float momentum, float wd) {
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->momentum = momentum;
    o->wd = wd;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
}

void qt_optim_release(struct qt_optim *o) {
    for (int i = 0; i < o->np; i++) {
        free(o->p[i].m);
        free(o->p[i].v);
        free(o->p[i].lr_elem);
    }
    free(o->p);
    memset(o, 0, sizeof *o);
}

int qt_optim_add(struct qt_optim *o, float *w, const float *g, int64_t n, float wd_mult, float min,
                 struct qt_err *err) {
    if (o->np == o->cap) {
        int nc = o->cap ? 2 * o->cap : 32;
        struct qt_param *np = realloc(o->p, sizeof *np * (size_t)nc);
        if (!np)
            return qt_errf(err, QT_ENOMEM, "out of memory");
        o->p = np;
        o->cap = nc;
    }
    struct qt_param *p = &o->p[o->np];
    *p = (struct qt_param){w, g, n, wd_mult, 1.0f, min, calloc((size_t)n + 1, sizeof(float)),
                           calloc((size_t)n + 1, sizeof(float)), NULL, 0};
    if (!p->m || !p->v) {
        free(p->m);
        free(p->v);
        return qt_errf(err, QT_ENOMEM, "out of memory");
    }
    o->np++;
    return 0;
}

void qt_optim_step(struct qt_optim *o, float lr) {
    o->t++;
    double c1 = 1 - pow(o->beta1, (double)o->t), c2 = 1 - pow(o->beta2, (double)o->t);
    for (int i = 0; i < o->np; i++) {
        struct qt_param *p = &o->p[i];
        float l = lr * p->lr_mult, wd = o->wd * p->wd;
        if (l == 0)
            continue;
        if (p->log) {
            for (int64_t k = 0; k < p->n; k++) {
                float g = p->g[k] * p->w[k];
                p->w[k] *= (float)exp(-l * qt_adam_dir_float(g, &p->m[k], &p->v[k], o->beta1, o->beta2, o->eps, c1, c2));
                if (p->w[k] < p->min)
                    p->w[k] = p->min;
            }
            continue;
        }
        for (int64_t k = 0; k < p->n; k++) {
            float g = p->g[k] + wd * p->w[k];
            if (p->lr_elem)
                l = lr * p->lr_mult * p->lr_elem[k];
            if (o->kind == QT_OPT_ADAM) {
                p->w[k] -= l * (float)qt_adam_dir_float(g, &p->m[k], &p->v[k], o->beta1, o->beta2, o->eps, c1, c2);
            } else if (o->momentum != 0) {
                p->m[k] = o->momentum * p->m[k] + g;
                p->w[k] -= l * p->m[k];
            } else {
                p->w[k] -= l * g;
            }
            if (p->w[k] < p->min)
                p->w[k] = p->min;
        }
    }
}

double qt_clip_grad_norm(struct qt_optim *o, double max_norm) {
    double ss = 0;
    for (int i = 0; i < o->np; i++)
        for (int64_t k = 0; k < o->p[i].n; k++)
            ss += (double)o->p[i].g[k] * o->p[i].g[k];
    double norm = sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        float f = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < o->np; i++) {
            float *g = (float *)o->p[i].g; /* the plan's gradient buffers are writable */
            for (int64_t k = 0; k < o->p[i].n; k++)
                g[k] *= f;
        }
    }
    return norm;
}

float qt_sched_lr(const struct qt_sched *s, int64_t t) {
    double lr = s->base;
    if (s->kind == QT_SCHED_STEP && s->step_size > 0)
        lr *= pow(s->gamma, (double)(t / s->step_size));
    else if (s->kind == QT_SCHED_COSINE && s->total > 0)
        lr *= 0.5 * (1 + cos(M_PI * (double)(t < s->total ? t : s->total) / (double)s->total));
    if (s->warmup > 0 && t < s->warmup)
        lr *= (double)(t + 1) / (double)s->warmup;
    return (float)lr;
}

int qt_sched_parse(const char *name) {
    if (!strcmp(name, "const"))
        return QT_SCHED_CONST;
    if (!strcmp(name, "step"))
        return QT_SCHED_STEP;
    if (!strcmp(name, "cosine"))
        return QT_SCHED_COSINE;
    return -1;
}
