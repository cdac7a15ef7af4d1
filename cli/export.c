/* export.c: `qtool export MODEL.onnx --quant-info Q.json -o OUT.onnx`:
 * rebuild a deployable model from the float model and quant_info.json. */
#include "cli.h"
#include "cli_json.h"

#include <string.h>

enum { OPT_QINFO = 400, OPT_FORMAT, OPT_CONTRIB, OPT_XPROFILE, OPT_XPACK };

static const struct opt opts[] = {
    {OPT_QINFO, "quant-info", "FILE.json", "quant_info.json written by calib, finetune or qat (required)"},
    {'o', "output", "OUT.onnx", "model to write (required)"},
    {OPT_FORMAT, "format", "qdq|qoperator|float", "QuantizeLinear/DequantizeLinear (default), QLinear operators, "
                                                 "or the BatchNorm-folded float model with the tuned weights"},
    {OPT_CONTRIB, "contrib", NULL, "qoperator: ONNX Runtime's com.microsoft QLinearAdd, QLinearGlobalAveragePool, "
                                   "QLinearConcat"},
    {OPT_XPROFILE, "profile", "NAME|FILE.json", "check that the recorded parameters suit this profile"},
    {OPT_XPACK, "pack", NULL, "qdq: weights of 4 bits or fewer as ONNX INT4 (opset 21), so the file shows their size"},
    {'j', "json", "FILE|-", "also write the result as JSON (qtool-json(5)); - is standard output"},
    {'q', "quiet", NULL, "no summary"},
    {'h', "help", NULL, "show this help"},
    {0, NULL, NULL, NULL},
};

int cmd_export(int argc, char **argv) {
    struct optparse op;
    struct qt_export_opts o = {0};
    struct qt_export_result r;
    struct qt_err err = {0};
    struct cli_json js;
    const char *json = NULL;
    int quiet = 0, c;
    static const char *const formats[] = {"qdq", "qoperator", "float"};
    opt_build(opts, &op);
    optind = 1;
    while ((c = getopt_long(argc, argv, op.shorts, op.longs, NULL)) != -1) {
        switch (c) {
        case OPT_QINFO: o.quant_info = optarg; break;
        case 'o': o.out = optarg; break;
        case OPT_FORMAT:
            o.format = -1;
            for (int i = 0; i < 3; i++)
                if (!strcmp(optarg, formats[i]))
                    o.format = i;
            if (o.format < 0)
                return cli_usage("export", "--format is qdq, qoperator or float, not '%s'", optarg);
            break;
        case OPT_CONTRIB: o.contrib = 1; break;
        case OPT_XPROFILE: o.profile = optarg; break;
        case OPT_XPACK: o.pack = 1; break;
        case 'j': json = optarg; break;
        case 'q': quiet = 1; break;
        case 'h':
            opt_usage(stdout, "export", "MODEL.onnx --quant-info Q.json -o OUT.onnx [options]", opts);
            return 0;
        default: return cli_usage("export", "unknown option");
        }
    }
    if (optind != argc - 1)
        return cli_usage("export", "expects one model file");
    o.model = argv[optind];
    if (!o.quant_info)
        return cli_usage("export", "--quant-info FILE.json is required");
    if (!o.out)
        return cli_usage("export", "-o OUT.onnx is required");
    if (o.contrib && o.format != QT_EXPORT_QOPERATOR)
        return cli_usage("export", "--contrib goes with --format qoperator");
    if (o.pack && o.format != QT_EXPORT_QDQ)
        return cli_usage("export", "--pack goes with --format qdq");
    cli_json_begin(&js, "export", json);
    if (js.doc) {
        cJSON_AddStringToObject(js.doc, "model", o.model);
        cJSON_AddStringToObject(js.doc, "quant_info", o.quant_info);
        cJSON_AddStringToObject(js.doc, "output", o.out);
        cJSON_AddStringToObject(js.doc, "format", formats[o.format]);
        cJSON_AddBoolToObject(js.doc, "contrib", o.contrib);
        cJSON_AddBoolToObject(js.doc, "pack", o.pack);
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
        cli_json_mem(js.doc, NULL, &r.mem, 0);
    }
    /* with --json - the document owns standard output */
    FILE *f = json && !strcmp(json, "-") ? stderr : stdout;
    if (!quiet) {
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
