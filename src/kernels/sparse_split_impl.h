/* sparse_split_impl.h - what the split path's geometry (sparse_split.c)
 * and its forward and backward (sparse_split_run.c) share. */
#ifndef ATTN_SPARSE_SPLIT_IMPL_H
#define ATTN_SPARSE_SPLIT_IMPL_H

#include "kernels/sparse_split.h"

#include <stdint.h>

/* An f32 scratch tensor [b, s, h, d], contiguous. */
typedef struct buf {
  float *x;
  attn_tensor t;
} buf;

int buf_make(buf *u, int64_t b, int64_t s, int64_t h, int64_t d);

static inline float *split_row(const buf *u, int64_t b, int64_t s, int64_t h) {
  return (float *)attn_elem(&u->t, b, s, h, 0);
}

/* One sequence of the call: its rows (attn_problem_seq) and the
 * positions of its query row 0 and key 0 (attn.h, "positions"). */
typedef struct split_seq {
  attn_seq s;
  int64_t qp, kp;
} split_seq;

/* Strided far part: one packed sequence per (sequence, residue) that has
 * far pairs; its queries and keys are rows first + x L of the sequence. */
typedef struct far_seqs {
  int64_t n;        /* packed sequences                          */
  int32_t *cu_q;    /* [n + 1]                                   */
  int32_t *cu_k;    /* [n + 1]                                   */
  int64_t *qoff;    /* [n] q_pos_offsets of the far call         */
  int64_t *koff;    /* [n] k_pos_offsets of the far call         */
  int64_t *seq;     /* [n] the call's sequence                   */
  int64_t *q_first; /* [n] first query row in the sequence       */
  int64_t *k_first; /* [n] first key row in the sequence         */
} far_seqs;

/* Everything both passes build. */
typedef struct split {
  const attn_plan *pl;
  int fixed;
  int64_t nseq, hq, hk, d, dv, L, C;
  split_seq *seqs;       /* [nseq]                                   */
  far_seqs f;            /* strided far part                         */
  float *far_slopes;     /* strided with ALiBi: slope * L            */
  float *lse_shift;      /* [hq] far lse = true lse + lse_shift      */
  int64_t *tails;        /* fixed: tail keys per sequence            */
  int32_t *cu_tail;      /* fixed, packed batches: [nseq + 1]        */
  int32_t *tail_lens;    /* fixed, batched: kv_lens of the far call  */
  int64_t tmax, ttotal;  /* fixed: most tails in a sequence, all     */
  unsigned char *mnear;  /* fixed near block mask                    */
  unsigned char *mfar;   /* fixed far block mask                     */
  attn_params near, far; /* the two calls (operands set by the pass) */
  buf fq, fk, fv;        /* far operands (strided: q too)            */
  void *fbias, *fmask;   /* far bias (f32) and mask (bool), gathered:
                            [far seqs, 1|hq, rows|1, keys|1]          */
  int64_t tq, tk;        /* strided: far packed rows                 */
} split;

attn_status split_build(split *s, const attn_plan *pl);
/* Far sequence g's rows: count of queries and keys, the call's sequence,
 * and the row (in that sequence) of far query x and far key y. */
int64_t split_far_count(const split *s, int64_t g, int keys);
int64_t split_far_seq(const split *s, int64_t g);
int64_t split_far_qrow(const split *s, int64_t g, int64_t x);
int64_t split_far_krow(const split *s, int64_t g, int64_t y);
/* Far sequences (strided: packed; fixed: the call's). */
static inline int64_t split_far_n(const split *s) {
  return s->fixed ? s->nseq : s->f.n;
}
void split_free(split *s);
int split_has_far(const split *s);

/* Rows of t (all heads) <-> rows of f32 buffers. */
void split_load(const attn_tensor *t, int64_t b, int64_t s, buf *u, int64_t b2,
                int64_t s2);
void split_add_rows(const buf *u, int64_t b2, int64_t s2, buf *acc, int64_t b,
                    int64_t s);

/* Fixed: row of tail key t of a sequence. */
static inline int64_t split_tail_row(const split *s, int64_t t) {
  return (t / s->C) * s->L + s->L - s->C + t % s->C;
}

/* Index of (sequence row i, head h) in an lse laid out as the call's. */
static inline int64_t split_lse_index(const split *s, const split_seq *q,
                                      int64_t h, int64_t i) {
  const attn_params *p = &s->pl->p;
  return s->pl->pr.varlen ? h * p->q.shape[1] + q->s.q_off + i
                          : (q->s.b * s->hq + h) * q->s.sq + i;
}

#endif
