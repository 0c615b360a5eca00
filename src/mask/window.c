/* Sliding window (left, right): keys within that distance of the diagonal
 * of the causal alignment in use (bottom-right without causal):
 *   qd - left <= kpos <= qd + right,   qd = qpos (top-left: minus
 *   seq_k - seq_q); -1 leaves that side unbounded. */
#include "mask/mask.h"

/* With global tokens (sparse.c) the window is OR-ed with them there. */
static int active(const attn_params *p) {
  return (p->window_left >= 0 || p->window_right >= 0) && p->global_count <= 0;
}

static void narrow(const attn_params *p, const attn_mask_row *row, int64_t *lo,
                   int64_t *hi) {
  int64_t diag = row->qpos - row->k0; /* key index on the diagonal */
  if (p->causal == ATTN_CAUSAL_TOP_LEFT)
    diag -= row->sk - row->sq;
  /* A window wider than everything is no window: clamp so that huge
   * values cannot overflow (positions are bounded by pos.h). */
  const int64_t big = (int64_t)1 << 56;
  const int64_t wl = ATTN_MIN(p->window_left, big);
  const int64_t wr = ATTN_MIN(p->window_right, big);
  if (wl >= 0 && diag - wl > *lo)
    *lo = diag - wl;
  if (wr >= 0 && diag + wr < *hi)
    *hi = diag + wr;
}

const attn_mask_kind attn_mask_kind_window = {"window", active, narrow};
