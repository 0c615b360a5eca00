/*
 * operands.h - the .npy operands of `attn run` and `attn grad`: reading
 * them, checking their dtypes and shapes (Q/K/V layouts, numpy
 * broadcasting of bias and mask, per-sequence extras of packed batches),
 * pointing attn_params at them, and writing the outputs. Every failure
 * here is a runtime error (exit 1).
 */
#ifndef ATTN_CLI_OPERANDS_H
#define ATTN_CLI_OPERANDS_H

#include "attn.h"
#include "attn/io.h"

/* The input files (NULL = not given) and how to read them. */
typedef struct operand_spec {
  const char *q, *k, *v;   /* required                             */
  const char *alibi;       /* f32 [heads_q]                        */
  const char *bias, *mask; /* f32 / bool, broadcast (numpy rules)  */
  const char *kv_lens;     /* int32 [batch]                        */
  const char *cu_q, *cu_k; /* int32 [batch+1], both or neither     */
  int bhsd;                /* --layout bhsd                        */
  attn_dtype dtype;        /* --dtype: Q, K, V (and dO) rounded    */
} operand_spec;

/* What was read, for the outputs' shapes. */
typedef struct operands {
  const attn_npy *q, *k, *v, *bias; /* as read (bias: NULL if absent)   */
  int varlen, bhsd;
  attn_dtype dtype;
  int64_t qd[4], kd[4], vd[4], od[4]; /* logical [batch, seq, heads, dim] */
  int64_t seqs, max_sq, max_sk;       /* bias/mask/kv_lens broadcast to
                                         [seqs, heads_q, max_sq, max_sk]     */
} operands;

/* Reads an array (tracked: freed at exit); fails on any error. */
const attn_npy *operands_read(const char *path);

/* Reads every input of spec and points p at them: q, k, v (rounded to
 * spec->dtype), o (allocated here, f32 in the inputs' layout), alibi,
 * bias, mask, kv_lens, cu_seqlens. Fills ops. */
void operands_load(const operand_spec *spec, attn_params *p, operands *ops);

/* Allocates p->lse, f32 [batch, heads_q, seq_q] ([1, heads_q, total_q]
 * packed), and writes that shape. */
float *operands_lse(const operands *ops, attn_params *p, int64_t shape[3]);

/* Reads dO (O's shape) into p->dout and allocates f32 p->dq, dk, dv (and
 * dbias, bias's shape, when with_dbias). */
void operands_load_grad(const operands *ops, const char *dout, int with_dbias,
                        attn_params *p);

/* O's file shape: 4-D in the inputs' layout, 3-D when packed. */
int operands_out_shape(const operands *ops, int64_t shape[4]);

/* Writes float32 data of the given shape to path. */
void operands_write(const char *path, const float *data, int ndim,
                    const int64_t *shape);

#endif /* ATTN_CLI_OPERANDS_H */
