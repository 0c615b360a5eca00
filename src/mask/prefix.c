/* Prefix-LM: the query at position p sees key position j when j < N or
 * j <= p (bidirectional over the first N keys, causal after them). The
 * allowed keys of a row are one interval: kpos <= max(N - 1, qpos). */
#include "mask/mask.h"

static int active(const attn_params *p) { return p->prefix_len >= 0; }

static void narrow(const attn_params *p, const attn_mask_row *row, int64_t *lo,
                   int64_t *hi) {
  (void)lo;
  const int64_t n = ATTN_MIN(p->prefix_len, (int64_t)1 << 56);
  const int64_t last = ATTN_MAX(n - 1, row->qpos) - row->k0;
  if (last < *hi)
    *hi = last;
}

const attn_mask_kind attn_mask_kind_prefix = {"prefix", active, narrow};
