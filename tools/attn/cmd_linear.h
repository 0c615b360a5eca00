/*
 * cmd_linear.h - `--linear` for `attn run` and `attn grad`: linear attention
 * (attn/linear.h) on the operands run and grad load.
 */
#ifndef ATTN_CLI_CMD_LINEAR_H
#define ATTN_CLI_CMD_LINEAR_H

#include "attn.h"

/* 1 when argv holds --linear; then every other option linear attention
 * cannot honour is a usage error (exit 2) naming it. cmd: "run" or
 * "grad". */
int linear_requested(int argc, char **argv, const char *cmd);

/* attn_linear_forward on p's q, k, v, o, causal and num_threads; a library
 * error ends the program (exit 1) with its message. */
void linear_forward(attn_params *p);

/* attn_linear_backward on p's q, k, v, dout, dq, dk, dv (o is not read). */
void linear_backward(attn_params *p);

#endif /* ATTN_CLI_CMD_LINEAR_H */
