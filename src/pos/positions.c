/* Positions of queries and keys: see pos.h and attn.h. */
#include "pos/pos.h"

void attn_pos_seq(const attn_params *p, const attn_seq *s, attn_pos *out) {
  /* Bottom-right by default: the last query sits on the last real key. */
  int64_t q0 = s->sk - s->sq + p->q_pos_offset;
  int64_t k0 = p->k_pos_offset;
  if (p->q_pos_offsets)
    q0 += p->q_pos_offsets[s->b];
  if (p->k_pos_offsets)
    k0 += p->k_pos_offsets[s->b];
  out->q0 = q0;
  out->k0 = k0;
}
