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
