/* Validation of attn_params: every check that keeps bad input from
 * crashing or silently computing garbage. Fills attn_problem. */
#include "core/internal.h"

#include <math.h>

#define FAIL(st, ...) return attn_fail(p, (st), __VA_ARGS__)

static const char *const names[] = {"q", "k", "v", "o", "bias", "mask"};

static int is_storage(attn_dtype d) {
  return d == ATTN_DTYPE_F32 || d == ATTN_DTYPE_BF16 || d == ATTN_DTYPE_F16;
}

/* Elements of axis i in memory: for the quantised dtypes the last axis
 * holds shape[3] / 32 blocks (rounded up: the extent stays an upper bound
 * before head_dim is checked). */
static int64_t axis_elems(const attn_tensor *t, int i) {
  const int64_t blk = attn_dtype_block(t->dtype);
  if (i == 3 && blk > 1)
    return (t->shape[3] + blk - 1) / blk;
  return t->shape[i];
}

/* Byte range [lo, hi) touched by t; returns 0 on overflow. */
int attn_tensor_extent(const attn_tensor *t, uintptr_t *lo, uintptr_t *hi) {
  int64_t last = 0;
  for (int i = 0; i < 4; i++) {
    int64_t term;
    if (__builtin_mul_overflow(axis_elems(t, i) - 1, t->stride[i], &term) ||
        __builtin_add_overflow(last, term, &last))
      return 0;
  }
  int64_t bytes;
  if (__builtin_add_overflow(last, 1, &bytes) ||
      __builtin_mul_overflow(bytes, (int64_t)attn_dtype_size(t->dtype), &bytes))
    return 0;
  uintptr_t start = (uintptr_t)t->data;
  if ((uint64_t)bytes > UINTPTR_MAX - start)
    return 0;
  *lo = start;
  *hi = start + (uintptr_t)bytes;
  return 1;
}

static attn_status check_view(const attn_params *p, const attn_tensor *t,
                              int which) {
  for (int i = 0; i < 4; i++) {
    if (t->shape[i] <= 0)
      FAIL(ATTN_ERR_INVALID_SHAPE, "%s.shape[%d] = %lld must be > 0",
           names[which], i, (long long)t->shape[i]);
    if (t->stride[i] < 0)
      FAIL(ATTN_ERR_INVALID_STRIDE, "%s.stride[%d] = %lld must be >= 0",
           names[which], i, (long long)t->stride[i]);
  }
  if (attn_dtype_is_quant(t->dtype)) {
    if (t->shape[3] % ATTN_QBLOCK != 0)
      FAIL(ATTN_ERR_HEAD_DIM,
           "%s is quantised (%s): its head_dim (%lld) must be a multiple of "
           "%d",
           names[which], t->dtype == ATTN_DTYPE_Q8_0 ? "q8_0" : "q4_0",
           (long long)t->shape[3], ATTN_QBLOCK);
    if (t->stride[3] != 1)
      FAIL(ATTN_ERR_INVALID_STRIDE,
           "%s is quantised: stride[3] (%lld) must be 1 (a row's blocks "
           "adjacent; strides count blocks)",
           names[which], (long long)t->stride[3]);
  }
  uintptr_t lo, hi;
  int64_t count = 1;
  for (int i = 0; i < 4; i++)
    if (__builtin_mul_overflow(count, t->shape[i], &count))
      FAIL(ATTN_ERR_OVERFLOW, "%s has more than 2^63 elements", names[which]);
  if (!attn_tensor_extent(t, &lo, &hi))
    FAIL(ATTN_ERR_OVERFLOW, "%s: shape x stride overflows 64 bits",
         names[which]);
  return ATTN_OK;
}

/* No two index tuples of t may reach the same element (outputs only). */
int attn_tensor_self_aliases(const attn_tensor *t) {
  int ord[4] = {0, 1, 2, 3};
  for (int i = 1; i < 4; i++) /* sort axes by stride */
    for (int j = i; j > 0 && t->stride[ord[j]] < t->stride[ord[j - 1]]; j--) {
      int tmp = ord[j];
      ord[j] = ord[j - 1];
      ord[j - 1] = tmp;
    }
  int64_t span = 1; /* elements covered by the faster axes */
  for (int i = 0; i < 4; i++) {
    const int a = ord[i];
    const int64_t n = axis_elems(t, a);
    if (n == 1)
      continue;
    if (t->stride[a] < span)
      return 1;
    span = t->stride[a] * (n - 1) + span; /* no overflow: checked */
  }
  return 0;
}

static int overlaps(uintptr_t alo, uintptr_t ahi, uintptr_t blo,
                    uintptr_t bhi) {
  return alo < bhi && blo < ahi;
}

static attn_status check_broadcast(const attn_params *p, const attn_tensor *t,
                                   int which, attn_dtype want,
                                   const attn_problem *pr) {
  if (t->dtype != want)
    FAIL(ATTN_ERR_INVALID_DTYPE, "%s must be %s", names[which],
         want == ATTN_DTYPE_F32 ? "f32" : "bool");
  attn_status st = check_view(p, t, which);
  if (st != ATTN_OK)
    return st;
  const int64_t full[4] = {pr->batch, pr->hq, pr->sq_max, pr->sk_max};
  static const char *const ax[4] = {"batch", "heads_q", "seq_q", "seq_k"};
  for (int i = 0; i < 4; i++) {
    const int64_t n = t->shape[i];
    /* With packed batches, rows are indexed by position inside their
     * sequence, so a longer axis is fine. */
    const int ok =
        n == 1 || n == full[i] || (pr->varlen && i >= 2 && n >= full[i]);
    if (!ok)
      FAIL(ATTN_ERR_INVALID_SHAPE,
           "%s.shape[%d] = %lld does not broadcast to %s = %lld", names[which],
           i, (long long)n, ax[i], (long long)full[i]);
  }
  return ATTN_OK;
}

/* Operands present, storage dtypes, head dims >= 1, valid views. */
static attn_status check_operands(const attn_params *p) {
  const attn_tensor *qkvo[4] = {&p->q, &p->k, &p->v, &p->o};
  for (int i = 0; i < 4; i++)
    if (!qkvo[i]->data)
      FAIL(ATTN_ERR_NULL_POINTER, "%s.data is NULL", names[i]);
  for (int i = 0; i < 4; i++) {
    const attn_dtype dt = qkvo[i]->dtype;
    if (attn_dtype_is_quant(dt) && (i == 0 || i == 3))
      FAIL(ATTN_ERR_INVALID_DTYPE,
           "%s.dtype (%d) is quantised: only k and v may be q8_0 or q4_0",
           names[i], (int)dt);
    if (!is_storage(dt) && !attn_dtype_is_quant(dt))
      FAIL(ATTN_ERR_INVALID_DTYPE, "%s.dtype (%d) must be f32, bf16 or f16%s",
           names[i], (int)dt, i == 1 || i == 2 ? " (or q8_0, q4_0)" : "");
  }
  if (p->q.shape[3] == 0 || p->k.shape[3] == 0 || p->v.shape[3] == 0)
    FAIL(ATTN_ERR_HEAD_DIM, "head_dim (q %lld, k %lld, v %lld) must be >= 1",
         (long long)p->q.shape[3], (long long)p->k.shape[3],
         (long long)p->v.shape[3]);
  for (int i = 0; i < 4; i++) {
    attn_status st = check_view(p, qkvo[i], i);
    if (st != ATTN_OK)
      return st;
  }

  return ATTN_OK;
}

static attn_status check_scalars(const attn_params *p) {
  if (!isfinite(p->scale))
    FAIL(ATTN_ERR_INVALID_SCALE, "scale (%g) must be finite", (double)p->scale);
  if (!isfinite(p->softcap) || p->softcap < 0)
    FAIL(ATTN_ERR_INVALID_SOFTCAP, "softcap (%g) must be finite and >= 0",
         (double)p->softcap);
  if (p->window_left < -1 || p->window_right < -1)
    FAIL(ATTN_ERR_INVALID_WINDOW,
         "window (%lld, %lld): each bound must be >= -1",
         (long long)p->window_left, (long long)p->window_right);
  if (p->causal != ATTN_CAUSAL_NONE && p->causal != ATTN_CAUSAL_BOTTOM_RIGHT &&
      p->causal != ATTN_CAUSAL_TOP_LEFT)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "causal (%d) is not an attn_causal value",
         (int)p->causal);
  if (attn_isa_name(p->isa) == NULL)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "isa (%d) is not an attn_isa value",
         (int)p->isa);
  if (p->num_threads < 0)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "num_threads (%d) must be >= 0",
         p->num_threads);
  if (p->workspace && p->workspace_size == 0)
    FAIL(ATTN_ERR_WORKSPACE_TOO_SMALL, "workspace given with size 0");

  return ATTN_OK;
}

/* Heads, head dims, batch and sequence lengths: fills pr. */
/* Packed variable-length batches: cu_seqlens and the longest sequences. */
static attn_status check_varlen(const attn_params *p, attn_problem *pr) {
  const attn_tensor *q = &p->q, *k = &p->k;
  pr->varlen = 1;
  if (p->varlen_batch <= 0)
    FAIL(ATTN_ERR_INVALID_SEQLENS,
         "varlen_batch (%lld) must be > 0 with cu_seqlens",
         (long long)p->varlen_batch);
  if (q->shape[0] != 1)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "with cu_seqlens, q/k/v/o must have batch 1 (got %lld)",
         (long long)q->shape[0]);
  pr->batch = p->varlen_batch;
  const int32_t *cq = p->cu_seqlens_q, *ck = p->cu_seqlens_k;
  if (cq[0] != 0 || ck[0] != 0)
    FAIL(ATTN_ERR_INVALID_SEQLENS, "cu_seqlens must start at 0 (got %d, %d)",
         (int)cq[0], (int)ck[0]);
  pr->sq_max = 0;
  pr->sk_max = 0;
  for (int64_t b = 0; b < pr->batch; b++) {
    if (cq[b + 1] < cq[b] || ck[b + 1] < ck[b])
      FAIL(ATTN_ERR_INVALID_SEQLENS,
           "cu_seqlens must be non-decreasing (at index %lld)",
           (long long)b + 1);
    pr->sq_max = ATTN_MAX(pr->sq_max, (int64_t)cq[b + 1] - cq[b]);
    pr->sk_max = ATTN_MAX(pr->sk_max, (int64_t)ck[b + 1] - ck[b]);
  }
  if (cq[pr->batch] > q->shape[1])
    FAIL(ATTN_ERR_INVALID_SEQLENS,
         "cu_seqlens_q ends at %d, beyond the %lld rows of q",
         (int)cq[pr->batch], (long long)q->shape[1]);
  if (ck[pr->batch] > k->shape[1])
    FAIL(ATTN_ERR_INVALID_SEQLENS,
         "cu_seqlens_k ends at %d, beyond the %lld rows of k",
         (int)ck[pr->batch], (long long)k->shape[1]);
  return ATTN_OK;
}

static attn_status check_sizes(const attn_params *p, attn_problem *pr) {
  const attn_tensor *q = &p->q, *k = &p->k, *v = &p->v, *o = &p->o;
  /* heads and head dims */
  const int64_t hq = q->shape[2], hk = k->shape[2];
  if (v->shape[2] != hk)
    FAIL(ATTN_ERR_INVALID_SHAPE, "v heads (%lld) must equal k heads (%lld)",
         (long long)v->shape[2], (long long)hk);
  if (o->shape[2] != hq)
    FAIL(ATTN_ERR_INVALID_SHAPE, "o heads (%lld) must equal q heads (%lld)",
         (long long)o->shape[2], (long long)hq);
  if (hq % hk != 0)
    FAIL(ATTN_ERR_HEAD_RATIO,
         "q heads (%lld) must be a multiple of k/v heads (%lld)", (long long)hq,
         (long long)hk);
  const int64_t d = q->shape[3], dv = v->shape[3];
  if (k->shape[3] != d)
    FAIL(ATTN_ERR_HEAD_DIM, "q head_dim (%lld) must equal k head_dim (%lld)",
         (long long)d, (long long)k->shape[3]);
  if (d > ATTN_MAX_HEAD_DIM || dv > ATTN_MAX_HEAD_DIM)
    FAIL(ATTN_ERR_HEAD_DIM, "head_dim (%lld, v %lld) must be at most %d",
         (long long)d, (long long)dv, ATTN_MAX_HEAD_DIM);
  if (o->shape[3] != dv)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "o head_dim (%lld) must equal v head_dim (%lld)",
         (long long)o->shape[3], (long long)dv);

  /* batch and sequence lengths */
  if (k->shape[1] != v->shape[1])
    FAIL(ATTN_ERR_INVALID_SHAPE, "k seq (%lld) must equal v seq (%lld)",
         (long long)k->shape[1], (long long)v->shape[1]);
  if (o->shape[1] != q->shape[1])
    FAIL(ATTN_ERR_INVALID_SHAPE, "o seq (%lld) must equal q seq (%lld)",
         (long long)o->shape[1], (long long)q->shape[1]);
  if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] ||
      o->shape[0] != q->shape[0])
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "batch sizes differ: q %lld, k %lld, v %lld, o %lld",
         (long long)q->shape[0], (long long)k->shape[0], (long long)v->shape[0],
         (long long)o->shape[0]);

  pr->p = p;
  pr->hq = hq;
  pr->hk = hk;
  pr->group = hq / hk;
  pr->d = d;
  pr->dv = dv;
  pr->varlen = 0;
  if ((p->cu_seqlens_q == NULL) != (p->cu_seqlens_k == NULL))
    FAIL(ATTN_ERR_INVALID_SEQLENS,
         "cu_seqlens_q and cu_seqlens_k must be given together");
  if (p->cu_seqlens_q) {
    attn_status st = check_varlen(p, pr);
    if (st != ATTN_OK)
      return st;
  } else {
    if (p->varlen_batch != 0)
      FAIL(ATTN_ERR_INVALID_SEQLENS,
           "varlen_batch (%lld) set without cu_seqlens",
           (long long)p->varlen_batch);
    pr->batch = q->shape[0];
    pr->sq_max = q->shape[1];
    pr->sk_max = k->shape[1];
  }
  if (p->kv_lens) {
    for (int64_t b = 0; b < pr->batch; b++) {
      const int64_t cap =
          pr->varlen ? (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b]
                     : k->shape[1];
      if (p->kv_lens[b] < 0 || p->kv_lens[b] > cap)
        FAIL(ATTN_ERR_INVALID_SEQLENS, "kv_lens[%lld] = %d must be in 0..%lld",
             (long long)b, (int)p->kv_lens[b], (long long)cap);
    }
  }

  return ATTN_OK;
}

attn_status attn_validate(const attn_params *p, attn_problem *pr) {
  if (!p)
    return ATTN_ERR_NULL_POINTER;
  attn_status st0 = check_operands(p);
  if (st0 == ATTN_OK)
    st0 = check_scalars(p);
  if (st0 == ATTN_OK)
    st0 = check_sizes(p, pr);
  if (st0 != ATTN_OK)
    return st0;
  const attn_tensor *q = &p->q, *k = &p->k, *v = &p->v, *o = &p->o;
  const int64_t d = q->shape[3];
  /* scale */
  pr->scale = p->scale != 0.0f ? p->scale : (float)(1.0 / sqrt((double)d));

  /* optional tensors */
  if (p->bias.data) {
    attn_status st = check_broadcast(p, &p->bias, 4, ATTN_DTYPE_F32, pr);
    if (st != ATTN_OK)
      return st;
  }
  if (p->mask.data) {
    attn_status st = check_broadcast(p, &p->mask, 5, ATTN_DTYPE_BOOL, pr);
    if (st != ATTN_OK)
      return st;
  }

  attn_status sto = attn_validate_opts(p, pr);
  if (sto != ATTN_OK)
    return sto;

  /* outputs: no self-aliasing, no overlap with any input */
  if (attn_tensor_self_aliases(o))
    FAIL(ATTN_ERR_INVALID_STRIDE,
         "o strides make different elements share memory");
  uintptr_t olo = 0, ohi = 0, lo = 0, hi = 0;
  attn_tensor_extent(o, &olo, &ohi);
  sto = attn_check_aux_overlap(p, pr, olo, ohi, "o");
  if (sto != ATTN_OK)
    return sto;
  const attn_tensor *ins[5] = {q, k, v, &p->bias, &p->mask};
  const int in_names[5] = {0, 1, 2, 4, 5};
  for (int i = 0; i < 5; i++) {
    if (!ins[i]->data)
      continue;
    attn_tensor_extent(ins[i], &lo, &hi);
    if (overlaps(olo, ohi, lo, hi))
      FAIL(ATTN_ERR_OVERLAP, "o overlaps %s in memory", names[in_names[i]]);
  }
  if (p->lse) {
    int64_t n;
    const int64_t lb = pr->varlen ? 1 : pr->batch;
    if (__builtin_mul_overflow(lb, pr->hq, &n) ||
        __builtin_mul_overflow(n, pr->varlen ? q->shape[1] : pr->sq_max, &n) ||
        __builtin_mul_overflow(n, (int64_t)sizeof(float), &n))
      FAIL(ATTN_ERR_OVERFLOW, "lse size overflows 64 bits");
    const uintptr_t llo = (uintptr_t)p->lse;
    if ((uint64_t)n > UINTPTR_MAX - llo)
      FAIL(ATTN_ERR_OVERFLOW, "lse size overflows the address space");
    const uintptr_t lhi = llo + (uintptr_t)n;
    if (overlaps(llo, lhi, olo, ohi))
      FAIL(ATTN_ERR_OVERLAP, "lse overlaps o in memory");
    sto = attn_check_aux_overlap(p, pr, llo, lhi, "lse");
    if (sto != ATTN_OK)
      return sto;
    for (int i = 0; i < 5; i++) {
      if (!ins[i]->data)
        continue;
      attn_tensor_extent(ins[i], &lo, &hi);
      if (overlaps(llo, lhi, lo, hi))
        FAIL(ATTN_ERR_OVERLAP, "lse overlaps %s in memory", names[in_names[i]]);
    }
  }
  return ATTN_OK;
}

void attn_problem_seq(const attn_problem *pr, int64_t b, attn_seq *s) {
  const attn_params *p = pr->p;
  s->b = b;
  if (pr->varlen) {
    s->q_bat = 0;
    s->q_off = p->cu_seqlens_q[b];
    s->k_off = p->cu_seqlens_k[b];
    s->sq = (int64_t)p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    s->sk = (int64_t)p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
  } else {
    s->q_bat = b;
    s->q_off = 0;
    s->k_off = 0;
    s->sq = p->q.shape[1];
    s->sk = p->k.shape[1];
  }
  if (p->kv_lens)
    s->sk = p->kv_lens[b];
}
