/*
 * Forward oracle: see oracle_fwd.h. Written for clarity, not speed: one
 * query row at a time, every documented rule spelled out; which keys a row
 * sees comes from oracle_mask.c, ALiBi's distance from oracle_pos.c.
 */
#include "oracle_fwd.h"

#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One (sequence, head) of a forward in precision R, with its scratch. */
#define DEFINE_FWD_CTX(NAME, R)                                                \
  typedef struct NAME {                                                        \
    const attn_params *p;                                                      \
    oracle_seq_geom g;                                                         \
    int64_t h, kvh, d, dv;                                                     \
    R scale, cap;                                                              \
    R *kb, *vb, *vmax, *s, *ds, *qr, *acc;                                     \
  } NAME;
DEFINE_FWD_CTX(fwd64, double)
DEFINE_FWD_CTX(fwd32, float)

#define FWD_ALLOC(x, R, maxk)                                                  \
  ((x)->kb = malloc((size_t)((maxk) * (x)->d + 1) * sizeof(R)),                \
   (x)->vb = malloc((size_t)((maxk) * (x)->dv + 1) * sizeof(R)),               \
   (x)->vmax = malloc((size_t)((maxk) + 1) * sizeof(R)),                       \
   (x)->s = malloc((size_t)((maxk) + 1) * sizeof(R)),                          \
   (x)->ds = malloc((size_t)((maxk) + 1) * sizeof(R)),                         \
   (x)->qr = malloc((size_t)(x)->d * sizeof(R)),                               \
   (x)->acc = malloc((size_t)(x)->dv * sizeof(R)),                             \
   (x)->kb && (x)->vb && (x)->vmax && (x)->s && (x)->ds && (x)->qr &&          \
       (x)->acc)
#define FWD_FREE(x)                                                            \
  (free((x)->kb), free((x)->vb), free((x)->vmax), free((x)->s), free((x)->ds), \
   free((x)->qr), free((x)->acc))

/* The keys and values of (sequence, head) into kb, vb; vmax[j] = max|v_j|. */
#define DEFINE_LOAD_KV(NAME, CTX, R)                                           \
  static void NAME(CTX *x) {                                                   \
    const attn_params *p = x->p;                                               \
    for (int64_t j = 0; j < x->g.sk; j++) {                                    \
      for (int64_t c = 0; c < x->d; c++)                                       \
        x->kb[j * x->d + c] =                                                  \
            (R)oracle_tensor_get(&p->k, x->g.tb, x->g.k0 + j, x->kvh, c);      \
      x->vmax[j] = 0;                                                          \
      for (int64_t c = 0; c < x->dv; c++) {                                    \
        R v = (R)oracle_tensor_get(&p->v, x->g.tb, x->g.k0 + j, x->kvh, c);    \
        x->vb[j * x->dv + c] = v;                                              \
        if (fabs((double)v) > (double)x->vmax[j])                              \
          x->vmax[j] = (R)fabs((double)v);                                     \
      }                                                                        \
    }                                                                          \
  }
DEFINE_LOAD_KV(load_kv64, fwd64, double)
DEFINE_LOAD_KV(load_kv32, fwd32, float)

/* Scores of row i into s[] (-inf where masked); returns their max. The
 * double version also writes ds[j], the typical f32 error of s[j]. */
#define DEFINE_SCORES(NAME, CTX, R, TANH, WITH_DS)                             \
  static R NAME(CTX *x, int64_t i) {                                           \
    const attn_params *p = x->p;                                               \
    const R u = (R)ldexp(1.0, -24), root_d = (R)sqrt((double)x->d);            \
    R m = -INFINITY;                                                           \
    for (int64_t c = 0; c < x->d; c++)                                         \
      x->qr[c] = (R)oracle_tensor_get(&p->q, x->g.tb, x->g.q0 + i, x->h, c);   \
    for (int64_t j = 0; j < x->g.sk; j++) {                                    \
      R s = 0, ax = 0;                                                         \
      x->s[j] = -INFINITY;                                                     \
      if (!oracle_allowed(p, &x->g, x->h, i, j))                               \
        continue;                                                              \
      for (int64_t c = 0; c < x->d; c++) {                                     \
        const R t = x->qr[c] * x->kb[j * x->d + c];                            \
        s += t;                                                                \
        if (WITH_DS)                                                           \
          ax += t * t;                                                         \
      }                                                                        \
      s *= x->scale;                                                           \
      if (x->cap > 0)                                                          \
        s = x->cap * TANH(s / x->cap);                                         \
      if (p->alibi_slopes)                                                     \
        s -= (R)p->alibi_slopes[x->h] * (R)oracle_alibi_dist(p, &x->g, i, j);  \
      if (p->rel_bias)                                                         \
        s += (R)oracle_t5_bias(p, &x->g, x->h, i, j);                          \
      if (p->bias.data)                                                        \
        s += (R)oracle_tensor_get(&p->bias, x->g.b, x->h, i, j);               \
      x->s[j] = s;                                                             \
      if (WITH_DS)                                                             \
        x->ds[j] =                                                             \
            u * (root_d * (R)sqrt((double)ax) * (R)fabs((double)x->scale) +    \
                 2 * (R)fabs((double)s));                                      \
      if (s > m)                                                               \
        m = s;                                                                 \
    }                                                                          \
    return m;                                                                  \
  }
DEFINE_SCORES(scores64, fwd64, double, tanh, 1)
DEFINE_SCORES(scores32, fwd32, float, tanhf, 0)

/* ---------------------------------------------------------------------- */
/* Double precision                                                       */
/* ---------------------------------------------------------------------- */

double oracle_dropout(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                      int64_t i, int64_t j) {
  if (p->dropout_p == 0.0f)
    return 1.0;
  if (!attn_dropout_keep(p->dropout_seed, p->dropout_p, g->b, h, i, j))
    return 0.0;
  return 1.0 / (1.0 - (double)p->dropout_p);
}

/* Conditioning of row ri: first-order change of o and lse when each score
 * moves by its f32 rounding error ds[j] (plus u * |m|), the moves taken as
 * independent (root of the sum of squares). */
static void row_cond(const fwd64 *x, int64_t i, double m, double sum,
                     double omax, int64_t oi, int64_t ri, oracle_ref *r) {
  const double u = ldexp(1.0, -24);
  double co = 0.0, cl = 0.0;
  for (int64_t j = 0; j < x->g.sk; j++) {
    if (x->s[j] == -INFINITY)
      continue;
    const double pj = exp(x->s[j] - m) / sum;
    const double dj = pj * (x->ds[j] + u * fabs(m));
    /* o moves by p_j ds_j (z_j v_j - o), z_j the dropout factor */
    const double zj = oracle_dropout(x->p, &x->g, x->h, i, j);
    double dv_max = 0.0;
    if (dj * (zj * x->vmax[j] + omax) < 1e-12)
      continue; /* negligible: skip the O(dv) loop */
    for (int64_t c = 0; c < x->dv; c++)
      dv_max = fmax(dv_max, fabs(zj * x->vb[j * x->dv + c] - r->o[oi + c]));
    co += (dj * dv_max) * (dj * dv_max);
    cl += dj * dj;
  }
  r->cond_o[ri] = sqrt(co);
  r->cond_lse[ri] = sqrt(cl);
}

static void row64(fwd64 *x, int64_t i, oracle_ref *r) {
  const double sink = x->p->sinks ? x->p->sinks[x->h] : -INFINITY;
  const double ms = scores64(x, i);
  const double m = ms > sink || ms != ms ? ms : sink;
  double sum = sink == -INFINITY ? 0.0 : exp(sink - m), omax = 0.0;
  if (ms == -INFINITY) {
    if (sink != -INFINITY) { /* only the sink: o = 0, lse = sink */
      const int64_t ri = oracle_row_index(x->p, x->g.tb, x->h, x->g.q0 + i);
      r->empty[ri] = 0;
      r->lse[ri] = sink;
      r->max_abs_lse = fmax(r->max_abs_lse, fabs(sink));
    }
    return; /* no key: o = 0, lse = -inf */
  }
  for (int64_t c = 0; c < x->dv; c++)
    x->acc[c] = 0.0;
  for (int64_t j = 0; j < x->g.sk; j++) {
    if (x->s[j] == -INFINITY)
      continue;
    const double w = exp(x->s[j] - m);
    sum += w; /* the undropped sum: dropout acts on the normalised P */
    const double wz = w * oracle_dropout(x->p, &x->g, x->h, i, j);
    for (int64_t c = 0; c < x->dv; c++)
      x->acc[c] += wz * x->vb[j * x->dv + c];
  }
  const int64_t ri = oracle_row_index(x->p, x->g.tb, x->h, x->g.q0 + i);
  const int64_t oi = oracle_o_index(x->p, x->g.tb, x->g.q0 + i, x->h);
  r->empty[ri] = 0;
  r->lse[ri] = m + log(sum);
  if (fabs(r->lse[ri]) > r->max_abs_lse)
    r->max_abs_lse = fabs(r->lse[ri]);
  for (int64_t c = 0; c < x->dv; c++) {
    r->o[oi + c] = x->acc[c] / sum;
    omax = fmax(omax, fabs(r->o[oi + c]));
  }
  if (omax > r->max_abs_o)
    r->max_abs_o = omax;
  row_cond(x, i, m, sum, omax, oi, ri, r);
}

int oracle_forward(const attn_params *p, oracle_ref *r) {
  fwd64 x;
  memset(r, 0, sizeof *r);
  memset(&x, 0, sizeof x);
  x.p = p;
  x.d = p->q.shape[3], x.dv = p->v.shape[3];
  x.scale = p->scale == 0.0f ? 1.0 / sqrt((double)x.d) : (double)p->scale;
  x.cap = p->softcap;
  r->n_rows = p->q.shape[0] * p->q.shape[2] * p->q.shape[1];
  r->n_o = r->n_rows * x.dv;
  r->o = calloc((size_t)r->n_o + 1, sizeof(double));
  r->lse = malloc((size_t)r->n_rows * sizeof(double));
  r->empty = malloc((size_t)r->n_rows);
  r->cond_o = calloc((size_t)r->n_rows, sizeof(double));
  r->cond_lse = calloc((size_t)r->n_rows, sizeof(double));
  if (!FWD_ALLOC(&x, double, oracle_max_keys(p)) || !r->o || !r->lse ||
      !r->empty || !r->cond_o || !r->cond_lse) {
    FWD_FREE(&x);
    oracle_ref_free(r);
    return -1;
  }
  for (int64_t k = 0; k < r->n_rows; k++)
    r->lse[k] = -INFINITY, r->empty[k] = 1;
  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom_get(p, b, &x.g);
    for (x.h = 0; x.h < p->q.shape[2]; x.h++) {
      x.kvh = x.h / (p->q.shape[2] / p->k.shape[2]);
      load_kv64(&x);
      for (int64_t j = 0; j < x.g.sk; j++) /* every V element rows may read */
        r->max_abs_v = fmax(r->max_abs_v, x.vmax[j]);
      for (int64_t i = 0; i < x.g.sq; i++)
        row64(&x, i, r);
    }
  }
  for (int64_t k = 0; k < r->n_rows; k++)
    r->n_empty += r->empty[k];
  FWD_FREE(&x);
  return 0;
}

void oracle_ref_free(oracle_ref *r) {
  free(r->o), free(r->lse), free(r->empty), free(r->cond_o), free(r->cond_lse);
  memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------------- */
/* Naive f32: the same loops with float everywhere                         */
/* ---------------------------------------------------------------------- */
static void row32(fwd32 *x, int64_t i, oracle_naive *nv) {
  const float sink = x->p->sinks ? x->p->sinks[x->h] : -INFINITY;
  const float ms = scores32(x, i);
  const float m = ms > sink || ms != ms ? ms : sink;
  float sum = sink == -INFINITY ? 0.0f : expf(sink - m);
  if (ms == -INFINITY) {
    if (sink != -INFINITY)
      nv->lse[oracle_row_index(x->p, x->g.tb, x->h, x->g.q0 + i)] = sink;
    return;
  }
  for (int64_t c = 0; c < x->dv; c++)
    x->acc[c] = 0.0f;
  for (int64_t j = 0; j < x->g.sk; j++) {
    if (x->s[j] == -INFINITY)
      continue;
    const float w = expf(x->s[j] - m);
    sum += w;
    const float wz = w * (float)oracle_dropout(x->p, &x->g, x->h, i, j);
    for (int64_t c = 0; c < x->dv; c++)
      x->acc[c] += wz * x->vb[j * x->dv + c];
  }
  const int64_t ri = oracle_row_index(x->p, x->g.tb, x->h, x->g.q0 + i);
  const int64_t oi = oracle_o_index(x->p, x->g.tb, x->g.q0 + i, x->h);
  nv->lse[ri] = m + logf(sum);
  for (int64_t c = 0; c < x->dv; c++)
    nv->o[oi + c] = oracle_round_to(x->p->o.dtype, x->acc[c] / sum);
}

int oracle_naive_f32(const attn_params *p, oracle_naive *nv) {
  fwd32 x;
  memset(nv, 0, sizeof *nv);
  memset(&x, 0, sizeof x);
  x.p = p;
  x.d = p->q.shape[3], x.dv = p->v.shape[3];
  x.scale = p->scale == 0.0f ? 1.0f / sqrtf((float)x.d) : p->scale;
  x.cap = p->softcap;
  nv->n_rows = p->q.shape[0] * p->q.shape[2] * p->q.shape[1];
  nv->n_o = nv->n_rows * x.dv;
  nv->o = calloc((size_t)nv->n_o + 1, sizeof(float));
  nv->lse = malloc((size_t)nv->n_rows * sizeof(float));
  if (!FWD_ALLOC(&x, float, oracle_max_keys(p)) || !nv->o || !nv->lse) {
    FWD_FREE(&x);
    oracle_naive_free(nv);
    return -1;
  }
  for (int64_t k = 0; k < nv->n_rows; k++)
    nv->lse[k] = -INFINITY;
  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom_get(p, b, &x.g);
    for (x.h = 0; x.h < p->q.shape[2]; x.h++) {
      x.kvh = x.h / (p->q.shape[2] / p->k.shape[2]);
      load_kv32(&x);
      for (int64_t i = 0; i < x.g.sq; i++)
        row32(&x, i, nv);
    }
  }
  FWD_FREE(&x);
  return 0;
}

void oracle_naive_free(oracle_naive *nv) {
  free(nv->o), free(nv->lse);
  memset(nv, 0, sizeof *nv);
}

/* ---------------------------------------------------------------------- */
/* Comparison                                                             */
/* ---------------------------------------------------------------------- */
static void note(oracle_cmp *c, const char *msg, int64_t b, int64_t r,
                 int64_t h, int64_t col, double got, double want) {
  if (c->problem[0])
    return;
  snprintf(c->problem, sizeof c->problem,
           "%s at [b=%lld, row=%lld, head=%lld, col=%lld]: got %.9g, "
           "want %.9g",
           msg, (long long)b, (long long)r, (long long)h, (long long)col, got,
           want);
}

static double budget(double err, double allowed) {
  if (allowed > 0.0)
    return err / allowed;
  return err > 0.0 ? INFINITY : 0.0;
}

/* Floors and the naive reference's errors (rows that see keys). */
static void compare_setup(const attn_params *p, const oracle_ref *ref,
                          const oracle_naive *nv, oracle_cmp *c) {
  memset(c, 0, sizeof *c);
  /* below the normal range a rounding errs by an absolute amount (half
   * the subnormal spacing), not a relative one: one per term of a row's
   * sum, typically sqrt(n) of them, plus the store's */
  c->floor_o = 1e-5 * ref->max_abs_v +
               sqrt((double)oracle_max_keys(p) + 1.0) * ldexp(1.0, -149);
  if (p->o.dtype == ATTN_DTYPE_BF16)
    c->floor_o += ref->max_abs_o * ldexp(1.0, -8) + ldexp(1.0, -133);
  else if (p->o.dtype == ATTN_DTYPE_F16)
    c->floor_o += ref->max_abs_o * ldexp(1.0, -11) + ldexp(1.0, -24);
  c->floor_lse = 1e-5 * (1.0 + ref->max_abs_lse);
  for (int64_t ri = 0; ri < ref->n_rows; ri++) {
    double en = fabs((double)nv->lse[ri] - ref->lse[ri]);
    if (!ref->empty[ri] && isfinite(en) && en > c->err_lse_naive)
      c->err_lse_naive = en;
  }
  for (int64_t x = 0; x < ref->n_o; x++) {
    double en = fabs((double)nv->o[x] - ref->o[x]);
    if (isfinite(en) && en > c->err_o_naive)
      c->err_o_naive = en;
  }
}

/* lse of row (b, r, h) against the oracle. */
static void compare_lse(const attn_params *p, const oracle_ref *ref,
                        oracle_cmp *c, int64_t b, int64_t r, int64_t h,
                        double allowed) {
  const int64_t ri = oracle_row_index(p, b, h, r);
  const double got = p->lse[ri];
  if (ref->empty[ri]) {
    if (!(got == -INFINITY)) {
      c->n_empty_bad++;
      note(c, "lse of a row without keys is not -inf", b, r, h, -1, got,
           -INFINITY);
    }
  } else if (got == -INFINITY) {
    c->n_wrong_inf++;
    note(c, "lse is -inf on a row that sees keys", b, r, h, -1, got,
         ref->lse[ri]);
  } else if (!isfinite(got)) {
    c->n_nonfinite++;
    note(c, "lse not finite", b, r, h, -1, got, ref->lse[ri]);
  } else {
    double e = fabs(got - ref->lse[ri]);
    c->err_lse = fmax(c->err_lse, e);
    c->budget_lse = fmax(c->budget_lse, budget(e, allowed));
  }
}

/* o of row (b, r, h); returns the worst (err, allowed) through *we, *wa. */
static void compare_o(const attn_params *p, const oracle_ref *ref,
                      oracle_cmp *c, int64_t b, int64_t r, int64_t h,
                      double allowed, double *we, double *wa) {
  const int64_t ri = oracle_row_index(p, b, h, r);
  const int64_t oi = oracle_o_index(p, b, r, h);
  for (int64_t col = 0; col < p->v.shape[3]; col++) {
    double got = oracle_tensor_get(&p->o, b, r, h, col);
    if (ref->empty[ri]) {
      if (got != 0.0) {
        c->n_empty_bad++;
        note(c, "o of a row without keys is not 0", b, r, h, col, got, 0.0);
      }
      continue;
    }
    if (!isfinite(got)) {
      c->n_nonfinite++;
      note(c, "o not finite", b, r, h, col, got, ref->o[oi + col]);
      continue;
    }
    double e = fabs(got - ref->o[oi + col]);
    double bu = budget(e, allowed);
    c->err_o = fmax(c->err_o, e);
    if (bu > c->budget_o) {
      c->budget_o = bu;
      *we = e;
      *wa = allowed;
      c->worst_index[0] = b, c->worst_index[1] = r;
      c->worst_index[2] = h, c->worst_index[3] = col;
    }
  }
}

void oracle_compare(const attn_params *p, const oracle_ref *ref,
                    const oracle_naive *nv, oracle_cmp *c) {
  const double cond_on = getenv("ATTN_TEST_NO_COND") ? 0.0 : 1.0;
  double worst_e = 0.0, worst_allowed = 1.0;
  compare_setup(p, ref, nv, c);
  for (int64_t b = 0; b < p->q.shape[0]; b++)
    for (int64_t r = 0; r < p->q.shape[1]; r++)
      for (int64_t h = 0; h < p->q.shape[2]; h++) {
        const int64_t ri = oracle_row_index(p, b, h, r);
        if (ref->cond_o[ri] > c->cond_o)
          c->cond_o = ref->cond_o[ri];
        if (p->lse)
          compare_lse(p, ref, c, b, r, h,
                      2.0 * c->err_lse_naive +
                          fmax(c->floor_lse, cond_on * ref->cond_lse[ri]));
        compare_o(p, ref, c, b, r, h,
                  2.0 * c->err_o_naive +
                      fmax(c->floor_o, cond_on * ref->cond_o[ri]),
                  &worst_e, &worst_allowed);
      }
  c->ok = c->n_nonfinite == 0 && c->n_empty_bad == 0 && c->n_wrong_inf == 0 &&
          c->budget_o <= 1.0 && c->budget_lse <= 1.0;
  if (!c->ok && !c->problem[0]) {
    if (c->budget_o > 1.0)
      snprintf(c->problem, sizeof c->problem,
               "o error %.3g > allowed %.3g (2 * naive %.3g + max(floor %.3g, "
               "cond)) at [b=%lld, row=%lld, head=%lld, col=%lld]",
               worst_e, worst_allowed, c->err_o_naive, c->floor_o,
               (long long)c->worst_index[0], (long long)c->worst_index[1],
               (long long)c->worst_index[2], (long long)c->worst_index[3]);
    else
      snprintf(c->problem, sizeof c->problem,
               "lse error %.3g > 2 * naive %.3g + max(floor %.3g, cond)",
               c->err_lse, c->err_lse_naive, c->floor_lse);
  }
}
