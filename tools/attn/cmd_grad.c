/*
 * cmd_grad.c - `attn grad`: gradients on .npy files (attn_forward, then
 * attn_backward). Takes every option of `attn run` (cmd_run.h).
 */
#include "cli.h"
#include "cmd_linear.h"
#include "cmd_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char cmd_grad_help[] =
    "attn grad [run's options] --dout DO.npy --dq DQ.npy --dk DK.npy\n"
    "          --dv DV.npy [--dbias DB.npy] [--drelative-bias DR.npy]\n"
    "          [--dsinks DS.npy] [--out O.npy]\n"
    "    Gradients of sum(dO * O) (attn_backward): runs the forward for O and\n"
    "    LSE, then writes float32 dQ, dK, dV of the shapes of Q, K, V (and\n"
    "    dBias of the shape of --bias's array; dRelBias, float32 [N,\n"
    "    heads_q] like --relative-bias's table, summed over every query\n"
    "    and key of each bucket; dSinks, float32 [heads_q] like --sinks,\n"
    "    summed over every row). DO has O's shape. With\n"
    "    --rope, dQ and dK are w.r.t. the unrotated Q and K. With\n"
    "    --kv-quant, dK and dV are w.r.t. the dequantised K and V\n"
    "    (straight-through). With --linear, the gradients of linear\n"
    "    attention (attn run --linear).\n";

typedef struct grad_opts {
  run_opts run;
  const char *dout, *dq, *dk, *dv, *dbias;
  const char *drel;   /* --drelative-bias: the T5 table's gradient */
  const char *dsinks; /* --dsinks: the sinks' gradient */
} grad_opts;

/* Consumes the current option if it is one of grad's own; 0 if not. */
static int grad_take(grad_opts *o, args *a) {
  const struct {
    const char *name;
    const char **slot;
  } table[] = {
      {"--dout", &o->dout},     {"--dq", &o->dq},
      {"--dk", &o->dk},         {"--dv", &o->dv},
      {"--dbias", &o->dbias},   {"--drelative-bias", &o->drel},
      {"--dsinks", &o->dsinks},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    if (args_is(a, table[i].name)) {
      args_set_once(table[i].slot, args_value(a), a->name);
      return 1;
    }
  }
  return 0;
}

static void parse(int argc, char **argv, grad_opts *o) {
  args a = args_start(argc, argv);
  memset(o, 0, sizeof *o);
  while (args_next(&a)) {
    if (args_is(&a, "--help")) {
      cli_print_help();
      cli_cleanup();
      exit(0);
    }
    if (args_is(&a, "--linear")) { /* cmd_linear.c reads argv */
      args_flag(&a);
      continue;
    }
    if (!grad_take(o, &a) && !run_opts_take(&o->run, &a))
      args_unknown(&a, "grad");
  }
  run_opts_require(&o->run, "grad", 0);
  if (!o->dout || !o->dq || !o->dk || !o->dv)
    cli_fail(CLI_EXIT_USAGE, "grad: missing required option %s",
             !o->dout ? "--dout"
             : !o->dq ? "--dq"
             : !o->dk ? "--dk"
                      : "--dv");
  if (o->dbias && !o->run.bias)
    cli_fail(CLI_EXIT_USAGE, "grad: --dbias needs --bias");
  if (o->drel && !o->run.rel_bias)
    cli_fail(CLI_EXIT_USAGE, "grad: --drelative-bias needs --relative-bias");
  if (o->dsinks && !o->run.sinks)
    cli_fail(CLI_EXIT_USAGE, "grad: --dsinks needs --sinks");
}

static void check_files(const grad_opts *o) {
  cli_path files[40];
  int n = 0;
  run_opts_paths(&o->run, files, &n);
  const cli_path add[] = {
      {"--dq", o->dq, 1},         {"--dk", o->dk, 1},
      {"--dv", o->dv, 1},         {"--dbias", o->dbias, 1},
      {"--dout", o->dout, 0},     {"--drelative-bias", o->drel, 1},
      {"--dsinks", o->dsinks, 1},
  };
  for (size_t i = 0; i < sizeof add / sizeof add[0]; i++)
    files[n++] = add[i];
  paths_check_distinct(files, n);
}

/* The forward (for O and LSE), then the backward; with RoPE both on the
 * rotated Q and K, dQ and dK then mapped back to the unrotated ones. */
static void compute(const grad_opts *o, const operands *ops, attn_params *p,
                    const attn_rope *rope) {
  if (rope != NULL)
    run_rope_qk(rope, p);
  run_kv_quant(&o->run, p); /* straight-through: dK, dV as for f32 K, V */
  run_call(attn_forward, p);
  operands_load_grad(ops, o->dout, o->dbias != NULL, p);
  if (o->drel != NULL) { /* [buckets, heads_q], like the table */
    const int64_t n =
        cli_mul(p->rel_buckets, p->q.shape[2], CLI_EXIT_RUNTIME, "dRelBias");
    p->drel_bias = cli_calloc(n, sizeof(float), "dRelBias");
  }
  if (o->dsinks != NULL)
    p->dsinks = cli_calloc(p->q.shape[2], sizeof(float), "dSinks");
  run_call(attn_backward, p);
  if (rope != NULL)
    run_rope_grads(rope, p);
}

int cmd_grad(int argc, char **argv) {
  grad_opts o;
  parse(argc, argv, &o);
  const int linear = linear_requested(argc, argv, "grad");
  attn_params p;
  attn_params_init(&p);
  operand_spec spec;
  run_opts_apply(&o.run, &p, &spec);
  attn_rope rope;
  const int with_rope = run_opts_rope(&o.run, &rope);
  check_files(&o);
  cli_parsed(); /* parse-only mode (cli.h) ends here */

  operands ops;
  operands_load(&spec, &p, &ops);
  run_rel_bias(&o.run, &p);
  run_sinks(&o.run, &p);
  run_sparse(&o.run, &p);
  int64_t lse_shape[3];
  float *lse = operands_lse(&ops, &p, lse_shape); /* the backward reads it */
  if (linear) { /* --linear: linear attention's forward and backward */
    linear_forward(&p);
    operands_load_grad(&ops, o.dout, 0, &p);
    linear_backward(&p);
  } else {
    compute(&o, &ops, &p, with_rope ? &rope : NULL);
  }

  int64_t out_shape[4];
  int out_ndim = operands_out_shape(&ops, out_shape);
  if (o.run.out != NULL)
    operands_write(o.run.out, p.o.data, out_ndim, out_shape);
  if (o.run.lse != NULL)
    operands_write(o.run.lse, lse, 3, lse_shape);
  operands_write(o.dq, p.dq.data, ops.q->ndim, ops.q->shape);
  operands_write(o.dk, p.dk.data, ops.k->ndim, ops.k->shape);
  operands_write(o.dv, p.dv.data, ops.v->ndim, ops.v->shape);
  if (o.dbias != NULL)
    operands_write(o.dbias, p.dbias.data, ops.bias->ndim, ops.bias->shape);
  if (o.drel != NULL) {
    const int64_t rshape[2] = {p.rel_buckets, p.q.shape[2]};
    operands_write(o.drel, p.drel_bias, 2, rshape);
  }
  if (o.dsinks != NULL) {
    const int64_t sshape[1] = {p.q.shape[2]};
    operands_write(o.dsinks, p.dsinks, 1, sshape);
  }
  cli_cleanup();
  return 0;
}
