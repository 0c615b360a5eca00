/* Positions: where every query and key of a sequence sits (attn.h, the
 * positions fields). One place computes them; causal, window, prefix and
 * ALiBi read only these, so a split-KV decode, a paged cache, chunked
 * prefill or ring attention only sets offsets. */
#ifndef ATTN_POS_H
#define ATTN_POS_H

#include "core/internal.h"

/* qpos(i) = q0 + i, kpos(j) = k0 + j for the rows and keys of a sequence. */
typedef struct attn_pos {
  int64_t q0; /* position of query row 0 */
  int64_t k0; /* position of key 0       */
} attn_pos;

/* Largest magnitude accepted for a position offset: keeps every sum of
 * positions, lengths and windows far from int64 overflow. */
#define ATTN_POS_OFFSET_MAX ((int64_t)1 << 48)

/* Positions of sequence s (kv_lens already applied to s->sk). */
void attn_pos_seq(const attn_params *p, const attn_seq *s, attn_pos *out);

#endif
