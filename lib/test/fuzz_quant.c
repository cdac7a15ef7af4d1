/* fuzz_quant.c: libFuzzer target for the quantization path of a hostile
 * model: bytes -> the ONNX loader, then what calib and export do with a
 * model that loads: graph preparation (BatchNormalization folding,
 * activation fusion, what to quantize: qt_qplan_build), weight
 * quantization (NaN, Inf, zero-range and huge weights), activation
 * parameters (one fixed range instead of calibration, which needs images),
 * the profile's constraints, bias quantization, the QDQ and QOperator
 * exports, one run of each exported graph, and the QDQ file and
 * quant_info.json written and read back. The seeds are fuzz_onnx's (every
 * small model of testdata); four option sets are chosen by a hash of the
 * input: the defaults; W4A4 per-tensor int8 symmetric narrow-range; the
 * pow2 profile; int-only with BatchNormalization left unfolded. Planned
 * memory is bounded by QT_MEM_LIMIT_MB (64). Built by `make fuzz`. */
#include "engine.h"
#include "test/fuzz_run.h"
#include "quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], model_path[96], qdq_path[96], info_path[96];

static void cleanup(void) {
    unlink(model_path);
    unlink(qdq_path);
    unlink(info_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    setenv("QT_MEM_LIMIT_MB", "64", 0);
    snprintf(dir, sizeof dir, "/tmp/qtool-fuzz-quant-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    snprintf(model_path, sizeof model_path, "%s/model.onnx", dir);
    snprintf(qdq_path, sizeof qdq_path, "%s/q.onnx", dir);
    snprintf(info_path, sizeof info_path, "%s/q.json", dir);
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct qt_err err = {0};
    struct qt_graph *g = NULL, *qg = NULL, *qo = NULL, *back = NULL;
    struct qt_qplan *p = NULL, *p2 = NULL;
    struct qt_quant_opts o;
    struct qt_preproc pp;
    int nq, ntuned;
    uint32_t h = 2166136261u; /* FNV-1a of the input picks the options */
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    if (qt_graph_load_mem(&g, data, size, "fuzz.onnx", &err) || qt_graph_unsupported(g, &err))
        goto out;
    qt_quant_opts_init(&o);
    switch (h % 4) {
    case 1:
        o.wbits = o.abits = 4;
        o.per_channel = 0;
        o.act_signed = 1;
        o.narrow = 1;
        break;
    case 2:
        if (qt_profile_apply(&o, "pow2", &err))
            goto out;
        break;
    case 3:
        if (qt_profile_apply(&o, "int-only", &err))
            goto out;
        o.fold_bn = 0;
        break;
    }
    if (qt_qplan_build(&p, g, &o, NULL, NULL, &err) || qt_qplan_weights(p, &err) ||
        qt_qplan_act_fixed(p, -1.0, 1.5, &err))
        goto out;
    qt_qplan_pow2(p);
    if (qt_qplan_biases(p, &err))
        goto out;
    if (qt_qplan_export_qdq(p, &qg, &err) == 0)
        run_once(qg);
    if (qt_qplan_export_qop(p, 1, &qo, &nq, &err) == 0)
        run_once(qo);
    /* the files: what calib writes, read back as export and eval read them */
    qt_preproc_default(&pp);
    FILE *f = fopen(model_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f))
        abort();
    if (qg && qt_qplan_save(p, qg, qdq_path, info_path, model_path, &pp, 1, "fuzz", &err) == 0) {
        if (qt_graph_load(&back, qdq_path, &err) == 0)
            run_once(back);
        qt_qplan_from_info(&p2, g, model_path, info_path, &ntuned, &err);
    }
out:
    qt_qplan_free(p2);
    qt_qplan_free(p);
    qt_graph_free(back);
    qt_graph_free(qo);
    qt_graph_free(qg);
    qt_graph_free(g);
    return 0;
}
