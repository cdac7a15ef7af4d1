/* t_dw3x3.c: the direct 3x3 depthwise kernel (lib/ops/dw3x3.c) gives the
 * bytes of the padded-plane formula conv.c's portable loops compute,
 *
 *     y = act(((b + w0 p[iy][ix]) + w1 p[iy][ix+1]) + ... + w8 p[iy+2][ix+2]),
 *
 * p the plane with a zero border, one multiply then one add per tap, on
 * random planes of 1 to 150 columns and rows (every row/column border,
 * the 4-row groups and their tail, vectors across both ends of a row),
 * stride 1 and 2, pads 0 to 2 on each side (asymmetric ones included), no
 * activation, Relu and Clip, inputs with zeros and signed zeros, and a NaN.
 * Without AVX-512 the kernel declines (returns 0): skipped. */
#include "ops/conv.h"
#include "test/tap.h"

#include <math.h>
#include <string.h>

static uint64_t rng = 99;

static float act(const struct qt_post *p, float v) {
    if (p->kind == QT_POST_RELU)
        return v > 0 ? v : 0;
    if (p->kind == QT_POST_CLIP) {
        v = v < p->lo ? p->lo : v;
        return v > p->hi ? p->hi : v;
    }
    return v;
}

static float at(const float *x, const struct qt_conv_shape *s, int64_t iy, int64_t ix) {
    return iy < 0 || iy >= s->ih || ix < 0 || ix >= s->iw ? 0.f : x[iy * s->iw + ix];
}

static int one(int64_t ih, int64_t iw, int st, const int64_t *pad, const struct qt_post *post, int nan) {
    struct qt_conv_shape s = {1, 1, 1, 1, ih, iw, 3, 3, 0, 0, st, st, 1, 1, pad[0], pad[1], pad[2], pad[3]};
    s.oh = (ih + pad[0] + pad[2] - 3) / st + 1;
    s.ow = (iw + pad[1] + pad[3] - 3) / st + 1;
    if (s.oh < 1 || s.ow < 1)
        return 1;
    size_t nx = (size_t)(ih * iw), ny = (size_t)(s.oh * s.ow);
    float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y), *want = malloc(ny * sizeof *want), w[9];
    for (size_t i = 0; i < nx; i++) {
        float u = qt_rand01(&rng);
        x[i] = u < 0.1f ? 0.f : u < 0.15f ? -0.f : 4 * u - 2;
    }
    if (nan)
        x[nx / 2] = NAN;
    for (int k = 0; k < 9; k++)
        w[k] = 2 * qt_rand01(&rng) - 1;
    float b = qt_rand01(&rng) - 0.5f;
    for (int64_t oy = 0; oy < s.oh; oy++)
        for (int64_t ox = 0; ox < s.ow; ox++) {
            float acc = b;
            for (int ki = 0; ki < 3; ki++)
                for (int kj = 0; kj < 3; kj++)
                    acc = acc + w[ki * 3 + kj] * at(x, &s, oy * st - pad[0] + ki, ox * st - pad[1] + kj);
            want[oy * s.ow + ox] = act(post, acc);
        }
    memset(y, 0x7f, ny * sizeof *y);
    int ran = qt_dw3x3(x, &s, w, b, y, post);
    int same = ran && !memcmp(y, want, ny * sizeof *y);
    free(x);
    free(y);
    free(want);
    return ran ? same : -1;
}

int main(void) {
    static const int64_t pads[][4] = {{1, 1, 1, 1}, {0, 0, 0, 0}, {0, 0, 1, 1}, {1, 1, 0, 0},
                                      {2, 0, 1, 2}, {2, 2, 2, 2}, {0, 1, 2, 0}};
    const struct qt_post posts[3] = {{QT_POST_NONE, 0, 0}, {QT_POST_RELU, 0, 0}, {QT_POST_CLIP, 0.f, 6.f}};
    int64_t sizes[] = {1, 2, 3, 5, 7, 14, 15, 16, 17, 18, 28, 31, 33, 56, 63, 64, 65, 66, 67, 70, 97, 112, 130, 150};
    int ns = (int)(sizeof sizes / sizeof *sizes), cases = 0, bad = 0;
    if (one(8, 8, 1, pads[0], &posts[0], 0) < 0) {
        T_SKIP("no AVX-512: the direct kernel declines");
        return t_done();
    }
    for (int st = 1; st <= 2; st++)
        for (int p = 0; p < 7; p++)
            for (int k = 0; k < 3; k++)
                for (int i = 0; i < ns; i++) {
                    int64_t ih = sizes[i], iw = sizes[(i * 7 + p + k) % ns];
                    int r = one(ih, iw, st, pads[p], &posts[k], (i + p) % 5 == 0);
                    cases++;
                    if (r != 1) {
                        bad++;
                        T_OK(0, "stride %d, pads %lld %lld %lld %lld, act %d, %lldx%lld: bytes differ", st,
                             (long long)pads[p][0], (long long)pads[p][1], (long long)pads[p][2],
                             (long long)pads[p][3], k, (long long)ih, (long long)iw);
                    }
                }
    T_OK(bad == 0, "%d planes (stride 1 and 2, 7 paddings, 3 activations, 1 to 150 rows and columns): the "
         "padded-plane formula's bytes", cases);
    return t_done();
}
