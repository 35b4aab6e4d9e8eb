/* The flowcast server: listener, event loop, timers, signals, shutdown. */
#ifndef FC_SERVER_SERVER_H
#define FC_SERVER_SERVER_H

#include "cli/config.h"

/* Runs the server until SIGINT/SIGTERM; returns the process exit code. */
int fc_server_run(const fc_config *cfg);

#endif
