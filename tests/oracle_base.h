/*
 * The test oracles' shared basics (oracle.c): reading a strided attn_tensor of
 * any dtype as double, and rounding to a storage dtype, with the tests' own
 * conversions (test_common.h), never the library's.
 *
 * The oracles, one per topic, each built on the previous ones (oracle.h
 * includes them all):
 *   oracle_pos.h   where each sequence lies, qpos / kpos, the ALiBi distance
 *   oracle_mask.h  the element predicate: may query i see key j
 *   oracle_fwd.h   double-precision forward, naive f32 forward, comparison
 *   oracle_bwd.h   double-precision backward, naive f32 backward, comparison
 * A new option is one rule in one of them: every test reads the same ones.
 */
#ifndef ATTN_TEST_ORACLE_BASE_H
#define ATTN_TEST_ORACLE_BASE_H

#include "attn.h"

#include <stdint.h>

/* oracle_tensor_get for every dtype (the quantised blocks included). */
double oracle_tensor_get_any(const attn_tensor *t, int64_t i0, int64_t i1,
                             int64_t i2, int64_t i3);

/* Element at logical index (i0, i1, i2, i3) of t, as double (bool: 0 or 1).
 * An axis of size 1 broadcasts (its index and stride are ignored). f32
 * inline: the oracles' inner loops read every operand through here, and
 * the call took a quarter of a fuzzing execution. */
static inline double oracle_tensor_get(const attn_tensor *t, int64_t i0,
                                       int64_t i1, int64_t i2, int64_t i3) {
  if (t->dtype != ATTN_DTYPE_F32)
    return oracle_tensor_get_any(t, i0, i1, i2, i3);
  const int64_t off = (t->shape[0] != 1 ? i0 * t->stride[0] : 0) +
                      (t->shape[1] != 1 ? i1 * t->stride[1] : 0) +
                      (t->shape[2] != 1 ? i2 * t->stride[2] : 0) +
                      (t->shape[3] != 1 ? i3 * t->stride[3] : 0);
  return ((const float *)t->data)[off];
}

/* Rounds x to dtype's precision (f32, bf16 or f16) with the tests' own RNE
 * conversion. */
float oracle_round_to(attn_dtype dtype, float x);

/* Index of a row of lse (and of the oracles' row arrays): lse is
 * [batch, heads_q, seq_q], with cu_seqlens [heads_q, total_q]. */
static inline int64_t oracle_row_index(const attn_params *p, int64_t tb,
                                       int64_t h, int64_t r) {
  return (tb * p->q.shape[2] + h) * p->q.shape[1] + r;
}

/* Index of o[tb, r, h, 0] in the oracles' contiguous o. */
static inline int64_t oracle_o_index(const attn_params *p, int64_t tb,
                                     int64_t r, int64_t h) {
  return ((tb * p->q.shape[1] + r) * p->q.shape[2] + h) * p->v.shape[3];
}

#endif /* ATTN_TEST_ORACLE_BASE_H */
