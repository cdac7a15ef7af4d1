/* export.c: `qtool export MODEL.onnx --quant-info Q.json -o OUT.onnx`:
 * rebuild a deployable model from the float model and quant_info.json. */
#include "cli.h"
#include "cli_json.h"

#include <string.h>

struct export_cmd {
    struct qt_export_opts o;
    const char *json;
    int quiet;
};

static int export_main(void *ctx);

int cmd_export(int argc, char **argv) {
    struct export_cmd a = {0};
    struct qt_export_opts *o = &a.o;
    const struct opt opts[] = {
        OPT_STRING(0, "quant-info", "FILE.json", &o->quant_info,
                   "quant_info.json written by calib, finetune or qat (required)"),
        OPT_STRING('o', "output", "OUT.onnx", &o->out, "model to write (required)"),
        OPT_CHOICE(0, "format", "qdq|qoperator|float", &o->format, NULL,
                   "QuantizeLinear/DequantizeLinear (default), QLinear operators, "
                   "or the BatchNorm-folded float model with the tuned weights"),
        OPT_BOOL(0, "contrib", &o->contrib,
                 "qoperator: ONNX Runtime's com.microsoft QLinearAdd, QLinearGlobalAveragePool, QLinearConcat"),
        OPT_BOOL(0, "pack", &o->pack,
                 "qdq: weights of 4 bits or fewer as ONNX INT4 (opset 21), so the file shows their size"),
        OPT_STRING(0, "profile", "NAME|FILE.json", &o->profile, "check that the recorded parameters suit this profile"),
        OPT_STRING('j', "json", "FILE|-", &a.json, "also write the result as JSON (qtool-json(5)); - is standard output"),
        OPT_BOOL('q', "quiet", &a.quiet, "no summary"),
        OPT_HELP(),
        OPT_END(),
    };
    return cli_main("export", "MODEL.onnx --quant-info Q.json -o OUT.onnx [options]", opts, argc, argv, &o->model,
                    export_main, &a);
}

static int export_main(void *ctx) {
    struct export_cmd *a = ctx;
    struct qt_export_opts o = a->o;
    struct qt_export_result r;
    struct qt_err err = {0};
    struct cli_json js;
    const char *json = a->json;
    static const char *const formats[] = {"qdq", "qoperator", "float"};
    if (o.pack && o.format != QT_EXPORT_QDQ)
        return cli_usage("export", "--pack goes with --format qdq");
    if (!o.quant_info)
        return cli_usage("export", "--quant-info FILE.json is required");
    if (!o.out)
        return cli_usage("export", "-o OUT.onnx is required");
    if (o.contrib && o.format != QT_EXPORT_QOPERATOR)
        return cli_usage("export", "--contrib goes with --format qoperator");
    cli_json_begin(&js, "export", json);
    if (js.doc) {
        cJSON_AddStringToObject(js.doc, "model", o.model);
        cJSON_AddStringToObject(js.doc, "quant_info", o.quant_info);
        cJSON_AddStringToObject(js.doc, "output", o.out);
        cJSON_AddStringToObject(js.doc, "format", formats[o.format]);
        cJSON_AddBoolToObject(js.doc, "contrib", o.contrib);
        if (o.profile)
            cJSON_AddStringToObject(js.doc, "profile", o.profile);
        else
            cJSON_AddNullToObject(js.doc, "profile");
    }
    /* the JSON path is checked before the model is written: a bad one
     * leaves nothing behind */
    if (cli_json_check(&js, &err) || qt_export_run(&o, &r, &err))
        return cli_json_fail(&js, &err);
    if (js.doc) {
        cli_json_num(js.doc, "quantized_tensors", r.ntensors);
        cli_json_num(js.doc, "tuned_tensors", r.tuned);
        cli_json_num(js.doc, "integer_nodes", o.format == QT_EXPORT_QOPERATOR ? r.qnodes : 0);
        cJSON_AddBoolToObject(js.doc, "pack", o.pack);
        cli_json_mem(js.doc, NULL, &r.mem, 0);
    }
    /* with --json - the document owns standard output */
    FILE *f = json && !strcmp(json, "-") ? stderr : stdout;
    if (!a->quiet) {
        fprintf(f, "wrote %s (%s): %d quantized tensors restored", o.out, formats[o.format], r.ntensors);
        if (r.tuned)
            fprintf(f, ", %d tuned float tensors", r.tuned);
        if (o.format == QT_EXPORT_QOPERATOR)
            fprintf(f, ", %d integer operators", r.qnodes);
        fprintf(f, "\n");
        if (o.pack) /* the file's size shows the budget: say what it holds */
            cli_print_mem(f, &r.mem);
    }
    return cli_json_end(&js, 0, &err);
}
