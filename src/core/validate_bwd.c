/* Validation of the backward's operands (attn_backward): the forward's
 * checks (attn_validate) on q, k, v, o and every option, then dout, the
 * gradients dq, dk, dv, the optional dbias, and the LSE, which the backward
 * reads. */
#include "core/internal.h"

#define FAIL(st, ...) return attn_fail(p, (st), __VA_ARGS__)

static int is_storage(attn_dtype d) {
  return d == ATTN_DTYPE_F32 || d == ATTN_DTYPE_BF16 || d == ATTN_DTYPE_F16;
}

static int overlaps(uintptr_t alo, uintptr_t ahi, uintptr_t blo,
                    uintptr_t bhi) {
  return alo < bhi && blo < ahi;
}

/* Sizes > 0, strides >= 0, no overflow; shape equal to like's. */
static attn_status check_like(const attn_params *p, const attn_tensor *t,
                              const char *name, const attn_tensor *like,
                              const char *like_name) {
  for (int i = 0; i < 4; i++) {
    if (t->shape[i] <= 0)
      FAIL(ATTN_ERR_INVALID_SHAPE, "%s.shape[%d] = %lld must be > 0", name, i,
           (long long)t->shape[i]);
    if (t->stride[i] < 0)
      FAIL(ATTN_ERR_INVALID_STRIDE, "%s.stride[%d] = %lld must be >= 0", name,
           i, (long long)t->stride[i]);
  }
  int64_t count = 1;
  for (int i = 0; i < 4; i++)
    if (__builtin_mul_overflow(count, t->shape[i], &count))
      FAIL(ATTN_ERR_OVERFLOW, "%s has more than 2^63 elements", name);
  uintptr_t lo, hi;
  if (!attn_tensor_extent(t, &lo, &hi))
    FAIL(ATTN_ERR_OVERFLOW, "%s: shape x stride overflows 64 bits", name);
  for (int i = 0; i < 4; i++)
    if (t->shape[i] != like->shape[i])
      FAIL(ATTN_ERR_INVALID_SHAPE,
           "%s.shape[%d] = %lld must equal %s.shape[%d] = %lld", name, i,
           (long long)t->shape[i], like_name, i, (long long)like->shape[i]);
  return ATTN_OK;
}

/* drel_bias (optional out, f32 [rel_buckets, hq]): needs rel_bias and
 * may overlap no input or output (the n ranges lo/hi, then the small
 * arrays and rel_bias through attn_check_aux_overlap). */
static attn_status check_drel(const attn_params *p, const attn_problem *pr,
                              const uintptr_t *lo, const uintptr_t *hi,
                              const char *const *name, int n) {
  if (!p->drel_bias)
    return ATTN_OK;
  if (!p->rel_bias)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "drel_bias is set but there is no rel_bias (T5 table)");
  /* attn_validate_opts checked that this size fits */
  const uintptr_t dlo = (uintptr_t)p->drel_bias;
  const uintptr_t dhi =
      dlo + (uintptr_t)p->rel_buckets * (uintptr_t)pr->hq * sizeof(float);
  attn_status st = attn_check_aux_overlap(p, pr, dlo, dhi, "drel_bias");
  if (st != ATTN_OK)
    return st;
  for (int j = 0; j < n; j++)
    if (overlaps(dlo, dhi, lo[j], hi[j]))
      FAIL(ATTN_ERR_OVERLAP, "drel_bias overlaps %s in memory", name[j]);
  return ATTN_OK;
}

/* dsinks (optional out, f32 [hq]): needs sinks and may overlap no input
 * or output (as check_drel). */
static attn_status check_dsinks(const attn_params *p, const attn_problem *pr,
                                const uintptr_t *lo, const uintptr_t *hi,
                                const char *const *name, int n) {
  if (!p->dsinks)
    return ATTN_OK;
  if (!p->sinks)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "dsinks is set but there are no sinks");
  const uintptr_t dlo = (uintptr_t)p->dsinks;
  const uintptr_t dhi = dlo + (uintptr_t)pr->hq * sizeof(float);
  attn_status st = attn_check_aux_overlap(p, pr, dlo, dhi, "dsinks");
  if (st != ATTN_OK)
    return st;
  for (int j = 0; j < n; j++)
    if (overlaps(dlo, dhi, lo[j], hi[j]))
      FAIL(ATTN_ERR_OVERLAP, "dsinks overlaps %s in memory", name[j]);
  if (p->drel_bias) {
    const uintptr_t rlo = (uintptr_t)p->drel_bias;
    const uintptr_t rhi =
        rlo + (uintptr_t)p->rel_buckets * (uintptr_t)pr->hq * sizeof(float);
    if (overlaps(dlo, dhi, rlo, rhi))
      FAIL(ATTN_ERR_OVERLAP, "dsinks overlaps drel_bias in memory");
  }
  return ATTN_OK;
}

attn_status attn_validate_bwd(const attn_params *p, attn_problem *pr) {
  attn_status st = attn_validate(p, pr);
  if (st != ATTN_OK)
    return st;
  if (!p->lse)
    FAIL(ATTN_ERR_NULL_POINTER,
         "lse is NULL: the backward needs the forward's LSE as input");
  const attn_tensor *grads[5] = {&p->dout, &p->dq, &p->dk, &p->dv, &p->dbias};
  static const char *const gname[5] = {"dout", "dq", "dk", "dv", "dbias"};
  const attn_tensor *like[5] = {&p->o, &p->q, &p->k, &p->v, &p->bias};
  static const char *const lname[5] = {"o", "q", "k", "v", "bias"};
  const int n = p->dbias.data ? 5 : 4;
  for (int i = 0; i < 4; i++)
    if (!grads[i]->data)
      FAIL(ATTN_ERR_NULL_POINTER, "%s.data is NULL", gname[i]);
  if (p->dbias.data && !p->bias.data)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "dbias is set but there is no bias");
  if (p->score_mod && !p->score_mod_grad)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "score_mod is set without score_mod_grad: the backward needs its "
         "derivative");
  for (int i = 0; i < 4; i++)
    if (!is_storage(grads[i]->dtype))
      FAIL(ATTN_ERR_INVALID_DTYPE, "%s.dtype (%d) must be f32, bf16 or f16%s",
           gname[i], (int)grads[i]->dtype,
           attn_dtype_is_quant(grads[i]->dtype)
               ? " (never quantised: the backward is straight-through)"
               : "");
  if (p->dbias.data && p->dbias.dtype != ATTN_DTYPE_F32)
    FAIL(ATTN_ERR_INVALID_DTYPE, "dbias.dtype (%d) must be f32",
         (int)p->dbias.dtype);
  for (int i = 0; i < n; i++) {
    st = check_like(p, grads[i], gname[i], like[i], lname[i]);
    if (st != ATTN_OK)
      return st;
  }

  /* Outputs (dq, dk, dv, dbias): no self-aliasing, no overlap with each
   * other or with any input. */
  uintptr_t lo[12], hi[12];
  const char *name[12];
  int m = 0;
  const attn_tensor *ins[7] = {&p->q,    &p->k,    &p->v,   &p->o,
                               &p->dout, &p->bias, &p->mask};
  static const char *const iname[7] = {"q",    "k",    "v",   "o",
                                       "dout", "bias", "mask"};
  for (int i = 0; i < 7; i++)
    if (ins[i]->data) {
      attn_tensor_extent(ins[i], &lo[m], &hi[m]);
      name[m++] = iname[i];
    }
  {
    int64_t cnt;
    const int64_t lb = pr->varlen ? 1 : pr->batch;
    /* no overflow: attn_validate checked this size */
    cnt = lb * pr->hq * (pr->varlen ? p->q.shape[1] : pr->sq_max);
    lo[m] = (uintptr_t)p->lse;
    hi[m] = lo[m] + (uintptr_t)cnt * sizeof(float);
    name[m++] = "lse";
  }
  for (int i = 1; i < n; i++) {
    if (attn_tensor_self_aliases(grads[i]))
      FAIL(ATTN_ERR_INVALID_STRIDE,
           "%s strides make different elements share memory", gname[i]);
    uintptr_t glo, ghi;
    attn_tensor_extent(grads[i], &glo, &ghi);
    st = attn_check_aux_overlap(p, pr, glo, ghi, gname[i]);
    if (st != ATTN_OK)
      return st;
    for (int j = 0; j < m; j++)
      if (overlaps(glo, ghi, lo[j], hi[j]))
        FAIL(ATTN_ERR_OVERLAP, "%s overlaps %s in memory", gname[i], name[j]);
    lo[m] = glo;
    hi[m] = ghi;
    name[m++] = gname[i];
  }
  st = check_drel(p, pr, lo, hi, name, m);
  if (st != ATTN_OK)
    return st;
  return check_dsinks(p, pr, lo, hi, name, m);
}
