/* sparse_split_impl.h - what the split path's geometry (sparse_split.c)
 * and its forward and backward (sparse_split_run.c) share. */
#ifndef ATTN_SPARSE_SPLIT_IMPL_H
#define ATTN_SPARSE_SPLIT_IMPL_H

#include "kernels/sparse_split.h"

#include <stdint.h>

/*
 * Every allocation of a split call comes from one arena, so that a caller
 * workspace can hold them all (attn.h: "then no allocation at all"):
 *   - with a workspace: carved from it, zeroed, never freed;
 *   - without: calloc'd blocks, all freed by split_arena_free;
 *   - sizing (attn_*_workspace_size): calloc'd as without (untouched, so
 *     mostly not even paged in), no data moved, and the parts asked for
 *     their workspace sizes instead of run; peak is then the answer.
 * Everything lives until the end of the pass.
 */
typedef struct split_arena {
  char *base;   /* the caller's workspace, 64-byte aligned, or NULL  */
  size_t size;  /* bytes at base                                     */
  size_t off;   /* bytes taken (each piece a multiple of 64)         */
  size_t peak;  /* most bytes needed at once, parts' workspaces too  */
  int sizing;   /* only measure                                      */
  int short_ws; /* a piece did not fit in the caller's workspace     */
  int failed;   /* a piece could not be had (short_ws or no memory)  */
  void *blocks; /* calloc'd blocks (a list), when base is NULL       */
} split_arena;

/* count x elem zeroed bytes, or NULL (out of memory, overflow, or the
 * workspace too small: short_ws), which sets failed. */
void *split_alloc(split_arena *a, size_t count, size_t elem);

/* An f32 scratch tensor [b, s, h, d], contiguous. */
typedef struct buf {
  float *x;
  attn_tensor t;
} buf;

int buf_make(split_arena *a, buf *u, int64_t b, int64_t s, int64_t h,
             int64_t d);

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
  split_arena ar;
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

/* sizing: measure only (see split_arena). */
attn_status split_build(split *s, const attn_plan *pl, int sizing);
/* Runs a part (forward or backward), or when sizing asks its workspace
 * size; with a caller workspace it gets what the arena has left. */
attn_status split_part(split *s, attn_params *a, int bwd);
/* The error of a piece split_alloc could not give (ar.failed): the
 * workspace too small, or out of memory; with the reason. */
attn_status split_fail_alloc(const split *s);
/* Far sequence g's rows: count of queries and keys, the call's sequence,
 * and the row (in that sequence) of far query x and far key y. */
int64_t split_far_count(const split *s, int64_t g, int keys);
int64_t split_far_seq(const split *s, int64_t g);
int64_t split_far_qrow(const split *s, int64_t g, int64_t x);
int64_t split_far_krow(const split *s, int64_t g, int64_t y);
/* For every element of a far tensor (contiguous, shape sh: [far seqs,
 * 1|hq, rows|1, keys|1]) and its element of t (a bias, mask or dbias of
 * the call: [b|1, hq|1, rows|1, keys|1]): add = 0 copies t's into far,
 * add = 1 adds far's into t's (f32). */
void split_far_bcast(const split *s, const attn_tensor *t, const int64_t sh[4],
                     void *far, int add);
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
