/*
 * sparse_split.c - Child et al.'s strided and fixed patterns (attn/sparse.h)
 * as two dense-kernel calls whose results are merged by their LSE, so that
 * the work is proportional to the pairs attended: which calls take this
 * path, and the two parts' geometry. The passes are sparse_split_run.c.
 *
 * On the tile lists alone these patterns are expensive: their far part (one
 * key in every L for the strided pattern, the last C of every block of L for
 * the fixed one) touches almost every key tile, so most tiles are PARTIAL
 * and computed in full for a few live scores (strided L = 128 at seq 16K
 * costs as much as causal attention). Both patterns are the union of two
 * disjoint sets of keys, each of which the dense kernels run at full speed
 * once the far part is gathered into a compact tensor. With P and K the
 * positions of a query and a key (attn.h: offsets and kv_lens applied):
 *
 *   strided:
 *     near  P - L <= K <= P                  causal, window (L, 0)
 *     far   K = P - a L, a >= 2              per residue r = P mod L, the
 *           queries P = r + alpha L and keys K = r + beta L of a sequence
 *           gathered into one packed sequence (cu_seqlens); the far call
 *           puts query alpha at position alpha and key beta at beta + 2,
 *           so its causal mask is beta <= alpha - 2, a window (W, .) of
 *           the caller is alpha - beta <= floor(W / L) and ALiBi's slope
 *           becomes slope L (its scores are then slope 2L too high on the
 *           whole row: the far lse is corrected by that)
 *   fixed (every sequence's P and K of row 0 multiples of L):
 *     near  floor(K / L) == floor(P / L), K <= P   causal + a block-
 *           diagonal block_mask of L x L blocks (per sequence)
 *     far   K mod L >= L - C in an earlier block: the C-key tails of the
 *           blocks gathered in order (tail t is in block floor(t / C)); a
 *           block_mask of L x C blocks lets query block m see tails < m
 *
 * Every other option of the call applies to the near part as it is; the
 * far part gets what its gathered geometry can express (above).
 *
 * Softmax over the union: lse = log(exp(lse_near) + exp(lse_far)) and
 * o = (exp(lse_near - lse) o_near + exp(lse_far - lse) o_far). The
 * backward of each part, given the merged o and lse (as ring attention
 * does), is exactly that part's share of the gradient; the far part's
 * gradients are scattered back and added. Sinks join the near part only.
 *
 * Used by attn_forward and attn_backward for the problems attn_split_
 * eligible accepts: the pattern with softcap, sinks, GQA, any storage
 * dtype, batch > 1, kv_lens, packed sequences, position offsets, prefix
 * (a no-op under a causal pattern) and every causal alignment (top-left
 * where each sequence has as many queries as keys); strided also with a
 * window and ALiBi; with a bias or mask tensor (gathered onto the far
 * part's rows and keys, so O(pairs attended) more memory, and dbias added
 * back); with or without a compiled mask of the pattern (its tile lists
 * are then not used); with a caller workspace (every temporary comes from
 * it: split_arena). The rest (a T5 table, whose buckets of L times a
 * distance are not a bucket of it, dropout, whose generator is keyed by
 * the element's own coordinates, globals, block masks, user functions, and
 * the fixed pattern with a window or ALiBi) takes the tile path, which
 * gives the same result at about causal attention's cost.
 */
#include "kernels/sparse_split_impl.h"

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

static int64_t fmod_pos(int64_t a, int64_t l) { return a - fdiv(a, l) * l; }

static int is_plain(attn_dtype dt) {
  return dt == ATTN_DTYPE_F32 || dt == ATTN_DTYPE_BF16 || dt == ATTN_DTYPE_F16;
}

/* Sequence b of the call with its positions. */
static void seq_of(const attn_plan *pl, int64_t b, split_seq *q) {
  const attn_params *p = &pl->p;
  attn_problem_seq(&pl->pr, b, &q->s);
  q->qp = q->s.sk - q->s.sq + p->q_pos_offset +
          (p->q_pos_offsets ? p->q_pos_offsets[b] : 0);
  q->kp = p->k_pos_offset + (p->k_pos_offsets ? p->k_pos_offsets[b] : 0);
}

/* Fixed: query and key blocks of the mask (nqb, nkb), tails' blocks. */
static int64_t fixed_tails(int64_t nk, int64_t L, int64_t C) {
  const int64_t part = nk % L - (L - C);
  return (nk / L) * C + (part > 0 ? part : 0);
}

int attn_split_eligible(const attn_plan *pl) {
  const attn_params *p = &pl->p;
  const attn_problem *pr = &pl->pr;
  const int64_t L = p->sparse_l;
  const int fixed = p->sparse_kind == ATTN_SPARSE_FIXED;
  if ((p->sparse_kind != ATTN_SPARSE_STRIDED && !fixed) || L < 2 ||
      L >= pr->sk_max || pr->batch < 1)
    return 0; /* L >= seq_k: every key j <= p is near, causal's tiles */
  if (fixed && p->sparse_c >= L)
    return 0; /* every key: causal, all FULL tiles */
  if (p->global_count || p->block_mask.data || p->mask_mod || p->score_mod ||
      p->rel_bias || p->dropout_p != 0.0f)
    return 0;
  if (fixed && (p->alibi_slopes || p->window_left >= 0))
    return 0; /* the gathered tails have no affine positions */
  if (!is_plain(p->q.dtype) || !is_plain(p->k.dtype) || !is_plain(p->v.dtype))
    return 0;
  if (p->alibi_slopes)
    for (int64_t h = 0; h < pr->hq; h++)
      if (!isfinite(p->alibi_slopes[h] * 2.0f * (float)L))
        return 0;
  int64_t tmax = 0;
  for (int64_t b = 0; b < pr->batch; b++) {
    split_seq q;
    seq_of(pl, b, &q);
    if (p->causal == ATTN_CAUSAL_TOP_LEFT && q.s.sq != q.s.sk && q.s.sq > 0)
      return 0; /* top-left cuts deeper than the pattern's own diagonal */
    if (fixed && (fmod_pos(q.qp, L) != 0 || fmod_pos(q.kp, L) != 0))
      return 0; /* the block masks need blocks aligned with positions */
    const int64_t t = fixed_tails(q.s.sk, L, p->sparse_c);
    tmax = t > tmax ? t : tmax;
  }
  if (fixed) {
    const int64_t nqb = cdiv(pr->sq_max, L), nkb = cdiv(pr->sk_max, L);
    const int64_t ntb = tmax > 0 ? cdiv(tmax, p->sparse_c) : 1;
    if (nqb > MASK_CAP / pr->batch / nkb || nqb > MASK_CAP / pr->batch / ntb)
      return 0;
  }
  return 1;
}

/* ---- f32 scratch tensors ------------------------------------------------ */

void *split_alloc(split_arena *a, size_t count, size_t elem) {
  size_t n, need;
  if (__builtin_mul_overflow(count ? count : 1, elem, &n) ||
      __builtin_add_overflow(n, (size_t)63, &need)) {
    a->failed = 1; /* sticky: the pass stops at its first failed piece */
    return NULL;
  }
  need &= ~(size_t)63;
  if (a->base) {
    if (need > a->size - a->off) {
      a->short_ws = a->failed = 1;
      return NULL;
    }
    char *m = a->base + a->off;
    a->off += need;
    memset(m, 0, n);
    return m;
  }
  char *m = need <= SIZE_MAX - 64 ? calloc(1, 64 + n) : NULL;
  if (!m) { /* else: the list link, then the piece */
    a->failed = 1;
    return NULL;
  }
  *(void **)m = a->blocks;
  a->blocks = m;
  a->off += need;
  a->peak = a->off > a->peak ? a->off : a->peak;
  return m + 64;
}

static void split_arena_free(split_arena *a) {
  while (a->blocks) {
    void *next = *(void **)a->blocks;
    free(a->blocks);
    a->blocks = next;
  }
}

/* A contiguous f32 [b, s, h, d] tensor of zeros (s may be 0: then one
 * element so that the pointer is valid). */
int buf_make(split_arena *a, buf *u, int64_t b, int64_t s, int64_t h,
             int64_t d) {
  const size_t n =
      (size_t)(b > 0 ? b : 1) * (size_t)(s > 0 ? s : 1) * (size_t)h * (size_t)d;
  u->x = split_alloc(a, n, sizeof(float));
  u->t = attn_tensor_bshd(u->x, ATTN_DTYPE_F32, b, s, h, d);
  return u->x != NULL;
}

void split_load(const attn_tensor *t, int64_t b, int64_t s, buf *u, int64_t b2,
                int64_t s2) {
  for (int64_t h = 0; h < t->shape[2]; h++)
    attn_load_row_f32(attn_elem(t, b, s, h, 0), t->dtype, t->stride[3],
                      t->shape[3], 1.0f, split_row(u, b2, s2, h));
}

void split_add_rows(const buf *u, int64_t b2, int64_t s2, buf *acc, int64_t b,
                    int64_t s) {
  for (int64_t h = 0; h < u->t.shape[2]; h++) {
    const float *x = split_row(u, b2, s2, h);
    float *y = split_row(acc, b, s, h);
    for (int64_t e = 0; e < u->t.shape[3]; e++)
      y[e] += x[e];
  }
}

/* ---- the strided far part --------------------------------------------- */

/* Fills f for the strided pattern: per sequence and residue r, queries
 * P = r + alpha L and keys K = r + beta L with beta <= alpha - 2 and
 * alpha - beta <= amax (amax < 0: no limit). -1 on allocation failure or
 * a packed length past int32. */
static int far_strided(far_seqs *f, split *s, int64_t amax) {
  memset(f, 0, sizeof *f);
  const int64_t L = s->L, cap = s->nseq * L;
  split_arena *ar = &s->ar;
  f->cu_q = split_alloc(ar, (size_t)cap + 1, sizeof(int32_t));
  f->cu_k = split_alloc(ar, (size_t)cap + 1, sizeof(int32_t));
  f->qoff = split_alloc(ar, (size_t)cap, sizeof(int64_t));
  f->koff = split_alloc(ar, (size_t)cap, sizeof(int64_t));
  f->seq = split_alloc(ar, (size_t)cap, sizeof(int64_t));
  f->q_first = split_alloc(ar, (size_t)cap, sizeof(int64_t));
  f->k_first = split_alloc(ar, (size_t)cap, sizeof(int64_t));
  if (!f->cu_q || !f->cu_k || !f->qoff || !f->koff || !f->seq || !f->q_first ||
      !f->k_first)
    return -1;
  int64_t tq = 0, tk = 0, n = 0;
  for (int64_t b = 0; b < s->nseq; b++) {
    const split_seq *q = &s->seqs[b];
    if (q->s.sq == 0 || q->s.sk == 0)
      continue;
    for (int64_t r = 0; r < L; r++) {
      const int64_t a_min = cdiv(q->qp - r, L);
      const int64_t a_hi = fdiv(q->qp + q->s.sq - 1 - r, L);
      int64_t b_lo = cdiv(q->kp - r, L);
      int64_t b_hi = fdiv(q->kp + q->s.sk - 1 - r, L);
      const int64_t a_lo = a_min > b_lo + 2 ? a_min : b_lo + 2;
      if (amax >= 0 && b_lo < a_lo - amax)
        b_lo = a_lo - amax; /* keys left of every query's window */
      if (b_hi > a_hi - 2)
        b_hi = a_hi - 2; /* keys right of every query's far part */
      if (a_hi < a_lo || b_hi < b_lo)
        continue;
      const int64_t nq = a_hi - a_lo + 1, nk = b_hi - b_lo + 1;
      f->seq[n] = b;
      f->q_first[n] = r + a_lo * L - q->qp;
      f->k_first[n] = r + b_lo * L - q->kp;
      f->koff[n] = b_lo + 2;       /* key y sits at beta + 2       */
      f->qoff[n] = a_lo - nk + nq; /* query x sits at alpha        */
      tq += nq;
      tk += nk;
      if (tq > INT32_MAX || tk > INT32_MAX)
        return -1;
      n++;
      f->cu_q[n] = (int32_t)tq;
      f->cu_k[n] = (int32_t)tk;
    }
  }
  f->n = n;
  return 0;
}

static attn_status build_strided(split *s) {
  const attn_params *p = &s->pl->p;
  const int64_t L = s->L;
  /* near: P - L <= K <= P, narrowed by the caller's window */
  s->near.window_left =
      p->window_left >= 0 && p->window_left < L ? p->window_left : L;
  s->near.window_right = 0;
  /* far: the caller's window as a window on alpha - beta */
  const int64_t amax = p->window_left >= 0 ? p->window_left / L : -1;
  if (amax >= 0 && amax < 2)
    return ATTN_OK; /* no far key inside the window */
  if (far_strided(&s->f, s, amax) != 0)
    return ATTN_ERR_OUT_OF_MEMORY;
  s->tq = s->f.n ? s->f.cu_q[s->f.n] : 0;
  s->tk = s->f.n ? s->f.cu_k[s->f.n] : 0;
  if (s->f.n == 0)
    return ATTN_OK;
  if (!buf_make(&s->ar, &s->fq, 1, s->tq, s->hq, s->d) ||
      !buf_make(&s->ar, &s->fk, 1, s->tk, s->hk, s->d) ||
      !buf_make(&s->ar, &s->fv, 1, s->tk, s->hk, s->dv))
    return ATTN_ERR_OUT_OF_MEMORY;
  for (int64_t g = 0; g < (s->ar.sizing ? 0 : s->f.n); g++) {
    const attn_seq *q = &s->seqs[s->f.seq[g]].s;
    for (int64_t x = s->f.cu_q[g]; x < s->f.cu_q[g + 1]; x++)
      split_load(&p->q, q->q_bat,
                 q->q_off + s->f.q_first[g] + (x - s->f.cu_q[g]) * L, &s->fq, 0,
                 x);
    for (int64_t y = s->f.cu_k[g]; y < s->f.cu_k[g + 1]; y++) {
      const int64_t j = q->k_off + s->f.k_first[g] + (y - s->f.cu_k[g]) * L;
      split_load(&p->k, q->q_bat, j, &s->fk, 0, y);
      split_load(&p->v, q->q_bat, j, &s->fv, 0, y);
    }
  }
  attn_params *a = &s->far;
  a->q = s->fq.t;
  a->k = s->fk.t;
  a->v = s->fv.t;
  a->kv_lens = NULL;
  a->cu_seqlens_q = s->f.cu_q;
  a->cu_seqlens_k = s->f.cu_k;
  a->varlen_batch = s->f.n;
  a->q_pos_offset = a->k_pos_offset = 0;
  a->q_pos_offsets = s->f.qoff;
  a->k_pos_offsets = s->f.koff;
  a->window_left = amax >= 0 ? amax - 2 : -1;
  a->window_right = -1;
  if (p->alibi_slopes) {
    s->far_slopes = split_alloc(&s->ar, (size_t)s->hq, sizeof(float));
    s->lse_shift = split_alloc(&s->ar, (size_t)s->hq, sizeof(float));
    if (!s->far_slopes || !s->lse_shift)
      return ATTN_ERR_OUT_OF_MEMORY;
    for (int64_t h = 0; h < s->hq; h++) {
      s->far_slopes[h] = p->alibi_slopes[h] * (float)L;
      s->lse_shift[h] = p->alibi_slopes[h] * (float)(2 * L);
    }
    a->alibi_slopes = s->far_slopes;
  }
  return ATTN_OK;
}

/* ---- the fixed pattern's parts ------------------------------------------ */

/* A bool [nseq, 1, nqb, nkb] block mask: near: kb == qb + shift; far:
 * kb < qb + shift, shift = (qp - kp) / L per sequence. */
static unsigned char *block_mask(split *s, int64_t nqb, int64_t nkb, int far) {
  unsigned char *m = split_alloc(&s->ar, (size_t)(s->nseq * nqb * nkb), 1);
  if (!m)
    return NULL;
  for (int64_t b = 0; b < s->nseq; b++) {
    const int64_t shift = (s->seqs[b].qp - s->seqs[b].kp) / s->L;
    unsigned char *mb = m + b * nqb * nkb;
    for (int64_t qb = 0; qb < nqb; qb++)
      for (int64_t kb = 0; kb < nkb; kb++)
        mb[qb * nkb + kb] = far ? kb < qb + shift : kb == qb + shift;
  }
  return m;
}

static attn_tensor mask_tensor(unsigned char *m, int64_t nseq, int64_t nqb,
                               int64_t nkb) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = m;
  t.dtype = ATTN_DTYPE_BOOL;
  t.shape[0] = nseq;
  t.shape[1] = 1;
  t.shape[2] = nqb;
  t.shape[3] = nkb;
  t.stride[3] = 1;
  t.stride[2] = nkb;
  t.stride[0] = nqb * nkb;
  return t;
}

static attn_status build_fixed(split *s) {
  const attn_params *p = &s->pl->p;
  const attn_problem *pr = &s->pl->pr;
  const int64_t nqb = cdiv(pr->sq_max, s->L), nkb = cdiv(pr->sk_max, s->L);
  s->mnear = block_mask(s, nqb, nkb, 0);
  if (!s->mnear)
    return ATTN_ERR_OUT_OF_MEMORY;
  s->near.block_mask = mask_tensor(s->mnear, s->nseq, nqb, nkb);
  s->near.block_q = s->near.block_k = s->L;
  /* far: the tails of each sequence, gathered in order */
  s->tails = split_alloc(&s->ar, (size_t)s->nseq, sizeof(int64_t));
  if (!s->tails)
    return ATTN_ERR_OUT_OF_MEMORY;
  for (int64_t b = 0; b < s->nseq; b++) {
    s->tails[b] = fixed_tails(s->seqs[b].s.sk, s->L, s->C);
    s->tmax = s->tails[b] > s->tmax ? s->tails[b] : s->tmax;
    s->ttotal += s->tails[b];
  }
  if (s->tmax == 0 || s->ttotal > INT32_MAX)
    return s->tmax == 0 ? ATTN_OK : ATTN_ERR_OUT_OF_MEMORY;
  const int64_t ntb = cdiv(s->tmax, s->C);
  s->mfar = block_mask(s, nqb, ntb, 1);
  const int64_t fb = pr->varlen ? 1 : s->nseq;
  const int64_t fs = pr->varlen ? s->ttotal : s->tmax;
  if (!s->mfar || !buf_make(&s->ar, &s->fk, fb, fs, s->hk, s->d) ||
      !buf_make(&s->ar, &s->fv, fb, fs, s->hk, s->dv))
    return ATTN_ERR_OUT_OF_MEMORY;
  attn_params *a = &s->far;
  if (pr->varlen) {
    s->cu_tail = split_alloc(&s->ar, (size_t)s->nseq + 1, sizeof(int32_t));
    if (!s->cu_tail)
      return ATTN_ERR_OUT_OF_MEMORY;
    for (int64_t b = 0; b < s->nseq; b++)
      s->cu_tail[b + 1] = s->cu_tail[b] + (int32_t)s->tails[b];
    a->cu_seqlens_k = s->cu_tail;
    a->kv_lens = NULL;
  } else {
    s->tail_lens = split_alloc(&s->ar, (size_t)s->nseq, sizeof(int32_t));
    if (!s->tail_lens)
      return ATTN_ERR_OUT_OF_MEMORY;
    for (int64_t b = 0; b < s->nseq; b++)
      s->tail_lens[b] = (int32_t)s->tails[b];
    a->kv_lens = s->tail_lens;
  }
  for (int64_t b = 0; b < (s->ar.sizing ? 0 : s->nseq); b++) {
    const attn_seq *q = &s->seqs[b].s;
    const int64_t fbat = pr->varlen ? 0 : b,
                  f0 = pr->varlen ? s->cu_tail[b] : 0;
    for (int64_t t = 0; t < s->tails[b]; t++) {
      const int64_t j = q->k_off + split_tail_row(s, t);
      split_load(&p->k, q->q_bat, j, &s->fk, fbat, f0 + t);
      split_load(&p->v, q->q_bat, j, &s->fv, fbat, f0 + t);
    }
  }
  a->causal = ATTN_CAUSAL_NONE; /* the block mask says it all */
  a->window_left = a->window_right = -1;
  a->q_pos_offset = a->k_pos_offset = 0;
  a->q_pos_offsets = a->k_pos_offsets = NULL;
  a->k = s->fk.t;
  a->v = s->fv.t;
  a->block_mask = mask_tensor(s->mfar, s->nseq, nqb, ntb);
  a->block_q = s->L;
  a->block_k = s->C;
  return ATTN_OK;
}

/* ---- far rows, and the bias and mask gathered onto them ----------------- */

int64_t split_far_count(const split *s, int64_t g, int keys) {
  if (s->fixed)
    return keys ? s->tails[g] : s->seqs[g].s.sq;
  const int32_t *cu = keys ? s->f.cu_k : s->f.cu_q;
  return cu[g + 1] - cu[g];
}

int64_t split_far_seq(const split *s, int64_t g) {
  return s->fixed ? g : s->f.seq[g];
}

int64_t split_far_qrow(const split *s, int64_t g, int64_t x) {
  return s->fixed ? x : s->f.q_first[g] + x * s->L;
}

int64_t split_far_krow(const split *s, int64_t g, int64_t y) {
  return s->fixed ? split_tail_row(s, y) : s->f.k_first[g] + y * s->L;
}

void split_far_bcast(const split *s, const attn_tensor *t, const int64_t sh[4],
                     void *far, int add) {
  const size_t es = attn_dtype_size(t->dtype);
  const int bq = t->shape[2] == 1, bk = t->shape[3] == 1; /* broadcast */
  for (int64_t g = 0; g < sh[0]; g++) {
    const int64_t b = t->shape[0] == 1 ? 0 : split_far_seq(s, g);
    const int64_t nq = bq ? 1 : split_far_count(s, g, 0);
    const int64_t nk = bk ? 1 : split_far_count(s, g, 1);
    for (int64_t h = 0; h < sh[1]; h++)
      for (int64_t x = 0; x < nq; x++) {
        const int64_t i = bq ? 0 : split_far_qrow(s, g, x);
        char *f = (char *)far + (((g * sh[1] + h) * sh[2] + x) * sh[3]) * es;
        for (int64_t y = 0; y < nk; y++) {
          void *e = attn_elem(t, b, h, i, bk ? 0 : split_far_krow(s, g, y));
          if (add)
            *(float *)e += ((const float *)f)[y];
          else
            memcpy(f + (size_t)y * es, e, es);
        }
      }
  }
}

/* t (bias or mask: [b|1, hq|1, rows|1, keys|1], rows and keys inside the
 * sequence) gathered onto the far part's rows and keys, as a contiguous
 * [far seqs, 1|hq, max rows|1, max keys|1] tensor. */
static void *gather_bcast(split *s, const attn_tensor *t, attn_tensor *out) {
  const attn_plan *pl = s->pl;
  const size_t es = attn_dtype_size(t->dtype);
  const int64_t n = split_far_n(s);
  int64_t mq = 1, mk = 1;
  for (int64_t g = 0; g < n; g++) {
    mq = ATTN_MAX(mq, split_far_count(s, g, 0));
    mk = ATTN_MAX(mk, split_far_count(s, g, 1));
  }
  if (s->fixed && !pl->pr.varlen)
    mq = pl->p.q.shape[1]; /* a batched far call: exactly the call's */
  const int64_t sh[4] = {n, t->shape[1], t->shape[2] == 1 ? 1 : mq,
                         t->shape[3] == 1 ? 1 : mk};
  size_t cnt = (size_t)sh[0];
  for (int a = 1; a < 4; a++)
    if (__builtin_mul_overflow(cnt, (size_t)sh[a], &cnt))
      return NULL; /* reported as out of memory */
  char *m = split_alloc(&s->ar, cnt, es);
  if (!m)
    return NULL;
  if (!s->ar.sizing)
    split_far_bcast(s, t, sh, m, 0);
  *out = attn_tensor_contiguous(m, t->dtype, sh[0], sh[1], sh[2], sh[3]);
  return m;
}

/* The caller's bias and mask for the far call. */
static attn_status far_bias_mask(split *s) {
  const attn_params *p = &s->pl->p;
  if (!split_has_far(s))
    return ATTN_OK;
  if (p->bias.data && !(s->fbias = gather_bcast(s, &p->bias, &s->far.bias)))
    return ATTN_ERR_OUT_OF_MEMORY;
  if (p->mask.data && !(s->fmask = gather_bcast(s, &p->mask, &s->far.mask)))
    return ATTN_ERR_OUT_OF_MEMORY;
  return ATTN_OK;
}

/* ---- both ---------------------------------------------------------------- */

/* Params of a part: the caller's, pattern off, nothing the part must not
 * write (outputs and gradients are set by the pass). */
static attn_params part_params(const attn_params *p) {
  attn_params a = *p;
  a.sparse_kind = ATTN_SPARSE_NONE;
  a.sparse_l = a.sparse_c = 0;
  a.causal = ATTN_CAUSAL_BOTTOM_RIGHT; /* top-left only where the same */
  a.prefix_len = -1;      /* allows every K <= P: nothing the pattern allows */
  a.compiled_mask = NULL; /* the caller's pattern, checked by prepare */
  a.lse = NULL;
  a.dsinks = NULL;
  return a;
}

void split_free(split *s) { split_arena_free(&s->ar); }

attn_status split_part(split *s, attn_params *a, int bwd) {
  split_arena *ar = &s->ar;
  attn_context *ctx = s->pl->ctx;
  if (ar->sizing) {
    size_t w = 0;
    const attn_status st =
        bwd ? attn_backward_workspace_size_sized(ctx, a, sizeof *a, &w)
            : attn_forward_workspace_size_sized(ctx, a, sizeof *a, &w);
    if (st == ATTN_OK && w > ar->peak - ar->off)
      ar->peak = w > SIZE_MAX - ar->off ? SIZE_MAX : ar->off + w;
    return st;
  }
  a->workspace = ar->base ? ar->base + ar->off : NULL;
  a->workspace_size = ar->base ? ar->size - ar->off : 0;
  return bwd ? attn_backward_sized(ctx, a, sizeof *a)
             : attn_forward_sized(ctx, a, sizeof *a);
}

attn_status split_fail_alloc(const split *s) {
  const attn_params *p = &s->pl->p;
  if (s->ar.short_ws)
    return attn_fail(p, ATTN_ERR_WORKSPACE_TOO_SMALL,
                     "workspace of %zu bytes is too small for the sparse "
                     "pattern's split (the workspace_size query gives it)",
                     p->workspace_size);
  return attn_fail(p, ATTN_ERR_OUT_OF_MEMORY,
                   "out of memory splitting the sparse pattern");
}

int split_has_far(const split *s) {
  return s->fixed ? s->tmax > 0 : s->f.n > 0;
}

/* Builds the parts' geometry and gathers the far operands. */
attn_status split_build(split *s, const attn_plan *pl, int sizing) {
  const attn_params *p = &pl->p;
  memset(s, 0, sizeof *s);
  s->pl = pl;
  s->ar.sizing = sizing;
  if (p->workspace && !sizing) {
    const uintptr_t w = (uintptr_t)p->workspace, a = (w + 63) & ~(uintptr_t)63;
    if (p->workspace_size < 64 + (a - w)) {
      s->ar.short_ws = s->ar.failed = 1;
      return ATTN_ERR_WORKSPACE_TOO_SMALL;
    }
    s->ar.base = (char *)a;
    s->ar.size = (p->workspace_size - (a - w)) & ~(size_t)63;
  }
  s->fixed = p->sparse_kind == ATTN_SPARSE_FIXED;
  s->nseq = pl->pr.batch;
  s->hq = pl->pr.hq;
  s->hk = pl->pr.hk;
  s->d = pl->pr.d;
  s->dv = pl->pr.dv;
  s->L = p->sparse_l;
  s->C = p->sparse_c;
  s->near = part_params(p);
  s->far = part_params(p);
  s->far.sinks = NULL;
  s->seqs = split_alloc(&s->ar, (size_t)s->nseq, sizeof(split_seq));
  if (!s->seqs)
    return ATTN_ERR_OUT_OF_MEMORY;
  for (int64_t b = 0; b < s->nseq; b++)
    seq_of(pl, b, &s->seqs[b]);
  const attn_status st = s->fixed ? build_fixed(s) : build_strided(s);
  return st == ATTN_OK ? far_bias_mask(s) : st;
}
