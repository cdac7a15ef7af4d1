/* qtool.c: the command table and main(). */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

struct cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
};

static const struct cmd cmds[] = {
    {"calib", cmd_calib, "post-training static quantization to a QDQ model and quant_info.json"},
    {"finetune", cmd_finetune, "calib followed by AdaQuant layer-wise tuning (weights, biases, quantization steps)"},
    {"qat", cmd_qat, "quantization-aware training with fake quantization, to a QDQ model"},
    {"export", cmd_export, "rebuild a QDQ, QOperator or float model from the float model and quant_info.json"},
    {"eval", cmd_eval, "top-1/top-5, loss, agreement and SQNR of a float or quantized model"},
    {"inspect", cmd_inspect, "opset, inputs, outputs, operators, parameters, memory of a model"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: qtool <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "\n'qtool <command> --help' lists a command's options; 'qtool help <command>' opens its manual.\n");
}

static int finish_stdout(int rc) {
    /* a full disk or closed pipe on stdout is a failure too (git's run_builtin) */
    if (fflush(stdout) || ferror(stdout)) {
        fprintf(stderr, "qtool: error: cannot write to standard output: %s\n", strerror(errno));
        return rc ? rc : 1;
    }
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return QT_EUSAGE;
    }
    const char *c = argv[1];
    if (!strcmp(c, "--help") || !strcmp(c, "-h")) {
        usage(stdout);
        return finish_stdout(0);
    }
    if (!strcmp(c, "--version") || !strcmp(c, "version")) {
        printf("qtool %s\n", QT_VERSION);
        return finish_stdout(0);
    }
    if (!strcmp(c, "help")) {
        if (argc < 3) {
            usage(stdout);
            return finish_stdout(0);
        }
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            if (!strcmp(argv[2], cmds[i].name)) {
                char page[64];
                snprintf(page, sizeof page, "qtool-%s", cmds[i].name);
                execlp("man", "man", page, (char *)NULL);
                /* no man(1) or page not installed: fall back to --help */
                char *av[] = {(char *)cmds[i].name, "--help", NULL};
                return finish_stdout(cmds[i].fn(2, av));
            }
        }
        fprintf(stderr, "qtool: '%s' is not a qtool command\n", argv[2]);
        return QT_EUSAGE;
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(c, cmds[i].name))
            return finish_stdout(cmds[i].fn(argc - 1, argv + 1));
    fprintf(stderr, "qtool: '%s' is not a qtool command. See 'qtool --help'.\n", c);
    return QT_EUSAGE;
}
