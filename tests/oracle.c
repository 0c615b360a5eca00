/*
 * Reference attention for the tests: see oracle.h. Written for clarity, not
 * speed: one query row at a time, every documented rule spelled out.
 */
#include "oracle.h"

#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Tensor access                                                          */
/* ---------------------------------------------------------------------- */

/* Offset in elements of logical index idx; a size-1 axis broadcasts. */
static int64_t view_offset(const attn_tensor *t, const int64_t idx[4]) {
  int64_t off = 0;
  for (int a = 0; a < 4; a++)
    if (t->shape[a] != 1)
      off += idx[a] * t->stride[a];
  return off;
}

double oracle_tensor_get(const attn_tensor *t, int64_t i0, int64_t i1,
                         int64_t i2, int64_t i3) {
  const int64_t idx[4] = {i0, i1, i2, i3};
  int64_t off = view_offset(t, idx);
  switch (t->dtype) {
  case ATTN_DTYPE_F32:
    return ((const float *)t->data)[off];
  case ATTN_DTYPE_BF16:
    return tc_bf16_to_f32(((const uint16_t *)t->data)[off]);
  case ATTN_DTYPE_F16:
    return tc_f16_to_f32(((const uint16_t *)t->data)[off]);
  case ATTN_DTYPE_BOOL:
    return ((const uint8_t *)t->data)[off] != 0;
  }
  return NAN;
}

float oracle_round_to(attn_dtype dtype, float x) {
  switch (dtype) {
  case ATTN_DTYPE_BF16:
    return tc_bf16_to_f32(tc_f32_to_bf16(x));
  case ATTN_DTYPE_F16:
    return tc_f16_to_f32(tc_f32_to_f16(x));
  default:
    return x;
  }
}

/* ---------------------------------------------------------------------- */
/* Geometry of one sequence                                               */
/* ---------------------------------------------------------------------- */
/* ---------------------------------------------------------------------- */
/* Geometry of one sequence and the mask predicate (oracle.h)            */
/* ---------------------------------------------------------------------- */
int64_t oracle_num_seqs(const attn_params *p) {
  return p->cu_seqlens_q ? p->varlen_batch : p->q.shape[0];
}

void oracle_seq_geom_get(const attn_params *p, int64_t b, oracle_seq_geom *g) {
  g->b = b;
  if (p->cu_seqlens_q) {
    g->tb = 0;
    g->q0 = p->cu_seqlens_q[b];
    g->k0 = p->cu_seqlens_k[b];
    g->sq = p->cu_seqlens_q[b + 1] - p->cu_seqlens_q[b];
    g->sk = p->cu_seqlens_k[b + 1] - p->cu_seqlens_k[b];
  } else {
    g->tb = b;
    g->q0 = g->k0 = 0;
    g->sq = p->q.shape[1];
    g->sk = p->k.shape[1];
  }
  if (p->kv_lens)
    g->sk = p->kv_lens[b];
}

int oracle_allowed(const attn_params *p, const oracle_seq_geom *g, int64_t h,
                   int64_t i, int64_t j) {
  /* the diagonal: bottom-right (also for NONE) or top-left */
  int64_t off = p->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : g->sk - g->sq;
  if (p->causal != ATTN_CAUSAL_NONE && j > i + off)
    return 0;
  if (p->window_left >= 0 && j < i + off - p->window_left)
    return 0;
  if (p->window_right >= 0 && j > i + off + p->window_right)
    return 0;
  if (p->mask.data && oracle_tensor_get(&p->mask, g->b, h, i, j) == 0.0)
    return 0;
  return 1;
}

static int64_t row_index(const attn_params *p, int64_t tb, int64_t h,
                         int64_t r) {
  return (tb * p->q.shape[2] + h) * p->q.shape[1] + r;
}

static int64_t o_index(const attn_params *p, int64_t tb, int64_t r, int64_t h) {
  return ((tb * p->q.shape[1] + r) * p->q.shape[2] + h) * p->v.shape[3];
}

/* ---------------------------------------------------------------------- */
/* Double precision                                                       */
/* ---------------------------------------------------------------------- */
int oracle_forward(const attn_params *p, oracle_ref *r) {
  const int64_t hq = p->q.shape[2], hk = p->k.shape[2];
  const int64_t d = p->q.shape[3], dv = p->v.shape[3];
  const double scale =
      p->scale == 0.0f ? 1.0 / sqrt((double)d) : (double)p->scale;
  const double cap = p->softcap;
  int64_t maxk = 0;

  memset(r, 0, sizeof *r);
  r->n_rows = p->q.shape[0] * hq * p->q.shape[1];
  r->n_o = p->q.shape[0] * p->q.shape[1] * hq * dv;
  r->o = calloc((size_t)r->n_o, sizeof(double));
  r->lse = malloc((size_t)r->n_rows * sizeof(double));
  r->empty = malloc((size_t)r->n_rows);
  r->cond_o = calloc((size_t)r->n_rows, sizeof(double));
  r->cond_lse = calloc((size_t)r->n_rows, sizeof(double));
  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(p, b, &g);
    if (g.sk > maxk)
      maxk = g.sk;
  }
  double *kb = malloc((size_t)(maxk * d + 1) * sizeof(double));
  double *vb = malloc((size_t)(maxk * dv + 1) * sizeof(double));
  double *s = malloc((size_t)(maxk + 1) * sizeof(double));
  double *ds = malloc((size_t)(maxk + 1) * sizeof(double));
  double *vmax = malloc((size_t)(maxk + 1) * sizeof(double));
  double *qr = malloc((size_t)d * sizeof(double));
  double *acc = malloc((size_t)dv * sizeof(double));
  const double u = ldexp(1.0, -24), root_d = sqrt((double)d);
  if (!r->o || !r->lse || !r->empty || !r->cond_o || !r->cond_lse || !kb ||
      !vb || !s || !ds || !vmax || !qr || !acc) {
    free(kb), free(vb), free(s), free(ds), free(vmax), free(qr), free(acc);
    oracle_ref_free(r);
    return -1;
  }
  for (int64_t x = 0; x < r->n_rows; x++)
    r->lse[x] = -INFINITY, r->empty[x] = 1;

  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(p, b, &g);
    for (int64_t h = 0; h < hq; h++) {
      const int64_t kvh = h / (hq / hk);
      for (int64_t j = 0; j < g.sk; j++) {
        for (int64_t c = 0; c < d; c++)
          kb[j * d + c] = oracle_tensor_get(&p->k, g.tb, g.k0 + j, kvh, c);
        vmax[j] = 0.0;
        for (int64_t c = 0; c < dv; c++) {
          double x = oracle_tensor_get(&p->v, g.tb, g.k0 + j, kvh, c);
          vb[j * dv + c] = x;
          if (fabs(x) > vmax[j])
            vmax[j] = fabs(x);
        }
        if (vmax[j] > r->max_abs_v)
          r->max_abs_v = vmax[j];
      }
      for (int64_t i = 0; i < g.sq; i++) {
        double m = -INFINITY, sum = 0.0;
        for (int64_t c = 0; c < d; c++)
          qr[c] = oracle_tensor_get(&p->q, g.tb, g.q0 + i, h, c);
        for (int64_t j = 0; j < g.sk; j++) {
          double x = 0.0, ax = 0.0;
          s[j] = -INFINITY;
          if (!oracle_allowed(p, &g, h, i, j))
            continue;
          for (int64_t c = 0; c < d; c++) {
            x += qr[c] * kb[j * d + c];
            ax += (qr[c] * kb[j * d + c]) * (qr[c] * kb[j * d + c]);
          }
          x *= scale;
          ax = sqrt(ax) * fabs(scale);
          if (cap > 0.0)
            x = cap * tanh(x / cap);
          if (p->alibi_slopes)
            x -=
                (double)p->alibi_slopes[h] * (double)llabs(i + g.sk - g.sq - j);
          if (p->bias.data)
            x += oracle_tensor_get(&p->bias, g.b, h, i, j);
          s[j] = x;
          ds[j] = u * (root_d * ax + 2.0 * fabs(x));
          if (x > m)
            m = x;
        }
        if (m == -INFINITY)
          continue; /* no key: o = 0, lse = -inf */
        for (int64_t c = 0; c < dv; c++)
          acc[c] = 0.0;
        for (int64_t j = 0; j < g.sk; j++) {
          if (s[j] == -INFINITY)
            continue;
          double w = exp(s[j] - m);
          sum += w;
          for (int64_t c = 0; c < dv; c++)
            acc[c] += w * vb[j * dv + c];
        }
        const int64_t ri = row_index(p, g.tb, h, g.q0 + i);
        const int64_t oi = o_index(p, g.tb, g.q0 + i, h);
        double omax = 0.0, co = 0.0, cl = 0.0;
        r->empty[ri] = 0;
        r->lse[ri] = m + log(sum);
        if (fabs(r->lse[ri]) > r->max_abs_lse)
          r->max_abs_lse = fabs(r->lse[ri]);
        for (int64_t c = 0; c < dv; c++) {
          r->o[oi + c] = acc[c] / sum;
          if (fabs(r->o[oi + c]) > omax)
            omax = fabs(r->o[oi + c]);
        }
        if (omax > r->max_abs_o)
          r->max_abs_o = omax;
        /* conditioning: first-order change of o and lse when each score
         * moves by its f32 rounding error ds[j] (plus u * |m|), the moves
         * taken as independent (root of the sum of squares) */
        for (int64_t j = 0; j < g.sk; j++) {
          if (s[j] == -INFINITY)
            continue;
          const double pj = exp(s[j] - m) / sum;
          const double dj = pj * (ds[j] + u * fabs(m));
          double dv_max = 0.0;
          if (dj * (vmax[j] + omax) < 1e-12)
            continue; /* negligible: skip the O(dv) loop */
          for (int64_t c = 0; c < dv; c++)
            dv_max = fmax(dv_max, fabs(vb[j * dv + c] - r->o[oi + c]));
          co += (dj * dv_max) * (dj * dv_max);
          cl += dj * dj;
        }
        r->cond_o[ri] = sqrt(co);
        r->cond_lse[ri] = sqrt(cl);
      }
    }
  }
  for (int64_t x = 0; x < r->n_rows; x++)
    r->n_empty += r->empty[x];
  free(kb), free(vb), free(s), free(ds), free(vmax), free(qr), free(acc);
  return 0;
}

void oracle_ref_free(oracle_ref *r) {
  free(r->o), free(r->lse), free(r->empty), free(r->cond_o), free(r->cond_lse);
  memset(r, 0, sizeof *r);
}

/* ---------------------------------------------------------------------- */
/* Naive f32: the same loops with float everywhere                         */
/* ---------------------------------------------------------------------- */
int oracle_naive_f32(const attn_params *p, oracle_naive *nv) {
  const int64_t hq = p->q.shape[2], hk = p->k.shape[2];
  const int64_t d = p->q.shape[3], dv = p->v.shape[3];
  const float scale = p->scale == 0.0f ? 1.0f / sqrtf((float)d) : p->scale;
  const float cap = p->softcap;
  int64_t maxk = 0;

  memset(nv, 0, sizeof *nv);
  nv->n_rows = p->q.shape[0] * hq * p->q.shape[1];
  nv->n_o = p->q.shape[0] * p->q.shape[1] * hq * dv;
  nv->o = calloc((size_t)nv->n_o, sizeof(float));
  nv->lse = malloc((size_t)nv->n_rows * sizeof(float));
  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(p, b, &g);
    if (g.sk > maxk)
      maxk = g.sk;
  }
  float *kb = malloc((size_t)(maxk * d + 1) * sizeof(float));
  float *vb = malloc((size_t)(maxk * dv + 1) * sizeof(float));
  float *s = malloc((size_t)(maxk + 1) * sizeof(float));
  float *qr = malloc((size_t)d * sizeof(float));
  float *acc = malloc((size_t)dv * sizeof(float));
  if (!nv->o || !nv->lse || !kb || !vb || !s || !qr || !acc) {
    free(kb), free(vb), free(s), free(qr), free(acc);
    oracle_naive_free(nv);
    return -1;
  }
  for (int64_t x = 0; x < nv->n_rows; x++)
    nv->lse[x] = -INFINITY;

  for (int64_t b = 0; b < oracle_num_seqs(p); b++) {
    oracle_seq_geom g;
    oracle_seq_geom_get(p, b, &g);
    for (int64_t h = 0; h < hq; h++) {
      const int64_t kvh = h / (hq / hk);
      for (int64_t j = 0; j < g.sk; j++) {
        for (int64_t c = 0; c < d; c++)
          kb[j * d + c] =
              (float)oracle_tensor_get(&p->k, g.tb, g.k0 + j, kvh, c);
        for (int64_t c = 0; c < dv; c++)
          vb[j * dv + c] =
              (float)oracle_tensor_get(&p->v, g.tb, g.k0 + j, kvh, c);
      }
      for (int64_t i = 0; i < g.sq; i++) {
        float m = -INFINITY, sum = 0.0f;
        for (int64_t c = 0; c < d; c++)
          qr[c] = (float)oracle_tensor_get(&p->q, g.tb, g.q0 + i, h, c);
        for (int64_t j = 0; j < g.sk; j++) {
          float x = 0.0f;
          s[j] = -INFINITY;
          if (!oracle_allowed(p, &g, h, i, j))
            continue;
          for (int64_t c = 0; c < d; c++)
            x += qr[c] * kb[j * d + c];
          x *= scale;
          if (cap > 0.0f)
            x = cap * tanhf(x / cap);
          if (p->alibi_slopes)
            x -= p->alibi_slopes[h] * (float)llabs(i + g.sk - g.sq - j);
          if (p->bias.data)
            x += (float)oracle_tensor_get(&p->bias, g.b, h, i, j);
          s[j] = x;
          if (x > m)
            m = x;
        }
        if (m == -INFINITY)
          continue;
        for (int64_t c = 0; c < dv; c++)
          acc[c] = 0.0f;
        for (int64_t j = 0; j < g.sk; j++) {
          if (s[j] == -INFINITY)
            continue;
          float w = expf(s[j] - m);
          sum += w;
          for (int64_t c = 0; c < dv; c++)
            acc[c] += w * vb[j * dv + c];
        }
        const int64_t ri = row_index(p, g.tb, h, g.q0 + i);
        const int64_t oi = o_index(p, g.tb, g.q0 + i, h);
        nv->lse[ri] = m + logf(sum);
        for (int64_t c = 0; c < dv; c++)
          nv->o[oi + c] = oracle_round_to(p->o.dtype, acc[c] / sum);
      }
    }
  }
  free(kb), free(vb), free(s), free(qr), free(acc);
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

void oracle_compare(const attn_params *p, const oracle_ref *ref,
                    const oracle_naive *nv, oracle_cmp *c) {
  const int64_t B0 = p->q.shape[0], S0 = p->q.shape[1];
  const int64_t hq = p->q.shape[2], dv = p->v.shape[3];
  const double cond_on = getenv("ATTN_TEST_NO_COND") ? 0.0 : 1.0;
  double worst_e = 0.0, worst_allowed = 1.0;

  memset(c, 0, sizeof *c);
  c->floor_o = 1e-5 * ref->max_abs_v;
  if (p->o.dtype == ATTN_DTYPE_BF16)
    c->floor_o += ref->max_abs_o * ldexp(1.0, -8);
  else if (p->o.dtype == ATTN_DTYPE_F16)
    c->floor_o += ref->max_abs_o * ldexp(1.0, -11);
  c->floor_lse = 1e-5 * (1.0 + ref->max_abs_lse);

  /* pass 1: the naive reference's error (rows that see keys) */
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

  /* pass 2: the kernel, element by element */
  for (int64_t b = 0; b < B0; b++)
    for (int64_t r = 0; r < S0; r++)
      for (int64_t h = 0; h < hq; h++) {
        const int64_t ri = row_index(p, b, h, r);
        const int64_t oi = o_index(p, b, r, h);
        const int empty = ref->empty[ri];
        const double allowed_o =
            2.0 * c->err_o_naive + fmax(c->floor_o, cond_on * ref->cond_o[ri]);
        const double allowed_lse =
            2.0 * c->err_lse_naive +
            fmax(c->floor_lse, cond_on * ref->cond_lse[ri]);
        if (ref->cond_o[ri] > c->cond_o)
          c->cond_o = ref->cond_o[ri];
        if (p->lse) {
          double got = p->lse[ri];
          if (empty) {
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
            c->budget_lse = fmax(c->budget_lse, budget(e, allowed_lse));
          }
        }
        for (int64_t col = 0; col < dv; col++) {
          double got = oracle_tensor_get(&p->o, b, r, h, col);
          if (empty) {
            if (got != 0.0) {
              c->n_empty_bad++;
              note(c, "o of a row without keys is not 0", b, r, h, col, got,
                   0.0);
            }
            continue;
          }
          if (!isfinite(got)) {
            c->n_nonfinite++;
            note(c, "o not finite", b, r, h, col, got, ref->o[oi + col]);
            continue;
          }
          double e = fabs(got - ref->o[oi + col]);
          double bu = budget(e, allowed_o);
          c->err_o = fmax(c->err_o, e);
          if (bu > c->budget_o) {
            c->budget_o = bu;
            worst_e = e;
            worst_allowed = allowed_o;
            c->worst_index[0] = b, c->worst_index[1] = r;
            c->worst_index[2] = h, c->worst_index[3] = col;
          }
        }
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
