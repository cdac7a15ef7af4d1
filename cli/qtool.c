/* qtool.c: the command table and main(). */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
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

/* is PROG an executable somewhere on $PATH? */
static int on_path(const char *prog) {
    const char *path = getenv("PATH");
    char buf[PATH_MAX];
    while (path && *path) {
        size_t n = strcspn(path, ":");
        if (n > 0 && n + strlen(prog) + 2 < sizeof buf) {
            snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, prog);
            if (access(buf, X_OK) == 0)
                return 1;
        }
        path += n + (path[n] == ':');
    }
    return 0;
}

/* the page PAGE (qtool-calib.1) beside this binary: the checkout's man/
 * (./qtool, build/qtool) or PREFIX/share/man/man1 (PREFIX/bin/qtool) */
static int page_beside_binary(const char *page, char *out, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return 0;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash)
        return 0;
    *slash = 0;
    static const char *const rel[] = {"man", "../man", "../../man", "../share/man/man1"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        struct stat st;
        if ((size_t)snprintf(out, cap, "%s/%s/%s", exe, rel[i], page) < cap && stat(out, &st) == 0 &&
            S_ISREG(st.st_mode))
            return 1;
    }
    return 0;
}

/* does man(1) know PAGE (man -w, quietly)? */
static int man_knows(const char *page) {
    pid_t pid = fork();
    if (pid < 0)
        return 0;
    if (pid == 0) {
        FILE *null = freopen("/dev/null", "w", stdout);
        null = freopen("/dev/null", "w", stderr);
        (void)null;
        execlp("man", "man", "-w", page, (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* qtool help CMD: the manual page of this qtool (the checkout's or the
 * installed one), else the one man(1) finds, else CMD --help */
static int help_cmd(const struct cmd *c) {
    char page[64], file[PATH_MAX];
    snprintf(page, sizeof page, "qtool-%s", c->name);
    if (on_path("man")) {
        char page1[72];
        snprintf(page1, sizeof page1, "%s.1", page);
        fflush(stdout);
        if (page_beside_binary(page1, file, sizeof file))
            execlp("man", "man", "-l", file, (char *)NULL);
        else if (man_knows(page))
            execlp("man", "man", page, (char *)NULL);
    }
    char *av[] = {(char *)c->name, "--help", NULL};
    return c->fn(2, av);
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
            if (!strcmp(argv[2], cmds[i].name))
                return finish_stdout(help_cmd(&cmds[i]));
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
