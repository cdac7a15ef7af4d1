/* t_argmax.c: qtool's one top-1 (qt_argmax, used by eval, the losses and
 * qat's validation) follows numpy's argmax: the first maximum, and the
 * first NaN when there is one; qt_rank_before, the order of eval's top-5
 * lists, agrees with it. Expected values are numpy's (np.argmax on float32). */
#include "engine.h"
#include "test/tap.h"
#include "train/train.h"

#include <math.h>

static void check(const char *what, const float *v, int n, int want) {
    int got = qt_argmax(v, n), first = 0;
    T_OK(got == want, "argmax of %s: %d (numpy: %d)", what, got, want);
    for (int j = 1; j < n; j++) /* the head of a ranking by qt_rank_before */
        if (qt_rank_before(v[j], v[first]))
            first = j;
    T_OK(n == 0 || first == want, "  ranked first by qt_rank_before: %d", first);
}

int main(void) {
    const float ties[] = {1, 3, 3, 2}, nan0[] = {NAN, 1}, nan1[] = {1, NAN, 5, NAN}, ninf[] = {-INFINITY, -INFINITY},
                late[] = {2, 9, NAN}, zeros[] = {0.0f, -0.0f}, one[] = {5};
    check("[1, 3, 3, 2] (first of tied maxima)", ties, 4, 1);
    check("[nan, 1]", nan0, 2, 0);
    check("[1, nan, 5, nan] (first NaN)", nan1, 4, 1);
    check("[-inf, -inf]", ninf, 2, 0);
    check("[2, 9, nan] (a NaN after the maximum)", late, 3, 2);
    check("[0, -0] (equal)", zeros, 2, 0);
    check("[5]", one, 1, 0);
    check("[] (empty: numpy raises, qtool says 0)", one, 0, 0);
    /* the losses count a hit with the same top-1 */
    float z[] = {1, NAN, 5, 0, 7, 7}, dz[6];
    int labels[] = {1, 1}, correct = -1;
    double loss;
    qt_loss_xent(z, labels, 2, 3, dz, &loss, &correct);
    T_OK(correct == 2, "xent: rows [1, nan, 5] and [0, 7, 7] with label 1 both hit (NaN wins, first max): %d",
         correct);
    return t_done();
}
