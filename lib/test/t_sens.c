/* t_sens.c: the quantization simulator and the sensitivity analysis
 * (lib/quant/sensitivity.c) on the Fashion-MNIST fixture, W4A4 per channel:
 * - every unit on gives the outputs of the QDQ model the plan exports (run
 *   by qtool's executor): same top-1 class on every image, output SQNR
 *   within 0.01 dB of the QDQ model's against the same float outputs;
 * - every unit off gives the float model exactly (no drop, 100% agreement);
 * - the shared-prefix walks give, for every unit, exactly what a whole run
 *   with only that unit on (or only that unit off) gives;
 * - the report is ordered worst first, and is the same at 1 and 2 threads. */
#include "engine.h"
#include "quant/quant.h"
#include "test/tap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NIMG 24

static int same(const struct qt_figures *a, const struct qt_figures *b) {
    return a->images == b->images && a->agree == b->agree &&
           (a->top1 == b->top1 || (isnan(a->top1) && isnan(b->top1))) && a->sqnr_db == b->sqnr_db;
}

int main(void) {
    struct qt_graph *g = NULL, *qg = NULL;
    struct qt_qplan *p = NULL;
    struct qt_dataset *ds = NULL, *ts = NULL;
    struct qt_qsim *s = NULL, *s1 = NULL;
    struct qt_exec *qx = NULL;
    struct qt_err err = {0};
    struct qt_preproc pp;
    struct qt_quant_opts o;
    struct qt_sens_report r = {0}, r1 = {0};
    static float img[NIMG * 28 * 28];
    int lab[NIMG], images = 0;
    qt_preproc_default(&pp);
    if (qt_preproc_preset(&pp, "mnist", &err) || qt_graph_load(&g, "testdata/fmnist/model.onnx", &err) ||
        qt_dataset_open(&ds, "testdata/fmnist/calib", NULL, &err) ||
        qt_dataset_open(&ts, "testdata/fmnist/test", NULL, &err)) {
        T_OK(0, "setup: %s", err.msg);
        goto out;
    }
    pp.channels = 1;
    qt_quant_opts_init(&o);
    o.wbits = 4;
    o.abits = 4;
    if (qt_qplan_build(&p, g, &o, NULL, NULL, &err) || qt_qplan_weights(p, &err) ||
        qt_calib_observe(p, ds, &pp, 1, 28, 28, 64, 32, 0, 2, &images, NULL, NULL, &err) ||
        qt_qplan_biases(p, &err) || qt_dataset_load(ts, &pp, 0, NIMG, 1, 28, 28, img, lab, 2, 0, &err)) {
        T_OK(0, "calibrate: %s", err.msg);
        goto out;
    }
    if (qt_qsim_new(&s, p, NULL, img, lab, NIMG, 2, &err)) {
        T_OK(0, "simulator: %s", err.msg);
        goto out;
    }
    int nu = qt_qsim_units(s);
    T_OK(nu >= 10, "%d units (weights and activations)", nu);

    /* all on against the exported QDQ model */
    struct qt_figures all, none;
    if (qt_qsim_eval(s, NULL, &all, &err) || qt_qplan_export_qdq(p, &qg, &err) ||
        qt_exec_new(&qx, qg, NIMG, 2, &err)) {
        T_OK(0, "all on / QDQ: %s", err.msg);
        goto out;
    }
    memcpy(qt_exec_input(qx, 0), img, sizeof img);
    struct qt_exec *fx = NULL;
    if (qt_exec_run(qx, &err) || qt_exec_new(&fx, p->g, NIMG, 2, &err)) {
        T_OK(0, "QDQ run: %s", err.msg);
        goto out;
    }
    memcpy(qt_exec_input(fx, 0), img, sizeof img);
    if (qt_exec_run(fx, &err)) {
        qt_exec_free(fx);
        T_OK(0, "float run: %s", err.msg);
        goto out;
    }
    const float *qo = qt_exec_output(qx, 0), *fo = qt_exec_output(fx, 0);
    double sig = 0, noise = 0;
    int agree = 0;
    for (int i = 0; i < NIMG; i++) {
        int tq = 0, tf = 0;
        for (int j = 0; j < 10; j++) {
            double d = (double)qo[i * 10 + j] - fo[i * 10 + j];
            sig += (double)fo[i * 10 + j] * fo[i * 10 + j];
            noise += d * d;
            if (qo[i * 10 + j] > qo[i * 10 + tq])
                tq = j;
            if (fo[i * 10 + j] > fo[i * 10 + tf])
                tf = j;
        }
        agree += tq == tf;
    }
    qt_exec_free(fx);
    double qdq_sqnr = 10 * log10(sig / noise);
    T_OK(fabs(all.sqnr_db - qdq_sqnr) < 0.01, "all on: output SQNR %.3f dB, the QDQ model's %.3f dB", all.sqnr_db,
         qdq_sqnr);
    T_OK(fabs(all.agree - 100.0 * agree / NIMG) < 1e-9, "all on: agreement %.2f%%, the QDQ model's %.2f%%", all.agree,
         100.0 * agree / NIMG);
    T_OK(all.sqnr_db > 5 && all.sqnr_db < 40, "W4A4 is lossy: %.2f dB", all.sqnr_db);

    for (int i = 0; i < nu; i++)
        qt_qsim_set(s, i, 0);
    if (qt_qsim_run(s, &none, &err)) {
        T_OK(0, "all off: %s", err.msg);
        goto out;
    }
    T_OK(isinf(none.sqnr_db) && none.agree == 100 && none.top1_drop == 0,
         "all off is the float model: SQNR %g, agreement %.1f, drop %.2f", none.sqnr_db, none.agree, none.top1_drop);

    /* the walks against whole runs */
    if (qt_sensitivity(s, 0, &r, &err)) {
        T_OK(0, "sensitivity: %s", err.msg);
        goto out;
    }
    T_OK(r.nunits == nu && r.images == NIMG, "report: %d units, %d images", r.nunits, r.images);
    T_OK(same(&r.all, &all), "report's all-quantized figures equal a whole run (%.4f / %.4f dB)", r.all.sqnr_db,
         all.sqnr_db);
    int bad_q = 0, bad_f = 0, own_bad = 0;
    for (int u = 0; u < nu; u++) {
        struct qt_figures fq, ff;
        for (int i = 0; i < nu; i++)
            qt_qsim_set(s, i, i == u);
        if (qt_qsim_run(s, &fq, &err))
            break;
        for (int i = 0; i < nu; i++)
            qt_qsim_set(s, i, i != u);
        if (qt_qsim_run(s, &ff, &err))
            break;
        bad_q += !same(&fq, &r.unit[u].only_quant);
        bad_f += !same(&ff, &r.unit[u].only_float);
        own_bad += !(r.unit[u].sqnr_db > 0 && r.unit[u].cosine > 0.9 && r.unit[u].cosine <= 1.0000001);
        if (u == 0 || !same(&fq, &r.unit[u].only_quant))
            printf("# unit %d %s %s: only quantized %.4f dB (walk %.4f), all but it %.4f dB (walk %.4f), own %.2f dB "
                   "cos %.4f\n",
                   u, r.unit[u].node, r.unit[u].weight ? "weight" : "output", fq.sqnr_db, r.unit[u].only_quant.sqnr_db,
                   ff.sqnr_db, r.unit[u].only_float.sqnr_db, r.unit[u].sqnr_db, r.unit[u].cosine);
    }
    T_OK(!err.code && bad_q == 0, "only-this-unit-quantized: the walk equals a whole run for all %d units (%d differ)",
         nu, bad_q);
    T_OK(!err.code && bad_f == 0, "all-but-this-unit: the walk equals a whole run for all %d units (%d differ)", nu,
         bad_f);
    T_OK(own_bad == 0, "every unit's own SQNR > 0 dB and cosine in (0.9, 1] (%d not)", own_bad);
    int ord[256];
    if (nu <= 256) {
        qt_sens_order(&r, ord);
        int worst = ord[0], best = ord[nu - 1];
        T_OK(r.unit[worst].only_quant.sqnr_db <= r.unit[best].only_quant.sqnr_db &&
                 r.unit[worst].only_quant.sqnr_db < all.sqnr_db + 40,
             "worst first: '%s' %s %.2f dB ... '%s' %.2f dB", r.unit[worst].node,
             r.unit[worst].weight ? "weight" : "output", r.unit[worst].only_quant.sqnr_db, r.unit[best].node,
             r.unit[best].only_quant.sqnr_db);
    }

    /* threads */
    if (qt_qsim_new(&s1, p, NULL, img, lab, NIMG, 1, &err) || qt_sensitivity(s1, 0, &r1, &err)) {
        T_OK(0, "1 thread: %s", err.msg);
        goto out;
    }
    int diff = 0;
    for (int u = 0; u < nu; u++)
        diff += !same(&r.unit[u].only_quant, &r1.unit[u].only_quant) ||
                !same(&r.unit[u].only_float, &r1.unit[u].only_float) || r.unit[u].sqnr_db != r1.unit[u].sqnr_db;
    T_OK(diff == 0, "the same report at 1 and 2 threads (%d units differ)", diff);
out:
    qt_sens_report_free(&r);
    qt_sens_report_free(&r1);
    qt_qsim_free(s);
    qt_qsim_free(s1);
    qt_exec_free(qx);
    qt_graph_free(qg);
    qt_qplan_free(p);
    qt_dataset_free(ds);
    qt_dataset_free(ts);
    qt_graph_free(g);
    return t_done();
}
