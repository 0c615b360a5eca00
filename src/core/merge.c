/* Merging partial attention results (attn.h, "Merging partial results"):
 * attn_merge and its backward, with their checks and the sized-struct ABI
 * of attn_merge_params.
 *
 * Shapes (H heads, S query rows, DV value dims, n parts):
 *   o_parts[c], o, dout, do_parts[c]   [batch, S, H, DV]  f32|bf16|f16, strided
 *   lse_parts[c], lse, dlse, dlse_parts[c]   f32 [batch, H, S], contiguous
 *   sinks, dsinks                            f32 [H]
 *
 * Work items are (batch, block of MERGE_ROWS query rows), and an item
 * walks its rows, each row its heads: with the [batch, seq_q, heads, dim_v]
 * layout that is the order of memory, which the hardware prefetchers follow
 * (one head's rows are heads * dim_v apart: walking them first was 3x
 * slower). Only when that gives fewer than MERGE_MIN_ITEMS items are the
 * heads cut into groups of MERGE_HEADS, groups fastest. Each row is
 * computed by one thread with the same instructions whatever the team size,
 * and dsinks is summed from per-(item, head) partials in item order, so
 * every result is bitwise the same for any thread count. */
#include "core/internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Query rows and heads per work item (never from the team size); columns
 * per pass (the row buffers are on the stack); bytes moved per thread, or
 * fewer threads. */
#define MERGE_ROWS 16
#define MERGE_HEADS 8
#define MERGE_MIN_ITEMS 64
#define MERGE_CHUNK 256
#define MERGE_MIN_BYTES ((int64_t)1 << 16)

/* ---------------------------------------------------------------------- */
/* ABI                                                                    */
/* ---------------------------------------------------------------------- */

/* Every attn_merge_params size a released attn.h declared (0.4 is the
 * first), oldest first. */
static const size_t merge_sizes[] = {sizeof(attn_merge_params)};

static int merge_size_known(size_t size) {
  for (size_t i = 0; i < sizeof merge_sizes / sizeof merge_sizes[0]; i++)
    if (merge_sizes[i] == size)
      return 1;
  return 0;
}

static void merge_defaults(attn_merge_params *m) {
  memset(m, 0, sizeof *m);
  m->o.dtype = ATTN_DTYPE_F32;
  m->dout.dtype = ATTN_DTYPE_F32;
}

void attn_merge_params_init_sized(attn_merge_params *m, size_t size) {
  if (!m || !merge_size_known(size))
    return; /* nothing is written into memory of unknown size */
  attn_merge_params full;
  merge_defaults(&full);
  memcpy(m, &full, size);
}

/* merge_fail(s, st, ...): the reason into s's error_message (s not NULL). */
#define merge_fail(s, st, ...)                                                 \
  attn_fail_to((s)->error_message, (s)->error_message_size, (st), __VA_ARGS__)

#define FAIL(st, ...) return merge_fail(m, (st), __VA_ARGS__)

/* Copies the caller's struct of `size` bytes over defaults into *out. */
static attn_status merge_import(const attn_merge_params *m, size_t size,
                                attn_merge_params *out) {
  if (!m)
    return ATTN_ERR_NULL_POINTER;
  if (!merge_size_known(size)) {
    /* A newer header appends fields: the message buffer is still where
     * this release has it. An older or garbled size: nowhere safe. */
    if (size > sizeof(attn_merge_params))
      merge_fail(m, ATTN_ERR_ABI,
                 "attn_merge_params is %zu bytes, but libattn %s knows %zu "
                 "(this release): built against a newer attn.h?",
                 size, attn_version_string(), sizeof(attn_merge_params));
    return ATTN_ERR_ABI;
  }
  merge_defaults(out);
  memcpy(out, m, size);
  return ATTN_OK;
}

/* ---------------------------------------------------------------------- */
/* Checks                                                                 */
/* ---------------------------------------------------------------------- */

typedef struct merge_dims {
  int64_t batch, sq, heads, dv;
  int64_t rows;      /* batch * heads * sq: elements of an lse          */
  uintptr_t lse_len; /* its bytes                                        */
} merge_dims;

static int is_storage(attn_dtype d) {
  return d == ATTN_DTYPE_F32 || d == ATTN_DTYPE_BF16 || d == ATTN_DTYPE_F16;
}

/* name, or name[index] when index >= 0 */
static const char *nm(char *buf, size_t n, const char *name, int64_t index) {
  if (index < 0)
    return name;
  snprintf(buf, n, "%s[%lld]", name, (long long)index);
  return buf;
}

/* A present, valid [batch, S, H, DV] view of a storage dtype; with want
 * set, of exactly want's shape. */
static attn_status check_view(const attn_merge_params *m, const attn_tensor *t,
                              const char *name, int64_t index,
                              const attn_tensor *want) {
  char b[48];
  const char *w = nm(b, sizeof b, name, index);
  if (!t->data)
    FAIL(ATTN_ERR_NULL_POINTER, "%s.data is NULL", w);
  if (!is_storage(t->dtype))
    FAIL(ATTN_ERR_INVALID_DTYPE, "%s.dtype (%d) must be f32, bf16 or f16", w,
         (int)t->dtype);
  for (int i = 0; i < 4; i++) {
    if (t->shape[i] <= 0)
      FAIL(ATTN_ERR_INVALID_SHAPE, "%s.shape[%d] = %lld must be > 0", w, i,
           (long long)t->shape[i]);
    if (t->stride[i] < 0)
      FAIL(ATTN_ERR_INVALID_STRIDE, "%s.stride[%d] = %lld must be >= 0", w, i,
           (long long)t->stride[i]);
  }
  int64_t count = 1;
  for (int i = 0; i < 4; i++)
    if (__builtin_mul_overflow(count, t->shape[i], &count))
      FAIL(ATTN_ERR_OVERFLOW, "%s has more than 2^63 elements", w);
  uintptr_t lo, hi;
  if (!attn_tensor_extent(t, &lo, &hi))
    FAIL(ATTN_ERR_OVERFLOW, "%s: shape x stride overflows 64 bits", w);
  if (want)
    for (int i = 0; i < 4; i++)
      if (t->shape[i] != want->shape[i])
        FAIL(ATTN_ERR_INVALID_SHAPE,
             "%s.shape[%d] = %lld differs from o.shape[%d] = %lld", w, i,
             (long long)t->shape[i], i, (long long)want->shape[i]);
  return ATTN_OK;
}

/* An output view: valid, and no two of its elements share memory. */
static attn_status check_out_view(const attn_merge_params *m,
                                  const attn_tensor *t, const char *name,
                                  int64_t index, const attn_tensor *want) {
  attn_status st = check_view(m, t, name, index, want);
  if (st != ATTN_OK)
    return st;
  char b[48];
  if (attn_tensor_self_aliases(t))
    FAIL(ATTN_ERR_INVALID_STRIDE,
         "%s strides make different elements share memory",
         nm(b, sizeof b, name, index));
  return ATTN_OK;
}

/* Byte ranges of the call's arrays, by role, for the overlap checks. */
enum {
  IN_OPART,
  IN_LSEPART,
  IN_SINKS,
  IN_O, /* backward: o, lse, dout, dlse are inputs */
  IN_LSE,
  IN_DOUT,
  IN_DLSE,
  OUT_O, /* forward outputs */
  OUT_LSE,
  OUT_DOPART, /* backward outputs */
  OUT_DLSEPART,
  OUT_DSINKS,
  N_ROLES
};
static const char *const role_name[N_ROLES] = {
    "o_parts", "lse_parts", "sinks", "o",        "lse",        "dout",
    "dlse",    "o",         "lse",   "do_parts", "dlse_parts", "dsinks"};

typedef struct span {
  uintptr_t lo, hi; /* [lo, hi); lo == hi: absent */
} span;

static span tensor_span(const attn_tensor *t) {
  span s = {0, 0};
  if (t->data)
    attn_tensor_extent(t, &s.lo, &s.hi); /* checked before */
  return s;
}

static span array_span(const float *x, uintptr_t bytes) {
  span s = {0, 0};
  if (x) {
    s.lo = (uintptr_t)x;
    s.hi = s.lo + bytes; /* checked before */
  }
  return s;
}

static span role_span(const attn_merge_params *m, const merge_dims *d, int r,
                      int64_t c) {
  const span none = {0, 0};
  switch (r) {
  case IN_OPART:
    return tensor_span(&m->o_parts[c]);
  case IN_LSEPART:
    return array_span(m->lse_parts[c], d->lse_len);
  case IN_SINKS:
    return array_span(m->sinks, (uintptr_t)d->heads * sizeof(float));
  case IN_O:
  case OUT_O:
    return tensor_span(&m->o);
  case IN_LSE:
  case OUT_LSE:
    return array_span(m->lse, d->lse_len);
  case IN_DOUT:
    return tensor_span(&m->dout);
  case IN_DLSE:
    return array_span(m->dlse, d->lse_len);
  case OUT_DOPART:
    return tensor_span(&m->do_parts[c]);
  case OUT_DLSEPART:
    return m->dlse_parts ? array_span(m->dlse_parts[c], d->lse_len) : none;
  case OUT_DSINKS:
    return array_span(m->dsinks, (uintptr_t)d->heads * sizeof(float));
  }
  return none;
}

static int role_indexed(int r) {
  return r == IN_OPART || r == IN_LSEPART || r == OUT_DOPART ||
         r == OUT_DLSEPART;
}

/* Elements of role r: n_parts for the per-part ones, else 1. */
static int64_t role_count(const attn_merge_params *m, int r) {
  return role_indexed(r) ? m->n_parts : 1;
}

/* No output (roles outs[]) overlaps an input (roles ins[]) or another
 * output. */
static attn_status check_overlaps(const attn_merge_params *m,
                                  const merge_dims *d, const int *ins, int nin,
                                  const int *outs, int nout) {
  char x[48], y[48];
  for (int oi = 0; oi < nout; oi++) {
    const int r = outs[oi];
    for (int64_t c = 0; c < role_count(m, r); c++) {
      const span a = role_span(m, d, r, c);
      if (a.lo == a.hi)
        continue;
      /* every input, then the outputs up to this one */
      for (int k = 0; k < nin + oi + 1; k++) {
        const int s = k < nin ? ins[k] : outs[k - nin];
        const int64_t n = k == nin + oi ? c : role_count(m, s);
        for (int64_t e = 0; e < n; e++) {
          const span b = role_span(m, d, s, e);
          if (b.lo == b.hi || !(a.lo < b.hi && b.lo < a.hi))
            continue;
          FAIL(ATTN_ERR_OVERLAP, "%s overlaps %s in memory",
               nm(x, sizeof x, role_name[r], role_indexed(r) ? c : -1),
               nm(y, sizeof y, role_name[s], role_indexed(s) ? e : -1));
        }
      }
    }
  }
  return ATTN_OK;
}

static attn_status check_lse_array(const attn_merge_params *m,
                                   const merge_dims *d, const float *x,
                                   const char *name, int64_t index) {
  char b[48];
  if (!x)
    FAIL(ATTN_ERR_NULL_POINTER, "%s is NULL", nm(b, sizeof b, name, index));
  if ((uint64_t)d->lse_len > UINTPTR_MAX - (uintptr_t)x)
    FAIL(ATTN_ERR_OVERFLOW,
         "%s: [batch, heads, seq_q] overflows the address "
         "space",
         nm(b, sizeof b, name, index));
  return ATTN_OK;
}

static attn_status check_sinks(const attn_merge_params *m,
                               const merge_dims *d) {
  if (!m->sinks)
    return ATTN_OK;
  if ((uint64_t)d->heads * sizeof(float) > UINTPTR_MAX - (uintptr_t)m->sinks)
    FAIL(ATTN_ERR_OVERFLOW, "sinks: [heads] overflows the address space");
  for (int64_t h = 0; h < d->heads; h++) {
    const float s = m->sinks[h];
    if (s != s || s == INFINITY)
      FAIL(ATTN_ERR_INVALID_ARGUMENT,
           "sinks[%lld] = %g must be finite or -inf (no sink)", (long long)h,
           (double)s);
  }
  return ATTN_OK;
}

/* What the forward and the backward share: parts, o's shape, lse sizes,
 * sinks, threads. */
static attn_status check_common(const attn_merge_params *m, merge_dims *d,
                                int bwd) {
  if (m->n_parts < 1)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "n_parts (%lld) must be >= 1",
         (long long)m->n_parts);
  if (!m->o_parts)
    FAIL(ATTN_ERR_NULL_POINTER, "o_parts is NULL (n_parts = %lld)",
         (long long)m->n_parts);
  if (!m->lse_parts)
    FAIL(ATTN_ERR_NULL_POINTER, "lse_parts is NULL (n_parts = %lld)",
         (long long)m->n_parts);
  if (m->num_threads < 0)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "num_threads (%d) must be >= 0",
         m->num_threads);
  attn_status st = bwd ? check_view(m, &m->o, "o", -1, NULL)
                       : check_out_view(m, &m->o, "o", -1, NULL);
  if (st != ATTN_OK)
    return st;
  d->batch = m->o.shape[0];
  d->sq = m->o.shape[1];
  d->heads = m->o.shape[2];
  d->dv = m->o.shape[3];
  int64_t bytes;
  if (__builtin_mul_overflow(d->batch, d->heads, &d->rows) ||
      __builtin_mul_overflow(d->rows, d->sq, &d->rows) ||
      __builtin_mul_overflow(d->rows, (int64_t)sizeof(float), &bytes) ||
      (uint64_t)bytes > UINTPTR_MAX)
    FAIL(ATTN_ERR_OVERFLOW, "lse [batch, heads, seq_q] overflows 64 bits");
  d->lse_len = (uintptr_t)bytes;
  for (int64_t c = 0; c < m->n_parts; c++) {
    st = check_view(m, &m->o_parts[c], "o_parts", c, &m->o);
    if (st == ATTN_OK)
      st = check_lse_array(m, d, m->lse_parts[c], "lse_parts", c);
    if (st != ATTN_OK)
      return st;
  }
  return check_sinks(m, d);
}

static attn_status check_fwd(const attn_merge_params *m, merge_dims *d) {
  static const int ins[] = {IN_OPART, IN_LSEPART, IN_SINKS};
  static const int outs[] = {OUT_O, OUT_LSE};
  attn_status st = check_common(m, d, 0);
  if (st == ATTN_OK && m->lse)
    st = check_lse_array(m, d, m->lse, "lse", -1);
  if (st == ATTN_OK)
    st = check_overlaps(m, d, ins, 3, outs, 2);
  return st;
}

static attn_status check_bwd(const attn_merge_params *m, merge_dims *d) {
  attn_status st = check_common(m, d, 1);
  if (st != ATTN_OK)
    return st;
  if (!m->lse)
    FAIL(ATTN_ERR_NULL_POINTER,
         "lse is NULL: attn_merge_backward needs the merged lse");
  st = check_lse_array(m, d, m->lse, "lse", -1);
  if (st == ATTN_OK)
    st = check_view(m, &m->dout, "dout", -1, &m->o);
  if (st == ATTN_OK && m->dlse)
    st = check_lse_array(m, d, m->dlse, "dlse", -1);
  if (st != ATTN_OK)
    return st;
  if (!m->do_parts)
    FAIL(ATTN_ERR_NULL_POINTER, "do_parts is NULL (n_parts = %lld)",
         (long long)m->n_parts);
  for (int64_t c = 0; c < m->n_parts; c++) {
    st = check_out_view(m, &m->do_parts[c], "do_parts", c, &m->o);
    if (st == ATTN_OK && m->dlse_parts)
      st = check_lse_array(m, d, m->dlse_parts[c], "dlse_parts", c);
    if (st != ATTN_OK)
      return st;
  }
  if (m->dsinks && !m->sinks)
    FAIL(ATTN_ERR_INVALID_ARGUMENT, "dsinks is set but there are no sinks");
  if (m->dsinks &&
      (uint64_t)d->heads * sizeof(float) > UINTPTR_MAX - (uintptr_t)m->dsinks)
    FAIL(ATTN_ERR_OVERFLOW, "dsinks: [heads] overflows the address space");
  static const int ins[] = {IN_OPART, IN_LSEPART, IN_SINKS, IN_O,
                            IN_LSE,   IN_DOUT,    IN_DLSE};
  static const int outs[] = {OUT_DOPART, OUT_DLSEPART, OUT_DSINKS};
  return check_overlaps(m, d, ins, 7, outs, 3);
}

#undef FAIL

/* ---------------------------------------------------------------------- */
/* The work                                                               */
/* ---------------------------------------------------------------------- */

typedef struct merge_job {
  const attn_merge_params *m;
  merge_dims d;
  int64_t blocks;     /* row blocks per batch                       */
  int64_t groups, hg; /* head groups, heads per group                */
  int64_t items;      /* batch * blocks * groups                     */
  double *dsink_part; /* backward with dsinks: [items][hg]           */
} merge_job;

static const void *elem(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                        int64_t x) {
  const int64_t off =
      b * t->stride[0] + i * t->stride[1] + h * t->stride[2] + x * t->stride[3];
  return (const char *)t->data + off * (int64_t)attn_dtype_size(t->dtype);
}

/* dst[0..n) = the row chunk of t at (b, i, h, x0..), as f32 */
static void load(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                 int64_t x0, int64_t n, float *dst) {
  attn_load_row_f32(elem(t, b, i, h, x0), t->dtype, t->stride[3], n, 1.0f, dst);
}

static void store(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                  int64_t x0, int64_t n, const float *src) {
  attn_store_row(src, n, (void *)elem(t, b, i, h, x0), t->dtype, t->stride[3]);
}

/* acc[0..n) += w * (the row chunk of t), or = when first */
static void accumulate(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                       int64_t x0, int64_t n, float w, int first, float *acc,
                       float *tmp) {
  const float *s = tmp;
  if (t->dtype == ATTN_DTYPE_F32 && t->stride[3] == 1)
    s = (const float *)elem(t, b, i, h, x0);
  else
    load(t, b, i, h, x0, n, tmp);
  if (first)
    for (int64_t x = 0; x < n; x++)
      acc[x] = w * s[x];
  else
    for (int64_t x = 0; x < n; x++)
      acc[x] += w * s[x];
}

static void fill(float *x, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++)
    x[i] = v;
}

/* exp(l - top) for a part's (or the sink's) l: 0 when it saw nothing. */
static float weight(float l, float top) {
  if (l == -INFINITY)
    return 0.0f;
  return l == top ? 1.0f : expf(l - top);
}

/* One merged row: o[b, i, h, :] and lse[row]. */
static void merge_row(const merge_job *job, int64_t b, int64_t i, int64_t h) {
  const attn_merge_params *m = job->m;
  const int64_t row = (b * job->d.heads + h) * job->d.sq + i, dv = job->d.dv;
  const float sink = m->sinks ? m->sinks[h] : -INFINITY;
  float top = sink, acc[MERGE_CHUNK], tmp[MERGE_CHUNK];
  int nan = 0;
  for (int64_t c = 0; c < m->n_parts; c++) {
    const float l = m->lse_parts[c][row];
    if (l != l || l == INFINITY)
      nan = 1; /* +inf: no finite weights exist either */
    else if (l > top)
      top = l;
  }
  float lse = top, sum = 0.0f;
  if (nan) {
    lse = NAN;
  } else if (top > -INFINITY) {
    for (int64_t c = 0; c < m->n_parts; c++)
      sum += weight(m->lse_parts[c][row], top);
    sum += weight(sink, top);
    lse = top + logf(sum); /* sum >= 1: the top term is exactly 1 */
  }
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  for (int64_t x0 = 0; x0 < dv; x0 += MERGE_CHUNK) {
    const int64_t n = ATTN_MIN((int64_t)MERGE_CHUNK, dv - x0);
    if (nan || top == -INFINITY) {
      fill(acc, n, nan ? NAN : 0.0f); /* NaN row; a row nothing saw */
    } else {
      /* weights divided by their sum before they scale the rows: the sum
       * of the weighted rows is then a convex combination, never past
       * FLT_MAX where the merged row is not (rows near FLT_MAX, summed with
       * weights up to 1, overflowed) */
      int first = 1;
      for (int64_t c = 0; c < m->n_parts; c++) {
        const float w = weight(m->lse_parts[c][row], top) * inv;
        if (w == 0.0f)
          continue; /* a part that saw no key (or flushes) is never read */
        accumulate(&m->o_parts[c], b, i, h, x0, n, w, first, acc, tmp);
        first = 0;
      }
      if (first) /* only the sink's weight */
        fill(acc, n, 0.0f);
    }
    store(&m->o, b, i, h, x0, n, acc);
  }
  if (m->lse)
    m->lse[row] = lse;
}

/* sum over the row of dout * (t - o) (t may be NULL: - dout * o) */
static double row_dot(const attn_merge_params *m, const attn_tensor *t,
                      int64_t b, int64_t i, int64_t h) {
  float g[MERGE_CHUNK], o[MERGE_CHUNK], x[MERGE_CHUNK];
  double s[4] = {0.0, 0.0, 0.0, 0.0}; /* four chains: no latency bound */
  for (int64_t x0 = 0; x0 < m->o.shape[3]; x0 += MERGE_CHUNK) {
    const int64_t n = ATTN_MIN((int64_t)MERGE_CHUNK, m->o.shape[3] - x0);
    load(&m->dout, b, i, h, x0, n, g);
    load(&m->o, b, i, h, x0, n, o);
    if (t)
      load(t, b, i, h, x0, n, x);
    else
      fill(x, n, 0.0f);
    for (int64_t k = n; k % 4; k++) /* pad to a multiple of 4 */
      g[k] = o[k] = x[k] = 0.0f;
    for (int64_t k = 0; k < n; k += 4)
      for (int u = 0; u < 4; u++)
        s[u] += (double)g[k + u] * ((double)x[k + u] - (double)o[k + u]);
  }
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/* One row of the backward; returns its share of dsinks[h]. */
static double merge_row_bwd(const merge_job *job, int64_t b, int64_t i,
                            int64_t h) {
  const attn_merge_params *m = job->m;
  const int64_t row = (b * job->d.heads + h) * job->d.sq + i, dv = job->d.dv;
  const float lse = m->lse[row], dl = m->dlse ? m->dlse[row] : 0.0f;
  const int bad = lse != lse || lse == INFINITY;
  float g[MERGE_CHUNK];
  for (int64_t c = 0; c < m->n_parts; c++) {
    const float lc = m->lse_parts[c][row];
    /* w_c = exp(LSE_c - LSE): 0 for a part that saw no key (and for every
     * part of a row nothing saw), NaN for a NaN row */
    const float w = lc == -INFINITY ? 0.0f : bad ? NAN : expf(lc - lse);
    for (int64_t x0 = 0; x0 < dv; x0 += MERGE_CHUNK) {
      const int64_t n = ATTN_MIN((int64_t)MERGE_CHUNK, dv - x0);
      if (w == 0.0f) {
        fill(g, n, 0.0f);
      } else {
        load(&m->dout, b, i, h, x0, n, g);
        for (int64_t x = 0; x < n; x++)
          g[x] *= w;
      }
      store(&m->do_parts[c], b, i, h, x0, n, g);
    }
    if (m->dlse_parts) {
      float dlc = 0.0f;
      if (w != 0.0f) {
        /* in double: dot may pass FLT_MAX where w (dot + dl) does not */
        const double dot = row_dot(m, &m->o_parts[c], b, i, h);
        dlc = (float)((double)w * (dot + (double)dl));
      }
      m->dlse_parts[c][row] = dlc;
    }
  }
  if (!m->dsinks || m->sinks[h] == -INFINITY)
    return 0.0;
  /* dsink = exp(sink - LSE) (dLSE - rowsum(dO * O)) */
  const float ws = bad ? NAN : expf(m->sinks[h] - lse);
  if (ws == 0.0f)
    return 0.0;
  return (double)ws * ((double)dl + row_dot(m, NULL, b, i, h));
}

/* Item it: batch b, rows [i0, i1), heads [h0, h1). */
typedef struct merge_item {
  int64_t b, i0, i1, h0, h1;
} merge_item;

static merge_item item_of(const merge_job *job, int64_t it) {
  merge_item x;
  const int64_t g = it % job->groups, blk = it / job->groups % job->blocks;
  x.b = it / job->groups / job->blocks;
  x.i0 = blk * MERGE_ROWS;
  x.i1 = ATTN_MIN(x.i0 + MERGE_ROWS, job->d.sq);
  x.h0 = g * job->hg;
  x.h1 = ATTN_MIN(x.h0 + job->hg, job->d.heads);
  return x;
}

/* Thread tid takes the items [tid * items / n, (tid + 1) * items / n). */
static void item_range(const merge_job *job, int tid, int nthreads, int64_t *lo,
                       int64_t *hi) {
  *lo = job->items / nthreads * tid +
        ATTN_MIN((int64_t)tid, job->items % nthreads);
  *hi = *lo + job->items / nthreads + (tid < job->items % nthreads ? 1 : 0);
}

static void fwd_worker(void *arg, attn_team *team, int tid, int nthreads) {
  (void)team;
  const merge_job *job = (const merge_job *)arg;
  int64_t lo, hi;
  item_range(job, tid, nthreads, &lo, &hi);
  for (int64_t it = lo; it < hi; it++) {
    const merge_item x = item_of(job, it);
    for (int64_t i = x.i0; i < x.i1; i++)
      for (int64_t h = x.h0; h < x.h1; h++)
        merge_row(job, x.b, i, h);
  }
}

static void bwd_worker(void *arg, attn_team *team, int tid, int nthreads) {
  (void)team;
  const merge_job *job = (const merge_job *)arg;
  int64_t lo, hi;
  item_range(job, tid, nthreads, &lo, &hi);
  for (int64_t it = lo; it < hi; it++) {
    const merge_item x = item_of(job, it);
    double *ds = job->dsink_part ? job->dsink_part + it * job->hg : NULL;
    for (int64_t h = x.h0; ds && h < x.h1; h++)
      ds[h - x.h0] = 0.0;
    for (int64_t i = x.i0; i < x.i1; i++)
      for (int64_t h = x.h0; h < x.h1; h++) {
        const double d = merge_row_bwd(job, x.b, i, h);
        if (ds)
          ds[h - x.h0] += d;
      }
  }
}

/* Imports, checks, and runs fn over the items on the call's team. */
static attn_status merge_run(attn_context *ctx, const attn_merge_params *user,
                             size_t size, int bwd) {
  attn_merge_params m;
  attn_status st = merge_import(user, size, &m);
  if (st != ATTN_OK)
    return st;
  merge_job job;
  job.m = &m;
  job.dsink_part = NULL;
  st = bwd ? check_bwd(&m, &job.d) : check_fwd(&m, &job.d);
  if (st != ATTN_OK)
    return st;
  /* the default context's failure reason, through a params of our buffer */
  attn_params why;
  memset(&why, 0, sizeof why);
  why.error_message = m.error_message;
  why.error_message_size = m.error_message_size;
  attn_context *c;
  st = attn_context_resolve(ctx, &why, &c);
  if (st != ATTN_OK)
    return st;
  job.blocks = (job.d.sq + MERGE_ROWS - 1) / MERGE_ROWS;
  job.groups = job.d.batch * job.blocks >= MERGE_MIN_ITEMS
                   ? 1
                   : (job.d.heads + MERGE_HEADS - 1) / MERGE_HEADS;
  job.hg = (job.d.heads + job.groups - 1) / job.groups;
  job.items = job.d.batch * job.blocks * job.groups; /* <= rows */
  /* Threads: as asked, but no more than the items, nor than one per
   * MERGE_MIN_BYTES of partials read (a tiny merge is not worth waking the
   * pool for). Any count gives the same bits. */
  int64_t n = m.num_threads > 0 ? m.num_threads : attn_context_threads(c);
  const double work =
      (double)job.d.rows * (double)job.d.dv * 4.0 * ((double)m.n_parts + 1.0);
  if (work / (double)MERGE_MIN_BYTES < (double)n)
    n = (int64_t)(work / (double)MERGE_MIN_BYTES) + 1;
  n = ATTN_MIN(n, job.items);
  n = ATTN_MAX((int64_t)1, ATTN_MIN(n, (int64_t)ATTN_MAX_THREADS));
  if (bwd && m.dsinks) {
    job.dsink_part = malloc((size_t)(job.items * job.hg) * sizeof(double));
    if (!job.dsink_part)
      return merge_fail(&m, ATTN_ERR_OUT_OF_MEMORY,
                        "dsinks: %lld partial sums do not fit in memory",
                        (long long)job.items);
  }
  st = attn_team_run_ctx(c, (int)n, bwd ? bwd_worker : fwd_worker, &job);
  if (st == ATTN_OK && job.dsink_part) {
    /* per head, the items in order: the same sum for every team size */
    for (int64_t h = 0; h < job.d.heads; h++) {
      double s = 0.0;
      for (int64_t it = h / job.hg; it < job.items; it += job.groups)
        s += job.dsink_part[it * job.hg + h % job.hg];
      m.dsinks[h] = (float)s;
    }
  }
  free(job.dsink_part);
  if (st != ATTN_OK)
    return merge_fail(&m, st, "could not run the merge's threads");
  return ATTN_OK;
}

attn_status attn_merge_sized(attn_context *ctx, const attn_merge_params *m,
                             size_t size) {
  return merge_run(ctx, m, size, 0);
}

attn_status attn_merge_backward_sized(attn_context *ctx,
                                      const attn_merge_params *m, size_t size) {
  return merge_run(ctx, m, size, 1);
}
