/* Validation of the options appended in 0.2 (positions, prefix-LM), 0.3
 * (the T5 table) and 0.4 (sinks), and of the small input arrays
 * (alibi_slopes, kv_lens, cu_seqlens, position offsets, rel_bias, sinks)
 * against every output range. */
#include "core/internal.h"

#include "mask/mask.h"
#include "pos/pos.h"

#include <math.h>

#define FAIL(st, ...) return attn_fail(p, (st), __VA_ARGS__)

static int offset_ok(int64_t x) {
  return x >= -ATTN_POS_OFFSET_MAX && x <= ATTN_POS_OFFSET_MAX;
}

attn_status attn_validate_opts(const attn_params *p, const attn_problem *pr) {
  if (p->dropout_p != p->dropout_p) /* NaN */
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "dropout_p is NaN: it must be in [0, 1) (0 = no dropout)");
  if (p->dropout_p < 0.0f || p->dropout_p >= 1.0f)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "dropout_p (%.9g) must be in [0, 1) (0 = no dropout)",
         (double)p->dropout_p);
  if (p->prefix_len < -1)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "prefix_len (%lld) must be >= -1 (-1 = off)",
         (long long)p->prefix_len);
  if (p->prefix_len >= 0 && p->causal != ATTN_CAUSAL_NONE)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "prefix_len (%lld) and causal cannot be combined: the prefix-LM "
         "mask is causal after its prefix",
         (long long)p->prefix_len);
  if (!offset_ok(p->q_pos_offset) || !offset_ok(p->k_pos_offset))
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "q_pos_offset (%lld) and k_pos_offset (%lld) must be within +-2^48",
         (long long)p->q_pos_offset, (long long)p->k_pos_offset);
  const int64_t *arr[2] = {p->q_pos_offsets, p->k_pos_offsets};
  static const char *const an[2] = {"q_pos_offsets", "k_pos_offsets"};
  for (int a = 0; a < 2; a++)
    if (arr[a])
      for (int64_t b = 0; b < pr->batch; b++)
        if (!offset_ok(arr[a][b]))
          FAIL(ATTN_ERR_INVALID_ARGUMENT,
               "%s[%lld] (%lld) must be within +-2^48", an[a], (long long)b,
               (long long)arr[a][b]);
  if (p->rel_bias) {
    if (p->rel_buckets < 1 || p->rel_buckets > 65536)
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "rel_buckets (%lld) must be within 1..65536 when rel_bias is set",
           (long long)p->rel_buckets);
    if (p->rel_bidirectional && p->rel_buckets < 2)
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "rel_buckets (%lld) must be >= 2 with rel_bidirectional (half "
           "of them for each direction)",
           (long long)p->rel_buckets);
    if (p->rel_max_distance < 1)
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "rel_max_distance (%lld) must be >= 1 when rel_bias is set",
           (long long)p->rel_max_distance);
    const uintptr_t lo = (uintptr_t)p->rel_bias;
    uint64_t n;
    if (__builtin_mul_overflow((uint64_t)p->rel_buckets, (uint64_t)pr->hq,
                               &n) ||
        __builtin_mul_overflow(n, (uint64_t)sizeof(float), &n) ||
        n > UINTPTR_MAX - lo)
      FAIL(ATTN_ERR_OVERFLOW,
           "rel_bias [%lld, %lld] overflows the address "
           "space",
           (long long)p->rel_buckets, (long long)pr->hq);
  }
  const attn_status sts = attn_validate_sparse(p, pr); /* 0.5 */
  if (sts != ATTN_OK)
    return sts;
  if (p->sinks)
    for (int64_t h = 0; h < pr->hq; h++)
      if (p->sinks[h] != p->sinks[h] || p->sinks[h] == INFINITY)
        FAIL(ATTN_ERR_INVALID_ARGUMENT,
             "sinks[%lld] is %s: a sink logit must be finite, or -inf for "
             "no sink",
             (long long)h, p->sinks[h] != p->sinks[h] ? "NaN" : "+inf");
  return ATTN_OK;
}

attn_status attn_check_aux_overlap(const attn_params *p, const attn_problem *pr,
                                   uintptr_t lo, uintptr_t hi,
                                   const char *what) {
  const void *ptr[8] = {p->alibi_slopes, p->kv_lens,       p->cu_seqlens_q,
                        p->cu_seqlens_k, p->q_pos_offsets, p->k_pos_offsets,
                        p->rel_bias,     p->sinks};
  const size_t n[8] = {(size_t)pr->hq * sizeof(float),
                       (size_t)pr->batch * sizeof(int32_t),
                       ((size_t)pr->batch + 1) * sizeof(int32_t),
                       ((size_t)pr->batch + 1) * sizeof(int32_t),
                       (size_t)pr->batch * sizeof(int64_t),
                       (size_t)pr->batch * sizeof(int64_t),
                       (size_t)p->rel_buckets * (size_t)pr->hq * sizeof(float),
                       (size_t)pr->hq * sizeof(float)};
  static const char *const name[8] = {
      "alibi_slopes",  "kv_lens",       "cu_seqlens_q", "cu_seqlens_k",
      "q_pos_offsets", "k_pos_offsets", "rel_bias",     "sinks"};
  for (int i = 0; i < 8; i++) {
    if (!ptr[i])
      continue;
    const uintptr_t a = (uintptr_t)ptr[i];
    if (a < hi && lo < a + n[i])
      FAIL(ATTN_ERR_OVERLAP, "%s overlaps %s in memory", what, name[i]);
  }
  return ATTN_OK;
}
