/*
 * test_merge: attn_merge and attn_merge_backward (attn.h, "Merging partial
 * results") against double precision.
 *
 *   arith     random partials (1..5 parts; f32, bf16, f16 O tensors in any
 *             layout; -inf, large and NaN LSEs; sinks with -inf heads; head
 *             dims across the 256-column chunk) merged and compared with the
 *             merge in double of the partials as stored; one f32 part is the
 *             identity, bitwise; thread counts 1, 2, 3 and a context of 3
 *             threads give the same bits, forward and backward.
 *   split     real attention split into 1..5 disjoint key ranges of random
 *             sizes (empty ones included, some as attn_forward with kv_lens
 *             0, some as hand-made -inf rows over NaN garbage), each range
 *             run by attn_forward with the positions of the whole problem
 *             (k_pos_offset, q_pos_offsets, kv_lens), so causal, window,
 *             ALiBi and key lengths mask exactly as on all keys; the merge
 *             must pass the forward oracle's rule (oracle_fwd.h) on the
 *             whole problem, and so must attn_forward on all keys; with
 *             sinks, the oracle's result gets the sink by its own formula in
 *             double, and attn_forward with sinks is compared too once the
 *             library has them.
 *   fd        the backward against central finite differences of the merge
 *             in double (O parts, LSE parts, sinks; dlse given or not).
 *   chain     the proof of the backward: merge_backward, then attn_backward
 *             of every part with its dO_c and its dLSE_c (injected through
 *             the O that attn_backward reads for D = rowsum(dO * O)), summed,
 *             must pass the backward oracle's rule (oracle_bwd.h) against
 *             attn_backward's gradients of the whole problem.
 *   status    every bad input: status and message.
 *
 * Environment: ATTN_TEST_SEED, ATTN_TEST_VERBOSE=1, ATTN_TEST_QUICK=1 (fewer
 * cases). Last line: "N passed, N failed".
 */
#include "attn.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"
#include "test_common.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;
static int verbose, quick;
static int sinks_fwd, sinks_bwd; /* attn_forward / attn_backward have sinks */

#define U32 5.9604644775390625e-08 /* 2^-24, f32's unit roundoff */

/* ---------------------------------------------------------------------- */
/* Tensors                                                                */
/* ---------------------------------------------------------------------- */

static const attn_dtype storage[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                      ATTN_DTYPE_F16};

/* A [b, s, h, d] view of dtype dt: contiguous bshd, or (random) bshd or
 * bhsd with padded strides and an inner stride of 1 or 2. The buffer is
 * filled with 0xFF bytes (NaN in every dtype). */
static attn_tensor view_new(tc_rng *r, attn_dtype dt, const int64_t sh[4],
                            int random) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  int order[4] = {0, 1, 2, 3}; /* outer to inner */
  if (random && tc_chance(r, 0.5))
    order[1] = 2, order[2] = 1;
  int64_t st = random && tc_chance(r, 0.3) ? 2 : 1;
  for (int k = 3; k >= 0; k--) {
    const int a = order[k];
    t.shape[a] = sh[a];
    t.stride[a] = st;
    st = st * sh[a] + (random && tc_chance(r, 0.3) ? tc_range(r, 1, 3) : 0);
  }
  const size_t bytes = (size_t)st * attn_dtype_size(dt);
  t.data = tc_alloc(bytes);
  memset(t.data, 0xFF, bytes);
  return t;
}

static double tget(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                   int64_t x) {
  return oracle_tensor_get(t, b, i, h, x);
}

static void tset(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                 int64_t x, double v) {
  const int64_t off =
      b * t->stride[0] + i * t->stride[1] + h * t->stride[2] + x * t->stride[3];
  const float f = (float)v;
  if (t->dtype == ATTN_DTYPE_F32)
    ((float *)t->data)[off] = f;
  else if (t->dtype == ATTN_DTYPE_BF16)
    ((uint16_t *)t->data)[off] = tc_f32_to_bf16(f);
  else
    ((uint16_t *)t->data)[off] = tc_f32_to_f16(f);
}

/* Bytes of the memory t's elements live in (the whole allocation). */
static size_t view_bytes(const attn_tensor *t) {
  int64_t last = 0;
  for (int i = 0; i < 4; i++)
    last += (t->shape[i] - 1) * t->stride[i];
  return (size_t)(last + 1) * attn_dtype_size(t->dtype);
}

/* t restricted to rows [a, a + n) of axis 1 */
static attn_tensor slice(const attn_tensor *t, int64_t a, int64_t n) {
  attn_tensor s = *t;
  s.data =
      (char *)t->data + a * t->stride[1] * (int64_t)attn_dtype_size(t->dtype);
  s.shape[1] = n;
  return s;
}

static float *floats(int64_t n, tc_rng *r, double mag) {
  float *x = tc_alloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++)
    x[i] = r ? (float)(mag * tc_normal(r)) : 0.0f;
  return x;
}

/* ---------------------------------------------------------------------- */
/* The merge in double                                                    */
/* ---------------------------------------------------------------------- */

/* One row: n parts' lse[c] and o[c * dv + x], a sink (-inf: none); writes
 * o_out[dv] and returns the merged lse minus shift (the finite differences
 * shift by the row's max so that an LSE of -2000 keeps its last digits).
 * Straight from attn.h's formula. */
static double merge_row64s(int64_t n, int64_t dv, const double *lse,
                           const double *o, double sink, double shift,
                           double *o_out) {
  double top = sink;
  int nan = 0;
  for (int64_t c = 0; c < n; c++) {
    if (isnan(lse[c]) || lse[c] == INFINITY)
      nan = 1;
    else if (lse[c] > top)
      top = lse[c];
  }
  for (int64_t x = 0; x < dv; x++)
    o_out[x] = nan ? NAN : 0.0;
  if (nan)
    return NAN;
  if (top == -INFINITY)
    return -INFINITY;
  double s = sink == -INFINITY ? 0.0 : exp(sink - top);
  for (int64_t c = 0; c < n; c++)
    if (lse[c] > -INFINITY)
      s += exp(lse[c] - top);
  for (int64_t c = 0; c < n; c++) {
    if (lse[c] == -INFINITY)
      continue;
    const double w = exp(lse[c] - top) / s;
    for (int64_t x = 0; x < dv; x++)
      o_out[x] += w * o[c * dv + x];
  }
  return (top - shift) + log(s);
}

static double merge_row64(int64_t n, int64_t dv, const double *lse,
                          const double *o, double sink, double *o_out) {
  return merge_row64s(n, dv, lse, o, sink, 0.0, o_out);
}

/* The max of a row's LSEs and sink (the shift of merge_row64s). */
static double row_top(int64_t n, const double *lse, double sink) {
  double top = sink;
  for (int64_t c = 0; c < n; c++)
    if (lse[c] > top)
      top = lse[c];
  return isfinite(top) ? top : 0.0;
}

typedef struct rowbuf {
  double *lse, *o, *out; /* [n], [n * dv], [dv] */
} rowbuf;

static void rowbuf_init(rowbuf *rb, int64_t n, int64_t dv) {
  rb->lse = tc_alloc((size_t)n * sizeof(double));
  rb->o = tc_alloc((size_t)(n * dv) * sizeof(double));
  rb->out = tc_alloc((size_t)dv * sizeof(double));
}

static void rowbuf_free(rowbuf *rb) {
  free(rb->lse), free(rb->o), free(rb->out);
}

/* Loads row (b, i, h) of every part of m into rb (-inf parts: O unread). */
static void rowbuf_load(rowbuf *rb, const attn_merge_params *m, int64_t b,
                        int64_t i, int64_t h) {
  const int64_t dv = m->o.shape[3];
  const int64_t row = (b * m->o.shape[2] + h) * m->o.shape[1] + i;
  for (int64_t c = 0; c < m->n_parts; c++) {
    rb->lse[c] = m->lse_parts[c][row];
    for (int64_t x = 0; x < dv; x++)
      rb->o[c * dv + x] =
          rb->lse[c] == -INFINITY ? 0.0 : tget(&m->o_parts[c], b, i, h, x);
  }
}

/* ---------------------------------------------------------------------- */
/* arith: random partials against the merge in double                     */
/* ---------------------------------------------------------------------- */

typedef struct parts {
  int64_t n, sh[4], rows;
  attn_tensor *o;  /* [n] */
  float **lse;     /* [n] */
  float *sinks;    /* [heads] or NULL */
  attn_tensor out; /* merged */
  float *lse_out;  /* [rows] or NULL */
} parts;

static void parts_free(parts *ps) {
  for (int64_t c = 0; c < ps->n; c++)
    free(ps->o[c].data), free(ps->lse[c]);
  free(ps->o), free(ps->lse), free(ps->sinks), free(ps->out.data);
  free(ps->lse_out);
}

static void parts_params(const parts *ps, attn_merge_params *m, char *msg,
                         size_t msg_size) {
  attn_merge_params_init(m);
  m->n_parts = ps->n;
  m->o_parts = ps->o;
  m->lse_parts = (const float *const *)ps->lse;
  m->o = ps->out;
  m->lse = ps->lse_out;
  m->sinks = ps->sinks;
  m->error_message = msg;
  m->error_message_size = msg_size;
}

/* Random partials: LSE ~ N(0, 3) around a row offset that is sometimes
 * huge, -inf in 15% of (part, row) (and every part of some rows), O ~
 * N(0, 1) rounded to each part's dtype, NaN garbage where LSE is -inf. */
static void parts_random(tc_rng *r, parts *ps, int64_t n, const int64_t sh[4],
                         int any_dtype, int with_sinks) {
  memset(ps, 0, sizeof *ps);
  ps->n = n;
  memcpy(ps->sh, sh, sizeof ps->sh);
  ps->rows = sh[0] * sh[1] * sh[2];
  ps->o = tc_alloc((size_t)n * sizeof(attn_tensor));
  ps->lse = tc_alloc((size_t)n * sizeof(float *));
  double *base = tc_alloc((size_t)ps->rows * sizeof(double));
  char *none = tc_alloc((size_t)ps->rows);
  for (int64_t x = 0; x < ps->rows; x++) {
    const double u = tc_unit(r);
    base[x] = u < 0.1 ? tc_uniform(r, -3000, 3000) : tc_uniform(r, -5, 5);
    none[x] = (char)tc_chance(r, 0.05);
  }
  for (int64_t c = 0; c < n; c++) {
    const attn_dtype dt = any_dtype ? storage[tc_below(r, 3)] : ATTN_DTYPE_F32;
    ps->o[c] = view_new(r, dt, sh, 1);
    ps->lse[c] = floats(ps->rows, NULL, 0);
    for (int64_t b = 0; b < sh[0]; b++)
      for (int64_t h = 0; h < sh[2]; h++)
        for (int64_t i = 0; i < sh[1]; i++) {
          const int64_t row = (b * sh[2] + h) * sh[1] + i;
          const int dead = none[row] || tc_chance(r, 0.15);
          ps->lse[c][row] =
              dead ? -INFINITY : (float)(base[row] + 3.0 * tc_normal(r));
          if (!dead)
            for (int64_t x = 0; x < sh[3]; x++)
              tset(&ps->o[c], b, i, h, x, tc_normal(r));
        }
  }
  if (with_sinks) {
    ps->sinks = floats(sh[2], r, 3.0);
    for (int64_t h = 0; h < sh[2]; h++)
      if (tc_chance(r, 0.3))
        ps->sinks[h] = -INFINITY;
  }
  free(base);
  free(none);
}

/* The merged row (b, i, h) of m against the merge in double of its stored
 * partials. Bounds (u = 2^-24, n parts): each weight exp(l_c - max) is
 * off by at most ~2u relative (expf's ulp, the rounding of l_c - max
 * scaled by w |l_c - max| <= 1/e), the sum of n + 1 weights by (n + 1) u,
 * the weighted sum of n rows by n u of max |O_c|, the division by u:
 * |O - O64| <= (4n + 8) u max_c |O_c| (+ the output's rounding, half an
 * ulp of bf16 or f16 at |O64|: 2^-8, 2^-11 relative); LSE = max + log(sum) is
 * off by an ulp of |LSE|, the sum's relative error and log's: u (2 |LSE| + 4n +
 * 12). */
static void check_row(const attn_merge_params *m, rowbuf *rb, int64_t b,
                      int64_t i, int64_t h, const char *what) {
  const int64_t dv = m->o.shape[3], n = m->n_parts;
  const int64_t row = (b * m->o.shape[2] + h) * m->o.shape[1] + i;
  rowbuf_load(rb, m, b, i, h);
  const double sink = m->sinks ? m->sinks[h] : -INFINITY;
  const double lse = merge_row64(n, dv, rb->lse, rb->o, sink, rb->out);
  double omax = 0.0;
  for (int64_t x = 0; x < n * dv; x++)
    omax = fmax(omax, fabs(rb->o[x]));
  const double uo = m->o.dtype == ATTN_DTYPE_BF16  ? ldexp(1, -8)
                    : m->o.dtype == ATTN_DTYPE_F16 ? ldexp(1, -11)
                                                   : 0.0;
  const double f32_tol = (4.0 * (double)n + 8.0) * U32 * omax;
  int bad = 0;
  double worst = 0.0, got_w = 0.0, want_w = 0.0;
  for (int64_t x = 0; x < dv; x++) {
    const double got = tget(&m->o, b, i, h, x), want = rb->out[x];
    if (isnan(want) || !isfinite(lse)) {
      /* NaN rows: NaN; rows nothing saw: exactly 0 */
      if (isnan(want) ? !isnan(got) : got != 0.0)
        bad = 1, got_w = got, want_w = want;
      continue;
    }
    const double tol =
        f32_tol + uo * (fabs(want) + f32_tol) + (uo > 0 ? ldexp(1, -25) : 0);
    const double e = fabs(got - want);
    if (!(e <= tol))
      bad = 1, got_w = got, want_w = want;
    worst = fmax(worst, e);
  }
  CHECK(!bad, "%s: o[%lld, %lld, %lld, :] = %.9g, want %.9g", what,
        (long long)b, (long long)i, (long long)h, got_w, want_w);
  if (m->lse) {
    const double got = m->lse[row];
    const int ok = isnan(lse)   ? isnan(got)
                   : isinf(lse) ? got == lse
                                : fabs(got - lse) <=
                                      U32 * (2.0 * fabs(lse) + 4.0 * n + 12.0);
    CHECK(ok, "%s: lse[%lld] = %.9g, want %.9g", what, (long long)row, got,
          lse);
  }
}

static void check_merge64(const attn_merge_params *m, const char *what) {
  rowbuf rb;
  rowbuf_init(&rb, m->n_parts, m->o.shape[3]);
  for (int64_t b = 0; b < m->o.shape[0]; b++)
    for (int64_t i = 0; i < m->o.shape[1]; i++)
      for (int64_t h = 0; h < m->o.shape[2]; h++)
        check_row(m, &rb, b, i, h, what);
  rowbuf_free(&rb);
}

/* Outputs of a backward, for the bitwise comparisons. */
typedef struct grads {
  attn_tensor *dop; /* [n] f32 contiguous */
  float **dlse;     /* [n] */
  float *dsinks;
  float *dout_f, *dlse_in;
  attn_tensor dout;
} grads;

static void grads_new(tc_rng *r, const parts *ps, grads *g, int with_dlse) {
  g->dop = tc_alloc((size_t)ps->n * sizeof(attn_tensor));
  g->dlse = tc_alloc((size_t)ps->n * sizeof(float *));
  for (int64_t c = 0; c < ps->n; c++) {
    g->dop[c] = view_new(r, storage[tc_below(r, 3)], ps->sh, 1);
    g->dlse[c] = floats(ps->rows, NULL, 0);
  }
  g->dsinks = ps->sinks ? floats(ps->sh[2], NULL, 0) : NULL;
  g->dout = view_new(r, storage[tc_below(r, 3)], ps->sh, 1);
  for (int64_t b = 0; b < ps->sh[0]; b++)
    for (int64_t i = 0; i < ps->sh[1]; i++)
      for (int64_t h = 0; h < ps->sh[2]; h++)
        for (int64_t x = 0; x < ps->sh[3]; x++)
          tset(&g->dout, b, i, h, x, tc_normal(r));
  g->dlse_in = with_dlse ? floats(ps->rows, r, 1.0) : NULL;
  g->dout_f = NULL;
}

static void grads_free(const parts *ps, grads *g) {
  for (int64_t c = 0; c < ps->n; c++)
    free(g->dop[c].data), free(g->dlse[c]);
  free(g->dop), free(g->dlse), free(g->dsinks), free(g->dout.data);
  free(g->dlse_in);
}

static void grads_params(grads *g, attn_merge_params *m) {
  m->dout = g->dout;
  m->dlse = g->dlse_in;
  m->do_parts = g->dop;
  m->dlse_parts = g->dlse;
  m->dsinks = g->dsinks;
}

/* Every output byte of a forward (o's buffer, lse) or backward. */
static unsigned char *snap_fwd(const parts *ps, size_t *len) {
  const size_t ob = view_bytes(&ps->out), lb = (size_t)ps->rows * 4;
  unsigned char *s = tc_alloc(ob + lb);
  memcpy(s, ps->out.data, ob);
  if (ps->lse_out)
    memcpy(s + ob, ps->lse_out, lb);
  else
    memset(s + ob, 0, lb);
  *len = ob + lb;
  return s;
}

static unsigned char *snap_bwd(const parts *ps, const grads *g, size_t *len) {
  size_t n = ps->sinks ? (size_t)ps->sh[2] * 4 : 0;
  for (int64_t c = 0; c < ps->n; c++)
    n += view_bytes(&g->dop[c]) + (size_t)ps->rows * 4;
  unsigned char *s = tc_alloc(n), *at = s;
  for (int64_t c = 0; c < ps->n; c++) {
    memcpy(at, g->dop[c].data, view_bytes(&g->dop[c]));
    at += view_bytes(&g->dop[c]);
    memcpy(at, g->dlse[c], (size_t)ps->rows * 4);
    at += (size_t)ps->rows * 4;
  }
  if (ps->sinks)
    memcpy(at, g->dsinks, (size_t)ps->sh[2] * 4);
  *len = n;
  return s;
}

/* The same call on 1, 2, 3 threads and a 3-thread context: the same bits. */
static void check_threads(parts *ps, grads *g, attn_context *ctx3) {
  if (!ps->lse_out) /* the backward needs it */
    ps->lse_out = floats(ps->rows, NULL, 0);
  attn_merge_params m;
  char msg[256] = "";
  parts_params(ps, &m, msg, sizeof msg);
  grads_params(g, &m);
  unsigned char *ref_f = NULL, *ref_b = NULL;
  size_t lf = 0, lb = 0;
  for (int t = 1; t <= 4; t++) {
    m.num_threads = t <= 3 ? t : 0;
    attn_context *ctx = t <= 3 ? NULL : ctx3;
    memset(ps->out.data, 0, view_bytes(&ps->out));
    attn_status st = attn_merge(ctx, &m);
    CHECK(st == ATTN_OK, "threads %d: merge status %d (%s)", t, (int)st, msg);
    st = attn_merge_backward(ctx, &m);
    CHECK(st == ATTN_OK, "threads %d: backward status %d (%s)", t, (int)st,
          msg);
    size_t nf, nb;
    unsigned char *sf = snap_fwd(ps, &nf), *sb = snap_bwd(ps, g, &nb);
    if (t == 1) {
      ref_f = sf, ref_b = sb, lf = nf, lb = nb;
      continue;
    }
    CHECK(nf == lf && memcmp(sf, ref_f, nf) == 0,
          "threads %d: merge differs from 1 thread", t);
    CHECK(nb == lb && memcmp(sb, ref_b, nb) == 0,
          "threads %d: backward differs from 1 thread", t);
    free(sf), free(sb);
  }
  free(ref_f), free(ref_b);
}

static void test_arith(tc_rng *r, attn_context *ctx3) {
  static const int64_t dvs[] = {1, 3, 8, 64, 128, 255, 256, 257, 300, 513};
  static const int64_t sqs[] = {1, 2, 15, 16, 17, 33};
  const int cases = quick ? 60 : 300;
  for (int k = 0; k < cases; k++) {
    const int64_t sh[4] = {tc_range(r, 1, 3), sqs[tc_below(r, 6)],
                           tc_range(r, 1, 5), dvs[tc_below(r, 10)]};
    const int64_t n = tc_range(r, 1, 5);
    parts ps;
    parts_random(r, &ps, n, sh, 1, tc_chance(r, 0.4));
    ps.out = view_new(r, storage[tc_below(r, 3)], sh, 1);
    ps.lse_out = tc_chance(r, 0.9) ? floats(ps.rows, NULL, 0) : NULL;
    /* a few NaN and +inf LSEs */
    if (tc_chance(r, 0.2))
      ps.lse[tc_below(r, n)][tc_below(r, ps.rows)] =
          tc_chance(r, 0.5) ? NAN : INFINITY;
    attn_merge_params m;
    char msg[256] = "";
    parts_params(&ps, &m, msg, sizeof msg);
    const attn_status st = attn_merge(NULL, &m);
    CHECK(st == ATTN_OK, "arith case %d: status %d (%s)", k, (int)st, msg);
    char what[96];
    snprintf(what, sizeof what,
             "arith case %d (b%lld s%lld h%lld dv%lld n%lld)", k,
             (long long)sh[0], (long long)sh[1], (long long)sh[2],
             (long long)sh[3], (long long)n);
    check_merge64(&m, what);
    if (k % 10 == 0 || sh[0] * sh[1] * sh[2] * sh[3] > 20000) {
      grads g;
      grads_new(r, &ps, &g, tc_chance(r, 0.5));
      check_threads(&ps, &g, ctx3);
      grads_free(&ps, &g);
    }
    parts_free(&ps);
  }
}

/* One f32 part, f32 output, no sink: O and LSE come back bitwise. */
static void test_identity(tc_rng *r) {
  const int64_t sh[4] = {2, 21, 3, 130};
  parts ps;
  parts_random(r, &ps, 1, sh, 0, 0);
  ps.out = view_new(r, ATTN_DTYPE_F32, sh, 0);
  ps.lse_out = floats(ps.rows, NULL, 0);
  attn_merge_params m;
  parts_params(&ps, &m, NULL, 0);
  CHECK(attn_merge(NULL, &m) == ATTN_OK, "identity: status");
  int same = 1;
  for (int64_t b = 0; b < sh[0]; b++)
    for (int64_t i = 0; i < sh[1]; i++)
      for (int64_t h = 0; h < sh[2]; h++) {
        const int64_t row = (b * sh[2] + h) * sh[1] + i;
        const float l = ps.lse[0][row];
        if (memcmp(&l, &ps.lse_out[row], 4) != 0)
          same = 0;
        for (int64_t x = 0; x < sh[3]; x++) {
          const double want = l == -INFINITY ? 0.0 : tget(&ps.o[0], b, i, h, x);
          if (tget(&ps.out, b, i, h, x) != want)
            same = 0;
        }
      }
  CHECK(same, "identity: one f32 part is not returned bitwise");
  parts_free(&ps);
}

/* Hand-made rows: every rule of attn.h's paragraph. */
static void test_special(void) {
  enum { R = 12 };
  float l0[R] = {-INFINITY, -INFINITY, NAN,  1.0f, INFINITY, 0.5f,
                 -INFINITY, -INFINITY, 2.0f, 3.0f, 4.0f,     5.0f};
  float l1[R] = {-INFINITY, 1.0f, 0.0f, NAN,  0.0f, 0.5f,
                 -INFINITY, 2.0f, 2.0f, 3.0f, 4.0f, 5.0f};
  float *lse[2] = {l0, l1};
  float o0[36], o1[36], out[36], lo[R];
  for (int x = 0; x < 36; x++)
    o0[x] = NAN, o1[x] = (float)(x % 3) + 1.0f; /* o0: NaN garbage */
  /* rows of l0 that are finite get finite O (bshd: row (h, i) at i*6+h*3) */
  for (int h = 0; h < 2; h++)
    for (int i = 0; i < 6; i++)
      if (isfinite(l0[h * 6 + i]))
        for (int x = 0; x < 3; x++)
          o0[i * 6 + h * 3 + x] = 10.0f;
  attn_tensor ot[2] = {attn_tensor_bshd(o0, ATTN_DTYPE_F32, 1, 6, 2, 3),
                       attn_tensor_bshd(o1, ATTN_DTYPE_F32, 1, 6, 2, 3)};
  const float sinks[2] = {-INFINITY, 0.0f};
  attn_merge_params m;
  attn_merge_params_init(&m);
  m.n_parts = 2;
  m.o_parts = ot;
  m.lse_parts = (const float *const *)lse;
  m.o = attn_tensor_bshd(out, ATTN_DTYPE_F32, 1, 6, 2, 3);
  m.lse = lo;
  for (int with_sinks = 0; with_sinks < 2; with_sinks++) {
    m.sinks = with_sinks ? sinks : NULL;
    CHECK(attn_merge(NULL, &m) == ATTN_OK, "special: status");
    /* head 0, row 0: nothing saw it: O = 0, LSE = -inf (no sink there) */
    CHECK(lo[0] == -INFINITY && out[0] == 0 && out[1] == 0 && out[2] == 0,
          "special: a row every part missed is not 0 / -inf");
    /* row 1: part 0 missed it (NaN garbage unread) */
    CHECK(lo[1] == 1.0f && out[6] == 1.0f && out[8] == 3.0f,
          "special: a -inf part was read (lse %g, o %g)", (double)lo[1],
          (double)out[6]);
    CHECK(isnan(lo[2]) && isnan(out[12]) && isnan(lo[3]) && isnan(out[18]),
          "special: a NaN LSE does not make the row NaN");
    CHECK(isnan(lo[4]) && isnan(out[24]), "special: +inf LSE is not NaN");
    CHECK(fabsf(lo[5] - (0.5f + logf(2.0f))) < 1e-6f,
          "special: equal LSEs give %g", (double)lo[5]);
    /* head 1 (sink 0 when on), row 0: every part missed */
    const int64_t r6 = 6;
    if (with_sinks)
      CHECK(lo[r6] == 0.0f && out[3] == 0.0f,
            "special: a missed row with a sink is not O = 0, LSE = sink");
    else
      CHECK(lo[r6] == -INFINITY && out[3] == 0.0f,
            "special: head 1 missed row");
  }
}

/* ---------------------------------------------------------------------- */
/* split: real attention over disjoint key ranges                         */
/* ---------------------------------------------------------------------- */

typedef struct prob {
  int64_t b, sq, sk, hq, hk, d, dv;
  float *q, *k, *v, *slopes, *sinks;
  int32_t *kv_lens;
  attn_params p; /* the whole problem: q, k, v, options; no o, no sinks */
} prob;

static void prob_random(tc_rng *r, prob *f, int small) {
  static const int64_t sqs[] = {1, 2, 5, 17, 47, 48, 49, 64, 97};
  static const int64_t sks[] = {1, 2, 7, 63, 64, 65, 130, 513, 700};
  static const int64_t hs[][2] = {{1, 1}, {4, 2}, {3, 3}, {6, 2}, {8, 1}};
  static const int64_t ds[][2] = {{1, 1}, {8, 8}, {33, 17}, {64, 64}};
  memset(f, 0, sizeof *f);
  f->b = tc_range(r, 1, 2);
  f->sq = sqs[tc_below(r, small ? 6 : 9)];
  f->sk = sks[tc_below(r, small ? 7 : 9)];
  const int hi = (int)tc_below(r, 5), di = (int)tc_below(r, small ? 3 : 4);
  f->hq = hs[hi][0], f->hk = hs[hi][1];
  f->d = ds[di][0], f->dv = ds[di][1];
  f->q = floats(f->b * f->sq * f->hq * f->d, r, 1.0);
  f->k = floats(f->b * f->sk * f->hk * f->d, r, 1.0);
  f->v = floats(f->b * f->sk * f->hk * f->dv, r, 1.0);
  attn_params *p = &f->p;
  attn_params_init(p);
  p->q = attn_tensor_bshd(f->q, ATTN_DTYPE_F32, f->b, f->sq, f->hq, f->d);
  p->k = attn_tensor_bshd(f->k, ATTN_DTYPE_F32, f->b, f->sk, f->hk, f->d);
  p->v = attn_tensor_bshd(f->v, ATTN_DTYPE_F32, f->b, f->sk, f->hk, f->dv);
  if (tc_chance(r, 0.5))
    p->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  if (tc_chance(r, 0.2)) {
    p->window_left = tc_range(r, 0, 40);
    p->window_right = tc_chance(r, 0.5) ? -1 : tc_range(r, 0, 10);
  }
  if (tc_chance(r, 0.2))
    p->softcap = (float)tc_uniform(r, 2, 20);
  if (tc_chance(r, 0.2)) {
    f->slopes = floats(f->hq, NULL, 0);
    attn_alibi_slopes(f->hq, f->slopes);
    p->alibi_slopes = f->slopes;
  }
  if (tc_chance(r, 0.3)) {
    f->kv_lens = tc_alloc((size_t)f->b * sizeof(int32_t));
    for (int64_t b = 0; b < f->b; b++)
      f->kv_lens[b] = (int32_t)tc_range(r, 0, f->sk);
    p->kv_lens = f->kv_lens;
  }
  if (tc_chance(r, 0.5)) {
    f->sinks = floats(f->hq, r, 2.0);
    for (int64_t h = 0; h < f->hq; h++)
      if (tc_chance(r, 0.2))
        f->sinks[h] = -INFINITY;
  }
  p->num_threads = (int)tc_range(r, 1, 3);
}

static void prob_free(prob *f) {
  free(f->q), free(f->k), free(f->v), free(f->slopes), free(f->sinks);
  free(f->kv_lens);
}

/* The keys [a, a + n) of f as a problem of their own, with the positions
 * and key lengths of the whole (n = 0: one key of length 0 everywhere). */
typedef struct part {
  int64_t a, n;
  int manual; /* n = 0 made by hand: LSE -inf over NaN garbage */
  int32_t *kvl;
  int64_t *qoffs;
  attn_params p;
  float *o, *lse;
} part;

static void part_make(const prob *f, int64_t a, int64_t n, part *pc) {
  pc->a = a, pc->n = n;
  pc->kvl = tc_alloc((size_t)f->b * sizeof(int32_t));
  pc->qoffs = tc_alloc((size_t)f->b * sizeof(int64_t));
  pc->p = f->p;
  const int64_t a0 = n > 0 ? a : 0, ns = n > 0 ? n : 1;
  pc->p.k = slice(&f->p.k, a0, ns);
  pc->p.v = slice(&f->p.v, a0, ns);
  for (int64_t b = 0; b < f->b; b++) {
    const int64_t len = f->kv_lens ? f->kv_lens[b] : f->sk;
    const int64_t kl = len - a < 0 ? 0 : len - a < n ? len - a : n;
    pc->kvl[b] = (int32_t)kl;
    pc->qoffs[b] = len - kl; /* query i at i + len - sq, as in the whole */
  }
  pc->p.kv_lens = pc->kvl;
  pc->p.q_pos_offsets = pc->qoffs;
  pc->p.k_pos_offset = a;
  const int64_t no = f->b * f->sq * f->hq * f->dv;
  pc->o = floats(no, NULL, 0);
  pc->lse = floats(f->b * f->hq * f->sq, NULL, 0);
  pc->p.o = attn_tensor_bshd(pc->o, ATTN_DTYPE_F32, f->b, f->sq, f->hq, f->dv);
  pc->p.lse = pc->lse;
}

static void part_free(part *pc) {
  free(pc->kvl), free(pc->qoffs), free(pc->o), free(pc->lse);
}

/* Cuts [0, sk) into n ranges of random sizes (some empty). */
static void cut(tc_rng *r, int64_t sk, int64_t n, int64_t *at) {
  at[0] = 0;
  at[n] = sk;
  for (int64_t c = 1; c < n; c++)
    at[c] = tc_range(r, 0, sk);
  for (int64_t c = 1; c < n; c++) /* sort */
    for (int64_t e = c; e > 1 && at[e] < at[e - 1]; e--) {
      const int64_t t = at[e];
      at[e] = at[e - 1], at[e - 1] = t;
    }
}

/* Runs every part (attn_forward, or by hand); returns 0 on a failure. */
static int parts_run(tc_rng *r, const prob *f, int64_t n, const int64_t *at,
                     part *pcs) {
  for (int64_t c = 0; c < n; c++) {
    part *pc = &pcs[c];
    part_make(f, at[c], at[c + 1] - at[c], pc);
    pc->manual = pc->n == 0 && tc_chance(r, 0.5);
    if (pc->manual) {
      memset(pc->o, 0xFF, (size_t)(f->b * f->sq * f->hq * f->dv) * 4);
      for (int64_t x = 0; x < f->b * f->hq * f->sq; x++)
        pc->lse[x] = -INFINITY;
      continue;
    }
    char msg[256] = "";
    pc->p.error_message = msg;
    pc->p.error_message_size = sizeof msg;
    const attn_status st = attn_forward(NULL, &pc->p);
    pc->p.error_message = NULL;
    CHECK(st == ATTN_OK, "part %lld [%lld, +%lld): attn_forward status %d (%s)",
          (long long)c, (long long)pc->a, (long long)pc->n, (int)st, msg);
    if (st != ATTN_OK)
      return 0;
  }
  return 1;
}

/* The oracle's result with a sink joined by its own formula, in double
 * (ref) and in f32 (the naive reference): lse' = log(e^lse + e^sink),
 * o' = o e^(lse - lse'); a row without keys gets o = 0, lse = sink. */
static void add_sinks(const attn_params *p, const float *sinks, oracle_ref *ref,
                      oracle_naive *nv) {
  const int64_t B = p->q.shape[0], S = p->q.shape[1], H = p->q.shape[2],
                DV = p->v.shape[3];
  ref->max_abs_o = 0.0;
  ref->max_abs_lse = 0.0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t i = 0; i < S; i++) {
        const int64_t ri = oracle_row_index(p, b, h, i);
        const int64_t oi = oracle_o_index(p, b, i, h);
        const double s = sinks[h];
        if (s > -INFINITY) {
          const double l = ref->lse[ri];
          const double top = fmax(l, s);
          const double ln = top + log(exp(l - top) + exp(s - top));
          const double a = l == -INFINITY ? 0.0 : exp(l - ln);
          for (int64_t x = 0; x < DV; x++)
            ref->o[oi + x] *= a;
          ref->cond_o[ri] *= a;
          ref->cond_lse[ri] *= a;
          ref->lse[ri] = ln;
          ref->empty[ri] = 0;
          const float lf = nv->lse[ri], sf = (float)s;
          const float tf = fmaxf(lf, sf);
          const float lnf = tf + logf((lf == -INFINITY ? 0.0f : expf(lf - tf)) +
                                      expf(sf - tf));
          const float af = lf == -INFINITY ? 0.0f : expf(lf - lnf);
          for (int64_t x = 0; x < DV; x++)
            nv->o[oi + x] = oracle_round_to(p->o.dtype, nv->o[oi + x] * af);
          nv->lse[ri] = lnf;
        }
        for (int64_t x = 0; x < DV; x++)
          ref->max_abs_o = fmax(ref->max_abs_o, fabs(ref->o[oi + x]));
        if (isfinite(ref->lse[ri]))
          ref->max_abs_lse = fmax(ref->max_abs_lse, fabs(ref->lse[ri]));
      }
}

static void report_cmp(const char *what, const oracle_cmp *c) {
  CHECK(c->ok, "%s: %s", what, c->problem);
  if (verbose || !c->ok)
    printf("  %s: o err %.3g (naive %.3g, floor %.3g, budget %.2f), lse err "
           "%.3g (budget %.2f)\n",
           what, c->err_o, c->err_o_naive, c->floor_o, c->budget_o, c->err_lse,
           c->budget_lse);
}

static void test_split_case(tc_rng *r, int k) {
  prob f;
  prob_random(r, &f, 0);
  const int64_t n = tc_range(r, 1, 5);
  int64_t at[6];
  cut(r, f.sk, n, at);
  part pcs[5];
  char what[160];
  snprintf(what, sizeof what,
           "split %d (b%lld sq%lld sk%lld hq%lld hk%lld d%lld dv%lld causal%d "
           "win%lld,%lld kvl%d alibi%d cap%g sinks%d n%lld)",
           k, (long long)f.b, (long long)f.sq, (long long)f.sk, (long long)f.hq,
           (long long)f.hk, (long long)f.d, (long long)f.dv, (int)f.p.causal,
           (long long)f.p.window_left, (long long)f.p.window_right,
           f.kv_lens != NULL, f.slopes != NULL, (double)f.p.softcap,
           f.sinks != NULL, (long long)n);
  if (!parts_run(r, &f, n, at, pcs)) {
    prob_free(&f);
    return;
  }
  /* the merge, into a random dtype and layout */
  attn_tensor ot[5];
  float *lp[5];
  for (int64_t c = 0; c < n; c++)
    ot[c] = pcs[c].p.o, lp[c] = pcs[c].lse;
  const int64_t sh[4] = {f.b, f.sq, f.hq, f.dv};
  attn_merge_params m;
  char msg[256] = "";
  attn_merge_params_init(&m);
  m.n_parts = n;
  m.o_parts = ot;
  m.lse_parts = (const float *const *)lp;
  m.o = view_new(r, storage[tc_below(r, 3)], sh, 1);
  m.lse = floats(f.b * f.hq * f.sq, NULL, 0);
  m.sinks = f.sinks;
  m.num_threads = (int)tc_range(r, 0, 3);
  m.error_message = msg;
  m.error_message_size = sizeof msg;
  attn_status st = attn_merge(NULL, &m);
  CHECK(st == ATTN_OK, "%s: merge status %d (%s)", what, (int)st, msg);
  /* the oracle on all keys, sinks joined by hand */
  attn_params pm = f.p;
  pm.o = m.o;
  pm.lse = m.lse;
  oracle_ref ref;
  oracle_naive nv;
  if (st == ATTN_OK && oracle_forward(&pm, &ref) == 0 &&
      oracle_naive_f32(&pm, &nv) == 0) {
    if (f.sinks)
      add_sinks(&pm, f.sinks, &ref, &nv);
    oracle_cmp cmp;
    oracle_compare(&pm, &ref, &nv, &cmp);
    report_cmp(what, &cmp);
    /* attn_forward on all keys, when its output is comparable (f32) */
    if (m.o.dtype == ATTN_DTYPE_F32 && (!f.sinks || sinks_fwd)) {
      attn_params pf = f.p;
      float *of = floats(f.b * f.sq * f.hq * f.dv, NULL, 0);
      float *lf = floats(f.b * f.hq * f.sq, NULL, 0);
      pf.o = attn_tensor_bshd(of, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.dv);
      pf.lse = lf;
      pf.sinks = f.sinks;
      CHECK(attn_forward(NULL, &pf) == ATTN_OK, "%s: attn_forward", what);
      pf.sinks = NULL; /* the oracle has them joined already */
      oracle_cmp cf;
      oracle_compare(&pf, &ref, &nv, &cf);
      char w2[200];
      snprintf(w2, sizeof w2, "%s, attn_forward on all keys", what);
      report_cmp(w2, &cf);
      double dmax = 0.0;
      for (int64_t b = 0; b < f.b; b++)
        for (int64_t i = 0; i < f.sq; i++)
          for (int64_t h = 0; h < f.hq; h++)
            for (int64_t x = 0; x < f.dv; x++)
              dmax = fmax(
                  dmax, fabs(tget(&m.o, b, i, h, x) - tget(&pf.o, b, i, h, x)));
      if (verbose)
        printf("  %s: max |merge - attn_forward| = %.3g\n", what, dmax);
      free(of), free(lf);
    }
    oracle_ref_free(&ref);
    oracle_naive_free(&nv);
  }
  free(m.o.data), free(m.lse);
  for (int64_t c = 0; c < n; c++)
    part_free(&pcs[c]);
  prob_free(&f);
}

/* ---------------------------------------------------------------------- */
/* fd: the backward against finite differences of the merge in double     */
/* ---------------------------------------------------------------------- */

/* L = sum_x G[x] O[x] + g (LSE - shift) over one row, the merge in
 * double. */
static double row_loss(rowbuf *rb, int64_t n, int64_t dv, double sink,
                       double shift, const double *G, double g) {
  const double lse = merge_row64s(n, dv, rb->lse, rb->o, sink, shift, rb->out);
  double s = 0.0;
  for (int64_t x = 0; x < dv; x++)
    s += G[x] * rb->out[x];
  return s + (isfinite(lse) ? g * lse : 0.0);
}

static void test_fd_case(tc_rng *r, int k) {
  const int64_t sh[4] = {tc_range(r, 1, 2), tc_range(r, 1, 5),
                         tc_range(r, 1, 3), tc_range(r, 1, 9)};
  const int64_t n = tc_range(r, 1, 5), dv = sh[3];
  parts ps;
  parts_random(r, &ps, n, sh, 0, tc_chance(r, 0.5));
  ps.out = view_new(r, ATTN_DTYPE_F32, sh, 1);
  ps.lse_out = floats(ps.rows, NULL, 0);
  grads g;
  grads_new(r, &ps, &g, tc_chance(r, 0.6));
  attn_merge_params m;
  char msg[256] = "";
  parts_params(&ps, &m, msg, sizeof msg);
  grads_params(&g, &m);
  CHECK(attn_merge(NULL, &m) == ATTN_OK, "fd %d: merge (%s)", k, msg);
  CHECK(attn_merge_backward(NULL, &m) == ATTN_OK, "fd %d: backward (%s)", k,
        msg);
  rowbuf rb;
  rowbuf_init(&rb, n, dv);
  double *G = tc_alloc((size_t)dv * sizeof(double));
  double *dsink = tc_alloc((size_t)sh[2] * sizeof(double));
  double *dsink_tol = tc_alloc((size_t)sh[2] * sizeof(double));
  for (int64_t h = 0; h < sh[2]; h++)
    dsink[h] = dsink_tol[h] = 0.0;
  const double eps = 1e-5;
  for (int64_t b = 0; b < sh[0]; b++)
    for (int64_t i = 0; i < sh[1]; i++)
      for (int64_t h = 0; h < sh[2]; h++) {
        const int64_t row = (b * sh[2] + h) * sh[1] + i;
        const double gl = g.dlse_in ? g.dlse_in[row] : 0.0;
        const double sink = ps.sinks ? ps.sinks[h] : -INFINITY;
        double gsum = 0.0, onorm = 0.0;
        for (int64_t x = 0; x < dv; x++) {
          G[x] = tget(&g.dout, b, i, h, x);
          gsum += fabs(G[x]);
          onorm = fmax(onorm, fabs(tget(&ps.out, b, i, h, x)));
        }
        rowbuf_load(&rb, &m, b, i, h);
        const double top = row_top(n, rb.lse, sink);
        const double L = ps.lse_out[row];
        /* The library's inputs are the f32 O and LSE of attn_merge: their
         * errors (check_row's bounds) e_l in LSE, e_o in O, move every
         * weight by e_l relatively and rowsum(dO (O_c - O)) by
         * sum |dO| e_o; 16 u more for the f32 arithmetic. */
        double omax = 0.0;
        for (int64_t x = 0; x < n * dv; x++)
          omax = fmax(omax, fabs(rb.o[x]));
        const double e_l = U32 * (2.0 * fabs(L) + 4.0 * n + 12.0) + 16 * U32;
        const double e_o = (4.0 * n + 8.0) * U32 * omax;
        for (int64_t c = 0; c < n; c++) {
          const double lc = rb.lse[c];
          const double w = lc == -INFINITY ? 0.0 : exp(lc - L);
          /* dO_c: by differences on each element of O_c */
          for (int64_t x = 0; x < dv && lc > -INFINITY; x++) {
            const double o0 = rb.o[c * dv + x];
            rb.o[c * dv + x] = o0 + eps;
            const double lp = row_loss(&rb, n, dv, sink, top, G, gl);
            rb.o[c * dv + x] = o0 - eps;
            const double lm = row_loss(&rb, n, dv, sink, top, G, gl);
            rb.o[c * dv + x] = o0;
            const double fd = (lp - lm) / (2 * eps);
            const double got = tget(&g.dop[c], b, i, h, x);
            const double uo = g.dop[c].dtype == ATTN_DTYPE_BF16  ? ldexp(1, -8)
                              : g.dop[c].dtype == ATTN_DTYPE_F16 ? ldexp(1, -11)
                                                                 : 0.0;
            /* f16 below 2^-14 is subnormal: half an ulp is 2^-25 */
            const double sub =
                g.dop[c].dtype == ATTN_DTYPE_F16 ? ldexp(1, -25) : 0.0;
            const double tol =
                fabs(fd) * (e_l + uo) + sub + 1e-9 * (1.0 + fabs(fd)) + 1e-12;
            CHECK(fabs(got - fd) <= tol,
                  "fd %d: do_parts[%lld][%lld, %lld, %lld, %lld] = %.9g, "
                  "differences %.9g",
                  k, (long long)c, (long long)b, (long long)i, (long long)h,
                  (long long)x, got, fd);
          }
          /* dLSE_c */
          const double got = g.dlse[c][row];
          if (lc == -INFINITY || !isfinite(L)) {
            CHECK(got == 0.0 &&
                      (lc > -INFINITY || tget(&g.dop[c], b, i, h, 0) == 0.0),
                  "fd %d: part %lld missed row %lld but has gradient %g", k,
                  (long long)c, (long long)row, got);
            continue;
          }
          rb.lse[c] = lc + eps;
          const double lp = row_loss(&rb, n, dv, sink, top, G, gl);
          rb.lse[c] = lc - eps;
          const double lm = row_loss(&rb, n, dv, sink, top, G, gl);
          rb.lse[c] = lc;
          const double fd = (lp - lm) / (2 * eps);
          double scale = fabs(gl);
          for (int64_t x = 0; x < dv; x++)
            scale += fabs(G[x]) * (fabs(rb.o[c * dv + x]) + onorm);
          const double tol =
              w * (scale * e_l + gsum * e_o) + 1e-9 * (1.0 + fabs(fd));
          CHECK(fabs(got - fd) <= tol,
                "fd %d: dlse_parts[%lld][%lld] = %.9g, differences %.9g "
                "(tol %.3g)",
                k, (long long)c, (long long)row, got, fd, tol);
        }
        /* the sink's share, by differences of this row */
        if (sink > -INFINITY && isfinite(L)) {
          const double lp = row_loss(&rb, n, dv, sink + eps, top, G, gl);
          const double lm = row_loss(&rb, n, dv, sink - eps, top, G, gl);
          dsink[h] += (lp - lm) / (2 * eps);
          double scale = fabs(gl);
          for (int64_t x = 0; x < dv; x++)
            scale += fabs(G[x]) * onorm;
          dsink_tol[h] += exp(sink - L) * (scale * e_l + gsum * e_o) +
                          1e-9 * (1.0 + fabs(dsink[h]));
        }
      }
  for (int64_t h = 0; h < sh[2] && ps.sinks; h++) {
    const double got = g.dsinks[h];
    CHECK(fabs(got - dsink[h]) <= dsink_tol[h] + 4 * U32 * fabs(dsink[h]),
          "fd %d: dsinks[%lld] = %.9g, differences %.9g", k, (long long)h, got,
          dsink[h]);
  }
  free(G), free(dsink), free(dsink_tol);
  rowbuf_free(&rb);
  grads_free(&ps, &g);
  parts_free(&ps);
}

/* ---------------------------------------------------------------------- */
/* chain: merge_backward, then attn_backward per part = the whole's grads  */
/* ---------------------------------------------------------------------- */

/* Part c's attn_backward sees dO_c = w_c dO and computes dS = P_c (dP_c -
 * D') with D' = rowsum(dO_c * o) of the o it is given. The chain rule
 * through LSE_c adds dLSE_c P_c, i.e. D' = rowsum(dO_c * O_c) - dLSE_c:
 * o = O_c - dLSE_c dO_c / |dO_c|^2 does exactly that (O_c where dO_c = 0,
 * which is where w_c = 0 and so dLSE_c = 0). */
static float *inject(const prob *f, const part *pc, const float *dop,
                     const float *dlse) {
  const int64_t dv = f->dv;
  float *o = floats(f->b * f->sq * f->hq * dv, NULL, 0);
  for (int64_t b = 0; b < f->b; b++)
    for (int64_t i = 0; i < f->sq; i++)
      for (int64_t h = 0; h < f->hq; h++) {
        const int64_t at = ((b * f->sq + i) * f->hq + h) * dv;
        const int64_t row = (b * f->hq + h) * f->sq + i;
        double nn = 0.0;
        for (int64_t x = 0; x < dv; x++)
          nn += (double)dop[at + x] * dop[at + x];
        const double a = nn > 0.0 ? (double)dlse[row] / nn : 0.0;
        for (int64_t x = 0; x < dv; x++)
          o[at + x] = (float)((double)pc->o[at + x] - a * dop[at + x]);
      }
  return o;
}

static void test_chain_case(tc_rng *r, int k) {
  prob f;
  prob_random(r, &f, 1);
  if (f.sinks && !(sinks_fwd && sinks_bwd)) {
    free(f.sinks);
    f.sinks = NULL;
  }
  const int64_t n = tc_range(r, 1, 4);
  int64_t at[6];
  cut(r, f.sk, n, at);
  part pcs[5];
  char what[160];
  snprintf(what, sizeof what,
           "chain %d (b%lld sq%lld sk%lld hq%lld hk%lld d%lld dv%lld causal%d "
           "win%lld,%lld kvl%d alibi%d cap%g sinks%d n%lld)",
           k, (long long)f.b, (long long)f.sq, (long long)f.sk, (long long)f.hq,
           (long long)f.hk, (long long)f.d, (long long)f.dv, (int)f.p.causal,
           (long long)f.p.window_left, (long long)f.p.window_right,
           f.kv_lens != NULL, f.slopes != NULL, (double)f.p.softcap,
           f.sinks != NULL, (long long)n);
  if (!parts_run(r, &f, n, at, pcs)) {
    prob_free(&f);
    return;
  }
  const int64_t no = f.b * f.sq * f.hq * f.dv, nr = f.b * f.hq * f.sq;
  const int64_t nq = f.b * f.sq * f.hq * f.d;
  /* merge and its backward (dlse NULL: attn_backward has no dLSE input) */
  attn_tensor ot[5], dot[5];
  float *lp[5], *dlp[5], *dsinks = f.sinks ? floats(f.hq, NULL, 0) : NULL;
  for (int64_t c = 0; c < n; c++) {
    ot[c] = pcs[c].p.o, lp[c] = pcs[c].lse;
    dot[c] = attn_tensor_bshd(floats(no, NULL, 0), ATTN_DTYPE_F32, f.b, f.sq,
                              f.hq, f.dv);
    dlp[c] = floats(nr, NULL, 0);
  }
  float *om = floats(no, NULL, 0), *lm = floats(nr, NULL, 0);
  float *dout = floats(no, r, 1.0);
  attn_merge_params m;
  char msg[256] = "";
  attn_merge_params_init(&m);
  m.n_parts = n;
  m.o_parts = ot;
  m.lse_parts = (const float *const *)lp;
  m.o = attn_tensor_bshd(om, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.dv);
  m.lse = lm;
  m.sinks = f.sinks;
  m.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.dv);
  m.do_parts = dot;
  m.dlse_parts = dlp;
  m.dsinks = dsinks;
  m.error_message = msg;
  m.error_message_size = sizeof msg;
  CHECK(attn_merge(NULL, &m) == ATTN_OK, "%s: merge (%s)", what, msg);
  CHECK(attn_merge_backward(NULL, &m) == ATTN_OK, "%s: backward (%s)", what,
        msg);
  /* attn_backward of every part, dQ summed, dK and dV side by side */
  const int64_t nk = f.b * f.sk * f.hk;
  float *dk = floats(nk * f.d, NULL, 0), *dv = floats(nk * f.dv, NULL, 0);
  float *dq = floats(nq, NULL, 0), *dqc = floats(nq, NULL, 0);
  double *dq64 = tc_alloc((size_t)nq * sizeof(double));
  for (int64_t x = 0; x < nq; x++)
    dq64[x] = 0.0;
  const attn_tensor dkt =
      attn_tensor_bshd(dk, ATTN_DTYPE_F32, f.b, f.sk, f.hk, f.d);
  const attn_tensor dvt =
      attn_tensor_bshd(dv, ATTN_DTYPE_F32, f.b, f.sk, f.hk, f.dv);
  for (int64_t c = 0; c < n; c++) {
    part *pc = &pcs[c];
    if (pc->n == 0)
      continue; /* no key: nothing to differentiate */
    float *oi = inject(&f, pc, (const float *)dot[c].data, dlp[c]);
    attn_params pb = pc->p;
    pb.o = attn_tensor_bshd(oi, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.dv);
    pb.dout = dot[c];
    pb.dq = attn_tensor_bshd(dqc, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.d);
    pb.dk = slice(&dkt, pc->a, pc->n);
    pb.dv = slice(&dvt, pc->a, pc->n);
    pb.error_message = msg;
    pb.error_message_size = sizeof msg;
    const attn_status st = attn_backward(NULL, &pb);
    CHECK(st == ATTN_OK, "%s: attn_backward of part %lld: %d (%s)", what,
          (long long)c, (int)st, msg);
    for (int64_t x = 0; x < nq; x++)
      dq64[x] += dqc[x];
    free(oi);
  }
  for (int64_t x = 0; x < nq; x++)
    dq[x] = (float)dq64[x];
  /* the whole problem: attn_forward, the oracle's gradients */
  attn_params pw = f.p;
  float *ow = floats(no, NULL, 0), *lw = floats(nr, NULL, 0);
  pw.o = attn_tensor_bshd(ow, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.dv);
  pw.lse = lw;
  pw.sinks = f.sinks;
  CHECK(attn_forward(NULL, &pw) == ATTN_OK, "%s: attn_forward", what);
  pw.dout = m.dout;
  pw.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, f.b, f.sq, f.hq, f.d);
  pw.dk = dkt;
  pw.dv = dvt;
  pw.dsinks = dsinks;
  oracle_grads ref, nv;
  if (oracle_backward(&pw, &ref) == 0 && oracle_backward_f32(&pw, &nv) == 0) {
    oracle_grad_cmp cmp;
    oracle_grads_compare(&pw, &ref, &nv, &cmp);
    CHECK(cmp.ok, "%s: %s", what, cmp.problem);
    if (verbose || !cmp.ok)
      printf("  %s: dq err %.3g (naive %.3g, budget %.2f), dk %.3g (%.2f), "
             "dv %.3g (%.2f)%s\n",
             what, cmp.err[0], cmp.naive[0], cmp.budget[0], cmp.err[1],
             cmp.budget[1], cmp.err[2], cmp.budget[2],
             dsinks ? ", dsinks checked" : "");
    /* the library's own backward on all keys passes the same rule */
    float *dq2 = floats(nq, NULL, 0), *dk2 = floats(nk * f.d, NULL, 0);
    float *dv2 = floats(nk * f.dv, NULL, 0);
    float *ds2 = f.sinks ? floats(f.hq, NULL, 0) : NULL;
    attn_params p2 = pw;
    p2.dq.data = dq2, p2.dk.data = dk2, p2.dv.data = dv2, p2.dsinks = ds2;
    CHECK(attn_backward(NULL, &p2) == ATTN_OK, "%s: attn_backward", what);
    oracle_grads_compare(&p2, &ref, &nv, &cmp);
    CHECK(cmp.ok, "%s, attn_backward on all keys: %s", what, cmp.problem);
    free(dq2), free(dk2), free(dv2), free(ds2);
    oracle_grads_free(&ref);
    oracle_grads_free(&nv);
  }
  free(ow), free(lw), free(dk), free(dv), free(dq), free(dqc), free(dq64);
  free(om), free(lm), free(dout), free(dsinks);
  for (int64_t c = 0; c < n; c++) {
    free(dot[c].data), free(dlp[c]);
    part_free(&pcs[c]);
  }
  prob_free(&f);
}

/* ---------------------------------------------------------------------- */
/* status: every bad input                                                */
/* ---------------------------------------------------------------------- */

typedef struct bad {
  float o0[2 * 3 * 2 * 4], o1[2 * 3 * 2 * 4], out[2 * 3 * 2 * 4];
  float l0[12], l1[12], lout[12], sinks[2], dsinks[2];
  float dout[48], d0[48], d1[48], dl0[12], dl1[12], dlse[12];
  attn_tensor ot[2], dt[2];
  float *lp[2], *dlp[2];
  attn_merge_params m;
  char msg[256];
} bad;

static void bad_reset(bad *z) {
  memset(z, 0, sizeof *z);
  const int64_t sh[4] = {2, 3, 2, 4};
  z->ot[0] =
      attn_tensor_bshd(z->o0, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  z->ot[1] =
      attn_tensor_bshd(z->o1, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  z->dt[0] =
      attn_tensor_bshd(z->d0, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  z->dt[1] =
      attn_tensor_bshd(z->d1, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  z->lp[0] = z->l0, z->lp[1] = z->l1;
  z->dlp[0] = z->dl0, z->dlp[1] = z->dl1;
  attn_merge_params *m = &z->m;
  attn_merge_params_init(m);
  m->n_parts = 2;
  m->o_parts = z->ot;
  m->lse_parts = (const float *const *)z->lp;
  m->o = attn_tensor_bshd(z->out, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  m->lse = z->lout;
  m->sinks = z->sinks;
  m->dout =
      attn_tensor_bshd(z->dout, ATTN_DTYPE_F32, sh[0], sh[1], sh[2], sh[3]);
  m->dlse = z->dlse;
  m->do_parts = z->dt;
  m->dlse_parts = z->dlp;
  m->dsinks = z->dsinks;
  m->error_message = z->msg;
  m->error_message_size = sizeof z->msg;
}

/* The call (forward or backward) fails with st and a message holding s. */
static void expect(bad *z, int bwd, attn_status st, const char *s,
                   const char *what) {
  memset(z->msg, 0, sizeof z->msg);
  for (int x = 0; x < 48; x++)
    z->out[x] = 7.0f;
  const attn_status got =
      bwd ? attn_merge_backward(NULL, &z->m) : attn_merge(NULL, &z->m);
  CHECK(got == st, "status %s: got %d (%s), want %d", what, (int)got, z->msg,
        (int)st);
  CHECK(strstr(z->msg, s) != NULL, "status %s: message '%s' lacks '%s'", what,
        z->msg, s);
  CHECK(bwd || z->out[0] == 7.0f, "status %s: o written by a failed call",
        what);
  if (verbose)
    printf("  %s: %s\n", what, z->msg);
}

static void test_status(void) {
  bad z;
  attn_merge_params *m = &z.m;
  /* the good calls first */
  bad_reset(&z);
  CHECK(attn_merge(NULL, m) == ATTN_OK, "status: good forward (%s)", z.msg);
  CHECK(attn_merge_backward(NULL, m) == ATTN_OK, "status: good backward (%s)",
        z.msg);
  CHECK(attn_merge(NULL, NULL) == ATTN_ERR_NULL_POINTER, "status: m NULL");
  CHECK(attn_merge_backward(NULL, NULL) == ATTN_ERR_NULL_POINTER,
        "status: m NULL (backward)");
  /* ABI: a smaller size is refused silently, a larger one with a reason */
  bad_reset(&z);
  CHECK(attn_merge_sized(NULL, m, sizeof *m - 8) == ATTN_ERR_ABI &&
            z.msg[0] == 0,
        "status: smaller struct size");
  {
    unsigned char big[sizeof(attn_merge_params) + 16];
    memset(big, 0, sizeof big);
    memcpy(big, m, sizeof *m);
    CHECK(attn_merge_sized(NULL, (const attn_merge_params *)(void *)big,
                           sizeof big) == ATTN_ERR_ABI &&
              strstr(z.msg, "attn_merge_params is") != NULL,
          "status: larger struct size: '%s'", z.msg);
    memset(big, 0xAB, sizeof big);
    attn_merge_params_init_sized((attn_merge_params *)(void *)big, sizeof big);
    CHECK(big[0] == 0xAB && big[sizeof big - 1] == 0xAB,
          "status: init_sized with an unknown size wrote");
  }
  bad_reset(&z), m->n_parts = 0;
  expect(&z, 0, ATTN_ERR_INVALID_ARGUMENT, "n_parts (0)", "n_parts 0");
  bad_reset(&z), m->n_parts = -3;
  expect(&z, 1, ATTN_ERR_INVALID_ARGUMENT, "n_parts (-3)", "n_parts -3");
  bad_reset(&z), m->o_parts = NULL;
  expect(&z, 0, ATTN_ERR_NULL_POINTER, "o_parts is NULL", "o_parts NULL");
  bad_reset(&z), m->lse_parts = NULL;
  expect(&z, 0, ATTN_ERR_NULL_POINTER, "lse_parts is NULL", "lse_parts NULL");
  bad_reset(&z), z.lp[1] = NULL;
  expect(&z, 0, ATTN_ERR_NULL_POINTER, "lse_parts[1] is NULL", "lse_parts[1]");
  bad_reset(&z), m->o.data = NULL;
  expect(&z, 0, ATTN_ERR_NULL_POINTER, "o.data is NULL", "o NULL");
  bad_reset(&z), z.ot[1].data = NULL;
  expect(&z, 0, ATTN_ERR_NULL_POINTER, "o_parts[1].data is NULL",
         "o_parts[1] NULL");
  bad_reset(&z), z.ot[0].dtype = ATTN_DTYPE_BOOL;
  expect(&z, 0, ATTN_ERR_INVALID_DTYPE, "o_parts[0].dtype (3)", "bool part");
  bad_reset(&z), m->o.dtype = ATTN_DTYPE_Q8_0;
  expect(&z, 0, ATTN_ERR_INVALID_DTYPE, "o.dtype (4) must be f32, bf16 or f16",
         "q8_0 o");
  bad_reset(&z), m->o.dtype = (attn_dtype)99;
  expect(&z, 0, ATTN_ERR_INVALID_DTYPE, "o.dtype (99)", "unknown dtype");
  bad_reset(&z), z.ot[1].shape[2] = 1;
  expect(&z, 0, ATTN_ERR_INVALID_SHAPE,
         "o_parts[1].shape[2] = 1 differs from o.shape[2] = 2", "shape");
  bad_reset(&z), m->o.shape[0] = 0;
  expect(&z, 0, ATTN_ERR_INVALID_SHAPE, "o.shape[0] = 0 must be > 0",
         "empty o");
  bad_reset(&z), z.ot[0].stride[1] = -4;
  expect(&z, 0, ATTN_ERR_INVALID_STRIDE, "o_parts[0].stride[1] = -4",
         "negative stride");
  bad_reset(&z), m->o.stride[1] = 0;
  expect(&z, 0, ATTN_ERR_INVALID_STRIDE, "o strides make different elements",
         "aliasing o");
  bad_reset(&z), z.ot[1].stride[0] = INT64_MAX / 2;
  expect(&z, 0, ATTN_ERR_OVERFLOW, "o_parts[1]: shape x stride overflows",
         "stride overflow");
  bad_reset(&z), z.ot[1].shape[0] = INT64_MAX / 2, z.ot[1].shape[1] = 8;
  expect(&z, 0, ATTN_ERR_OVERFLOW, "o_parts[1] has more than 2^63 elements",
         "count overflow");
  bad_reset(&z);
  m->o.shape[0] = m->o.shape[1] = m->o.shape[2] = (int64_t)1 << 21;
  m->o.stride[0] = m->o.stride[1] = m->o.stride[2] = 0;
  m->o.shape[3] = 1;
  expect(&z, 0, ATTN_ERR_OVERFLOW, "", "lse overflow");
  bad_reset(&z), m->num_threads = -1;
  expect(&z, 0, ATTN_ERR_INVALID_ARGUMENT, "num_threads (-1)", "threads");
  bad_reset(&z), z.sinks[1] = NAN;
  expect(&z, 0, ATTN_ERR_INVALID_ARGUMENT, "sinks[1] = nan", "NaN sink");
  bad_reset(&z), z.sinks[0] = INFINITY;
  expect(&z, 1, ATTN_ERR_INVALID_ARGUMENT, "sinks[0] = inf", "+inf sink");
  /* overlaps of the forward */
  bad_reset(&z), m->o.data = z.o1;
  expect(&z, 0, ATTN_ERR_OVERLAP, "o overlaps o_parts[1] in memory",
         "o on a part");
  bad_reset(&z), m->lse = z.l0 + 3;
  expect(&z, 0, ATTN_ERR_OVERLAP, "lse overlaps lse_parts[0] in memory",
         "lse on a part");
  bad_reset(&z), m->lse = z.out + 10;
  expect(&z, 0, ATTN_ERR_OVERLAP, "lse overlaps o in memory", "lse on o");
  bad_reset(&z), m->sinks = z.out + 5;
  expect(&z, 0, ATTN_ERR_OVERLAP, "o overlaps sinks in memory", "o on sinks");
  /* the backward's own checks */
  bad_reset(&z), m->lse = NULL;
  expect(&z, 1, ATTN_ERR_NULL_POINTER, "lse is NULL", "backward lse NULL");
  bad_reset(&z), m->dout.data = NULL;
  expect(&z, 1, ATTN_ERR_NULL_POINTER, "dout.data is NULL", "dout NULL");
  bad_reset(&z), m->dout.shape[3] = 2;
  expect(&z, 1, ATTN_ERR_INVALID_SHAPE, "dout.shape[3] = 2 differs",
         "dout shape");
  bad_reset(&z), m->do_parts = NULL;
  expect(&z, 1, ATTN_ERR_NULL_POINTER, "do_parts is NULL", "do_parts NULL");
  bad_reset(&z), z.dt[1].dtype = ATTN_DTYPE_BOOL;
  expect(&z, 1, ATTN_ERR_INVALID_DTYPE, "do_parts[1].dtype", "do_parts dtype");
  bad_reset(&z), z.dt[0].stride[2] = 0;
  expect(&z, 1, ATTN_ERR_INVALID_STRIDE, "do_parts[0] strides",
         "aliasing do_parts");
  bad_reset(&z), z.dlp[1] = NULL;
  expect(&z, 1, ATTN_ERR_NULL_POINTER, "dlse_parts[1] is NULL",
         "dlse_parts[1]");
  bad_reset(&z), m->sinks = NULL;
  expect(&z, 1, ATTN_ERR_INVALID_ARGUMENT, "dsinks is set but there are no",
         "dsinks without sinks");
  bad_reset(&z), z.dt[0].data = z.dout;
  expect(&z, 1, ATTN_ERR_OVERLAP, "do_parts[0] overlaps dout in memory",
         "do_parts on dout");
  bad_reset(&z), z.dt[1].data = z.d0 + 8;
  expect(&z, 1, ATTN_ERR_OVERLAP, "do_parts[1] overlaps do_parts[0] in memory",
         "two do_parts");
  bad_reset(&z), z.dt[0].data = z.o1;
  expect(&z, 1, ATTN_ERR_OVERLAP, "do_parts[0] overlaps o_parts[1]",
         "do_parts on a part");
  bad_reset(&z), z.dlp[0] = z.lout;
  expect(&z, 1, ATTN_ERR_OVERLAP, "dlse_parts[0] overlaps lse in memory",
         "dlse_parts on lse");
  bad_reset(&z), z.dlp[1] = z.dl0 + 2;
  expect(&z, 1, ATTN_ERR_OVERLAP, "dlse_parts[1] overlaps dlse_parts[0]",
         "two dlse_parts");
  bad_reset(&z), m->dsinks = z.sinks;
  expect(&z, 1, ATTN_ERR_OVERLAP, "dsinks overlaps sinks in memory",
         "dsinks on sinks");
  bad_reset(&z), m->dsinks = z.dlse + 11;
  expect(&z, 1, ATTN_ERR_OVERLAP, "dsinks overlaps dlse in memory",
         "dsinks on dlse");
  /* optional outputs really are optional; no message buffer is fine */
  bad_reset(&z);
  m->lse = NULL;
  m->sinks = NULL;
  CHECK(attn_merge(NULL, m) == ATTN_OK, "status: lse and sinks optional");
  bad_reset(&z);
  m->dlse = NULL, m->dlse_parts = NULL, m->dsinks = NULL;
  CHECK(attn_merge_backward(NULL, m) == ATTN_OK,
        "status: dlse, dlse_parts, dsinks optional");
  bad_reset(&z);
  m->error_message = NULL, m->n_parts = 0;
  CHECK(attn_merge(NULL, m) == ATTN_ERR_INVALID_ARGUMENT,
        "status: no message buffer");
  /* the same part twice is fine (inputs may overlap each other) */
  bad_reset(&z);
  z.ot[1] = z.ot[0], z.lp[1] = z.lp[0];
  CHECK(attn_merge(NULL, m) == ATTN_OK, "status: one part twice");
}

/* ---------------------------------------------------------------------- */
/* main                                                                   */
/* ---------------------------------------------------------------------- */

/* Whether attn_forward / attn_backward join sinks yet: one key of score 0
 * and a sink of 0 give lse = log 2 and dsinks != 0. */
static void probe_sinks(void) {
  float q = 0.0f, k = 0.0f, v = 1.0f, o = 0.0f, lse = 0.0f, sink = 0.0f;
  float dout = 1.0f, dq = 0.0f, dk = 0.0f, dv = 0.0f, ds = 0.0f;
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(&q, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.k = attn_tensor_bshd(&k, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.v = attn_tensor_bshd(&v, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.o = attn_tensor_bshd(&o, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.lse = &lse;
  p.sinks = &sink;
  sinks_fwd =
      attn_forward(NULL, &p) == ATTN_OK && fabsf(lse - logf(2.0f)) < 1e-6f;
  p.dout = attn_tensor_bshd(&dout, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.dq = attn_tensor_bshd(&dq, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.dk = attn_tensor_bshd(&dk, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.dv = attn_tensor_bshd(&dv, ATTN_DTYPE_F32, 1, 1, 1, 1);
  p.dsinks = &ds;
  sinks_bwd = sinks_fwd && attn_backward(NULL, &p) == ATTN_OK &&
              fabsf(ds + 0.25f) < 1e-6f; /* -(1/2) (1 * 1/2) */
}

int main(void) {
  verbose = tc_env_ll("ATTN_TEST_VERBOSE", 0) != 0;
  quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0x6d65726765ull);
  tc_rng r = {seed};
  probe_sinks();
  printf("test_merge: seed %llu; attn_forward sinks: %s, attn_backward "
         "sinks: %s\n",
         (unsigned long long)seed, sinks_fwd ? "yes" : "not yet (skipped)",
         sinks_bwd ? "yes" : "not yet (skipped)");
  attn_context_options opt;
  attn_context_options_init(&opt);
  opt.num_threads = 3;
  attn_context *ctx3 = NULL;
  if (attn_context_create(&ctx3, &opt) != ATTN_OK)
    printf("FAIL: attn_context_create\n"), n_fail++;

  long f0 = n_fail;
  test_status();
  printf("status: %s\n", n_fail == f0 ? "ok" : "FAILED");
  f0 = n_fail;
  test_special();
  test_identity(&r);
  test_arith(&r, ctx3);
  printf("arith (f64 merge of the stored partials, threads): %s\n",
         n_fail == f0 ? "ok" : "FAILED");
  f0 = n_fail;
  for (int k = 0; k < (quick ? 40 : 150); k++)
    test_split_case(&r, k);
  printf("split (attention over key ranges vs the oracle): %s\n",
         n_fail == f0 ? "ok" : "FAILED");
  f0 = n_fail;
  for (int k = 0; k < (quick ? 60 : 300); k++)
    test_fd_case(&r, k);
  printf("fd (backward vs finite differences): %s\n",
         n_fail == f0 ? "ok" : "FAILED");
  f0 = n_fail;
  for (int k = 0; k < (quick ? 25 : 100); k++)
    test_chain_case(&r, k);
  printf("chain (merge_backward + attn_backward per part vs the whole): %s\n",
         n_fail == f0 ? "ok" : "FAILED");
  attn_context_free(ctx3);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
