/* Setup of the score modifiers (score.h). */
#include "kernels/score.h"

#include <math.h>
#include <string.h>

void attn_score_setup(const attn_params *p, const attn_seq *s,
                      const attn_pos *pos, int64_t h, attn_score *sc) {
  sc->softcap = p->softcap;
  sc->alibi = p->alibi_slopes ? p->alibi_slopes[h] : 0.0f;
  sc->qk = pos->q0 - pos->k0;
  sc->sk = s->sk;
  sc->bias = NULL;
  sc->bias_si = sc->bias_sj = 0;
  sc->t5 = NULL; /* set by attn_plan_tile, which owns the call's table */
  sc->t5_h = h;
  sc->mod = p->score_mod;
  sc->mod_grad = p->score_mod_grad;
  sc->mod_user = p->mod_user;
  sc->b = s->b;
  sc->h = h;
  if (p->bias.data) {
    const attn_tensor *b = &p->bias;
    const int64_t off = (b->shape[0] == 1 ? 0 : s->b * b->stride[0]) +
                        (b->shape[1] == 1 ? 0 : h * b->stride[1]);
    sc->bias = (const float *)b->data + off;
    sc->bias_si = b->shape[2] == 1 ? 0 : b->stride[2];
    sc->bias_sj = b->shape[3] == 1 ? 0 : b->stride[3];
  }
}

void attn_t5_setup(const attn_params *p, int64_t hq, int64_t sq_max,
                   int64_t sk_max, attn_t5 *t) {
  const int64_t nb = p->rel_buckets, md = p->rel_max_distance;
  const int bi = p->rel_bidirectional != 0;
  t->table = p->rel_bias;
  t->hq = hq;
  t->buckets = nb;
  t->max_distance = md;
  t->bidirectional = bi;
  t->half = bi ? nb / 2 : 0;
  /* Buckets of one direction and its exact ones (t5.c). From distance
   * 2 * max_distance on, every bucket is the last: log(n / E) then exceeds
   * log(D / E) by log 2, far beyond f32 rounding (|log(D / E)| < 44). */
  const int64_t dir = bi ? nb / 2 : nb, exact = dir / 2;
  int64_t sat = INT64_MAX;
  if (exact == 0)
    sat = 0;
  else if (md == exact)
    sat = exact; /* log(D / E) = 0: the reference's x is NaN or +inf */
  else if (md > exact && md <= INT64_MAX / 2)
    sat = 2 * md;
  int64_t ntab = ATTN_MIN(sat, (int64_t)ATTN_T5_TAB);
  if (!p->q_pos_offsets && !p->k_pos_offsets) {
    /* |kpos - qpos| <= sq + sk + |k_pos_offset - q_pos_offset| */
    const int64_t far =
        sq_max + sk_max +
        (p->k_pos_offset > p->q_pos_offset ? p->k_pos_offset - p->q_pos_offset
                                           : p->q_pos_offset - p->k_pos_offset);
    ntab = ATTN_MIN(ntab, far + 1);
  }
  t->ntab = ntab;
  t->sat = sat;
  t->last = sat == INT64_MAX ? 0 : attn_t5_bucket(-sat, nb, md, bi);
  for (int64_t n = 0; n < ntab; n++)
    t->tab[n] = (uint16_t)attn_t5_bucket(-n, nb, md, bi);
}

void attn_score_t5_lut(const attn_score *sc, int64_t i_last, int64_t j0, int n,
                       float *lut) {
  const attn_t5 *t = sc->t5;
  const float *col = t->table + sc->t5_h;
  const int64_t hq = t->hq;
  int64_t rel = j0 - i_last - sc->qk;
  for (int u = 0; u < n; u++, rel++)
    lut[u] = col[attn_t5_lookup(t, rel) * hq];
}
