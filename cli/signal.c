/* signal.c: SIGINT/SIGTERM for the long-running commands (qat, finetune):
 * the handler only records the signal; the library polls the flag between
 * steps, stops cleanly (qat writes a checkpoint), and the command exits with
 * 128 + the signal's number (130, 143) as a shell would report it. */
#include "cli.h"

#include <signal.h>
#include <string.h>

volatile int cli_stop;

static void on_stop(int sig) {
    cli_stop = sig;
}

void cli_stop_catch(int on) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on ? on_stop : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
