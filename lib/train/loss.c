/* loss.c: softmax cross-entropy and distillation KL (see train.h). */
#include "train/train.h"

#include <math.h>

/* log(sum_k exp(z[k] / T)) of a row, computed as m + log(sum exp(z/T - m));
 * *best gets the row's argmax (qt_argmax). Row k's log softmax is then
 * z[k] / T - lse: no per-class buffer, so any number of classes. */
static double log_sum_exp(const float *z, int c, double T, int *best) {
    double m = -INFINITY, s = 0;
    *best = qt_argmax(z, c);
    for (int k = 0; k < c; k++) {
        if (z[k] / T > m)
            m = z[k] / T;
    }
    for (int k = 0; k < c; k++)
        s += exp(z[k] / T - m);
    return m + log(s);
}

int qt_loss_xent(const float *logits, const int *labels, int n, int c, float *dlogits, double *loss, int *correct) {
    double total = 0;
    int labeled = 0, hits = 0;
    for (int i = 0; i < n; i++)
        labeled += labels[i] >= 0 && labels[i] < c;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * c;
        float *d = dlogits + (int64_t)i * c;
        int y = labels[i], best;
        if (y < 0 || y >= c) {
            for (int k = 0; k < c; k++)
                d[k] = 0;
            continue;
        }
        double lse = log_sum_exp(z, c, 1.0, &best);
        hits += best == y;
        total -= z[y] / 1.0 - lse;
        for (int k = 0; k < c; k++)
            d[k] = (float)((exp(z[k] / 1.0 - lse) - (k == y)) / labeled);
    }
    *loss = labeled ? total / labeled : 0;
    if (correct)
        *correct = hits;
    return labeled;
}

void qt_loss_kl(const float *logits, const float *teacher, int n, int c, float temperature, float *dlogits,
                double *loss, int *agree) {
    double total = 0, T = temperature > 0 ? temperature : 1;
    int same = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * c, *t = teacher + (int64_t)i * c;
        float *d = dlogits + (int64_t)i * c;
        int bz, bt;
        double lz = log_sum_exp(z, c, T, &bz), ltt = log_sum_exp(t, c, T, &bt);
        same += bz == bt;
        for (int k = 0; k < c; k++) {
            double ls = z[k] / T - lz, lt = t[k] / T - ltt, pt = exp(lt);
            total += pt * (lt - ls);
            d[k] = (float)(T * (exp(ls) - pt) / n);
        }
    }
    *loss = n ? total * T * T / n : 0;
    if (agree)
        *agree = same;
}
