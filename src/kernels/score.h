/* The score modifiers of one (sequence, head), in the contract's order
 * (attn.h): s = scale q.k -> softcap -> + ALiBi -> + T5 -> + bias -> mask.
 * Their
 * forward and backward rules are written once, side by side, in
 * score_body.h, and used by both passes and every ISA; attn_score_setup
 * fills this from the call. */
#ifndef ATTN_SCORE_H
#define ATTN_SCORE_H

#include "core/internal.h"

#include "pos/pos.h"
#include <math.h>

/* T5's bucketed relative positions for one call (attn_t5_bucket): the
 * bucket of every distance the call can need below ATTN_T5_TAB, computed
 * once by attn_t5_setup, so the kernels never take a logarithm. */
#define ATTN_T5_TAB 2048
typedef struct attn_t5 {
  const float *table; /* rel_bias [buckets][hq]                         */
  int64_t hq;         /* its row stride                                 */
  int64_t buckets, max_distance;
  int bidirectional;
  int64_t half; /* bidirectional: rel > 0 adds this (else 0)      */
  int64_t ntab; /* tab holds distances 0 .. ntab - 1              */
  int64_t sat;  /* distances >= sat all get bucket `last`         */
  int64_t last; /* (sat = INT64_MAX: no such distance known)      */
  uint16_t tab[ATTN_T5_TAB]; /* bucket of rel = -n (one direction)        */
} attn_t5;

/* Fills t for the call p (rel_bias set); sq_max and sk_max bound the
 * distances when the positions have no per-sequence offsets. */
void attn_t5_setup(const attn_params *p, int64_t hq, int64_t sq_max,
                   int64_t sk_max, attn_t5 *t);

/* Bucket of rel = key position - query position: attn_t5_bucket. */
static inline int64_t attn_t5_lookup(const attn_t5 *t, int64_t rel) {
  uint64_t n;
  int64_t off = 0;
  if (t->bidirectional) {
    n = rel < 0 ? (uint64_t)0 - (uint64_t)rel : (uint64_t)rel;
    off = rel > 0 ? t->half : 0;
  } else {
    n = rel < 0 ? (uint64_t)0 - (uint64_t)rel : 0;
  }
  if (n < (uint64_t)t->ntab)
    return off + t->tab[n];
  if (n >= (uint64_t)t->sat)
    return off + t->last;
  return attn_t5_bucket(rel, t->buckets, t->max_distance, t->bidirectional);
}

typedef struct attn_score {
  float softcap;     /* 0 = off                                            */
  float alibi;       /* this head's slope; 0 = off                         */
  int64_t qk;        /* q0 - k0: ALiBi distance of (i, j) is |qk + i - j|  */
  const float *bias; /* (row 0, key 0) of this (batch, head), or NULL    */
  int64_t bias_si, bias_sj; /* its strides (0 broadcasts)                */
  int64_t sk;        /* real keys: nothing at j >= sk is read              */
  const attn_t5 *t5; /* T5 bias of the call, or NULL (attn_plan_tile)   */
  int64_t t5_h;      /* this head's column of t5->table                 */
  /* score_mod (0.5; attn/sparse.h), or NULL: s = mod(s, b, h, i, j, user) */
  attn_score_mod_fn mod, mod_grad;
  void *mod_user;
  int64_t b, h; /* the sequence and query head it is called with     */
} attn_score;

/* Modifiers of sequence s (at positions pos) for query head h. */
void attn_score_setup(const attn_params *p, const attn_seq *s,
                      const attn_pos *pos, int64_t h, attn_score *sc);

/* 1 when any modifier is on (the fused fast paths need none). */
static inline int attn_score_any(const attn_score *sc) {
  return sc->softcap > 0 || sc->alibi != 0 || sc->bias != NULL ||
         sc->t5 != NULL || sc->mod != NULL;
}

/* The T5 bias of rows i .. i_last (i_last - i < n) and keys j0 ..:
 * lut[u] = table[bucket(j0 + u - i_last - qk)][h] for u < n, so row i's
 * bias of key j0 + c is lut[i_last - i + c]. One bucket per distance of a
 * (query tile, key tile) block (br + bc - 1 of them), not per element. */
void attn_score_t5_lut(const attn_score *sc, int64_t i_last, int64_t j0, int n,
                       float *lut);

/* Joins a sink logit (attn_params.sinks, finite) to a row's softmax: m is
 * the row's max (-inf when it saw no key) and l its sum of exp(s - m). On
 * return m = max(m, sink), l = l a + exp(sink - m) and a = exp(m_old - m),
 * the factor the row's unnormalised output takes. A NaN row stays NaN. */
static inline void attn_sink_join(float sink, float *m, float *l, float *a) {
  const float log2e = 1.4426950408889634f, mo = *m;
  *a = 1.0f;
  if (mo != mo || *l != *l)
    return;
  const float mn = mo > sink ? mo : sink;
  const float ao = mo == -INFINITY ? 0.0f
                   : mo == mn      ? 1.0f
                                   : exp2f((mo - mn) * log2e);
  const float as = sink == mn ? 1.0f : exp2f((sink - mn) * log2e);
  *l = *l * ao + as;
  *m = mn;
  *a = ao;
}

#endif
