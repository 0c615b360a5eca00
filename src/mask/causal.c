/* Causal masks, both alignments (attn.h draws them):
 *   bottom-right  kpos <= qpos
 *   top-left      kpos <= qpos - (seq_k - seq_q)
 * so with default positions query i sees keys j <= i + seq_k - seq_q, or
 * j <= i. */
#include "mask/mask.h"

static int active(const attn_params *p) {
  return p->causal != ATTN_CAUSAL_NONE;
}

static void narrow(const attn_params *p, const attn_mask_row *row, int64_t *lo,
                   int64_t *hi) {
  (void)lo;
  int64_t last = row->qpos - row->k0; /* last key index the row sees */
  if (p->causal == ATTN_CAUSAL_TOP_LEFT)
    last -= row->sk - row->sq;
  if (last < *hi)
    *hi = last;
}

const attn_mask_kind attn_mask_kind_causal = {"causal", active, narrow};
