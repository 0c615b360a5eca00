/*
 * test_linear: linear attention (attn/linear.h) against the quadratic form
 * of the same maths in double.
 *
 *   oracle    the double oracle's backward against central finite
 *             differences of its forward (the derivation, checked once).
 *   fwd/bwd   random problems: lengths 1, primes, chunk edges +-1
 *             (63, 64, 65, 127, 128, 129), seq_q != seq_k both ways, GQA and
 *             MQA, head dims 1..96, non-causal, bottom-right and top-left
 *             causal, q/k/v/o/dout/dq/dk/dv each f32, bf16 or f16 in random
 *             strided layouts (bhsd, padded rows, inner stride 2); o, dq,
 *             dk, dv against the quadratic oracle in double.
 *   threads   1, 2, 3, 5 threads and a caller workspace: bitwise the same.
 *   state     the recurrent state, token by token and in steps of several
 *             tokens, against the oracle and the parallel causal form;
 *             reset and length.
 *   guard     features that underflow (q = -200: phi = 0 in f32): finite o
 *             (0) and gradients; rows with no key (seq_q > seq_k,
 *             bottom-right) are 0 with 0 gradients; NaN in a key reaches
 *             exactly the rows that see it.
 *   status    every bad input: status and message.
 *
 * Tolerance: the library and the oracle compute the same weighted average
 * o_i = sum_j w_ij v_j / sum_j w_ij (w >= 0), in f32 and in double. Every
 * f32 path from the inputs to o_i (w_ij: d products; the sums over at most
 * seq_k keys, through the state or inside a chunk; the division) has at
 * most d + seq_k + 4 roundings (phi's exp is a polynomial exp2 within a
 * few u, counted among the 4), so the classic worst-case bound of a naive
 * f32 evaluation is (d + seq_k + 4) u M_i, u = 2^-24, M_i = sum_j w_ij
 * |v_j| / den_i. We allow twice that (FlashAttention's "twice the naive
 * error" rule, with the worst case for the naive error), plus the rounding
 * of o's storage dtype (u of bf16 or f16 relative, and f16's subnormal
 * spacing). The gradients: the same rule with d + dv + seq_k + seq_q *
 * group + 8 roundings and scales M = the sums of |terms| of each gradient
 * (from the oracle). The worst measured ratio is printed (f32 outputs
 * separately: for them the storage rounding is not in the allowance).
 *
 * Environment: ATTN_TEST_SEED, ATTN_TEST_VERBOSE=1, ATTN_TEST_QUICK=1 (fewer
 * cases). Last line: "N passed, N failed".
 */
#include "attn.h"
#include "test_common.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;
static int verbose, quick;
/* the context of the calls: NULL (the widest ISA), or one forced to the
 * generic kernel */
static attn_context *ctx;

#define U32 5.9604644775390625e-08 /* 2^-24 */

/* ---------------------------------------------------------------------- */
/* Tensors                                                                */
/* ---------------------------------------------------------------------- */

static const attn_dtype storage[3] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16,
                                      ATTN_DTYPE_F16};

/* A [b, s, h, d] view of dt: contiguous bshd, or (random) bhsd, padded
 * rows, inner stride 2. Filled with 0xFF (NaN in every dtype). */
static attn_tensor view_new(tc_rng *r, attn_dtype dt, const int64_t sh[4],
                            int random) {
  attn_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  int order[4] = {0, 1, 2, 3};
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

static int64_t off_of(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                      int64_t x) {
  return b * t->stride[0] + s * t->stride[1] + h * t->stride[2] +
         x * t->stride[3];
}

static double get(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                  int64_t x) {
  const int64_t o = off_of(t, b, s, h, x);
  if (t->dtype == ATTN_DTYPE_F32)
    return ((const float *)t->data)[o];
  const uint16_t u = ((const uint16_t *)t->data)[o];
  return t->dtype == ATTN_DTYPE_BF16 ? tc_bf16_to_f32(u) : tc_f16_to_f32(u);
}

static void put(attn_tensor *t, int64_t b, int64_t s, int64_t h, int64_t x,
                double v) {
  const int64_t o = off_of(t, b, s, h, x);
  if (t->dtype == ATTN_DTYPE_F32)
    ((float *)t->data)[o] = (float)v;
  else
    ((uint16_t *)t->data)[o] = t->dtype == ATTN_DTYPE_BF16
                                   ? tc_f32_to_bf16((float)v)
                                   : tc_f32_to_f16((float)v);
}

static void fill(tc_rng *r, attn_tensor *t, double sd, double mean) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          put(t, b, s, h, x, mean + sd * tc_normal(r));
}

/* Bytes a view spans (for a copy). */
static size_t span_bytes(const attn_tensor *t) {
  int64_t last = 0;
  for (int i = 0; i < 4; i++)
    last += (t->shape[i] - 1) * t->stride[i];
  return (size_t)(last + 1) * attn_dtype_size(t->dtype);
}

/* Relative rounding of a storage dtype (0 for f32). */
static double dtype_eps(attn_dtype dt) {
  return dt == ATTN_DTYPE_BF16 ? 0x1p-8 : dt == ATTN_DTYPE_F16 ? 0x1p-11 : 0;
}

/* ---------------------------------------------------------------------- */
/* The oracle: the quadratic form in double                               */
/* ---------------------------------------------------------------------- */

typedef struct prob {
  int64_t b, sq, sk, hq, hk, d, dv;
  attn_causal causal;
} prob;

static double phi(double x) { return x > 0 ? x + 1 : exp(x); }
static double dphi(double x) { return x > 0 ? 1 : exp(x); }

static int visible(const prob *P, int64_t i, int64_t j) {
  if (P->causal == ATTN_CAUSAL_NONE)
    return 1;
  const int64_t off = P->causal == ATTN_CAUSAL_BOTTOM_RIGHT ? P->sk - P->sq : 0;
  return j <= i + off;
}

/* Dense double copies [b][s][h][x] of the inputs (as stored). */
typedef struct dense {
  double *q, *k, *v, *g;
} dense;

#define IX(P, s, h, x, S, H, X) ((((P)*S + (s)) * H + (h)) * X + (x))

static double *densify(const attn_tensor *t) {
  const int64_t n = t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3];
  double *o = tc_alloc((size_t)n * sizeof *o);
  int64_t at = 0;
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          o[at++] = get(t, b, s, h, x);
  return o;
}

/* Outputs of the oracle, dense, with per-element error scales. */
typedef struct ref {
  double *o, *os;   /* [b, sq, hq, dv], scale sum_j w |v| / den  */
  double *dq, *dqs; /* [b, sq, hq, d]                            */
  double *dk, *dks; /* [b, sk, hk, d]                            */
  double *dv, *dvs; /* [b, sk, hk, dv]                           */
} ref;

static void ref_free(ref *r) {
  free(r->o), free(r->os), free(r->dq), free(r->dqs);
  free(r->dk), free(r->dks), free(r->dv), free(r->dvs);
}

/* Forward and backward of the quadratic form; with g NULL forward only. */
static ref oracle(const prob *P, const dense *X) {
  ref R;
  memset(&R, 0, sizeof R);
  const int64_t B = P->b, SQ = P->sq, SK = P->sk, HQ = P->hq, HK = P->hk;
  const int64_t D = P->d, DV = P->dv, G = HQ / HK;
  R.o = calloc((size_t)(B * SQ * HQ * DV), sizeof(double));
  R.os = calloc((size_t)(B * SQ * HQ * DV), sizeof(double));
  if (X->g) {
    R.dq = calloc((size_t)(B * SQ * HQ * D), sizeof(double));
    R.dqs = calloc((size_t)(B * SQ * HQ * D), sizeof(double));
    R.dk = calloc((size_t)(B * SK * HK * D), sizeof(double));
    R.dks = calloc((size_t)(B * SK * HK * D), sizeof(double));
    R.dv = calloc((size_t)(B * SK * HK * DV), sizeof(double));
    R.dvs = calloc((size_t)(B * SK * HK * DV), sizeof(double));
  }
  double *w = tc_alloc((size_t)SK * sizeof(double));
  double *dw = tc_alloc((size_t)SK * sizeof(double));
  double *dws = tc_alloc((size_t)SK * sizeof(double));
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < HQ; h++) {
      const int64_t g = h / G;
      for (int64_t i = 0; i < SQ; i++) {
        double den = 0;
        int any = 0;
        for (int64_t j = 0; j < SK; j++) {
          w[j] = 0;
          if (!visible(P, i, j))
            continue;
          any = 1;
          for (int64_t x = 0; x < D; x++)
            w[j] += phi(X->q[IX(b, i, h, x, SQ, HQ, D)]) *
                    phi(X->k[IX(b, j, g, x, SK, HK, D)]);
          den += w[j];
        }
        const double Dn = den < FLT_MIN ? FLT_MIN : den;
        double *o = R.o + IX(b, i, h, 0, SQ, HQ, DV);
        double *os = R.os + IX(b, i, h, 0, SQ, HQ, DV);
        for (int64_t c = 0; c < DV; c++) {
          double s = 0, a = 0;
          for (int64_t j = 0; j < SK; j++) {
            s += w[j] * X->v[IX(b, j, g, c, SK, HK, DV)];
            a += w[j] * fabs(X->v[IX(b, j, g, c, SK, HK, DV)]);
          }
          o[c] = s / Dn;
          os[c] = a / Dn;
        }
        if (!X->g)
          continue;
        /* dn = g / D, t = -(g . o) / D (0 under the guard or no key) */
        const double *gi = X->g + IX(b, i, h, 0, SQ, HQ, DV);
        double go = 0, gos = 0;
        for (int64_t c = 0; c < DV; c++) {
          go += gi[c] * o[c];
          gos += fabs(gi[c]) * os[c];
        }
        const double t = !any || den < FLT_MIN ? 0 : -go / Dn;
        const double ts = !any || den < FLT_MIN ? 0 : gos / Dn;
        for (int64_t j = 0; j < SK; j++) {
          dw[j] = dws[j] = 0;
          if (!visible(P, i, j))
            continue;
          for (int64_t c = 0; c < DV; c++) {
            const double vv = X->v[IX(b, j, g, c, SK, HK, DV)];
            dw[j] += gi[c] / Dn * vv;
            dws[j] += fabs(gi[c] / Dn * vv);
          }
          dw[j] += t;
          dws[j] += ts;
        }
        for (int64_t x = 0; x < D; x++) {
          const double qx = X->q[IX(b, i, h, x, SQ, HQ, D)];
          double da = 0, das = 0;
          for (int64_t j = 0; j < SK; j++) {
            const double kx = X->k[IX(b, j, g, x, SK, HK, D)];
            da += dw[j] * phi(kx);
            das += dws[j] * phi(kx);
            /* dk, dv of key j from row i */
            R.dk[IX(b, j, g, x, SK, HK, D)] += dw[j] * phi(qx) * dphi(kx);
            R.dks[IX(b, j, g, x, SK, HK, D)] += dws[j] * phi(qx) * dphi(kx);
          }
          R.dq[IX(b, i, h, x, SQ, HQ, D)] = da * dphi(qx);
          R.dqs[IX(b, i, h, x, SQ, HQ, D)] = das * dphi(qx);
        }
        for (int64_t j = 0; j < SK; j++)
          for (int64_t c = 0; c < DV && w[j] != 0; c++) {
            R.dv[IX(b, j, g, c, SK, HK, DV)] += w[j] * gi[c] / Dn;
            R.dvs[IX(b, j, g, c, SK, HK, DV)] += fabs(w[j] * gi[c] / Dn);
          }
      }
    }
  free(w), free(dw), free(dws);
  return R;
}

/* ---------------------------------------------------------------------- */
/* The oracle's backward against finite differences of its forward        */
/* ---------------------------------------------------------------------- */

static double loss(const prob *P, const dense *X, const double *g) {
  dense Y = *X;
  Y.g = NULL;
  ref R = oracle(P, &Y);
  double L = 0;
  const int64_t n = P->b * P->sq * P->hq * P->dv;
  for (int64_t e = 0; e < n; e++)
    L += g[e] * R.o[e];
  ref_free(&R);
  return L;
}

static void fd_one(const prob *P, dense *X, double *x, int64_t n,
                   const double *grad, const char *what) {
  double worst = 0;
  for (int64_t e = 0; e < n; e++) {
    const double keep = x[e], hstep = 1e-5 * (1 + fabs(keep));
    x[e] = keep + hstep;
    const double lp = loss(P, X, X->g);
    x[e] = keep - hstep;
    const double lm = loss(P, X, X->g);
    x[e] = keep;
    const double fd = (lp - lm) / (2 * hstep), err = fabs(fd - grad[e]);
    worst = fmax(worst, err / (1e-6 + fabs(fd)));
    CHECK(err <= 1e-6 + 1e-5 * fabs(fd), "fd %s[%lld]: fd %.9g, oracle %.9g",
          what, (long long)e, fd, grad[e]);
  }
  if (verbose)
    printf("  fd %s: worst relative error %.3g\n", what, worst);
}

static void test_oracle_fd(tc_rng *r) {
  const attn_causal kinds[3] = {ATTN_CAUSAL_NONE, ATTN_CAUSAL_BOTTOM_RIGHT,
                                ATTN_CAUSAL_TOP_LEFT};
  for (int c = 0; c < 3; c++) {
    prob P = {1, 4, 5, 2, 1, 3, 2, kinds[c]};
    if (c == 2)
      P.sq = 6; /* top-left with seq_q > seq_k */
    dense X;
    const int64_t nq = P.b * P.sq * P.hq * P.d, nk = P.b * P.sk * P.hk * P.d;
    const int64_t nv = P.b * P.sk * P.hk * P.dv, ng = P.b * P.sq * P.hq * P.dv;
    X.q = tc_alloc((size_t)nq * sizeof(double));
    X.k = tc_alloc((size_t)nk * sizeof(double));
    X.v = tc_alloc((size_t)nv * sizeof(double));
    X.g = tc_alloc((size_t)ng * sizeof(double));
    for (int64_t e = 0; e < nq; e++)
      X.q[e] = tc_normal(r);
    for (int64_t e = 0; e < nk; e++)
      X.k[e] = tc_normal(r);
    for (int64_t e = 0; e < nv; e++)
      X.v[e] = tc_normal(r);
    for (int64_t e = 0; e < ng; e++)
      X.g[e] = tc_normal(r);
    ref R = oracle(&P, &X);
    fd_one(&P, &X, X.q, nq, R.dq, "dq");
    fd_one(&P, &X, X.k, nk, R.dk, "dk");
    fd_one(&P, &X, X.v, nv, R.dv, "dv");
    ref_free(&R);
    free(X.q), free(X.k), free(X.v), free(X.g);
  }
}

/* ---------------------------------------------------------------------- */
/* Cases                                                                  */
/* ---------------------------------------------------------------------- */

typedef struct kase {
  prob P;
  attn_dtype dt[8]; /* q k v o dout dq dk dv */
  int random_layout;
  double qmean; /* shifts q (negative: small features) */
} kase;

typedef struct bufs {
  attn_linear_params p;
  dense X;
} bufs;

static void bufs_make(tc_rng *r, const kase *c, bufs *B) {
  const prob *P = &c->P;
  const int64_t sq_[4] = {P->b, P->sq, P->hq, P->d};
  const int64_t sk_[4] = {P->b, P->sk, P->hk, P->d};
  const int64_t sv_[4] = {P->b, P->sk, P->hk, P->dv};
  const int64_t so_[4] = {P->b, P->sq, P->hq, P->dv};
  attn_linear_params_init(&B->p);
  attn_linear_params *p = &B->p;
  p->q = view_new(r, c->dt[0], sq_, c->random_layout);
  p->k = view_new(r, c->dt[1], sk_, c->random_layout);
  p->v = view_new(r, c->dt[2], sv_, c->random_layout);
  p->o = view_new(r, c->dt[3], so_, c->random_layout);
  p->dout = view_new(r, c->dt[4], so_, c->random_layout);
  p->dq = view_new(r, c->dt[5], sq_, c->random_layout);
  p->dk = view_new(r, c->dt[6], sk_, c->random_layout);
  p->dv = view_new(r, c->dt[7], sv_, c->random_layout);
  p->causal = P->causal;
  fill(r, &p->q, 0.7, c->qmean);
  fill(r, &p->k, 0.7, 0.0);
  fill(r, &p->v, 1.0, 0.0);
  fill(r, &p->dout, 1.0, 0.0);
  B->X.q = densify(&p->q);
  B->X.k = densify(&p->k);
  B->X.v = densify(&p->v);
  B->X.g = densify(&p->dout);
}

static void bufs_free(bufs *B) {
  free(B->p.q.data), free(B->p.k.data), free(B->p.v.data), free(B->p.o.data);
  free(B->p.dout.data), free(B->p.dq.data), free(B->p.dk.data);
  free(B->p.dv.data);
  free(B->X.q), free(B->X.k), free(B->X.v), free(B->X.g);
}

static double worst_f32; /* of f32 outputs only */

/* Compares view t with dense ref (scales sc); returns the worst error in
 * units of the allowance. */
static double compare(const attn_tensor *t, const double *want,
                      const double *sc, int64_t inner_terms, const char *what,
                      const kase *c) {
  const double slack = 2.0 * (double)inner_terms * U32;
  double worst = 0;
  int64_t at = 0;
  int reported = 0;
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++, at++) {
          const double got = get(t, b, s, h, x), wt = want[at];
          /* storage rounding: relative, and f16's subnormal spacing */
          const double tol = slack * sc[at] + dtype_eps(t->dtype) * fabs(wt) +
                             (t->dtype == ATTN_DTYPE_F16 ? 0x1p-25 : 0.0) +
                             1e-30;
          const double err = fabs(got - wt);
          const int ok = err <= tol;
          if (verbose && ok && err / tol > worst && err / tol > 0.5)
            printf("  %s dt%d: %.3g of the allowance (err %.3g, scale %.3g) "
                   "sq%lld sk%lld d%lld dv%lld causal %d\n",
                   what, (int)t->dtype, err / tol, err, sc[at],
                   (long long)c->P.sq, (long long)c->P.sk, (long long)c->P.d,
                   (long long)c->P.dv, (int)c->P.causal);
          worst = fmax(worst, ok ? err / tol : INFINITY);
          if (t->dtype == ATTN_DTYPE_F32)
            worst_f32 = fmax(worst_f32, ok ? err / tol : INFINITY);
          if (!ok && !reported) {
            reported = 1;
            CHECK(0,
                  "%s[%lld,%lld,%lld,%lld] = %.9g, oracle %.9g (tol %.3g) "
                  "b%lld sq%lld sk%lld hq%lld hk%lld d%lld dv%lld causal %d",
                  what, (long long)b, (long long)s, (long long)h, (long long)x,
                  got, wt, tol, (long long)c->P.b, (long long)c->P.sq,
                  (long long)c->P.sk, (long long)c->P.hq, (long long)c->P.hk,
                  (long long)c->P.d, (long long)c->P.dv, (int)c->P.causal);
          }
        }
  if (!reported)
    CHECK(1, "%s", what);
  return worst;
}

static double worst_o, worst_g;

static void run_case(tc_rng *r, const kase *c, int bwd) {
  bufs B;
  bufs_make(r, c, &B);
  char msg[256] = "";
  B.p.error_message = msg;
  B.p.error_message_size = sizeof msg;
  attn_status st = attn_linear_forward(ctx, &B.p);
  CHECK(st == ATTN_OK, "forward: %s (%s)", attn_strerror(st), msg);
  dense X = B.X;
  if (!bwd)
    X.g = NULL;
  ref R = oracle(&c->P, &X);
  const int64_t terms = c->P.d + c->P.sk + 4;
  if (st == ATTN_OK)
    worst_o = fmax(worst_o, compare(&B.p.o, R.o, R.os, terms, "o", c));
  if (bwd) {
    st = attn_linear_backward(ctx, &B.p);
    CHECK(st == ATTN_OK, "backward: %s (%s)", attn_strerror(st), msg);
    const int64_t gt =
        c->P.d + c->P.dv + c->P.sk + c->P.sq * (c->P.hq / c->P.hk) + 8;
    if (st == ATTN_OK) {
      worst_g = fmax(worst_g, compare(&B.p.dq, R.dq, R.dqs, gt, "dq", c));
      worst_g = fmax(worst_g, compare(&B.p.dk, R.dk, R.dks, gt, "dk", c));
      worst_g = fmax(worst_g, compare(&B.p.dv, R.dv, R.dvs, gt, "dv", c));
    }
  }
  ref_free(&R);
  bufs_free(&B);
}

static const int64_t lens[] = {1,  2,  3,   7,   13,  31,  63,  64,
                               65, 97, 127, 128, 129, 131, 191, 200};

static int64_t pick_len(tc_rng *r) {
  return lens[tc_below(r, (int64_t)(sizeof lens / sizeof lens[0]))];
}

static kase random_case(tc_rng *r) {
  kase c;
  memset(&c, 0, sizeof c);
  static const int64_t ratios[][2] = {{1, 1}, {2, 2}, {4, 2}, {3, 1}, {4, 1}};
  const int64_t *hr = ratios[tc_below(r, 5)];
  static const int64_t dims[] = {1, 2, 5, 16, 33, 64, 96};
  c.P.b = tc_range(r, 1, 2);
  c.P.sq = pick_len(r);
  c.P.sk = tc_chance(r, 0.5) ? c.P.sq : pick_len(r);
  c.P.hq = hr[0];
  c.P.hk = hr[1];
  c.P.d = dims[tc_below(r, 7)];
  c.P.dv = dims[tc_below(r, 7)];
  c.P.causal = (attn_causal)tc_below(r, 3);
  const int mixed = tc_chance(r, 0.4);
  for (int i = 0; i < 8; i++)
    c.dt[i] = mixed ? storage[tc_below(r, 3)] : ATTN_DTYPE_F32;
  c.random_layout = tc_chance(r, 0.5);
  return c;
}

static void test_random(tc_rng *r, int n) {
  for (int i = 0; i < n; i++) {
    const kase c = random_case(r);
    run_case(r, &c, 1);
  }
  /* fixed edges: lengths 1, chunk edges, seq_q > seq_k bottom-right */
  static const int64_t edges[][2] = {{1, 1},   {1, 200}, {200, 1},   {63, 63},
                                     {64, 64}, {65, 65}, {127, 129}, {129, 127},
                                     {130, 2}, {2, 130}, {128, 64},  {64, 128}};
  for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++)
    for (int cz = 0; cz < 3; cz++) {
      kase c;
      memset(&c, 0, sizeof c);
      c.P = (prob){1, edges[e][0], edges[e][1], 4, 2, 16, 8, (attn_causal)cz};
      for (int i = 0; i < 8; i++)
        c.dt[i] = ATTN_DTYPE_F32;
      run_case(r, &c, 1);
    }
  printf("fwd/bwd (%s): worst error / allowance: o %.3g, gradients %.3g, "
         "f32 outputs %.3g\n",
         ctx ? "generic" : "default ISA", worst_o, worst_g, worst_f32);
}

/* ---------------------------------------------------------------------- */
/* Threads and workspace: bitwise the same                                */
/* ---------------------------------------------------------------------- */

static void test_threads(tc_rng *r) {
  for (int cz = 0; cz < 3; cz++) {
    kase c;
    memset(&c, 0, sizeof c);
    c.P = (prob){2, 150, 170, 6, 2, 24, 40, (attn_causal)cz};
    for (int i = 0; i < 8; i++)
      c.dt[i] = ATTN_DTYPE_F32;
    bufs B;
    bufs_make(r, &c, &B);
    attn_linear_params *p = &B.p;
    const size_t no = span_bytes(&p->o), nq = span_bytes(&p->dq),
                 nk = span_bytes(&p->dk), nv = span_bytes(&p->dv);
    char *base = tc_alloc(no + nq + nk + nv);
    static const int threads[] = {1, 2, 3, 5, 0};
    size_t need_f = 0, need_b = 0;
    for (int t = 0; t < 5; t++) {
      p->num_threads = threads[t];
      void *ws = NULL;
      if (t == 4) { /* the context's threads, a caller workspace */
        CHECK(attn_linear_forward_workspace_size(NULL, p, &need_f) == ATTN_OK,
              "workspace size");
        CHECK(attn_linear_backward_workspace_size(NULL, p, &need_b) == ATTN_OK,
              "workspace size");
        const size_t need = need_f > need_b ? need_f : need_b;
        ws = tc_alloc(need);
        p->workspace = ws;
        p->workspace_size = need;
      }
      CHECK(attn_linear_forward(NULL, p) == ATTN_OK, "forward t%d", t);
      CHECK(attn_linear_backward(NULL, p) == ATTN_OK, "backward t%d", t);
      if (t == 0) {
        memcpy(base, p->o.data, no);
        memcpy(base + no, p->dq.data, nq);
        memcpy(base + no + nq, p->dk.data, nk);
        memcpy(base + no + nq + nk, p->dv.data, nv);
      } else {
        CHECK(memcmp(base, p->o.data, no) == 0 &&
                  memcmp(base + no, p->dq.data, nq) == 0 &&
                  memcmp(base + no + nq, p->dk.data, nk) == 0 &&
                  memcmp(base + no + nq + nk, p->dv.data, nv) == 0,
              "threads %d differ from 1 thread (causal %d)", threads[t], cz);
      }
      if (ws) {
        p->workspace_size = need_f - 1;
        CHECK(attn_linear_forward(NULL, p) == ATTN_ERR_WORKSPACE_TOO_SMALL,
              "a workspace one byte short");
        p->workspace = NULL;
        p->workspace_size = 0;
        free(ws);
      }
    }
    free(base);
    bufs_free(&B);
  }
}

/* ---------------------------------------------------------------------- */
/* The recurrent state                                                    */
/* ---------------------------------------------------------------------- */

/* A [b, n, h, d] window of rows [s0, s0 + n) of t. */
static attn_tensor rows_of(const attn_tensor *t, int64_t s0, int64_t n) {
  attn_tensor w = *t;
  w.data = (char *)t->data + s0 * t->stride[1] * attn_dtype_size(t->dtype);
  w.shape[1] = n;
  return w;
}

static void test_state(tc_rng *r) {
  for (int rep = 0; rep < (quick ? 2 : 6); rep++) {
    kase c;
    memset(&c, 0, sizeof c);
    static const int64_t ratios[][2] = {{1, 1}, {4, 2}, {3, 1}};
    const int64_t *hr = ratios[rep % 3];
    c.P = (prob){tc_range(r, 1, 2),
                 0,
                 0,
                 hr[0],
                 hr[1],
                 tc_range(r, 1, 40),
                 tc_range(r, 1, 40),
                 ATTN_CAUSAL_BOTTOM_RIGHT};
    c.P.sq = c.P.sk = tc_range(r, 1, 150);
    for (int i = 0; i < 8; i++)
      c.dt[i] = rep >= 3 ? storage[tc_below(r, 3)] : ATTN_DTYPE_F32;
    c.dt[3] = ATTN_DTYPE_F32;
    c.random_layout = rep % 2;
    bufs B;
    bufs_make(r, &c, &B);
    attn_linear_params *p = &B.p;
    CHECK(attn_linear_forward(NULL, p) == ATTN_OK, "parallel");
    const size_t no = span_bytes(&p->o);
    float *par = tc_alloc(no);
    memcpy(par, p->o.data, no);
    attn_linear_state *s = NULL;
    CHECK(attn_linear_state_create(&s, c.P.b, c.P.hk, c.P.d, c.P.dv) == ATTN_OK,
          "state create");
    if (!s)
      continue;
    for (int pass = 0; pass < 2; pass++) {
      attn_linear_state_reset(s);
      CHECK(attn_linear_state_length(s) == 0, "length after reset");
      memset(p->o.data, 0xFF, no);
      for (int64_t t0 = 0; t0 < c.P.sq;) {
        /* pass 0: one token at a time; pass 1: random steps */
        int64_t n = pass == 0 ? 1 : tc_range(r, 1, 70);
        if (n > c.P.sq - t0)
          n = c.P.sq - t0;
        attn_linear_params sp = *p;
        sp.q = rows_of(&p->q, t0, n);
        sp.k = rows_of(&p->k, t0, n);
        sp.v = rows_of(&p->v, t0, n);
        sp.o = rows_of(&p->o, t0, n);
        sp.causal = ATTN_CAUSAL_NONE; /* ignored */
        const attn_status st = attn_linear_state_step(NULL, s, &sp);
        CHECK(st == ATTN_OK, "step: %s", attn_strerror(st));
        t0 += n;
      }
      CHECK(attn_linear_state_length(s) == c.P.sq, "length %lld",
            (long long)attn_linear_state_length(s));
      dense X = B.X;
      X.g = NULL;
      ref R = oracle(&c.P, &X);
      worst_o =
          fmax(worst_o, compare(&p->o, R.o, R.os, c.P.d + c.P.sk + 4,
                                pass ? "state o (steps)" : "state o", &c));
      /* against the parallel form: both pass the rule against the oracle;
       * directly, within twice the rule */
      double far = 0;
      int64_t at = 0;
      attn_tensor pv = p->o;
      pv.data = par;
      for (int64_t b = 0; b < c.P.b; b++)
        for (int64_t i = 0; i < c.P.sq; i++)
          for (int64_t h = 0; h < c.P.hq; h++)
            for (int64_t x = 0; x < c.P.dv; x++, at++) {
              const double e =
                  fabs(get(&p->o, b, i, h, x) - get(&pv, b, i, h, x));
              far = fmax(far, e / (2 * 2.0 * (double)(c.P.d + c.P.sk + 4) *
                                       U32 * R.os[at] +
                                   1e-30));
            }
      CHECK(far <= 1, "state vs parallel: %.3g of the allowance", far);
      ref_free(&R);
    }
    /* S and z after the whole sequence: z[b, g, x] = sum_j phi(k) */
    const float *z = attn_linear_state_z(s);
    double zerr = 0;
    for (int64_t x = 0; x < c.P.d; x++) {
      double want = 0;
      for (int64_t j = 0; j < c.P.sk; j++)
        want += phi(B.X.k[IX(0, j, 0, x, c.P.sk, c.P.hk, c.P.d)]);
      zerr = fmax(zerr, fabs(z[x] - want) / (want * 1e-5));
    }
    CHECK(zerr <= 1 && attn_linear_state_s(s) != NULL, "state z: %.3g", zerr);
    attn_linear_state_free(s);
    free(par);
    bufs_free(&B);
  }
}

/* ---------------------------------------------------------------------- */
/* The guard, rows with no key, NaN                                       */
/* ---------------------------------------------------------------------- */

static int all_finite(const attn_tensor *t) {
  for (int64_t b = 0; b < t->shape[0]; b++)
    for (int64_t s = 0; s < t->shape[1]; s++)
      for (int64_t h = 0; h < t->shape[2]; h++)
        for (int64_t x = 0; x < t->shape[3]; x++)
          if (!isfinite(get(t, b, s, h, x)))
            return 0;
  return 1;
}

static void test_guard(tc_rng *r) {
  /* phi(q) underflows to 0 in f32 (and in the oracle's f32 rule: den =
   * exp(-200) * ... < FLT_MIN): o = 0 (to rounding), gradients finite */
  for (int cz = 0; cz < 3; cz++) {
    kase c;
    memset(&c, 0, sizeof c);
    c.P = (prob){1, 70, 70, 2, 1, 8, 8, (attn_causal)cz};
    for (int i = 0; i < 8; i++)
      c.dt[i] = ATTN_DTYPE_F32;
    c.qmean = -200;
    bufs B;
    bufs_make(r, &c, &B);
    CHECK(attn_linear_forward(NULL, &B.p) == ATTN_OK, "forward");
    CHECK(attn_linear_backward(NULL, &B.p) == ATTN_OK, "backward");
    CHECK(all_finite(&B.p.o) && all_finite(&B.p.dq) && all_finite(&B.p.dk) &&
              all_finite(&B.p.dv),
          "underflowing features: non-finite result (causal %d)", cz);
    double mx = 0;
    for (int64_t i = 0; i < 70; i++)
      mx = fmax(mx, fabs(get(&B.p.o, 0, i, 0, 0)));
    CHECK(mx <= 1e-30, "underflowing features: o = %g, expected 0", mx);
    bufs_free(&B);
  }
  /* seq_q > seq_k, bottom-right: the first rows see nothing: exact 0 */
  {
    kase c;
    memset(&c, 0, sizeof c);
    c.P = (prob){1, 100, 30, 2, 2, 8, 8, ATTN_CAUSAL_BOTTOM_RIGHT};
    for (int i = 0; i < 8; i++)
      c.dt[i] = ATTN_DTYPE_F32;
    bufs B;
    bufs_make(r, &c, &B);
    CHECK(attn_linear_forward(NULL, &B.p) == ATTN_OK, "forward");
    CHECK(attn_linear_backward(NULL, &B.p) == ATTN_OK, "backward");
    int zero = 1;
    for (int64_t i = 0; i < 70; i++)
      for (int64_t h = 0; h < 2; h++)
        for (int64_t x = 0; x < 8; x++)
          zero &= get(&B.p.o, 0, i, h, x) == 0 && get(&B.p.dq, 0, i, h, x) == 0;
    CHECK(zero, "rows with no key: o and dq must be exactly 0");
    CHECK(get(&B.p.o, 0, 70, 0, 0) != 0, "row 70 sees key 0");
    bufs_free(&B);
  }
  /* NaN in key 40: causal rows before it are finite, rows from it NaN */
  {
    kase c;
    memset(&c, 0, sizeof c);
    c.P = (prob){1, 130, 130, 1, 1, 8, 8, ATTN_CAUSAL_BOTTOM_RIGHT};
    for (int i = 0; i < 8; i++)
      c.dt[i] = ATTN_DTYPE_F32;
    bufs B;
    bufs_make(r, &c, &B);
    put(&B.p.k, 0, 40, 0, 3, NAN);
    CHECK(attn_linear_forward(NULL, &B.p) == ATTN_OK, "forward");
    int ok = 1;
    for (int64_t i = 0; i < 130; i++)
      ok &= isnan(get(&B.p.o, 0, i, 0, 0)) == (i >= 40);
    CHECK(ok, "NaN in key 40: exactly rows >= 40 are NaN");
    B.p.causal = ATTN_CAUSAL_NONE;
    CHECK(attn_linear_forward(NULL, &B.p) == ATTN_OK, "forward");
    CHECK(isnan(get(&B.p.o, 0, 0, 0, 0)), "non-causal: every row NaN");
    bufs_free(&B);
  }
}

/* ---------------------------------------------------------------------- */
/* Status                                                                 */
/* ---------------------------------------------------------------------- */

static char msg[512];

static void expect(attn_status got, attn_status want, const char *needle,
                   const char *what) {
  CHECK(got == want, "%s: status %d (%s), expected %d", what, (int)got,
        attn_strerror(got), (int)want);
  if (needle)
    CHECK(strstr(msg, needle) != NULL, "%s: message '%s' lacks '%s'", what, msg,
          needle);
  msg[0] = '\0';
}

static void test_status(tc_rng *r) {
  kase c;
  memset(&c, 0, sizeof c);
  c.P = (prob){2, 9, 11, 4, 2, 8, 6, ATTN_CAUSAL_BOTTOM_RIGHT};
  for (int i = 0; i < 8; i++)
    c.dt[i] = ATTN_DTYPE_F32;
  bufs B;
  bufs_make(r, &c, &B);
  attn_linear_params good = B.p, p;
  good.error_message = msg;
  good.error_message_size = sizeof msg;
  CHECK(attn_linear_forward(NULL, &good) == ATTN_OK, "good forward");
  CHECK(attn_linear_backward(NULL, &good) == ATTN_OK, "good backward");

  expect(attn_linear_forward(NULL, NULL), ATTN_ERR_NULL_POINTER, NULL, "NULL");
  p = good, p.k.data = NULL;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_NULL_POINTER, "k.data is NULL",
         "k NULL");
  p = good, p.dv.data = NULL;
  expect(attn_linear_backward(NULL, &p), ATTN_ERR_NULL_POINTER,
         "dv.data is NULL", "dv NULL");
  p = good, p.o.data = NULL; /* the backward does not read o */
  expect(attn_linear_backward(NULL, &p), ATTN_OK, NULL, "backward, o unset");
  p = good, p.q.dtype = ATTN_DTYPE_BOOL;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_DTYPE,
         "q.dtype (3) must be f32, bf16 or f16", "bool q");
  p = good, p.v.dtype = ATTN_DTYPE_Q8_0;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_DTYPE, "v.dtype (4)",
         "q8_0 v");
  p = good, p.o.dtype = (attn_dtype)99;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_DTYPE, "o.dtype (99)",
         "dtype 99");
  p = good, p.k.shape[0] = 3;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_SHAPE,
         "k.shape[0] (batch) = 3 differs from q.shape[0] = 2", "batch");
  p = good, p.v.shape[1] = 10;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_SHAPE,
         "v.shape[1] (seq_k) = 10 differs from k.shape[1] = 11", "seq_k");
  p = good, p.k.shape[3] = 7;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_HEAD_DIM,
         "k.shape[3] (dim) = 7 differs from q.shape[3] = 8", "dim");
  p = good, p.q.shape[2] = 3, p.o.shape[2] = 3;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_HEAD_RATIO,
         "q heads (3) must be a multiple of k/v heads (2)", "ratio");
  p = good, p.o.shape[3] = 5;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_SHAPE,
         "o.shape[3] (dim) = 5 must be 6", "o dim");
  p = good, p.dq.shape[1] = 8;
  expect(attn_linear_backward(NULL, &p), ATTN_ERR_INVALID_SHAPE,
         "dq.shape[1] (seq) = 8 must be 9", "dq rows");
  p = good, p.q.shape[1] = 0;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_SHAPE,
         "q.shape[1] = 0 must be > 0", "empty q");
  p = good, p.k.stride[1] = -1;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_STRIDE,
         "k.stride[1] = -1 must be >= 0", "negative stride");
  p = good, p.o.stride[1] = 0;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_STRIDE,
         "o strides make different elements share memory", "o aliases");
  p = good, p.o = p.q, p.o.shape[3] = 6;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_OVERLAP, "o overlaps q",
         "o over q");
  p = good, p.dk = attn_tensor_bshd(p.dq.data, ATTN_DTYPE_F32, 2, 11, 2, 8);
  expect(attn_linear_backward(NULL, &p), ATTN_ERR_OVERLAP, "dk overlaps dq",
         "dk over dq");
  p = good, p.causal = (attn_causal)7;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_ARGUMENT,
         "causal (7) must be", "causal 7");
  p = good, p.num_threads = -1;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_INVALID_ARGUMENT,
         "num_threads (-1) must be >= 0", "threads");
  p = good, p.q.shape[3] = 300, p.k.shape[3] = 300;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_HEAD_DIM, "must be <= 256",
         "dim 300");
  /* workspace */
  size_t need = 0;
  expect(attn_linear_forward_workspace_size(NULL, &good, NULL),
         ATTN_ERR_NULL_POINTER, "bytes is NULL", "bytes NULL");
  p = good, p.workspace = msg, p.workspace_size = 8;
  expect(attn_linear_forward(NULL, &p), ATTN_ERR_WORKSPACE_TOO_SMALL,
         "workspace of 8 bytes", "workspace small");
  CHECK(attn_linear_backward_workspace_size(NULL, &good, &need) == ATTN_OK &&
            need > 0,
        "backward workspace size");
  /* ABI */
  attn_linear_params big;
  memset(&big, 0x5A, sizeof big);
  attn_linear_params_init_sized(&big, sizeof big - 4);
  CHECK(((unsigned char *)&big)[0] == 0x5A, "init with an unknown size wrote");
  attn_linear_params_init_sized(&big, sizeof big);
  CHECK(big.q.dtype == ATTN_DTYPE_F32 && big.q.data == NULL &&
            big.causal == ATTN_CAUSAL_NONE && big.error_message == NULL,
        "init defaults");
  expect(attn_linear_forward_sized(NULL, &good, sizeof good + 8), ATTN_ERR_ABI,
         "built against a newer attn.h", "newer size");
  expect(attn_linear_forward_sized(NULL, &good, 16), ATTN_ERR_ABI, NULL,
         "small size");
  /* the state */
  attn_linear_state *s = (attn_linear_state *)&good; /* overwritten */
  CHECK(attn_linear_state_create(&s, 0, 1, 8, 8) == ATTN_ERR_INVALID_SHAPE &&
            s == NULL,
        "state batch 0");
  CHECK(attn_linear_state_create(&s, 1, 1, 257, 8) == ATTN_ERR_HEAD_DIM,
        "state dim 257");
  CHECK(attn_linear_state_create(NULL, 1, 1, 8, 8) == ATTN_ERR_NULL_POINTER,
        "state out NULL");
  CHECK(attn_linear_state_create(&s, 2, 2, 8, 6) == ATTN_OK, "state");
  p = good;
  expect(attn_linear_state_step(NULL, s, &p), ATTN_ERR_INVALID_SHAPE,
         "q has 9 rows, k and v 11", "step rows");
  p = good, p.k.shape[1] = p.v.shape[1] = 9;
  expect(attn_linear_state_step(NULL, s, &p), ATTN_OK, NULL, "step");
  CHECK(attn_linear_state_length(s) == 9, "length 9");
  expect(attn_linear_state_step(NULL, NULL, &p), ATTN_ERR_NULL_POINTER,
         "the state is NULL", "step NULL state");
  attn_linear_state_free(s);
  CHECK(attn_linear_state_create(&s, 2, 1, 8, 6) == ATTN_OK, "state");
  expect(attn_linear_state_step(NULL, s, &p), ATTN_ERR_INVALID_SHAPE,
         "the state holds batch 2, heads_kv 1", "step heads");
  attn_linear_state_free(s);
  attn_linear_state_free(NULL);
  attn_linear_state_reset(NULL);
  CHECK(attn_linear_state_length(NULL) == -1, "length NULL");
  bufs_free(&B);
}

int main(void) {
  verbose = tc_env_ll("ATTN_TEST_VERBOSE", 0) != 0;
  quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", 0x6c696e656172ull);
  tc_rng r = {seed};
  printf("test_linear: seed 0x%llx%s\n", (unsigned long long)seed,
         quick ? " (quick)" : "");
  test_oracle_fd(&r);
  test_random(&r, quick ? 40 : 300);
  attn_context_options opt;
  attn_context_options_init(&opt);
  opt.isa = ATTN_ISA_GENERIC;
  CHECK(attn_context_create(&ctx, &opt) == ATTN_OK, "generic context");
  if (ctx)
    test_random(&r, quick ? 10 : 60);
  attn_context_free(ctx);
  ctx = NULL;
  test_threads(&r);
  test_state(&r);
  test_guard(&r);
  test_status(&r);
  printf("worst error / allowance overall: o %.3g, gradients %.3g\n", worst_o,
         worst_g);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail == 0 ? 0 : 1;
}
