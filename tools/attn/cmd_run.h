/*
 * cmd_run.h - the options of `attn run`, which `attn grad` shares.
 */
#ifndef ATTN_CLI_CMD_RUN_H
#define ATTN_CLI_CMD_RUN_H

#include "args.h"
#include "operands.h"
#include "paths.h"

/* run's options as given (NULL / 0 = absent). */
typedef struct run_opts {
  const char *q, *k, *v, *out, *lse;                       /* files */
  const char *alibi, *bias, *mask, *kv_lens, *cu_q, *cu_k; /* files */
  const char *layout, *scale, *window, *softcap, *dtype, *threads, *isa;
  const char *prefix, *q_pos_offset, *k_pos_offset;
  const char *rope, *rope_style, *rope_dims, *rope_scaling, *rope_omp;
  const char *rel_bias, *buckets, *max_distance; /* T5 table and its options */
  const char *sinks; /* --sinks SINKS.npy (float32 [heads_q]) */
  /* --dropout P (probability), --seed S (its mask's seed) */
  const char *dropout, *seed;
  const char *kv_quant; /* --kv-quant q8_0|q4_0 */
  /* sparse patterns (cmd_sparse.c): --global IDX.npy, --sparse SPEC,
   * --block-mask MAP.npy, --block-size BQ,BK */
  const char *global, *sparse, *block_mask, *block_size;
  int bidirectional;
  int causal, causal_top_left;
} run_opts;

/* Consumes the current option of a if it is one of run's; 0 if not. */
int run_opts_take(run_opts *o, args *a);

/* Usage error naming the first of --q, --k, --v (and --out when need_out)
 * that is missing; cmd is "run" or "grad". */
void run_opts_require(const run_opts *o, const char *cmd, int need_out);

/* Checks and converts the option values (usage errors) into p's option
 * fields (p initialised by the caller) and the input files into spec. */
void run_opts_apply(const run_opts *o, attn_params *p, operand_spec *spec);

/* Calls fn (attn_forward or attn_backward) on p; a failing status ends the
 * program with the library's message (exit 1). */
void run_call(attn_status (*fn)(attn_context *, const attn_params *),
              attn_params *p);

/* --rope and its --rope-* options into *r (usage errors); 0 = no RoPE. */
int run_opts_rope(const run_opts *o, attn_rope *r);

/* Points p->q and p->k at copies rotated by r at the call's positions
 * (attn_rope_apply_qk); a library error ends the program (exit 1). */
void run_rope_qk(const attn_rope *r, attn_params *p);

/* Maps p->dq and p->dk, gradients w.r.t. the rotated Q and K, in place to
 * gradients w.r.t. the unrotated ones (the inverse rotation). */
void run_rope_grads(const attn_rope *r, attn_params *p);

/* --relative-bias TABLE.npy (f32 [buckets, heads_q]) with --buckets,
 * --max-distance, --bidirectional into p's rel_* fields; after
 * operands_load (heads_q known). Nothing without --relative-bias. */
void run_rel_bias(const run_opts *o, attn_params *p);

/* --sinks SINKS.npy (f32 [heads_q]) into p->sinks; after operands_load.
 * Nothing without --sinks. */
void run_sinks(const run_opts *o, attn_params *p);

/* --kv-quant: p->k and p->v replaced by quantised copies (after RoPE);
 * a head_dim that is not a multiple of 32 ends the program (exit 1).
 * Nothing without --kv-quant. */
void run_kv_quant(const run_opts *o, attn_params *p);

/* --global, --sparse, --block-mask with --block-size into p's sparse
 * fields (cmd_sparse.c); after operands_load. Nothing without them. */
void run_sparse(const run_opts *o, attn_params *p);

/* Appends run's files to list at *n (room for 20 more). */
void run_opts_paths(const run_opts *o, cli_path *list, int *n);

#endif /* ATTN_CLI_CMD_RUN_H */
