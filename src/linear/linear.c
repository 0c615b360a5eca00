/* Linear attention (attn/linear.h): the sized-struct ABI of
 * attn_linear_params, the checks, the workspace, the threads, and the
 * recurrent state. The maths of one work item is in linear_body.h,
 * compiled per ISA (linear_generic.c, src/kernels/avx2/linear_avx2.c).
 *
 * Shapes (B batch, SQ/SK rows, HQ/HK heads, D, DV dims):
 *   q, dout-shaped: q [B, SQ, HQ, D], o, dout [B, SQ, HQ, DV], dq like q
 *   k [B, SK, HK, D], v [B, SK, HK, DV], dk like k, dv like v
 * all f32|bf16|f16 with any non-negative strides. */
#include "linear/linear_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* ABI                                                                    */
/* ---------------------------------------------------------------------- */

/* Every attn_linear_params size a released header declared (0.5 is the
 * first), oldest first. */
static const size_t linear_sizes[] = {sizeof(attn_linear_params)};

static int size_known(size_t size) {
  for (size_t i = 0; i < sizeof linear_sizes / sizeof linear_sizes[0]; i++)
    if (linear_sizes[i] == size)
      return 1;
  return 0;
}

static void defaults(attn_linear_params *p) {
  memset(p, 0, sizeof *p);
  p->q.dtype = p->k.dtype = p->v.dtype = p->o.dtype = ATTN_DTYPE_F32;
  p->dout.dtype = p->dq.dtype = p->dk.dtype = p->dv.dtype = ATTN_DTYPE_F32;
  p->causal = ATTN_CAUSAL_NONE;
}

void attn_linear_params_init_sized(attn_linear_params *p, size_t size) {
  if (!p || !size_known(size))
    return; /* nothing is written into memory of unknown size */
  attn_linear_params full;
  defaults(&full);
  memcpy(p, &full, size);
}

/* lin_fail(s, st, ...): the reason into s's error_message (s not NULL). */
#define lin_fail(s, st, ...)                                                   \
  attn_fail_to((s)->error_message, (s)->error_message_size, (st), __VA_ARGS__)

#define FAIL(st, ...) return lin_fail(p, (st), __VA_ARGS__)

/* Copies the caller's struct of `size` bytes over defaults into *out. */
static attn_status import(const attn_linear_params *p, size_t size,
                          attn_linear_params *out) {
  if (!p)
    return ATTN_ERR_NULL_POINTER;
  if (!size_known(size)) {
    /* A newer header appends fields: the message buffer is still where
     * this release has it. An older or garbled size: nowhere safe. */
    if (size > sizeof(attn_linear_params))
      lin_fail(p, ATTN_ERR_ABI,
               "attn_linear_params is %zu bytes, but libattn %s knows %zu "
               "(this release): built against a newer attn.h?",
               size, attn_version_string(), sizeof(attn_linear_params));
    return ATTN_ERR_ABI;
  }
  defaults(out);
  memcpy(out, p, size);
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* Checks                                                                 */
/* ---------------------------------------------------------------------- */

/* The tensors of a call, by role. */
enum { T_Q, T_K, T_V, T_O, T_DOUT, T_DQ, T_DK, T_DV, N_T };
static const char *const t_name[N_T] = {"q",    "k",  "v",  "o",
                                        "dout", "dq", "dk", "dv"};

static const attn_tensor *tensor_of(const attn_linear_params *p, int r) {
  const attn_tensor *t[N_T] = {&p->q,    &p->k,  &p->v,  &p->o,
                               &p->dout, &p->dq, &p->dk, &p->dv};
  return t[r];
}

/* A present, valid view of a storage dtype. */
static attn_status check_view(const attn_linear_params *p, int r) {
  const attn_tensor *t = tensor_of(p, r);
  const char *w = t_name[r];
  if (!t->data)
    FAIL(ATTN_ERR_NULL_POINTER, "%s.data is NULL", w);
  if (t->dtype != ATTN_DTYPE_F32 && t->dtype != ATTN_DTYPE_BF16 &&
      t->dtype != ATTN_DTYPE_F16)
    FAIL(ATTN_ERR_INVALID_DTYPE,
         "%s.dtype (%d) must be f32, bf16 or f16 (linear attention reads "
         "no quantised or boolean tensor)",
         w, (int)t->dtype);
  for (int i = 0; i < 4; i++) {
    if (t->shape[i] <= 0)
      FAIL(ATTN_ERR_INVALID_SHAPE, "%s.shape[%d] = %lld must be > 0", w, i,
           (long long)t->shape[i]);
    if (t->stride[i] < 0)
      FAIL(ATTN_ERR_INVALID_STRIDE, "%s.stride[%d] = %lld must be >= 0", w, i,
           (long long)t->stride[i]);
  }
  uintptr_t lo, hi;
  if (!attn_tensor_extent(t, &lo, &hi))
    FAIL(ATTN_ERR_OVERFLOW, "%s: shape x stride overflows 64 bits", w);
  if (r == T_O || r >= T_DQ) {
    if (attn_tensor_self_aliases(t))
      FAIL(ATTN_ERR_INVALID_STRIDE,
           "%s strides make different elements share memory", w);
  }
  return ATTN_OK;
}

/* t's axis i equals want (named what, from tensor ref's axis). */
static attn_status same_axis(const attn_linear_params *p, int r, int i,
                             int64_t want, const char *what, int ref,
                             attn_status st) {
  const int64_t got = tensor_of(p, r)->shape[i];
  if (got != want)
    FAIL(st, "%s.shape[%d] (%s) = %lld differs from %s.shape[%d] = %lld",
         t_name[r], i, what, (long long)got, t_name[ref], i, (long long)want);
  return ATTN_OK;
}

/* Shapes of q, k, v and the role r tensors sized like q (with dim or
 * dim_v) or like k/v. */
static attn_status check_shapes(const attn_linear_params *p, lin_dims *d) {
  const attn_tensor *q = &p->q, *k = &p->k, *v = &p->v;
  d->batch = q->shape[0];
  d->sq = q->shape[1];
  d->hq = q->shape[2];
  d->d = q->shape[3];
  d->sk = k->shape[1];
  d->hk = k->shape[2];
  d->dv = v->shape[3];
  attn_status st = ATTN_OK;
  const attn_status S = ATTN_ERR_INVALID_SHAPE;
  if (st == ATTN_OK)
    st = same_axis(p, T_K, 0, d->batch, "batch", T_Q, S);
  if (st == ATTN_OK)
    st = same_axis(p, T_V, 0, d->batch, "batch", T_Q, S);
  if (st == ATTN_OK)
    st = same_axis(p, T_K, 3, d->d, "dim", T_Q, ATTN_ERR_HEAD_DIM);
  if (st == ATTN_OK)
    st = same_axis(p, T_V, 1, d->sk, "seq_k", T_K, S);
  if (st == ATTN_OK)
    st = same_axis(p, T_V, 2, d->hk, "heads_kv", T_K, S);
  if (st != ATTN_OK)
    return st;
  if (d->hq % d->hk != 0)
    FAIL(ATTN_ERR_HEAD_RATIO,
         "q heads (%lld) must be a multiple of k/v "
         "heads (%lld)",
         (long long)d->hq, (long long)d->hk);
  if (d->d > ATTN_MAX_HEAD_DIM || d->dv > ATTN_MAX_HEAD_DIM)
    FAIL(ATTN_ERR_HEAD_DIM, "head dims (q/k %lld, v %lld) must be <= %d",
         (long long)d->d, (long long)d->dv, ATTN_MAX_HEAD_DIM);
  d->group = d->hq / d->hk;
  return ATTN_OK;
}

/* o, dout and dq shaped from q; dk, dv from k and v. */
static attn_status check_like(const attn_linear_params *p, int r, int ref,
                              int64_t last) {
  static const char *const axis[4] = {"batch", "seq", "heads", "dim"};
  const attn_tensor *t = tensor_of(p, r), *s = tensor_of(p, ref);
  for (int i = 0; i < 4; i++) {
    const int64_t want = i == 3 ? last : s->shape[i];
    if (t->shape[i] != want)
      FAIL(ATTN_ERR_INVALID_SHAPE,
           "%s.shape[%d] (%s) = %lld must be %lld (as %s%s)", t_name[r], i,
           axis[i], (long long)t->shape[i], (long long)want,
           i == 3 && last != s->shape[3] ? "v's dim_v, with the rows of " : "",
           t_name[ref]);
  }
  return ATTN_OK;
}

/* No output (roles outs) overlaps an input (ins) or an earlier output. */
static attn_status check_overlaps(const attn_linear_params *p, const int *ins,
                                  int nin, const int *outs, int nout) {
  for (int oi = 0; oi < nout; oi++) {
    uintptr_t alo, ahi;
    attn_tensor_extent(tensor_of(p, outs[oi]), &alo, &ahi); /* checked */
    for (int k = 0; k < nin + oi; k++) {
      const int r = k < nin ? ins[k] : outs[k - nin];
      uintptr_t blo, bhi;
      attn_tensor_extent(tensor_of(p, r), &blo, &bhi);
      if (alo < bhi && blo < ahi)
        FAIL(ATTN_ERR_OVERLAP, "%s overlaps %s in memory", t_name[outs[oi]],
             t_name[r]);
    }
  }
  return ATTN_OK;
}

static attn_status check_common(const attn_linear_params *p, lin_dims *d) {
  if (p->num_threads < 0)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "num_threads (%d) must be >= 0",
         p->num_threads);
  if (p->causal != ATTN_CAUSAL_NONE && p->causal != ATTN_CAUSAL_BOTTOM_RIGHT &&
      p->causal != ATTN_CAUSAL_TOP_LEFT)
    FAIL(ATTN_ERR_INVALID_ARGUMENT,
         "causal (%d) must be ATTN_CAUSAL_NONE (0), _BOTTOM_RIGHT (1) or "
         "_TOP_LEFT (2)",
         (int)p->causal);
  attn_status st = ATTN_OK;
  for (int r = T_Q; r <= T_V && st == ATTN_OK; r++)
    st = check_view(p, r);
  if (st == ATTN_OK)
    st = check_shapes(p, d);
  if (st != ATTN_OK)
    return st;
  d->causal = p->causal != ATTN_CAUSAL_NONE;
  d->off = p->causal == ATTN_CAUSAL_BOTTOM_RIGHT ? d->sk - d->sq : 0;
  return ATTN_OK;
}

static attn_status check_fwd(const attn_linear_params *p, lin_dims *d) {
  attn_status st = check_common(p, d);
  if (st == ATTN_OK)
    st = check_view(p, T_O);
  if (st == ATTN_OK)
    st = check_like(p, T_O, T_Q, d->dv);
  static const int ins[] = {T_Q, T_K, T_V}, outs[] = {T_O};
  if (st == ATTN_OK)
    st = check_overlaps(p, ins, 3, outs, 1);
  return st;
}

static attn_status check_bwd(const attn_linear_params *p, lin_dims *d) {
  attn_status st = check_common(p, d);
  for (int r = T_DOUT; r <= T_DV && st == ATTN_OK; r++)
    st = check_view(p, r);
  if (st == ATTN_OK)
    st = check_like(p, T_DOUT, T_Q, d->dv);
  if (st == ATTN_OK)
    st = check_like(p, T_DQ, T_Q, d->d);
  if (st == ATTN_OK)
    st = check_like(p, T_DK, T_K, d->d);
  if (st == ATTN_OK)
    st = check_like(p, T_DV, T_V, d->dv);
  static const int ins[] = {T_Q, T_K, T_V, T_DOUT}, outs[] = {T_DQ, T_DK, T_DV};
  if (st == ATTN_OK)
    st = check_overlaps(p, ins, 4, outs, 3);
  return st;
}

/* ---------------------------------------------------------------------- */
/* Threads and workspace                                                  */
/* ---------------------------------------------------------------------- */

typedef struct lin_job {
  const attn_linear_params *p;
  lin_dims d;
  int bwd;
  int64_t items;  /* forward: batch * hq; backward: batch * hk */
  char *scratch;  /* [threads][per] floats, 64-byte aligned    */
  size_t per;     /* bytes per thread (a multiple of 64)       */
  lin_item_fn fn; /* the ISA's work item                       */
} lin_job;

/* The call's thread count: as asked (or the context's), no more than the
 * items, and one thread for a call under about a million multiply-adds.
 * Any count gives the same bits. */
static int lin_threads(const attn_linear_params *p, attn_context *c,
                       const lin_dims *d, int bwd) {
  int64_t n = p->num_threads > 0 ? p->num_threads : attn_context_threads(c);
  const int64_t items = d->batch * (bwd ? d->hk : d->hq);
  const double work =
      (double)d->batch * (double)d->hq * (double)(d->sq + d->sk) *
      ((double)d->d * (double)d->dv + ATTN_LINEAR_CHUNK * 2.0 * (double)d->d);
  if (work < 1e6)
    n = 1;
  n = ATTN_MIN(n, items);
  return (int)ATTN_MAX((int64_t)1, ATTN_MIN(n, (int64_t)ATTN_MAX_THREADS));
}

static size_t per_thread_bytes(const lin_dims *d, int bwd) {
  const size_t b = lin_scratch_floats(d, bwd) * sizeof(float);
  return (b + ATTN_WORKSPACE_ALIGN - 1) / ATTN_WORKSPACE_ALIGN *
         ATTN_WORKSPACE_ALIGN;
}

static void worker(void *arg, attn_team *team, int tid, int nthreads) {
  (void)team;
  const lin_job *job = (const lin_job *)arg;
  float *scratch = (float *)(job->scratch + (size_t)tid * job->per);
  const int64_t lo = job->items * tid / nthreads,
                hi = job->items * (tid + 1) / nthreads;
  const int64_t heads = job->bwd ? job->d.hk : job->d.hq;
  for (int64_t it = lo; it < hi; it++)
    job->fn(job->p, &job->d, it / heads, it % heads, scratch);
}

/* The context, its failure reason through our message buffer. */
static attn_status resolve(attn_context *ctx, const attn_linear_params *p,
                           attn_context **c) {
  attn_params why;
  memset(&why, 0, sizeof why);
  why.error_message = p->error_message;
  why.error_message_size = p->error_message_size;
  return attn_context_resolve(ctx, &why, c);
}

static attn_status lin_workspace(attn_context *ctx,
                                 const attn_linear_params *user, size_t size,
                                 int bwd, size_t *bytes) {
  attn_linear_params p;
  attn_status st = import(user, size, &p);
  if (st != ATTN_OK)
    return st;
  if (!bytes)
    return lin_fail(&p, ATTN_ERR_NULL_POINTER, "bytes is NULL");
  lin_dims d;
  st = bwd ? check_bwd(&p, &d) : check_fwd(&p, &d);
  attn_context *c = NULL;
  if (st == ATTN_OK)
    st = resolve(ctx, &p, &c);
  if (st != ATTN_OK)
    return st;
  const int n = lin_threads(&p, c, &d, bwd);
  *bytes = (size_t)n * per_thread_bytes(&d, bwd) + ATTN_WORKSPACE_ALIGN;
  return ATTN_OK;
}

static attn_status lin_run(attn_context *ctx, const attn_linear_params *user,
                           size_t size, int bwd) {
  attn_linear_params p;
  attn_status st = import(user, size, &p);
  if (st != ATTN_OK)
    return st;
  lin_job job;
  memset(&job, 0, sizeof job);
  job.p = &p;
  job.bwd = bwd;
  st = bwd ? check_bwd(&p, &job.d) : check_fwd(&p, &job.d);
  attn_context *c = NULL;
  if (st == ATTN_OK)
    st = resolve(ctx, &p, &c);
  if (st != ATTN_OK)
    return st;
  /* the context's ISA (ATTN_ISA, attn_context_options.isa): AVX2 + FMA
   * code on AVX2 and AVX-512 machines, else the generic C */
  attn_isa isa = ATTN_ISA_GENERIC;
  if (attn_isa_resolve(c, ATTN_ISA_AUTO, &isa) != ATTN_OK)
    isa = ATTN_ISA_GENERIC;
  job.fn = bwd ? lin_backward_item_generic : lin_forward_item_generic;
#if defined(ATTN_HAVE_X86)
  if (isa != ATTN_ISA_GENERIC) /* avx2, avx512, avx512bf16 */
    job.fn = bwd ? lin_backward_item_avx2 : lin_forward_item_avx2;
#endif
  const int n = lin_threads(&p, c, &job.d, bwd);
  job.items = job.d.batch * (bwd ? job.d.hk : job.d.hq);
  job.per = per_thread_bytes(&job.d, bwd);
  const size_t need = (size_t)n * job.per + ATTN_WORKSPACE_ALIGN;
  /* attn_workspace_acquire reads workspace, workspace_size and the
   * message buffer of an attn_params */
  attn_params ws;
  memset(&ws, 0, sizeof ws);
  ws.workspace = p.workspace;
  ws.workspace_size = p.workspace_size;
  ws.error_message = p.error_message;
  ws.error_message_size = p.error_message_size;
  void *owned;
  st = attn_workspace_acquire(c, &ws, need, &owned, &job.scratch);
  if (st != ATTN_OK)
    return st;
  st = attn_team_run_ctx(c, n, worker, &job);
  attn_workspace_release(c, owned);
  if (st != ATTN_OK)
    return lin_fail(&p, st, "could not run the linear attention's threads");
  return ATTN_OK;
}

attn_status attn_linear_forward_sized(attn_context *ctx,
                                      const attn_linear_params *p,
                                      size_t size) {
  return lin_run(ctx, p, size, 0);
}

attn_status attn_linear_backward_sized(attn_context *ctx,
                                       const attn_linear_params *p,
                                       size_t size) {
  return lin_run(ctx, p, size, 1);
}

attn_status
attn_linear_forward_workspace_size_sized(attn_context *ctx,
                                         const attn_linear_params *p,
                                         size_t size, size_t *bytes) {
  return lin_workspace(ctx, p, size, 0, bytes);
}

attn_status
attn_linear_backward_workspace_size_sized(attn_context *ctx,
                                          const attn_linear_params *p,
                                          size_t size, size_t *bytes) {
  return lin_workspace(ctx, p, size, 1, bytes);
}

/* ---------------------------------------------------------------------- */
/* The recurrent state                                                    */
/* ---------------------------------------------------------------------- */

struct attn_linear_state {
  int64_t batch, hk, d, dv;
  int64_t length; /* tokens appended                      */
  float *S;       /* [batch, hk, d, dv]                   */
  float *z;       /* [batch, hk, d]                       */
};

attn_status attn_linear_state_create(attn_linear_state **out, int64_t batch,
                                     int64_t heads_kv, int64_t dim,
                                     int64_t dim_v) {
  if (!out)
    return ATTN_ERR_NULL_POINTER;
  *out = NULL;
  if (batch < 1 || heads_kv < 1 || dim < 1 || dim_v < 1)
    return ATTN_ERR_INVALID_SHAPE;
  if (dim > ATTN_MAX_HEAD_DIM || dim_v > ATTN_MAX_HEAD_DIM)
    return ATTN_ERR_HEAD_DIM;
  int64_t heads, ns;
  if (__builtin_mul_overflow(batch, heads_kv, &heads) ||
      __builtin_mul_overflow(heads, dim * dim_v + dim, &ns) ||
      (uint64_t)ns > SIZE_MAX / sizeof(float))
    return ATTN_ERR_OVERFLOW;
  attn_linear_state *s = calloc(1, sizeof *s);
  float *mem = calloc((size_t)ns, sizeof(float));
  if (!s || !mem) {
    free(s);
    free(mem);
    return ATTN_ERR_OUT_OF_MEMORY;
  }
  s->batch = batch;
  s->hk = heads_kv;
  s->d = dim;
  s->dv = dim_v;
  s->S = mem;
  s->z = mem + heads * dim * dim_v;
  *out = s;
  return ATTN_OK;
}

void attn_linear_state_free(attn_linear_state *s) {
  if (!s)
    return;
  free(s->S);
  free(s);
}

void attn_linear_state_reset(attn_linear_state *s) {
  if (!s)
    return;
  const int64_t heads = s->batch * s->hk;
  memset(s->S, 0, (size_t)(heads * (s->d * s->dv + s->d)) * sizeof(float));
  s->length = 0;
}

int64_t attn_linear_state_length(const attn_linear_state *s) {
  return s ? s->length : -1;
}

const float *attn_linear_state_s(const attn_linear_state *s) {
  return s ? s->S : NULL;
}

const float *attn_linear_state_z(const attn_linear_state *s) {
  return s ? s->z : NULL;
}

/* q, k, v, o of a step against the state's sizes. */
static attn_status check_step(const attn_linear_params *p,
                              const attn_linear_state *s, lin_dims *d) {
  attn_status st = check_common(p, d);
  if (st == ATTN_OK)
    st = check_view(p, T_O);
  if (st == ATTN_OK)
    st = check_like(p, T_O, T_Q, d->dv);
  static const int ins[] = {T_Q, T_K, T_V}, outs[] = {T_O};
  if (st == ATTN_OK)
    st = check_overlaps(p, ins, 3, outs, 1);
  if (st != ATTN_OK)
    return st;
  if (d->sq != d->sk)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "a step appends tokens: q has %lld rows, k and v %lld (must be "
         "equal)",
         (long long)d->sq, (long long)d->sk);
  if (d->batch != s->batch || d->hk != s->hk || d->d != s->d || d->dv != s->dv)
    FAIL(ATTN_ERR_INVALID_SHAPE,
         "the state holds batch %lld, heads_kv %lld, dim %lld, dim_v %lld; "
         "the tokens have %lld, %lld, %lld, %lld",
         (long long)s->batch, (long long)s->hk, (long long)s->d,
         (long long)s->dv, (long long)d->batch, (long long)d->hk,
         (long long)d->d, (long long)d->dv);
  return ATTN_OK;
}

static const void *row_ptr(const attn_tensor *t, int64_t b, int64_t s,
                           int64_t h) {
  const int64_t off = b * t->stride[0] + s * t->stride[1] + h * t->stride[2];
  return (const char *)t->data + off * (int64_t)attn_dtype_size(t->dtype);
}

static void load_row(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                     float *dst) {
  attn_load_row_f32(row_ptr(t, b, s, h), t->dtype, t->stride[3], t->shape[3],
                    1.0f, dst);
}

/* One token of every (batch, kv head): the key joins, then each query
 * head of the group reads. */
static void step_token(const attn_linear_params *p, attn_linear_state *s,
                       const lin_dims *d, int64_t t) {
  float a[ATTN_MAX_HEAD_DIM], x[ATTN_MAX_HEAD_DIM], out[ATTN_MAX_HEAD_DIM];
  for (int64_t b = 0; b < d->batch; b++)
    for (int64_t g = 0; g < d->hk; g++) {
      float *S = s->S + (b * s->hk + g) * d->d * d->dv;
      float *z = s->z + (b * s->hk + g) * d->d;
      load_row(&p->k, b, t, g, a);
      load_row(&p->v, b, t, g, x);
      lin_phi_rows_generic(a, d->d);
      for (int64_t i = 0; i < d->d; i++) {
        const float f = a[i];
        for (int64_t c = 0; c < d->dv; c++)
          S[i * d->dv + c] += f * x[c];
        z[i] += f;
      }
      for (int64_t h = g * d->group; h < (g + 1) * d->group; h++) {
        load_row(&p->q, b, t, h, a);
        lin_phi_rows_generic(a, d->d);
        float den = 0.0f;
        memset(out, 0, (size_t)d->dv * sizeof(float));
        for (int64_t i = 0; i < d->d; i++) {
          const float f = a[i];
          for (int64_t c = 0; c < d->dv; c++)
            out[c] += f * S[i * d->dv + c];
          den += f * z[i];
        }
        const float inv = 1.0f / lin_guard(den);
        for (int64_t c = 0; c < d->dv; c++)
          out[c] *= inv;
        attn_store_row(out, d->dv, (void *)row_ptr(&p->o, b, t, h), p->o.dtype,
                       p->o.stride[3]);
      }
    }
}

attn_status attn_linear_state_step_sized(attn_context *ctx,
                                         attn_linear_state *s,
                                         const attn_linear_params *user,
                                         size_t size) {
  (void)ctx; /* one thread: a token is O(heads d dv) */
  attn_linear_params p;
  attn_status st = import(user, size, &p);
  if (st != ATTN_OK)
    return st;
  if (!s)
    return lin_fail(&p, ATTN_ERR_NULL_POINTER, "the state is NULL");
  p.causal = ATTN_CAUSAL_BOTTOM_RIGHT; /* ignored: a state is causal */
  lin_dims d;
  st = check_step(&p, s, &d);
  if (st != ATTN_OK)
    return st;
  for (int64_t t = 0; t < d.sq; t++)
    step_token(&p, s, &d, t);
  s->length += d.sq;
  return ATTN_OK;
}
