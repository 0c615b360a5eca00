/* Linear attention (attn/linear.h): what linear.c (ABI, checks, threads,
 * the recurrent state) and linear_kern.c (the maths of one work item)
 * share. Not installed. */
#ifndef ATTN_LINEAR_INTERNAL_H
#define ATTN_LINEAR_INTERNAL_H

#include "core/internal.h"

#include <attn/linear.h>
#include <float.h>
#include <math.h>

/* The denominator guard (attn/linear.h): max(den, FLT_MIN), NaN kept. */
static inline float lin_guard(float den) {
  return den < FLT_MIN ? FLT_MIN : den;
}

/* x[0..n) = phi(x) = elu(x) + 1, in place (linear_body.h, per ISA). */
void lin_phi_rows_generic(float *x, int64_t n);
void lin_phi_rows_avx2(float *x, int64_t n);

/* phi'(x) from phi(x): 1 for x > 0 (phi > 1), exp(x) = phi(x) else (x = 0
 * gives 1 from both sides); NaN stays NaN. */
static inline float lin_dphi(float phi) { return phi > 1.0f ? 1.0f : phi; }

/* The call after the checks. */
typedef struct lin_dims {
  int64_t batch, sq, sk, hq, hk, group, d, dv;
  int64_t off; /* row i sees keys j <= i + off (causal)            */
  int causal;  /* 0: every key is visible                           */
} lin_dims;

static inline int64_t lin_round16(int64_t n) { return (n + 15) / 16 * 16; }

/* Floats of one thread's scratch (forward or backward), each piece
 * rounded up to 16 floats (64 bytes), in the order linear_body.h carves
 * them. */
static inline size_t lin_scratch_floats(const lin_dims *d, int bwd) {
  const int64_t C = ATTN_LINEAR_CHUNK, sd = d->d * d->dv;
  /* S, z, pq, pk, pkT, vc, num, den, W */
  int64_t n = lin_round16(sd) + lin_round16(d->d) + 3 * lin_round16(C * d->d) +
              2 * lin_round16(C * d->dv) + lin_round16(C) + lin_round16(C * C);
  if (bwd) /* ST, R, RT, y, vT, DW, gq, accdk, accdv, D, tD */
    n += 3 * lin_round16(sd) + lin_round16(d->d) + lin_round16(C * d->dv) +
         lin_round16(C * C) + lin_round16(C * d->dv) + lin_round16(C * d->d) +
         lin_round16(C * d->dv) + 2 * lin_round16(d->group * d->sq);
  return (size_t)n;
}

/* One work item: forward (batch b, query head h), writing o's rows;
 * backward (batch b, kv head g), writing dq's rows of the group's heads
 * and dk, dv's rows of g. scratch: lin_scratch_floats floats, 64-byte
 * aligned. One per ISA (linear_body.h): generic, and AVX2 + FMA on x86. */
typedef void (*lin_item_fn)(const attn_linear_params *p, const lin_dims *d,
                            int64_t b, int64_t head, float *scratch);
void lin_forward_item_generic(const attn_linear_params *p, const lin_dims *d,
                              int64_t b, int64_t h, float *scratch);
void lin_backward_item_generic(const attn_linear_params *p, const lin_dims *d,
                               int64_t b, int64_t g, float *scratch);
void lin_forward_item_avx2(const attn_linear_params *p, const lin_dims *d,
                           int64_t b, int64_t h, float *scratch);
void lin_backward_item_avx2(const attn_linear_params *p, const lin_dims *d,
                            int64_t b, int64_t g, float *scratch);

#endif
