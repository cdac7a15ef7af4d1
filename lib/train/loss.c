/* loss.c: softmax cross-entropy and distillation KL (see train.h). */
#include "train/train.h"

#include <math.h>

/* log softmax of row z / T into out (double), returns the argmax */
static int log_softmax(const float *z, int c, double T, double *out) {
    double m = -INFINITY, s = 0;
    int best = 0;
    for (int k = 0; k < c; k++) {
        if (z[k] > z[best])
            best = k;
        if (z[k] / T > m)
            m = z[k] / T;
    }
    for (int k = 0; k < c; k++)
        s += exp(z[k] / T - m);
    double ls = m + log(s);
    for (int k = 0; k < c; k++)
        out[k] = z[k] / T - ls;
    return best;
}

int qt_loss_xent(const float *logits, const int *labels, int n, int c, float *dlogits, double *loss, int *correct) {
    double total = 0, ls[4096];
    int labeled = 0, hits = 0;
    for (int i = 0; i < n; i++)
        labeled += labels[i] >= 0 && labels[i] < c;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * c;
        float *d = dlogits + (int64_t)i * c;
        int y = labels[i];
        if (y < 0 || y >= c || c > 4096) {
            for (int k = 0; k < c; k++)
                d[k] = 0;
            continue;
        }
        hits += log_softmax(z, c, 1.0, ls) == y;
        total -= ls[y];
        for (int k = 0; k < c; k++)
            d[k] = (float)((exp(ls[k]) - (k == y)) / labeled);
    }
    *loss = labeled ? total / labeled : 0;
    if (correct)
        *correct = hits;
    return labeled;
}

void qt_loss_kl(const float *logits, const float *teacher, int n, int c, float temperature, float *dlogits,
                double *loss, int *agree) {
    double total = 0, ls[4096], lt[4096], T = temperature > 0 ? temperature : 1;
    int same = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * c, *t = teacher + (int64_t)i * c;
        float *d = dlogits + (int64_t)i * c;
        if (c > 4096) {
            for (int k = 0; k < c; k++)
                d[k] = 0;
            continue;
        }
        same += log_softmax(z, c, T, ls) == log_softmax(t, c, T, lt);
        for (int k = 0; k < c; k++) {
            double pt = exp(lt[k]);
            total += pt * (lt[k] - ls[k]);
            d[k] = (float)(T * (exp(ls[k]) - pt) / n);
        }
    }
    *loss = n ? total * T * T / n : 0;
    if (agree)
        *agree = same;
}
