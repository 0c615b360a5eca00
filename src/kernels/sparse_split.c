/*
 * sparse_split.c - Child et al.'s strided and fixed patterns (attn/sparse.h)
 * as two dense-kernel calls whose results are merged by their LSE, so that
 * the work is proportional to the pairs attended.
 *
 * On the tile lists alone these patterns are expensive: their far part (one
 * key in every L for the strided pattern, the last C of every block of L for
 * the fixed one) touches almost every key tile, so most tiles are PARTIAL
 * and computed in full for a few live scores (strided L = 128 at seq 16K
 * costs as much as causal attention). Both patterns are the union of two
 * disjoint sets of keys, each of which the dense kernels run at full speed
 * once the far part is gathered into a compact tensor:
 *
 *   strided, p = i + seq_k - seq_q:
 *     near  p - L <= j <= p                   causal, window (L, 0)
 *     far   j = p - a L, a >= 2               per residue r = p mod L, the
 *           queries and keys at positions r, r + L, r + 2L, ... gathered
 *           into one packed sequence each (cu_seqlens); query a sees key b
 *           when b <= a - 2 (positions: k_pos_offsets = 2, causal)
 *   fixed:
 *     near  floor(j / L) == floor(p / L), j <= p   causal + a block-
 *           diagonal block_mask of L x L blocks
 *     far   j mod L >= L - C in an earlier block: the C-key tails of the
 *           blocks gathered in order (tail t is in block floor(t / C)); a
 *           block_mask of L x C blocks lets query block m see tails < m
 *
 * Softmax over the union: lse = log(exp(lse_near) + exp(lse_far)) and
 * o = (exp(lse_near - lse) o_near + exp(lse_far - lse) o_far). The
 * backward of each part, given the merged o and lse (as ring attention
 * does), is exactly that part's share of the gradient; the far part's
 * gradients are scattered back and added. Sinks join the near part only.
 *
 * Used by attn_forward and attn_backward for the problems attn_split_
 * eligible accepts (the pattern with softcap, sinks, GQA, any storage
 * dtype and causal alignment, batch > 1); every other combination, and any
 * call with a caller workspace (which promises no allocation), takes the
 * tile path, which gives the same result.
 */
#include "kernels/sparse_split.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MASK_CAP ((int64_t)1 << 22) /* bytes of a block mask we build */

static int64_t fdiv(int64_t a, int64_t l) { /* floor(a / l), l > 0 */
  const int64_t q = a / l;
  return a % l < 0 ? q - 1 : q;
}

static int64_t cdiv(int64_t a, int64_t l) { return -fdiv(-a, l); }

static int is_plain(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32 || dt == ATTN_DTYPE_BF16 || dt == ATTN_DTYPE_F16;
}

int attn_split_eligible(const attn_plan *pl) {
  const attn_params *p = &pl->p;
  const int64_t L = p->sparse_l, sq = p->q.shape[1], sk = p->k.shape[1];
  if ((p->sparse_kind != ATTN_SPARSE_STRIDED &&
       p->sparse_kind != ATTN_SPARSE_FIXED) ||
      L < 2 || L >= sk || pl->pr.varlen)
    return 0; /* L >= seq_k: every key j <= p is near, causal's tiles */
  if (p->sparse_kind == ATTN_SPARSE_FIXED && p->sparse_c >= L)
    return 0; /* every key: causal, all FULL tiles */
  if (p->global_count || p->block_mask.data || p->mask_mod || p->score_mod ||
      p->mask.data || p->compiled_mask || p->alibi_slopes || p->rel_bias ||
      p->bias.data || p->dropout_p != 0.0f || p->kv_lens ||
      p->window_left != -1 || p->window_right != -1 || p->prefix_len != -1 ||
      p->q_pos_offset || p->k_pos_offset || p->q_pos_offsets ||
      p->k_pos_offsets || p->workspace)
    return 0;
  if (p->causal == ATTN_CAUSAL_TOP_LEFT && sq != sk)
    return 0;
  if (!is_plain(p->q.dtype) || !is_plain(p->k.dtype) || !is_plain(p->v.dtype))
    return 0;
  if (p->sparse_kind == ATTN_SPARSE_FIXED) {
    const int64_t off = sk - sq;
    if (off % L != 0)
      return 0; /* the block masks need query blocks aligned with p */
    const int64_t nqb = cdiv(sq, L), nkb = cdiv(sk, L);
    const int64_t tails = (sk / L) * p->sparse_c; /* complete blocks */
    if (nqb > MASK_CAP / nkb ||
        (tails > 0 && nqb > MASK_CAP / cdiv(tails, p->sparse_c)))
      return 0;
  }
  return 1;
}

/* ---- f32 scratch tensors ------------------------------------------------ */

typedef struct buf {
  float *x;
  attn_tensor t;
} buf;

/* A contiguous f32 [b, s, h, d] tensor of zeros (s may be 0: then one
 * element so that the pointer is valid). */
static int buf_make(buf *u, int64_t b, int64_t s, int64_t h, int64_t d) {
  const size_t n = (size_t)b * (size_t)(s > 0 ? s : 1) * (size_t)h * (size_t)d;
  u->x = calloc(n, sizeof(float));
  u->t = attn_tensor_bshd(u->x, ATTN_DTYPE_F32, b, s, h, d);
  return u->x != NULL;
}

static float *row(const buf *u, int64_t b, int64_t s, int64_t h) {
  return (float *)attn_elem(&u->t, b, s, h, 0);
}

/* Rows (b, s, h) of t, all heads, into row (b2, s2) of f32 buffer u. */
static void load(const attn_tensor *t, int64_t b, int64_t s, buf *u, int64_t b2,
                 int64_t s2) {
  for (int64_t h = 0; h < t->shape[2]; h++)
    attn_load_row_f32(attn_elem(t, b, s, h, 0), t->dtype, t->stride[3],
                      t->shape[3], 1.0f, row(u, b2, s2, h));
}

/* Row (b2, s2) of u added into acc's row (b, s) (all heads). */
static void add_rows(const buf *u, int64_t b2, int64_t s2, buf *acc, int64_t b,
                     int64_t s) {
  for (int64_t h = 0; h < u->t.shape[2]; h++) {
    const float *x = row(u, b2, s2, h);
    float *y = row(acc, b, s, h);
    for (int64_t e = 0; e < u->t.shape[3]; e++)
      y[e] += x[e];
  }
}

/* acc (f32 [b, s, h, d]) stored into t in t's dtype. */
static void store_all(const buf *acc, const attn_tensor *t) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        attn_store_row(row(acc, b, s, h), t->shape[3], attn_elem(t, b, s, h, 0),
                       t->dtype, t->stride[3]);
}

/* ---- the two parts' geometry --------------------------------------------- */

/* Strided far part, one packed sequence per (batch, residue): which rows
 * of q and k it holds. */
typedef struct far_seqs {
  int64_t n;        /* sequences                                   */
  int32_t *cu_q;    /* [n + 1]                                     */
  int32_t *cu_k;    /* [n + 1]                                     */
  int64_t *qoff;    /* [n] q_pos_offsets                           */
  int64_t *koff;    /* [n] k_pos_offsets (all 2)                   */
  int64_t *seq_b;   /* [n] batch of each sequence                  */
  int64_t *q_first; /* [n] first query row i, rows step by L        */
  int64_t *k_first; /* [n] first key row j (= residue), step L      */
} far_seqs;

static void far_free(far_seqs *f) {
  free(f->cu_q);
  free(f->cu_k);
  free(f->qoff);
  free(f->koff);
  free(f->seq_b);
  free(f->q_first);
  free(f->k_first);
}

/* Fills f for the strided pattern; -1 on allocation failure or a packed
 * length past int32. */
static int far_strided(far_seqs *f, int64_t batch, int64_t sq, int64_t sk,
                       int64_t L) {
  memset(f, 0, sizeof *f);
  const int64_t off = sk - sq, cap = batch * L;
  f->cu_q = calloc((size_t)cap + 1, sizeof(int32_t));
  f->cu_k = calloc((size_t)cap + 1, sizeof(int32_t));
  f->qoff = calloc((size_t)cap, sizeof(int64_t));
  f->koff = calloc((size_t)cap, sizeof(int64_t));
  f->seq_b = calloc((size_t)cap, sizeof(int64_t));
  f->q_first = calloc((size_t)cap, sizeof(int64_t));
  f->k_first = calloc((size_t)cap, sizeof(int64_t));
  if (!f->cu_q || !f->cu_k || !f->qoff || !f->koff || !f->seq_b ||
      !f->q_first || !f->k_first)
    return -1;
  int64_t tq = 0, tk = 0, n = 0;
  for (int64_t b = 0; b < batch; b++)
    for (int64_t r = 0; r < L; r++) {
      /* queries p = r + aL with a >= 2 and off <= p <= off + sq - 1 */
      const int64_t a_lo = cdiv(off - r, L) > 2 ? cdiv(off - r, L) : 2;
      const int64_t a_hi = fdiv(off + sq - 1 - r, L);
      if (a_hi < a_lo || r > sk - 1)
        continue;
      int64_t nk = (sk - 1 - r) / L + 1; /* keys j = r + bL < sk */
      if (nk > a_hi - 1)
        nk = a_hi - 1; /* only b <= a_hi - 2 is ever seen */
      const int64_t nq = a_hi - a_lo + 1;
      f->seq_b[n] = b;
      f->q_first[n] = r + a_lo * L - off;
      f->k_first[n] = r;
      f->koff[n] = 2; /* key b sits at b + 2: seen when b + 2 <= a */
      f->qoff[n] = a_lo - nk + nq; /* query i sits at a_lo + i */
      tq += nq;
      tk += nk;
      if (tq > INT32_MAX || tk > INT32_MAX)
        return -1;
      n++;
      f->cu_q[n] = (int32_t)tq;
      f->cu_k[n] = (int32_t)tk;
    }
  f->n = n;
  return 0;
}

/* A bool [nqb, nkb] block mask: near (fixed): kb == qb + shift; far
 * (fixed): kb < qb + shift. */
static unsigned char *block_mask(int64_t nqb, int64_t nkb, int64_t shift,
                                 int far) {
  unsigned char *m = calloc((size_t)(nqb * nkb), 1);
  if (!m)
    return NULL;
  for (int64_t qb = 0; qb < nqb; qb++)
    for (int64_t kb = 0; kb < nkb; kb++)
      m[qb * nkb + kb] = far ? kb < qb + shift : kb == qb + shift;
  return m;
}

static attn_tensor mask_tensor(unsigned char *m, int64_t nqb, int64_t nkb) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = m;
  t.dtype = ATTN_DTYPE_BOOL;
  t.shape[0] = t.shape[1] = 1;
  t.shape[2] = nqb;
  t.shape[3] = nkb;
  t.stride[3] = 1;
  t.stride[2] = nkb;
  return t;
}

/* Params of a part: the caller's, pattern off, nothing the part must not
 * write (outputs and gradients are set by the caller). */
static attn_params part_params(const attn_params *p) {
  attn_params a = *p;
  a.sparse_kind = ATTN_SPARSE_NONE;
  a.sparse_l = a.sparse_c = 0;
  a.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  a.lse = NULL;
  a.dsinks = NULL;
  return a;
}

/* Everything both passes build. */
typedef struct split {
  const attn_plan *pl;
  int fixed;
  int64_t B, sq, sk, hq, hk, d, dv, L, C;
  far_seqs f;            /* strided far part                      */
  int64_t ntail;         /* fixed: gathered tail keys per batch   */
  unsigned char *mnear;  /* fixed near block mask                 */
  unsigned char *mfar;   /* fixed far block mask                  */
  attn_params near, far; /* the two calls (operands set below)    */
  buf fq, fk, fv;        /* far operands (strided: q too)         */
  int64_t tq, tk;        /* far rows: packed (strided) or per batch */
} split;

static void split_free(split *s) {
  far_free(&s->f);
  free(s->mnear);
  free(s->mfar);
  free(s->fq.x);
  free(s->fk.x);
  free(s->fv.x);
}

/* Tail key t of a batch (fixed): its row j. */
static int64_t tail_row(const split *s, int64_t t) {
  return (t / s->C) * s->L + s->L - s->C + t % s->C;
}

/* Builds the parts' geometry and gathers the far operands. */
static attn_status split_build(split *s, const attn_plan *pl) {
  const attn_params *p = &pl->p;
  memset(s, 0, sizeof *s);
  s->pl = pl;
  s->fixed = p->sparse_kind == ATTN_SPARSE_FIXED;
  s->B = pl->pr.batch;
  s->sq = p->q.shape[1];
  s->sk = p->k.shape[1];
  s->hq = pl->pr.hq;
  s->hk = pl->pr.hk;
  s->d = pl->pr.d;
  s->dv = pl->pr.dv;
  s->L = p->sparse_l;
  s->C = p->sparse_c;
  s->near = part_params(p);
  s->far = part_params(p);
  s->far.sinks = NULL;
  if (!s->fixed) {
    s->near.window_left = s->L; /* p - L <= j <= p */
    s->near.window_right = 0;
    if (far_strided(&s->f, s->B, s->sq, s->sk, s->L) != 0)
      return ATTN_ERR_OUT_OF_MEMORY;
    s->tq = s->f.n ? s->f.cu_q[s->f.n] : 0;
    s->tk = s->f.n ? s->f.cu_k[s->f.n] : 0;
    if (s->f.n == 0)
      return ATTN_OK;
    if (!buf_make(&s->fq, 1, s->tq, s->hq, s->d) ||
        !buf_make(&s->fk, 1, s->tk, s->hk, s->d) ||
        !buf_make(&s->fv, 1, s->tk, s->hk, s->dv))
      return ATTN_ERR_OUT_OF_MEMORY;
    for (int64_t g = 0; g < s->f.n; g++) {
      const int64_t b = s->f.seq_b[g];
      for (int64_t i = s->f.cu_q[g]; i < s->f.cu_q[g + 1]; i++)
        load(&p->q, b, s->f.q_first[g] + (i - s->f.cu_q[g]) * s->L, &s->fq, 0,
             i);
      for (int64_t j = s->f.cu_k[g]; j < s->f.cu_k[g + 1]; j++) {
        const int64_t r = s->f.k_first[g] + (j - s->f.cu_k[g]) * s->L;
        load(&p->k, b, r, &s->fk, 0, j);
        load(&p->v, b, r, &s->fv, 0, j);
      }
    }
    s->far.q = s->fq.t;
    s->far.k = s->fk.t;
    s->far.v = s->fv.t;
    s->far.cu_seqlens_q = s->f.cu_q;
    s->far.cu_seqlens_k = s->f.cu_k;
    s->far.varlen_batch = s->f.n;
    s->far.q_pos_offsets = s->f.qoff;
    s->far.k_pos_offsets = s->f.koff;
    return ATTN_OK;
  }
  /* fixed */
  const int64_t shift = (s->sk - s->sq) / s->L;
  const int64_t nqb = cdiv(s->sq, s->L), nkb = cdiv(s->sk, s->L);
  s->mnear = block_mask(nqb, nkb, shift, 0);
  if (!s->mnear)
    return ATTN_ERR_OUT_OF_MEMORY;
  s->near.block_mask = mask_tensor(s->mnear, nqb, nkb);
  s->near.block_q = s->near.block_k = s->L;
  s->ntail = (s->sk / s->L) * s->C; /* tails of complete blocks */
  s->tk = s->ntail;
  if (s->ntail == 0)
    return ATTN_OK;
  const int64_t ntb = s->ntail / s->C;
  s->mfar = block_mask(nqb, ntb, shift, 1);
  if (!s->mfar || !buf_make(&s->fk, s->B, s->ntail, s->hk, s->d) ||
      !buf_make(&s->fv, s->B, s->ntail, s->hk, s->dv))
    return ATTN_ERR_OUT_OF_MEMORY;
  for (int64_t b = 0; b < s->B; b++)
    for (int64_t t = 0; t < s->ntail; t++) {
      load(&p->k, b, tail_row(s, t), &s->fk, b, t);
      load(&p->v, b, tail_row(s, t), &s->fv, b, t);
    }
  s->far.causal = ATTN_CAUSAL_NONE; /* the block mask says it all */
  s->far.k = s->fk.t;
  s->far.v = s->fv.t;
  s->far.block_mask = mask_tensor(s->mfar, nqb, ntb);
  s->far.block_q = s->L;
  s->far.block_k = s->C;
  return ATTN_OK;
}

/* Does the far part exist (any query sees a far key)? */
static int has_far(const split *s) {
  return s->fixed ? s->ntail > 0 : s->f.n > 0;
}

/* Row of the far part's output holding query (b, i), or -1. */
static int64_t far_row(const split *s, const int64_t *qmap, int64_t b,
                       int64_t i) {
  if (s->fixed)
    return s->ntail > 0 ? i : -1; /* far output is [B, sq] */
  return qmap[b * s->sq + i];
}

/* Strided: map (b, i) -> packed far row, -1 when the query has none. */
static int64_t *far_query_map(const split *s) {
  int64_t *m = malloc((size_t)(s->B * s->sq) * sizeof(int64_t));
  if (!m)
    return NULL;
  for (int64_t x = 0; x < s->B * s->sq; x++)
    m[x] = -1;
  if (!s->fixed)
    for (int64_t g = 0; g < s->f.n; g++)
      for (int64_t i = s->f.cu_q[g]; i < s->f.cu_q[g + 1]; i++)
        m[s->f.seq_b[g] * s->sq + s->f.q_first[g] + (i - s->f.cu_q[g]) * s->L] =
            i;
  return m;
}

static attn_status fail_oom(const attn_plan *pl) {
  return attn_fail(&pl->p, ATTN_ERR_OUT_OF_MEMORY,
                   "out of memory splitting the sparse pattern");
}

attn_status attn_split_forward(const attn_plan *pl) {
  const attn_params *p = &pl->p;
  split s;
  buf on = {0}, of = {0};
  float *ln = NULL, *lf = NULL;
  int64_t *qmap = NULL;
  attn_status st = split_build(&s, pl);
  if (st != ATTN_OK)
    goto done;
  st = ATTN_ERR_OUT_OF_MEMORY;
  const int64_t nrows = s.B * s.hq * s.sq;
  ln = malloc((size_t)nrows * sizeof(float));
  qmap = far_query_map(&s);
  if (!ln || !qmap || !buf_make(&on, s.B, s.sq, s.hq, s.dv))
    goto done;
  s.near.o = on.t;
  s.near.lse = ln;
  st = attn_forward_sized(pl->ctx, &s.near, sizeof s.near);
  if (st != ATTN_OK)
    goto done;
  if (has_far(&s)) {
    st = ATTN_ERR_OUT_OF_MEMORY;
    const int64_t fb = s.fixed ? s.B : 1, fs = s.fixed ? s.sq : s.tq;
    lf = malloc((size_t)(fb * s.hq * fs) * sizeof(float));
    if (!lf || !buf_make(&of, fb, fs, s.hq, s.dv))
      goto done;
    s.far.o = of.t;
    s.far.lse = lf;
    st = attn_forward_sized(pl->ctx, &s.far, sizeof s.far);
    if (st != ATTN_OK)
      goto done;
  }
  /* merge, row by row, and store in o's dtype */
  float *tmp = malloc((size_t)s.dv * sizeof(float));
  if (!tmp) {
    st = ATTN_ERR_OUT_OF_MEMORY;
    goto done;
  }
  for (int64_t b = 0; b < s.B; b++)
    for (int64_t i = 0; i < s.sq; i++) {
      const int64_t fr = has_far(&s) ? far_row(&s, qmap, b, i) : -1;
      for (int64_t h = 0; h < s.hq; h++) {
        const float a = ln[(b * s.hq + h) * s.sq + i];
        const float *oa = row(&on, b, i, h);
        float l = a;
        if (fr >= 0) {
          const float c =
              s.fixed ? lf[(b * s.hq + h) * s.sq + i] : lf[h * s.tq + fr];
          const float *oc = s.fixed ? row(&of, b, i, h) : row(&of, 0, fr, h);
          const float m = a > c ? a : c;
          if (m == -INFINITY) {
            memcpy(tmp, oa, (size_t)s.dv * sizeof(float));
          } else {
            const float wa = expf(a - m), wc = expf(c - m), sum = wa + wc;
            l = m + logf(sum);
            for (int64_t e = 0; e < s.dv; e++)
              tmp[e] = (wa * oa[e] + wc * oc[e]) / sum;
          }
        } else {
          memcpy(tmp, oa, (size_t)s.dv * sizeof(float));
        }
        attn_store_row(tmp, s.dv, attn_elem(&p->o, b, i, h, 0), p->o.dtype,
                       p->o.stride[3]);
        if (p->lse)
          p->lse[(b * s.hq + h) * s.sq + i] = l;
      }
    }
  free(tmp);
  st = ATTN_OK;
done:
  if (st == ATTN_ERR_OUT_OF_MEMORY)
    st = fail_oom(pl);
  free(ln);
  free(lf);
  free(qmap);
  free(on.x);
  free(of.x);
  split_free(&s);
  return st;
}

attn_status attn_split_backward(const attn_plan *pl) {
  const attn_params *p = &pl->p;
  split s;
  buf dqn = {0}, dkn = {0}, dvn = {0}; /* near gradients, and the sums */
  buf fo = {0}, fdo = {0}, dqf = {0}, dkf = {0}, dvf = {0};
  float *lf = NULL;
  attn_status st = split_build(&s, pl);
  if (st != ATTN_OK)
    goto done;
  st = ATTN_ERR_OUT_OF_MEMORY;
  if (!buf_make(&dqn, s.B, s.sq, s.hq, s.d) ||
      !buf_make(&dkn, s.B, s.sk, s.hk, s.d) ||
      !buf_make(&dvn, s.B, s.sk, s.hk, s.dv))
    goto done;
  s.near.lse = p->lse; /* read: the merged forward's */
  s.near.dsinks = p->dsinks;
  s.near.dq = dqn.t;
  s.near.dk = dkn.t;
  s.near.dv = dvn.t;
  st = attn_backward_sized(pl->ctx, &s.near, sizeof s.near);
  if (st != ATTN_OK || !has_far(&s))
    goto store;
  st = ATTN_ERR_OUT_OF_MEMORY;
  if (s.fixed) { /* queries, o, dO and lse as they are; keys gathered */
    if (!buf_make(&dqf, s.B, s.sq, s.hq, s.d) ||
        !buf_make(&dkf, s.B, s.ntail, s.hk, s.d) ||
        !buf_make(&dvf, s.B, s.ntail, s.hk, s.dv))
      goto done;
    s.far.lse = p->lse;
  } else { /* everything gathered into the packed sequences */
    lf = malloc((size_t)(s.hq * s.tq) * sizeof(float));
    if (!lf || !buf_make(&fo, 1, s.tq, s.hq, s.dv) ||
        !buf_make(&fdo, 1, s.tq, s.hq, s.dv) ||
        !buf_make(&dqf, 1, s.tq, s.hq, s.d) ||
        !buf_make(&dkf, 1, s.tk, s.hk, s.d) ||
        !buf_make(&dvf, 1, s.tk, s.hk, s.dv))
      goto done;
    for (int64_t g = 0; g < s.f.n; g++)
      for (int64_t x = s.f.cu_q[g]; x < s.f.cu_q[g + 1]; x++) {
        const int64_t b = s.f.seq_b[g];
        const int64_t i = s.f.q_first[g] + (x - s.f.cu_q[g]) * s.L;
        load(&p->o, b, i, &fo, 0, x);
        load(&p->dout, b, i, &fdo, 0, x);
        for (int64_t h = 0; h < s.hq; h++)
          lf[h * s.tq + x] = p->lse[(b * s.hq + h) * s.sq + i];
      }
    s.far.o = fo.t;
    s.far.dout = fdo.t;
    s.far.lse = lf;
  }
  s.far.dq = dqf.t;
  s.far.dk = dkf.t;
  s.far.dv = dvf.t;
  st = attn_backward_sized(pl->ctx, &s.far, sizeof s.far);
  if (st != ATTN_OK)
    goto done;
  if (s.fixed) {
    for (int64_t b = 0; b < s.B; b++) {
      for (int64_t i = 0; i < s.sq; i++)
        add_rows(&dqf, b, i, &dqn, b, i);
      for (int64_t t = 0; t < s.ntail; t++) {
        add_rows(&dkf, b, t, &dkn, b, tail_row(&s, t));
        add_rows(&dvf, b, t, &dvn, b, tail_row(&s, t));
      }
    }
  } else {
    for (int64_t g = 0; g < s.f.n; g++) {
      const int64_t b = s.f.seq_b[g];
      for (int64_t x = s.f.cu_q[g]; x < s.f.cu_q[g + 1]; x++)
        add_rows(&dqf, 0, x, &dqn, b, s.f.q_first[g] + (x - s.f.cu_q[g]) * s.L);
      for (int64_t x = s.f.cu_k[g]; x < s.f.cu_k[g + 1]; x++) {
        const int64_t j = s.f.k_first[g] + (x - s.f.cu_k[g]) * s.L;
        add_rows(&dkf, 0, x, &dkn, b, j);
        add_rows(&dvf, 0, x, &dvn, b, j);
      }
    }
  }
store:
  if (st == ATTN_OK) {
    store_all(&dqn, &p->dq);
    store_all(&dkn, &p->dk);
    store_all(&dvn, &p->dv);
  }
done:
  if (st == ATTN_ERR_OUT_OF_MEMORY)
    st = fail_oom(pl);
  free(lf);
  free(dqn.x);
  free(dkn.x);
  free(dvn.x);
  free(fo.x);
  free(fdo.x);
  free(dqf.x);
  free(dkf.x);
  free(dvf.x);
  split_free(&s);
  return st;
}
