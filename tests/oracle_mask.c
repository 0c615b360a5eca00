/* Mask oracle: see oracle_mask.h. Differences of positions are compared,
 * never sums with a window, so huge windows cannot overflow. */
#include "oracle_mask.h"

int oracle_allowed(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                   int64_t i, int64_t j) {
  if (i < 0 || i >= g->sq || j < 0 || j >= g->sk)
    return 0;
  const int64_t kp = oracle_kpos(p, g, j);
  const int64_t qp = oracle_qpos(p, g, i);
  const int64_t diag = oracle_diag_pos(p, g, i);
  if (p->causal != ATTN_CAUSAL_NONE && kp > diag)
    return 0;
  if (p->window_left >= 0 && diag - kp > p->window_left)
    return 0;
  if (p->window_right >= 0 && kp - diag > p->window_right)
    return 0;
  if (p->prefix_len >= 0 && !(kp < p->prefix_len || kp <= qp))
    return 0;
  if (p->mask.data && oracle_tensor_get(&p->mask, g->b, h, i, j) == 0.0)
    return 0;
  return 1;
}
