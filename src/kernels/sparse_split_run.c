/*
 * sparse_split_run.c - the forward and backward of the split path
 * (sparse_split.c has the geometry): run the near and the far part, merge
 * their outputs by LSE row by row (forward), or hand each part the merged
 * o and lse and add the far part's gradients back into the near part's
 * (backward). Rows outside every sequence are left alone, as the tile
 * path leaves them.
 */
#include "kernels/sparse_split_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Strided: (tensor batch, tensor row) -> packed far row, -1 when none. */
static int64_t *far_query_map(split *s) {
  const attn_params *p = &s->pl->p;
  const int64_t n = p->q.shape[0] * p->q.shape[1];
  int64_t *m = split_alloc(&s->ar, (size_t)n, sizeof(int64_t));
  if (!m || s->ar.sizing)
    return m;
  for (int64_t x = 0; x < n; x++)
    m[x] = -1;
  if (!s->fixed)
    for (int64_t g = 0; g < s->f.n; g++) {
      const attn_seq *q = &s->seqs[s->f.seq[g]].s;
      for (int64_t x = s->f.cu_q[g]; x < s->f.cu_q[g + 1]; x++)
        m[q->q_bat * p->q.shape[1] + q->q_off + s->f.q_first[g] +
          (x - s->f.cu_q[g]) * s->L] = x;
    }
  return m;
}

/* lse and o row of the far part for query row i of sequence q, head h;
 * 0 when the query has no far part. */
static int far_of(const split *s, const int64_t *qmap, const float *lf,
                  const buf *of, const split_seq *q, int64_t i, int64_t h,
                  float *l, const float **o) {
  if (!split_has_far(s))
    return 0;
  const int64_t tr = q->s.q_off + i;
  if (s->fixed) {
    *l = lf[split_lse_index(s, q, h, i)];
    *o = split_row(of, q->s.q_bat, tr, h);
    return 1;
  }
  const int64_t x = qmap[q->s.q_bat * s->pl->p.q.shape[1] + tr];
  if (x < 0)
    return 0;
  *l = lf[h * s->tq + x] - (s->lse_shift ? s->lse_shift[h] : 0.0f);
  *o = split_row(of, 0, x, h);
  return 1;
}

/* Merges both parts' rows and stores o and lse in the caller's. */
static attn_status merge(split *s, const buf *on, const float *ln,
                         const buf *of, const float *lf, const int64_t *qmap) {
  const attn_params *p = &s->pl->p;
  float *tmp = split_alloc(&s->ar, (size_t)s->dv, sizeof(float));
  if (!tmp || s->ar.sizing)
    return tmp ? ATTN_OK : ATTN_ERR_OUT_OF_MEMORY;
  for (int64_t b = 0; b < s->nseq; b++) {
    const split_seq *q = &s->seqs[b];
    for (int64_t i = 0; i < q->s.sq; i++) {
      const int64_t tr = q->s.q_off + i;
      for (int64_t h = 0; h < s->hq; h++) {
        const int64_t li = split_lse_index(s, q, h, i);
        const float a = ln[li];
        const float *oa = split_row(on, q->s.q_bat, tr, h), *oc = NULL;
        float l = a, c;
        if (far_of(s, qmap, lf, of, q, i, h, &c, &oc) &&
            (a > c ? a : c) != -INFINITY) {
          const float m = a > c ? a : c;
          const float wa = expf(a - m), wc = expf(c - m), sum = wa + wc;
          l = m + logf(sum);
          for (int64_t e = 0; e < s->dv; e++)
            tmp[e] = (wa * oa[e] + wc * oc[e]) / sum;
        } else {
          memcpy(tmp, oa, (size_t)s->dv * sizeof(float));
        }
        attn_store_row(tmp, s->dv, attn_elem(&p->o, q->s.q_bat, tr, h, 0),
                       p->o.dtype, p->o.stride[3]);
        if (p->lse)
          p->lse[li] = l;
      }
    }
  }
  return ATTN_OK;
}

/* The forward's pieces and parts (s built; sizing or not). */
static attn_status forward_pass(split *s) {
  const attn_params *p = &s->pl->p;
  buf on = {0}, of = {0};
  float *lf = NULL;
  const int64_t nrows = p->q.shape[0] * p->q.shape[1] * s->hq;
  float *ln = split_alloc(&s->ar, (size_t)nrows, sizeof(float));
  int64_t *qmap = far_query_map(s);
  if (!ln || !qmap ||
      !buf_make(&s->ar, &on, p->q.shape[0], p->q.shape[1], s->hq, s->dv))
    return ATTN_ERR_OUT_OF_MEMORY;
  s->near.o = on.t;
  s->near.lse = ln;
  attn_status st = split_part(s, &s->near, 0);
  if (st != ATTN_OK)
    return st;
  if (split_has_far(s)) {
    const int64_t fb = s->fixed ? p->q.shape[0] : 1;
    const int64_t fs = s->fixed ? p->q.shape[1] : s->tq;
    lf = split_alloc(&s->ar, (size_t)(fb * fs * s->hq), sizeof(float));
    if (!lf || !buf_make(&s->ar, &of, fb, fs, s->hq, s->dv))
      return ATTN_ERR_OUT_OF_MEMORY;
    s->far.o = of.t;
    s->far.lse = lf;
    st = split_part(s, &s->far, 0);
    if (st != ATTN_OK)
      return st;
  }
  return merge(s, &on, ln, &of, lf, qmap);
}

attn_status attn_split_forward(const attn_plan *pl) {
  split s;
  attn_status st = split_build(&s, pl, 0);
  if (st == ATTN_OK)
    st = forward_pass(&s);
  if (s.ar.failed)
    st = split_fail_alloc(&s);
  split_free(&s);
  return st;
}

/* acc (f32, t's shape) stored into t in t's dtype. */
static void store_all(const buf *acc, const attn_tensor *t) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t x = 0; x < t->shape[1]; x++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        attn_store_row(split_row(acc, b, x, h), t->shape[3],
                       attn_elem(t, b, x, h, 0), t->dtype, t->stride[3]);
}

/* Strided: the far part's o, dO and lse gathered from the merged ones. */
static void gather_far_rows(const split *s, buf *fo, buf *fdo, float *lf) {
  const attn_params *p = &s->pl->p;
  for (int64_t g = 0; g < (s->ar.sizing ? 0 : s->f.n); g++) {
    const split_seq *q = &s->seqs[s->f.seq[g]];
    for (int64_t x = s->f.cu_q[g]; x < s->f.cu_q[g + 1]; x++) {
      const int64_t i = s->f.q_first[g] + (x - s->f.cu_q[g]) * s->L;
      split_load(&p->o, q->s.q_bat, q->s.q_off + i, fo, 0, x);
      split_load(&p->dout, q->s.q_bat, q->s.q_off + i, fdo, 0, x);
      for (int64_t h = 0; h < s->hq; h++)
        lf[h * s->tq + x] = p->lse[split_lse_index(s, q, h, i)] +
                            (s->lse_shift ? s->lse_shift[h] : 0.0f);
    }
  }
}

/* The far part's gradients added into the near part's (call's layout). */
static void scatter_far(const split *s, const buf *dqf, const buf *dkf,
                        const buf *dvf, buf *dqn, buf *dkn, buf *dvn) {
  const int varlen = s->pl->pr.varlen;
  if (s->fixed) {
    for (int64_t b = 0; b < s->nseq; b++) {
      const attn_seq *q = &s->seqs[b].s;
      for (int64_t i = 0; i < q->sq; i++)
        split_add_rows(dqf, q->q_bat, q->q_off + i, dqn, q->q_bat,
                       q->q_off + i);
      const int64_t fbat = varlen ? 0 : b, f0 = varlen ? s->cu_tail[b] : 0;
      for (int64_t t = 0; t < s->tails[b]; t++) {
        const int64_t j = q->k_off + split_tail_row(s, t);
        split_add_rows(dkf, fbat, f0 + t, dkn, q->q_bat, j);
        split_add_rows(dvf, fbat, f0 + t, dvn, q->q_bat, j);
      }
    }
    return;
  }
  for (int64_t g = 0; g < s->f.n; g++) {
    const attn_seq *q = &s->seqs[s->f.seq[g]].s;
    for (int64_t x = s->f.cu_q[g]; x < s->f.cu_q[g + 1]; x++)
      split_add_rows(dqf, 0, x, dqn, q->q_bat,
                     q->q_off + s->f.q_first[g] + (x - s->f.cu_q[g]) * s->L);
    for (int64_t y = s->f.cu_k[g]; y < s->f.cu_k[g + 1]; y++) {
      const int64_t j = q->k_off + s->f.k_first[g] + (y - s->f.cu_k[g]) * s->L;
      split_add_rows(dkf, 0, y, dkn, q->q_bat, j);
      split_add_rows(dvf, 0, y, dvn, q->q_bat, j);
    }
  }
}

/* The backward's pieces and parts (s built; sizing or not). */
static attn_status backward_pass(split *s) {
  const attn_params *p = &s->pl->p;
  split_arena *ar = &s->ar;
  buf dqn = {0}, dkn = {0}, dvn = {0}; /* near gradients, and the sums */
  buf fo = {0}, fdo = {0}, dqf = {0}, dkf = {0}, dvf = {0};
  float *fdb = NULL;
  const int64_t qb = p->q.shape[0], qs = p->q.shape[1];
  const int64_t kb = p->k.shape[0], ks = p->k.shape[1];
  if (!buf_make(ar, &dqn, qb, qs, s->hq, s->d) ||
      !buf_make(ar, &dkn, kb, ks, s->hk, s->d) ||
      !buf_make(ar, &dvn, kb, ks, s->hk, s->dv))
    return ATTN_ERR_OUT_OF_MEMORY;
  s->near.lse = p->lse; /* read: the merged forward's */
  s->near.dsinks = p->dsinks;
  s->near.dq = dqn.t;
  s->near.dk = dkn.t;
  s->near.dv = dvn.t;
  attn_status st = split_part(s, &s->near, 1);
  if (st != ATTN_OK)
    return st;
  if (split_has_far(s)) {
    if (s->fixed) { /* queries, o, dO and lse as they are; keys gathered */
      const int64_t fb = s->fk.t.shape[0], fs = s->fk.t.shape[1];
      if (!buf_make(ar, &dqf, qb, qs, s->hq, s->d) ||
          !buf_make(ar, &dkf, fb, fs, s->hk, s->d) ||
          !buf_make(ar, &dvf, fb, fs, s->hk, s->dv))
        return ATTN_ERR_OUT_OF_MEMORY;
      s->far.lse = p->lse;
    } else { /* everything gathered into the packed sequences */
      float *lf = split_alloc(ar, (size_t)(s->hq * s->tq), sizeof(float));
      if (!lf || !buf_make(ar, &fo, 1, s->tq, s->hq, s->dv) ||
          !buf_make(ar, &fdo, 1, s->tq, s->hq, s->dv) ||
          !buf_make(ar, &dqf, 1, s->tq, s->hq, s->d) ||
          !buf_make(ar, &dkf, 1, s->tk, s->hk, s->d) ||
          !buf_make(ar, &dvf, 1, s->tk, s->hk, s->dv))
        return ATTN_ERR_OUT_OF_MEMORY;
      gather_far_rows(s, &fo, &fdo, lf);
      s->far.o = fo.t;
      s->far.dout = fdo.t;
      s->far.lse = lf;
    }
    s->far.dq = dqf.t;
    s->far.dk = dkf.t;
    s->far.dv = dvf.t;
    if (p->dbias.data) {
      const int64_t *sh = s->far.bias.shape; /* its alloc did not overflow */
      fdb = split_alloc(ar, (size_t)(sh[0] * sh[1] * sh[2] * sh[3]),
                        sizeof(float));
      if (!fdb)
        return ATTN_ERR_OUT_OF_MEMORY;
      s->far.dbias = attn_tensor_contiguous(fdb, ATTN_DTYPE_F32, sh[0], sh[1],
                                            sh[2], sh[3]);
    }
    st = split_part(s, &s->far, 1);
    if (st != ATTN_OK || ar->sizing)
      return st;
    scatter_far(s, &dqf, &dkf, &dvf, &dqn, &dkn, &dvn);
    if (fdb) /* the far dbias added into the call's */
      split_far_bcast(s, &p->dbias, s->far.bias.shape, fdb, 1);
  }
  if (!ar->sizing) {
    store_all(&dqn, &p->dq);
    store_all(&dkn, &p->dk);
    store_all(&dvn, &p->dv);
  }
  return ATTN_OK;
}

attn_status attn_split_backward(const attn_plan *pl) {
  split s;
  attn_status st = split_build(&s, pl, 0);
  if (st == ATTN_OK)
    st = backward_pass(&s);
  if (s.ar.failed)
    st = split_fail_alloc(&s);
  split_free(&s);
  return st;
}

attn_status attn_split_workspace_size(const attn_plan *pl, int bwd,
                                      size_t *bytes) {
  split s;
  attn_status st = split_build(&s, pl, 1);
  if (st == ATTN_OK)
    st = bwd ? backward_pass(&s) : forward_pass(&s);
  if (s.ar.failed)
    st = split_fail_alloc(&s);
  *bytes = s.ar.peak + 64; /* the workspace's alignment */
  split_free(&s);
  return st;
}
