/* Mask oracle: see oracle_mask.h. Differences of positions are compared,
 * never sums with a window, so huge windows cannot overflow. */
#include "oracle_mask.h"

#include <math.h>

/* Child et al. (2019), attn/sparse.h: floor and mod towards -inf. */
static int oracle_child(const attn_params *p, int64_t q, int64_t kp) {
  const int64_t l = p->sparse_l, c = p->sparse_c;
  if (kp > q)
    return 0;
  if (p->sparse_kind == ATTN_SPARSE_STRIDED)
    return q - l <= kp || (q - kp) % l == 0;
  const double fl = floor((double)kp / (double)l);
  const double fq = floor((double)q / (double)l);
  const int64_t mod = kp - (int64_t)fl * l;
  return fl == fq || mod >= l - c;
}

int oracle_allowed(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                   int64_t i, int64_t j) {
  if (i < 0 || i >= g->sq || j < 0 || j >= g->sk)
    return 0;
  const int64_t kp = oracle_kpos(p, g, j);
  const int64_t qp = oracle_qpos(p, g, i);
  const int64_t diag = oracle_diag_pos(p, g, i);
  if (p->causal != ATTN_CAUSAL_NONE && kp > diag)
    return 0;
  int win = !(p->window_left >= 0 && diag - kp > p->window_left) &&
            !(p->window_right >= 0 && kp - diag > p->window_right);
  /* 0.5, attn/sparse.h: global tokens widen the window */
  for (int64_t n = 0; n < p->global_count && !win; n++)
    win = p->global_idx[n] == qp || p->global_idx[n] == kp;
  if (!win)
    return 0;
  if (p->sparse_kind != ATTN_SPARSE_NONE && !oracle_child(p, qp, kp))
    return 0;
  if (p->block_mask.data &&
      oracle_tensor_get(&p->block_mask, g->b, h, i / p->block_q,
                        j / p->block_k) == 0.0)
    return 0;
  if (p->mask_mod && !p->mask_mod(g->b, h, i, j, p->mod_user))
    return 0;
  if (p->prefix_len >= 0 && !(kp < p->prefix_len || kp <= qp))
    return 0;
  if (p->mask.data && oracle_tensor_get(&p->mask, g->b, h, i, j) == 0.0)
    return 0;
  return 1;
}
