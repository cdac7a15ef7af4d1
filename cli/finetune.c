/* finetune.c: `qtool finetune MODEL.onnx --data DIR -o OUT.onnx`: calib
 * followed by AdaQuant or AdaRound (lib/quant/finetune.c); calib's options
 * (cli/calib.c) plus the tuning ones, and its own --batch (images per Adam
 * step). */
#include "cli.h"

int cmd_finetune(int argc, char **argv) {
    struct cli_calib a;
    struct qt_ft_opts *ft = &a.o.ft;
    cli_calib_init(&a, 1);
    const struct opt opts[] = {
        CLI_CALIB_OPTS(&a),
        CLI_CALIB_RUN_OPTS(&a),
        OPT_CHOICE(0, "method", "adaquant|adaround", &ft->method, NULL,
                   "tune weights, biases and steps (default) or learn the rounding only"),
        OPT_INTEGER(0, "iters", "N", &ft->iters, 0, 1000000, "Adam steps per layer (default 300)"),
        OPT_FLOAT_RANGE(0, "lr", "LR", &a.lr, 0, 1, OPT_LO_OPEN | OPT_HI_OPEN,
                        "learning rate: adaquant relative to each channel's weight step (default 0.003), "
                        "adaround of the rounding variables (default 0.05)"),
        OPT_INTEGER(0, "batch", "N", &ft->batch, 1, 4096, "images per Adam step (default 8)"),
        OPT_CHOICE(0, "mode", "sequential|parallel", &ft->parallel, NULL,
                   "layer inputs from the tuned quantized prefix (default) or float"),
        OPT_INTEGER(0, "max-memory", "BYTES", &ft->max_memory, 1, 1LL << 50,
                    "one layer's inputs and targets above this go to a temporary file (default 402653184)"),
        OPT_INTEGER(0, "seed", "S", &ft->seed, 0, 1LL << 50, "minibatch order (default 0)"),
        OPT_BOOL(0, "fixed-act-steps", &ft->fixed_act_steps,
                 "keep the calibrated input steps (default: learn those of single-reader inputs below 8 bits)"),
        OPT_HELP(),
        OPT_END(),
    };
    return cli_main("finetune", CLI_CALIB_SYNOPSIS, opts, argc, argv, &a.o.model, cli_calib_run, &a);
}
