/* Positions oracle: see oracle_pos.h. */
#include "oracle_pos.h"

#include <math.h>

int64_t oracle_num_seqs(const attn_params *p) {
  return p->cu_seqlens_q ? p->varlen_batch : p->q.shape[0];
}

void oracle_seq_geom_get(const attn_params *p, int64_t b, oracle_seq_geom *g) {
  g->b = b;
  if (p->cu_seqlens_q) {
    g->tb = 0;
    g->q0 = p->cu_seqlens_q[b];
    g->k0 = p->cu_seqlens_k[b];
    g->sq = p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    g->sk = p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
  } else {
    g->tb = b;
    g->q0 = g->k0 = 0;
    g->sq = p->q.shape[1];
    g->sk = p->k.shape[1];
  }
  if (p->kv_lens)
    g->sk = p->kv_lens[b];
}

int64_t oracle_max_keys(const attn_params *p) {
  int64_t m = 1;
  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(p, b, &g);
    if (g.sk > m)
      m = g.sk;
  }
  return m;
}

int64_t oracle_qpos(const attn_params *p, const oracle_seq_geom *g, int64_t i) {
  int64_t x = i + g->sk - g->sq + p->q_pos_offset;
  if (p->q_pos_offsets)
    x += p->q_pos_offsets[g->b];
  return x;
}

int64_t oracle_kpos(const attn_params *p, const oracle_seq_geom *g, int64_t j) {
  int64_t x = j + p->k_pos_offset;
  if (p->k_pos_offsets)
    x += p->k_pos_offsets[g->b];
  return x;
}

int64_t oracle_diag_pos(const attn_params *p, const oracle_seq_geom *g,
                        int64_t i) {
  int64_t x = oracle_qpos(p, g, i);
  if (p->causal == ATTN_CAUSAL_TOP_LEFT)
    x -= g->sk - g->sq;
  return x;
}

double oracle_alibi_dist(const attn_params *p, const oracle_seq_geom *g,
                         int64_t i, int64_t j) {
  return fabs((double)(oracle_qpos(p, g, i) - oracle_kpos(p, g, j)));
}

int64_t oracle_t5_bucket(int64_t rel, int64_t buckets, int64_t max_distance,
                         int bidirectional) {
  /* relative_position = memory_position - query_position = rel */
  int64_t ret = 0, n = rel, nb = buckets;
  if (bidirectional) {
    nb /= 2;
    if (n > 0)
      ret += nb;
    n = n < 0 ? -n : n;
  } else {
    n = n < 0 ? -n : 0; /* -min(rel, 0) */
  }
  const int64_t max_exact = nb / 2;
  if (n < max_exact)
    return ret + n;
  if (max_exact == 0) /* the reference divides by zero */
    return ret + nb - 1;
  /* torch: n.float() / max_exact (f32), log (f32), / math.log(D / E) (a
   * double, cast to f32 by the f32 tensor op), * (nb - E) (f32) */
  const float lg = logf((float)n / (float)max_exact);
  const float den = (float)log((double)max_distance / (double)max_exact);
  const float x = lg / den * (float)(nb - max_exact);
  if (isnan(x) || x >= (float)nb)
    return ret + nb - 1;
  if (x <= -(float)nb)
    return ret;
  int64_t large = max_exact + (int64_t)x; /* .to(long): toward zero */
  if (large > nb - 1)
    large = nb - 1;
  if (large < 0)
    large = 0;
  return ret + large;
}

int64_t oracle_t5_index(const attn_params *p, const oracle_seq_geom *g,
                        int64_t h, int64_t i, int64_t j) {
  const int64_t rel = oracle_kpos(p, g, j) - oracle_qpos(p, g, i);
  const int64_t b = oracle_t5_bucket(rel, p->rel_buckets, p->rel_max_distance,
                                     p->rel_bidirectional);
  return b * p->q.shape[2] + h;
}

double oracle_t5_bias(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                      int64_t i, int64_t j) {
  return (double)p->rel_bias[oracle_t5_index(p, g, h, i, j)];
}
