/* The score modifiers of one (sequence, head), in the contract's order
 * (attn.h): s = scale q.k -> softcap -> + ALiBi -> + bias -> mask. Their
 * forward and backward rules are written once, side by side, in
 * score_body.h, and used by both passes and every ISA; attn_score_setup
 * fills this from the call. */
#ifndef ATTN_SCORE_H
#define ATTN_SCORE_H

#include "core/internal.h"
#include "pos/pos.h"

typedef struct attn_score {
  float softcap;     /* 0 = off                                            */
  float alibi;       /* this head's slope; 0 = off                         */
  int64_t qk;        /* q0 - k0: ALiBi distance of (i, j) is |qk + i - j|  */
  const float *bias; /* (row 0, key 0) of this (batch, head), or NULL    */
  int64_t bias_si, bias_sj; /* its strides (0 broadcasts)                */
  int64_t sk; /* real keys: nothing at j >= sk is read              */
} attn_score;

/* Modifiers of sequence s (at positions pos) for query head h. */
void attn_score_setup(const attn_params *p, const attn_seq *s,
                      const attn_pos *pos, int64_t h, attn_score *sc);

/* 1 when any modifier is on (the fused fast paths need none). */
static inline int attn_score_any(const attn_score *sc) {
  return sc->softcap > 0 || sc->alibi != 0 || sc->bias != NULL;
}

/* Replaces every non-finite element of x[0..n) by NaN when x holds one:
 * a non-finite Q or K row must make every score it enters NaN (an inf
 * times a key of the wrong sign would otherwise look like a mask). Returns
 * 1 when it did. */
int attn_row_poison(float *x, int64_t n);

#endif
