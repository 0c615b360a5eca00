/*
 * attn/merge.h - merging partial attention results over disjoint key sets (0.4)
 * and its backward.
 * Included by attn.h; may also be included on its own.
 */
#ifndef ATTN_MERGE_H
#define ATTN_MERGE_H

#include "../attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Merging partial results                                                  */
/* ------------------------------------------------------------------------ */
/*
 * Attention over keys split into disjoint sets K_1 .. K_n (across NUMA
 * nodes, devices, cache tiers, ranks) is the LSE-weighted sum of the
 * partial results (O_c, LSE_c) each set gives:
 *     LSE = log sum_c exp(LSE_c),   O = sum_c exp(LSE_c - LSE) O_c
 * computed in f32 with the largest LSE factored out. A partial whose row
 * saw no key (LSE_c = -inf) contributes nothing; a row every partial
 * missed gets O = 0 and LSE = -inf; a NaN LSE makes the row NaN. Sinks go
 * into exactly one partial (or none, and then into the merged LSE by
 * attn_merge's sinks).
 *
 * Shapes, as attn_forward writes them: o_parts[c] and o are
 * [batch, seq_q, heads, dim_v] tensors (f32|bf16|f16, any strides),
 * lse_parts[c] and lse are contiguous f32 [batch, heads, seq_q].
 */
typedef struct attn_merge_params {
  int64_t n_parts;               /* >= 1                                */
  const attn_tensor *o_parts;    /* [n_parts]                           */
  const float *const *lse_parts; /* [n_parts]                           */
  attn_tensor o;                 /* out                                 */
  float *lse;                    /* optional out                        */
  const float *sinks;            /* optional f32 [heads]: a sink logit
                                    joins every row (attn_params.sinks) */
  /* backward (attn_merge_backward): dL/dO and optional dL/dLSE in, the
   * gradients of every partial out. With O and LSE the merged result:
   *   w_c = exp(LSE_c - LSE),  dO_c = w_c dO,
   *   dLSE_c = w_c (rowsum(dO * (O_c - O)) + dLSE)
   * (dsinks, when sinks is set: -exp(sink - LSE) rowsum(dO * O) +
   * exp(sink - LSE) dLSE, summed over batch and rows, overwritten). */
  attn_tensor dout;            /* in  [batch, seq_q, heads, dim_v]    */
  const float *dlse;           /* optional in  [batch, heads, seq_q]  */
  const attn_tensor *do_parts; /* out [n_parts]                       */
  float *const *dlse_parts;    /* out [n_parts] (optional: NULL)      */
  float *dsinks;               /* optional out [heads]                */
  int num_threads;             /* 0 = all                             */
  char *error_message;         /* optional: the reason of a failure   */
  size_t error_message_size;
} attn_merge_params;

ATTN_API void attn_merge_params_init_sized(attn_merge_params *m, size_t size);
/* Merges the partials into o (and lse). Bad input (shapes that differ, an
 * output overlapping an input, n_parts < 1, a non-f32 lse) gets a status
 * and a reason. Bitwise the same for every thread count. */
ATTN_API attn_status attn_merge_sized(attn_context *ctx,
                                      const attn_merge_params *m, size_t size);
/* Its backward: needs o and lse as attn_merge wrote them (lse required),
 * dout (and dlse), and writes do_parts (and dlse_parts, dsinks). */
ATTN_API attn_status attn_merge_backward_sized(attn_context *ctx,
                                               const attn_merge_params *m,
                                               size_t size);
#if !defined(ATTN_BUILDING_LIBRARY)
static inline void attn_merge_params_init(attn_merge_params *m) {
  attn_merge_params_init_sized(m, sizeof *m);
}
static inline attn_status attn_merge(attn_context *ctx,
                                     const attn_merge_params *m) {
  return attn_merge_sized(ctx, m, sizeof *m);
}
static inline attn_status attn_merge_backward(attn_context *ctx,
                                              const attn_merge_params *m) {
  return attn_merge_backward_sized(ctx, m, sizeof *m);
}
#endif

#ifdef __cplusplus
}
#endif

#endif /* ATTN_MERGE_H */
