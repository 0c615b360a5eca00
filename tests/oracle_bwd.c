/*
 * Backward oracle: see oracle_bwd.h. Written for clarity: one (sequence,
 * head, query row) at a time, every rule spelled out, in a real type R that
 * is double (oracle_backward) or float (the naive f32 reference). Which keys
 * a row sees comes from oracle_mask.c, ALiBi's distance from oracle_pos.c.
 */
#include "oracle_bwd.h"
#include "oracle_fwd.h" /* oracle_dropout */

#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const oracle_grad_names[ORACLE_NGRADS] = {
    "dq", "dk", "dv", "dbias", "drel_bias", "dsinks"};

static int64_t bias_index(const attn_tensor *t, int64_t b, int64_t h, int64_t i,
                          int64_t j) {
  const int64_t *s = t->shape;
  return ((((s[0] == 1 ? 0 : b) * s[1] + (s[1] == 1 ? 0 : h)) * s[2] +
           (s[2] == 1 ? 0 : i)) *
              s[3] +
          (s[3] == 1 ? 0 : j));
}

static int grads_alloc(const attn_params *p, oracle_grads *o) {
  memset(o, 0, sizeof *o);
  const int64_t hq = p->q.shape[2], hk = p->k.shape[2];
  o->n[0] = p->q.shape[0] * p->q.shape[1] * hq * p->q.shape[3];
  o->n[1] = p->k.shape[0] * p->k.shape[1] * hk * p->k.shape[3];
  o->n[2] = p->v.shape[0] * p->v.shape[1] * hk * p->v.shape[3];
  o->n[3] = p->dbias.data ? p->bias.shape[0] * p->bias.shape[1] *
                                p->bias.shape[2] * p->bias.shape[3]
                          : 0;
  o->n[4] = p->drel_bias ? p->rel_buckets * hq : 0;
  o->n[5] = p->dsinks ? hq : 0;
  for (int t = 0; t < ORACLE_NGRADS; t++) {
    o->g[t] = calloc((size_t)o->n[t] + 1, sizeof(double));
    if (!o->g[t])
      return -1;
  }
  return 0;
}

void oracle_grads_free(oracle_grads *g) {
  for (int t = 0; t < ORACLE_NGRADS; t++)
    free(g->g[t]), free(g->cond[t]);
  memset(g, 0, sizeof *g);
}

/* Sums behind cond(x) (oracle_bwd.h), double oracle only: per gradient
 * element the squared first-order moves, the squared terms of its sum and
 * their number; per key of the current row its relative P error, z dP - D
 * and the squared move of its dS that is its own (not common to the row). */
typedef struct bwd_cond {
  double *mv[ORACLE_NGRADS], *sq[ORACLE_NGRADS], *nt[ORACLE_NGRADS];
  double *rel, *gj, *own;
} bwd_cond;

/* The state of one backward in type R: the (sequence, head) being done,
 * one row's scratch and the gradient accumulators. */
#define DEFINE_BWD_STATE(NAME, R)                                              \
  typedef struct NAME {                                                        \
    const attn_params *p;                                                      \
    oracle_seq_geom g;                                                         \
    int64_t h, kvh, d, dv;                                                     \
    R scale, cap;                                                              \
    R *s, *th, *pr, *qr, *dor, *orow, *dqr;                                    \
    R *acc[ORACLE_NGRADS];                                                     \
    int64_t n[ORACLE_NGRADS]; /* 0: only the loss */                           \
    double total;             /* sum(dout * O)     */                          \
    bwd_cond *cd;             /* NULL: no cond(x)  */                          \
  } NAME;
DEFINE_BWD_STATE(bwd64, double)
DEFINE_BWD_STATE(bwd32, float)

/* Scores of row i (s = -inf where masked, th = their tanh when softcapped);
 * loads q and dout of the row; returns the max score. */
#define DEFINE_BWD_SCORES(NAME, ST, R, TANH)                                   \
  static R NAME(ST *x, int64_t i) {                                            \
    const attn_params *p = x->p;                                               \
    const int64_t qi = x->g.q0 + i;                                            \
    R m = -INFINITY;                                                           \
    for (int64_t c = 0; c < x->d; c++)                                         \
      x->qr[c] = (R)oracle_tensor_get(&p->q, x->g.tb, qi, x->h, c);            \
    for (int64_t c = 0; c < x->dv; c++)                                        \
      x->dor[c] = (R)oracle_tensor_get(&p->dout, x->g.tb, qi, x->h, c);        \
    for (int64_t j = 0; j < x->g.sk; j++) {                                    \
      R s = 0;                                                                 \
      x->s[j] = -INFINITY;                                                     \
      x->th[j] = 0;                                                            \
      if (!oracle_allowed(p, &x->g, x->h, i, j))                               \
        continue;                                                              \
      for (int64_t c = 0; c < x->d; c++)                                       \
        s += x->qr[c] *                                                        \
             (R)oracle_tensor_get(&p->k, x->g.tb, x->g.k0 + j, x->kvh, c);     \
      s *= x->scale;                                                           \
      if (x->cap > 0) {                                                        \
        x->th[j] = TANH(s / x->cap);                                           \
        s = x->cap * x->th[j];                                                 \
      }                                                                        \
      if (p->alibi_slopes)                                                     \
        s -= (R)p->alibi_slopes[x->h] * (R)oracle_alibi_dist(p, &x->g, i, j);  \
      if (p->rel_bias)                                                         \
        s += (R)oracle_t5_bias(p, &x->g, x->h, i, j);                          \
      if (p->bias.data)                                                        \
        s += (R)oracle_tensor_get(&p->bias, x->g.b, x->h, i, j);               \
      x->s[j] = s;                                                             \
      if (s > m)                                                               \
        m = s;                                                                 \
    }                                                                          \
    return m;                                                                  \
  }

/* Probabilities pr of row i from its scores (max m), the row's O (own, or
 * the forward's when naive) and D = rowsum(dout * O), returned. */
#define DEFINE_BWD_PROBS(NAME, ST, R, EXP, LOG, NAIVE)                         \
  static R NAME(ST *x, int64_t i, R m) {                                       \
    const attn_params *p = x->p;                                               \
    const int64_t qi = x->g.q0 + i;                                            \
    R sum = 0, dd = 0;                                                         \
    const R sink = p->sinks ? (R)p->sinks[x->h] : (R)-INFINITY;                \
    for (int64_t j = 0; j < x->g.sk; j++)                                      \
      if (x->s[j] != -INFINITY)                                                \
        sum += EXP(x->s[j] - m);                                               \
    if (sink != -INFINITY) /* the sink joins the sum, with no value */         \
      sum += EXP(sink - m);                                                    \
    R lse = m + LOG(sum);                                                      \
    if (NAIVE)                                                                 \
      lse = (R)p->lse[oracle_row_index(p, x->g.tb, x->h, qi)];                 \
    for (int64_t j = 0; j < x->g.sk; j++)                                      \
      x->pr[j] = x->s[j] == -INFINITY ? 0 : EXP(x->s[j] - lse);                \
    for (int64_t c = 0; c < x->dv; c++) {                                      \
      R o = 0;                                                                 \
      if (NAIVE)                                                               \
        o = (R)oracle_tensor_get(&p->o, x->g.tb, qi, x->h, c);                 \
      else                                                                     \
        for (int64_t j = 0; j < x->g.sk; j++)                                  \
          if (x->pr[j] != 0) /* the dropped P: O is the forward's */           \
            o += x->pr[j] * (R)oracle_dropout(p, &x->g, x->h, i, j) *          \
                 (R)oracle_tensor_get(&p->v, x->g.tb, x->g.k0 + j, x->kvh, c); \
      x->orow[c] = o;                                                          \
    }                                                                          \
    for (int64_t c = 0; c < x->dv; c++)                                        \
      dd += x->dor[c] * x->orow[c];                                            \
    if (x->n[5] && sink != -INFINITY) /* dsink = -P_sink D */                  \
      x->acc[5][x->h] -= EXP(sink - lse) * dd;                                 \
    return dd;                                                                 \
  }

/* Gradients of row i: dV += P^T dO, dS = P (dP - D), dBias += dS, the
 * softcap's chain rule, dQ = scale dS K, dK += scale dS^T Q. */
#define DEFINE_BWD_GRADS(NAME, ST, R)                                          \
  static void NAME(ST *x, int64_t i, R dd) {                                   \
    const attn_params *p = x->p;                                               \
    const int64_t S0 = p->q.shape[1], K0 = p->k.shape[1];                      \
    const int64_t hq = p->q.shape[2], hk = p->k.shape[2];                      \
    const int64_t qi = x->g.q0 + i, tb = x->g.tb;                              \
    for (int64_t c = 0; c < x->d; c++)                                         \
      x->dqr[c] = 0;                                                           \
    for (int64_t j = 0; j < x->g.sk; j++) {                                    \
      if (x->pr[j] == 0)                                                       \
        continue;                                                              \
      const int64_t kj = x->g.k0 + j;                                          \
      const R zj = (R)oracle_dropout(p, &x->g, x->h, i, j); /* dropout */      \
      const int64_t vi = ((tb * K0 + kj) * hk + x->kvh) * x->dv;               \
      const int64_t ki = ((tb * K0 + kj) * hk + x->kvh) * x->d;                \
      R dp = 0;                                                                \
      for (int64_t c = 0; c < x->dv; c++) {                                    \
        dp += x->dor[c] * (R)oracle_tensor_get(&p->v, tb, kj, x->kvh, c);      \
        x->acc[2][vi + c] += x->pr[j] * zj * x->dor[c];                        \
      }                                                                        \
      R ds = x->pr[j] * (zj * dp - dd);                                        \
      if (x->n[3])                                                             \
        x->acc[3][bias_index(&p->bias, x->g.b, x->h, i, j)] += ds;             \
      if (x->n[4])                                                             \
        x->acc[4][oracle_t5_index(p, &x->g, x->h, i, j)] += ds;                \
      if (x->cap > 0)                                                          \
        ds *= 1 - x->th[j] * x->th[j];                                         \
      for (int64_t c = 0; c < x->d; c++) {                                     \
        const R kc = (R)oracle_tensor_get(&p->k, tb, kj, x->kvh, c);           \
        x->dqr[c] += ds * kc;                                                  \
        x->acc[1][ki + c] += x->scale * ds * x->qr[c];                         \
      }                                                                        \
    }                                                                          \
    const int64_t qo = ((tb * S0 + qi) * hq + x->h) * x->d;                    \
    for (int64_t c = 0; c < x->d; c++)                                         \
      x->acc[0][qo + c] = x->scale * x->dqr[c];                                \
  }

/* The whole backward: loops over sequences, heads and rows. */
#define DEFINE_BWD_RUN(NAME, ST, R, SCORES, PROBS, GRADS, COND)                \
  static void NAME(ST *x) {                                                    \
    const attn_params *p = x->p;                                               \
    for (int64_t b = 0; b < oracle_num_seqs(p); b++) {                         \
      oracle_seq_geom_get(p, b, &x->g);                                        \
      for (x->h = 0; x->h < p->q.shape[2]; x->h++) {                           \
        x->kvh = x->h / (p->q.shape[2] / p->k.shape[2]);                       \
        for (int64_t i = 0; i < x->g.sq; i++) {                                \
          const R m = SCORES(x, i);                                            \
          if (m == -INFINITY)                                                  \
            continue; /* no key: zero gradients */                             \
          const R dd = PROBS(x, i, m);                                         \
          x->total += (double)dd;                                              \
          if (x->n[0])                                                         \
            GRADS(x, i, dd);                                                   \
          if (x->cd)                                                           \
            COND(x, i, m, dd);                                                 \
        }                                                                      \
      }                                                                        \
    }                                                                          \
  }

/* Allocation around the run; out == NULL computes only the loss. */
#define DEFINE_BACKWARD(NAME, ST, R, RUN, WITH_COND)                           \
  static int NAME(const attn_params *p, oracle_grads *out, double *loss) {     \
    ST x;                                                                      \
    bwd_cond cd;                                                               \
    int ok = 1;                                                                \
    const int64_t maxk = oracle_max_keys(p);                                   \
    memset(&x, 0, sizeof x);                                                   \
    x.p = p;                                                                   \
    x.d = p->q.shape[3], x.dv = p->v.shape[3];                                 \
    x.scale = p->scale == 0.0f ? (R)(1.0 / sqrt((double)x.d)) : p->scale;      \
    x.cap = p->softcap;                                                        \
    if (out && grads_alloc(p, out) != 0)                                       \
      return -1;                                                               \
    x.s = malloc((size_t)maxk * sizeof(R));                                    \
    x.th = malloc((size_t)maxk * sizeof(R));                                   \
    x.pr = malloc((size_t)maxk * sizeof(R));                                   \
    x.qr = malloc((size_t)x.d * sizeof(R));                                    \
    x.dor = malloc((size_t)x.dv * sizeof(R));                                  \
    x.orow = malloc((size_t)x.dv * sizeof(R));                                 \
    x.dqr = malloc((size_t)x.d * sizeof(R));                                   \
    ok = x.s && x.th && x.pr && x.qr && x.dor && x.orow && x.dqr;              \
    for (int t = 0; out && t < ORACLE_NGRADS; t++) {                           \
      x.n[t] = out->n[t];                                                      \
      x.acc[t] = calloc((size_t)out->n[t] + 1, sizeof(R));                     \
      ok = ok && x.acc[t];                                                     \
    }                                                                          \
    memset(&cd, 0, sizeof cd);                                                 \
    if (ok && out && WITH_COND)                                                \
      ok = cond_alloc(&cd, out, maxk) == 0, x.cd = &cd;                        \
    if (ok)                                                                    \
      RUN(&x);                                                                 \
    if (ok && out && WITH_COND)                                                \
      cond_finish(&cd, out);                                                   \
    cond_free(&cd);                                                            \
    for (int t = 0; ok && out && t < ORACLE_NGRADS; t++)                       \
      for (int64_t k = 0; k < out->n[t]; k++) {                                \
        out->g[t][k] = (double)x.acc[t][k];                                    \
        if (fabs(out->g[t][k]) > out->gmax[t])                                 \
          out->gmax[t] = fabs(out->g[t][k]);                                   \
      }                                                                        \
    for (int t = 0; t < ORACLE_NGRADS; t++)                                    \
      free(x.acc[t]);                                                          \
    free(x.s), free(x.th), free(x.pr), free(x.qr), free(x.dor);                \
    free(x.orow), free(x.dqr);                                                 \
    if (loss)                                                                  \
      *loss = x.total;                                                         \
    return ok ? 0 : -1;                                                        \
  }

/* ---------------------------------------------------------------------- */
/* Conditioning of the gradients (cond(x) in oracle_bwd.h)                 */
/* ---------------------------------------------------------------------- */
static int cond_alloc(bwd_cond *cd, oracle_grads *out, int64_t maxk) {
  int ok = 1;
  for (int t = 0; t < ORACLE_NGRADS; t++) {
    const size_t n = (size_t)out->n[t] + 1;
    out->cond[t] = calloc(n, sizeof(double));
    cd->mv[t] = calloc(n, sizeof(double));
    cd->sq[t] = calloc(n, sizeof(double));
    cd->nt[t] = calloc(n, sizeof(double));
    ok = ok && out->cond[t] && cd->mv[t] && cd->sq[t] && cd->nt[t];
  }
  cd->rel = malloc((size_t)maxk * sizeof(double));
  cd->gj = malloc((size_t)maxk * sizeof(double));
  cd->own = malloc((size_t)maxk * sizeof(double));
  return ok && cd->rel && cd->gj && cd->own ? 0 : -1;
}

static void cond_free(bwd_cond *cd) {
  for (int t = 0; t < ORACLE_NGRADS; t++)
    free(cd->mv[t]), free(cd->sq[t]), free(cd->nt[t]);
  free(cd->rel), free(cd->gj), free(cd->own);
  memset(cd, 0, sizeof *cd);
}

static void cond_finish(const bwd_cond *cd, oracle_grads *out) {
  const double u = ldexp(1.0, -24);
  for (int t = 0; t < ORACLE_NGRADS; t++)
    for (int64_t k = 0; k < out->n[t]; k++) {
      out->cond[t][k] =
          sqrt(cd->mv[t][k] + u * u * cd->nt[t][k] * cd->sq[t][k]);
    }
}

/* One term of element k of gradient t: its squared move mv2 and value. */
static void cond_add(bwd_cond *cd, int t, int64_t k, double mv2, double term) {
  cd->mv[t][k] += mv2;
  cd->sq[t][k] += term * term;
  cd->nt[t][k] += 1;
}

/* Row i's contributions, after grads64 (x->pr, s, th, qr, dor, orow hold
 * the row); m is its max score, dd = D_i. */
static void cond_row(bwd64 *x, int64_t i, double m, double dd) {
  const attn_params *p = x->p;
  bwd_cond *cd = x->cd;
  const double u = ldexp(1.0, -24), sc = fabs(x->scale);
  const double rd = sqrt((double)x->d), dv = (double)x->dv;
  const int64_t S0 = p->q.shape[1], K0 = p->k.shape[1];
  const int64_t hq = p->q.shape[2], hk = p->k.shape[2];
  const int64_t qi = x->g.q0 + i, tb = x->g.tb;
  double lam2 = 0, dd2 = 0, ptot = 0, od2 = 0;
  int64_t nk = 0;
  for (int64_t c = 0; c < x->dv; c++)
    od2 += x->dor[c] * x->orow[c] * x->dor[c] * x->orow[c];
  /* pass 1, per key: P's relative error (its score's), g = z dP - D, the
   * own move of dS = P g (P's error, the roundings of dP, g and P g); for
   * the row: lse's move and D's (O is the forward's, rounded its own way) */
  for (int64_t j = 0; j < x->g.sk; j++) {
    cd->rel[j] = cd->gj[j] = cd->own[j] = 0;
    const double pj = x->pr[j];
    if (pj == 0)
      continue;
    const int64_t kj = x->g.k0 + j;
    const double z = oracle_dropout(p, &x->g, x->h, i, j);
    double ax = 0, dp = 0, vo2 = 0;
    for (int64_t c = 0; c < x->d; c++) {
      const double t = x->qr[c] * oracle_tensor_get(&p->k, tb, kj, x->kvh, c);
      ax += t * t;
    }
    for (int64_t c = 0; c < x->dv; c++) {
      const double t = x->dor[c] * oracle_tensor_get(&p->v, tb, kj, x->kvh, c);
      dp += t, vo2 += t * t;
    }
    const double r = u * (rd * sqrt(ax) * sc + 2 * fabs(x->s[j]) + fabs(m));
    const double g = z * dp - dd, mag = fabs(g) + fabs(dd);
    cd->rel[j] = r, cd->gj[j] = g;
    cd->own[j] =
        pj * pj * (g * g * r * r + u * u * (dv * z * z * vo2 + mag * mag));
    lam2 += pj * r * pj * r;
    dd2 += pj * r * g * pj * r * g;
    ptot += pj;
    nk++;
  }
  const double sink = p->sinks ? (double)p->sinks[x->h] : -INFINITY;
  const double ps = sink == -INFINITY ? 0.0 : fmax(0.0, 1.0 - ptot);
  if (ps > 0) /* the sink's P moves lse too */
    lam2 += ps * u * (fabs(sink) + fabs(m)) * ps * u * (fabs(sink) + fabs(m));
  const double dcom2 = dd2 + u * u * dv * od2; /* D's move, rounding too */
  /* pass 2: the terms of dV, dbias, the T5 table and dK this row feeds */
  for (int64_t j = 0; j < x->g.sk; j++) {
    const double pj = x->pr[j], g = cd->gj[j];
    if (pj == 0)
      continue;
    const int64_t kj = x->g.k0 + j;
    const double z = oracle_dropout(p, &x->g, x->h, i, j);
    const int64_t vi = ((tb * K0 + kj) * hk + x->kvh) * x->dv;
    const int64_t ki = ((tb * K0 + kj) * hk + x->kvh) * x->d;
    for (int64_t c = 0; x->n[2] && c < x->dv; c++) { /* dV += P z dO */
      const double t = pj * z * x->dor[c];
      cond_add(cd, 2, vi + c, t * t * (cd->rel[j] * cd->rel[j] + lam2), t);
    }
    const double ds = pj * g;
    const double mv2 = cd->own[j] + pj * pj * (g * g * lam2 + dcom2);
    if (x->n[3])
      cond_add(cd, 3, bias_index(&p->bias, x->g.b, x->h, i, j), mv2, ds);
    if (x->n[4])
      cond_add(cd, 4, oracle_t5_index(p, &x->g, x->h, i, j), mv2, ds);
    const double tj = x->cap > 0 ? 1 - x->th[j] * x->th[j] : 1.0;
    for (int64_t c = 0; x->n[1] && c < x->d; c++) { /* dK += scale dS q */
      const double a = sc * x->qr[c] * tj;
      cond_add(cd, 1, ki + c, a * a * mv2, a * ds);
    }
  }
  /* dq_i = scale sum_j dS_ij k_j: the moves of lse and D are common to the
   * row and add coherently over j */
  const int64_t qo = ((tb * S0 + qi) * hq + x->h) * x->d;
  for (int64_t c = 0; x->n[0] && c < x->d; c++) {
    double ind = 0, coh = 0, dq = 0, sq = 0;
    for (int64_t j = 0; j < x->g.sk; j++) {
      const double pj = x->pr[j];
      if (pj == 0)
        continue;
      const double tj = x->cap > 0 ? 1 - x->th[j] * x->th[j] : 1.0;
      const double a =
          sc * tj * oracle_tensor_get(&p->k, tb, x->g.k0 + j, x->kvh, c);
      ind += a * a * cd->own[j];
      coh += a * pj;
      dq += a * pj * cd->gj[j];
      sq += a * pj * cd->gj[j] * a * pj * cd->gj[j];
    }
    cd->mv[0][qo + c] = ind + lam2 * dq * dq + dcom2 * coh * coh;
    cd->sq[0][qo + c] = sq;
    cd->nt[0][qo + c] = (double)nk;
  }
  if (x->n[5] && ps > 0) /* dsink = -P_sink D */
    cond_add(cd, 5, x->h, ps * ps * (dd * dd * lam2 + dcom2), ps * dd);
}

DEFINE_BWD_SCORES(scores64, bwd64, double, tanh)
DEFINE_BWD_PROBS(probs64, bwd64, double, exp, log, 0)
DEFINE_BWD_GRADS(grads64, bwd64, double)
DEFINE_BWD_RUN(run64, bwd64, double, scores64, probs64, grads64, cond_row)
DEFINE_BACKWARD(backward_f64, bwd64, double, run64, 1)

/* The naive f32 reference computes no cond (x->cd stays NULL). */
static void no_cond32(bwd32 *x, int64_t i, float m, float dd) {
  (void)x, (void)i, (void)m, (void)dd;
}

DEFINE_BWD_SCORES(scores32, bwd32, float, tanhf)
DEFINE_BWD_PROBS(probs32, bwd32, float, expf, logf, 1)
DEFINE_BWD_GRADS(grads32, bwd32, float)
DEFINE_BWD_RUN(run32, bwd32, float, scores32, probs32, grads32, no_cond32)
DEFINE_BACKWARD(backward_f32, bwd32, float, run32, 0)

int oracle_backward(const attn_params *p, oracle_grads *out) {
  return backward_f64(p, out, NULL);
}

int oracle_backward_f32(const attn_params *p, oracle_grads *out) {
  if (backward_f32(p, out, NULL) != 0)
    return -1;
  /* outputs rounded to their dtypes, as the kernel must store them */
  const attn_dtype dt[3] = {p->dq.dtype, p->dk.dtype, p->dv.dtype};
  for (int t = 0; t < 3; t++)
    for (int64_t x = 0; x < out->n[t]; x++)
      out->g[t][x] = oracle_round_to(dt[t], (float)out->g[t][x]);
  return 0;
}

double oracle_loss(const attn_params *p) {
  double l = 0.0;
  if (backward_f64(p, NULL, &l) != 0)
    return NAN;
  return l;
}

/* ---------------------------------------------------------------------- */
/* Comparison                                                             */
/* ---------------------------------------------------------------------- */
static const attn_tensor *grad_view(const attn_params *p, int t) {
  return t == 0 ? &p->dq : t == 1 ? &p->dk : t == 2 ? &p->dv : &p->dbias;
}

double oracle_grad_value(const attn_params *p, int t, int64_t x) {
  if (t == 4) /* drel_bias: f32 [rel_buckets, heads_q], contiguous */
    return (double)p->drel_bias[x];
  if (t == 5) /* dsinks: f32 [heads_q] */
    return (double)p->dsinks[x];
  const attn_tensor *v = grad_view(p, t);
  const int64_t *s = v->shape;
  const int64_t i3 = x % s[3], i2 = x / s[3] % s[2],
                i1 = x / s[3] / s[2] % s[1], i0 = x / s[3] / s[2] / s[1];
  return oracle_tensor_get(v, i0, i1, i2, i3);
}

/* One gradient tensor; returns 0 when it fails (and says why, once). */
static int compare_one(const attn_params *p, const oracle_grads *ref,
                       const oracle_grads *nv, int t, oracle_grad_cmp *c) {
  const double cond_on = getenv("ATTN_TEST_NO_COND") ? 0.0 : 1.0;
  double en = 0;
  for (int64_t x = 0; x < ref->n[t]; x++) {
    const double e2 = fabs(nv->g[t][x] - ref->g[t][x]);
    if (isfinite(e2) && e2 > en)
      en = e2;
  }
  /* gmax_all: a gradient can vanish by cancellation (one visible key:
   * dS = P (dP - D) = 0 exactly), so the floor takes the scale of all */
  const double gmax_all =
      fmax(fmax(ref->gmax[0], ref->gmax[1]), fmax(ref->gmax[2], ref->gmax[t]));
  const attn_dtype dt = t >= 4 ? ATTN_DTYPE_F32 : grad_view(p, t)->dtype;
  double floor = 1e-5 * gmax_all + 1e-7;
  if (dt == ATTN_DTYPE_BF16)
    floor += ref->gmax[t] * ldexp(1.0, -8);
  else if (dt == ATTN_DTYPE_F16)
    floor += ref->gmax[t] * ldexp(1.0, -11);
  double err = 0, worst = 0, allowed_bad = 0;
  int64_t bad = -1;
  for (int64_t x = 0; x < ref->n[t]; x++) {
    const double kv = oracle_grad_value(p, t, x);
    if (!isfinite(kv)) {
      c->nonfinite[t]++;
      continue;
    }
    const double cx = ref->cond[t] ? cond_on * ref->cond[t][x] : 0.0;
    if (cx > c->cond[t])
      c->cond[t] = cx;
    if (cx > floor)
      c->n_cond[t]++;
    const double e = fabs(kv - ref->g[t][x]);
    const double allowed = 2 * en + fmax(floor, cx);
    err = fmax(err, e);
    if (e / allowed > worst)
      worst = e / allowed, bad = x, allowed_bad = allowed;
  }
  c->err[t] = err, c->naive[t] = en, c->floor[t] = floor;
  c->budget[t] = worst;
  if (c->nonfinite[t]) {
    if (!c->problem[0])
      snprintf(c->problem, sizeof c->problem, "%s has %lld non-finite elements",
               oracle_grad_names[t], (long long)c->nonfinite[t]);
    return 0;
  }
  if (c->budget[t] > 1.0) {
    if (!c->problem[0])
      snprintf(c->problem, sizeof c->problem,
               "%s err %.3g at %lld (got %.9g want %.9g) > allowed %.3g "
               "(2 * naive %.3g + max(floor %.3g, cond %.3g))",
               oracle_grad_names[t],
               fabs(oracle_grad_value(p, t, bad) - ref->g[t][bad]),
               (long long)bad, oracle_grad_value(p, t, bad), ref->g[t][bad],
               allowed_bad, en, floor,
               ref->cond[t] ? cond_on * ref->cond[t][bad] : 0.0);
    return 0;
  }
  return 1;
}

void oracle_grads_compare(const attn_params *p, const oracle_grads *ref,
                          const oracle_grads *nv, oracle_grad_cmp *c) {
  memset(c, 0, sizeof *c);
  c->ok = 1;
  for (int t = 0; t < ORACLE_NGRADS; t++)
    if (ref->n[t] && !compare_one(p, ref, nv, t, c))
      c->ok = 0;
}
