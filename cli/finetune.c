/* finetune.c: `qtool finetune MODEL.onnx --data DIR -o OUT.onnx`: calib
 * followed by AdaQuant (lib/quant/finetune.c); options as calib's plus the
 * tuning ones (cli/calib.c parses both). */
#include "cli.h"

int cmd_finetune(int argc, char **argv) {
    return cli_calib_main(argc, argv, 1);
}
