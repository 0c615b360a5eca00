/*
 * test_numerics, section "huge" (see test_numerics.c): huge finite logits,
 * forward and backward against the double oracle.
 */
#define _POSIX_C_SOURCE 200809L

#include "numerics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* 1. Huge finite logits                                                  */
/* ====================================================================== */
/* Key pattern value of key j in pattern pi: k[.., j, g, 0]. onehot = 1: a
 * distinct value per visible key (every huge row saturates on one key);
 * onehot = 0: ties (exact two-way splits, every key tied). All multiples of
 * 2^-8, so the scores are exact products. */
static float key_pattern(int onehot, int64_t pi, int64_t j) {
  if (onehot) {
    switch (pi % 4) {
    case 0:
      return (float)(j - 64) / 128.0f;
    case 1:
      return (float)(64 - j) / 128.0f;
    case 2:
      return -(float)llabs(j - 77) / 128.0f;
    default:
      return (float)((j * 37) % 131 - 65) / 256.0f;
    }
  }
  switch (pi % 4) {
  case 0:
    return j == 100 ? 1.0f : -1.0f;
  case 1:
    return (j == 3 || j == 120) ? 1.0f : (j == 60 ? -1.0f : -0.5f);
  case 2:
    return (float)((j * 5) % 7 - 3) / 4.0f;
  default:
    return j == 129 ? 1.0f : (j == 0 ? -1.0f : 0.0f);
  }
}

typedef struct huge_cfg {
  double a;     /* |q| in dimension 0 (or the bias scale) */
  float scale;  /* 0 = default 1/sqrt(d) */
  int via_bias; /* the huge values are in the bias, q and k are small */
} huge_cfg;

/* Row kind of (i, h): 0 ordinary, else a multiple of A. */
static double row_mult(int onehot, int64_t i, int64_t h) {
  if (onehot) {
    static const double m[4] = {1.0, -1.0, 0.0, 0.5};
    return m[(i + h) % 4];
  }
  static const double m[5] = {1.0, -1.0, 0.5, 0.0, -0.25};
  return m[(i + h) % 5];
}

static prob *huge_build(const huge_cfg *cfg, int onehot, attn_causal causal,
                        int kvl, uint64_t seed) {
  prob *P = prob_new(2, 70, 130, 4, 2, 16, 16);
  tc_rng rng = {seed};
  P->scale = cfg->scale;
  P->causal = causal;
  if (kvl) {
    P->kv_store[0] = 130;
    P->kv_store[1] = 97;
    P->kv_lens = P->kv_store;
  }
  for (int64_t x = 0; x < n_v(P); x++)
    P->v[x] = (float)tc_normal(&rng);
  for (int64_t x = 0; x < n_o(P); x++)
    P->dout[x] = (float)tc_normal(&rng);
  if (!cfg->via_bias) {
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t j = 0; j < P->sk; j++)
        for (int64_t g = 0; g < P->hk; g++) {
          float *kr = P->k + ki(P, b, j, g);
          kr[0] = key_pattern(onehot, b * P->hk + g, j);
          for (int64_t c = 1; c < P->d; c++)
            kr[c] = (float)(0.5 * tc_normal(&rng));
        }
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t i = 0; i < P->sq; i++)
        for (int64_t h = 0; h < P->hq; h++) {
          float *qr = P->q + qi(P, b, i, h);
          const double m = row_mult(onehot, i, h);
          for (int64_t c = 0; c < P->d; c++)
            qr[c] = m == 0.0 ? (float)(0.5 * tc_normal(&rng)) : 0.0f;
          if (m != 0.0)
            qr[0] = (float)(m * cfg->a);
        }
  } else {
    /* Small q and k; bias = A * pattern, unique maximum per row (one-hot
     * set) or ties (tie set) on rows whose q is 0 (there the tie is exact
     * in the scores too). */
    P->bias = falloc(n_s(P));
    for (int64_t x = 0; x < n_k(P); x++)
      P->k[x] = (float)(0.1 * tc_normal(&rng));
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t h = 0; h < P->hq; h++)
        for (int64_t i = 0; i < P->sq; i++) {
          const double m = row_mult(onehot, i, h);
          float *qr = P->q + qi(P, b, i, h);
          for (int64_t c = 0; c < P->d; c++)
            qr[c] = onehot || m == 0.0 ? (float)(0.1 * tc_normal(&rng)) : 0.0f;
          const int64_t pi = b * P->hq + h + i;
          for (int64_t j = 0; j < P->sk; j++)
            P->bias[si(P, b, h, i, j)] =
                m == 0.0
                    ? (float)(0.5 * tc_normal(&rng))
                    : (float)(m * cfg->a * (double)key_pattern(onehot, pi, j));
        }
  }
  return P;
}

/* Rows whose softmax saturates on a single key (max gap huge). */
static int row_onehot(const prob *P, const refres *r, int64_t b, int64_t h,
                      int64_t i) {
  (void)r;
  const double scale = eff_scale(P);
  const int64_t g = h / (P->hq / P->hk);
  double s1 = -INFINITY, s2 = -INFINITY;
  for (int64_t j = 0; j < P->sk; j++) {
    if (!visible(P, b, h, i, j))
      continue;
    double x = 0;
    for (int64_t c = 0; c < P->d; c++)
      x += (double)P->q[qi(P, b, i, h) + c] * (double)P->k[ki(P, b, j, g) + c];
    x *= scale;
    if (P->bias)
      x += P->bias[si(P, b, h, i, j)];
    if (x > s1)
      s2 = s1, s1 = x;
    else if (x > s2)
      s2 = x;
  }
  return s1 != -INFINITY && s1 - s2 > 1000.0;
}

/* One huge-logits problem, its oracle and what the checks need. */
typedef struct huge_run {
  int onehot;
  prob *P;
  refres r;
  double maxv, nat_dq, nat_dk;
  int dk_in_range;
  unsigned char *sat; /* rows that saturate on one key */
  char what[160];
} huge_run;

static void huge_setup(huge_run *H, const huge_cfg *cfg, int onehot,
                       attn_causal causal, int kvl, uint64_t seed) {
  prob *P = huge_build(cfg, onehot, causal, kvl, seed);
  H->onehot = onehot;
  H->P = P;
  ref_compute(P, &H->r, 1);
  H->maxv = max_abs_f(P->v, n_v(P));
  const double maxq = max_abs_f(P->q, n_q(P));
  const double maxk = max_abs_f(P->k, n_k(P));
  const double maxdo = max_abs_f(P->dout, n_o(P));
  const double scale = eff_scale(P);
  const double rootdv = sqrt((double)P->dv);
  /* natural magnitudes: |dS| <= 2 |dO| |V| sqrt(dv) per key */
  H->nat_dq = scale * maxk * 2 * maxdo * H->maxv * rootdv;
  H->nat_dk = scale * maxq * 2 * maxdo * H->maxv * rootdv;
  H->dk_in_range = cfg->a * scale * (cfg->via_bias ? 0.0 : 1.0) < 1e30;
  snprintf(H->what, sizeof H->what, "%s A=%.3g scale=%g %s causal=%s%s",
           cfg->via_bias ? "bias" : "q*k", cfg->a, scale,
           onehot ? "one-hot" : "ties",
           causal == ATTN_CAUSAL_NONE ? "none" : "bottom-right",
           kvl ? " kv_lens" : "");
  H->sat = (unsigned char *)tc_alloc((size_t)n_l(P));
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        H->sat[li(P, b, h, i)] = (unsigned char)row_onehot(P, &H->r, b, h, i);
}

static void huge_teardown(huge_run *H) {
  free(H->sat);
  ref_free(&H->r);
  prob_free(H->P);
}

/* What the forward got wrong, over every row. */
typedef struct huge_fwd_tally {
  int64_t bad_o, bad_l, first_o, first_l;
  double worst_o, worst_l;
} huge_fwd_tally;

static void huge_fwd_row(const huge_run *H, huge_fwd_tally *t, int64_t b,
                         int64_t h, int64_t i) {
  const prob *P = H->P;
  const int64_t L = li(P, b, h, i);
  const double want_l = H->r.lse[L], got_l = P->lse[L];
  int ok_l;
  if (want_l == -INFINITY)
    ok_l = got_l == -INFINITY;
  else
    ok_l =
        isfinite(got_l) && fabs(got_l - want_l) <= 1e-6 * fabs(want_l) + 1e-4;
  if (!ok_l) {
    if (t->bad_l++ == 0)
      t->first_l = L;
  }
  if (isfinite(want_l) && fabs(got_l - want_l) > t->worst_l)
    t->worst_l = fabs(got_l - want_l);
  const int64_t O = oi(P, b, i, h);
  int ok_o = 1;
  for (int64_t c = 0; c < P->dv; c++) {
    const double e = fabs((double)P->o[O + c] - H->r.o[O + c]);
    if (!isfinite(P->o[O + c]) || e > 1e-4 * H->maxv)
      ok_o = 0;
    if (isfinite(e) && e > t->worst_o)
      t->worst_o = e;
  }
  if (!ok_o && t->bad_o++ == 0)
    t->first_o = O;
}

static void huge_fwd_report(const huge_run *H, attn_isa isa,
                            const huge_fwd_tally *t) {
  const prob *P = H->P;
  const refres *r = &H->r;
  const char *what = H->what;
  if (t->bad_o) {
    const int64_t row = t->first_o / P->dv;
    check(
        SEC_HUGE_FWD, isa, 0,
        "%s: o wrong on %lld rows; first (b %lld, i %lld, h %lld): o[0] "
        "= %.9g, want %.9g (lse %.9g, want %.9g)",
        what, (long long)t->bad_o, (long long)(row / (P->sq * P->hq)),
        (long long)(row / P->hq % P->sq), (long long)(row % P->hq),
        (double)P->o[t->first_o], r->o[t->first_o],
        (double)P->lse[li(P, row / (P->sq * P->hq), row % P->hq,
                          row / P->hq % P->sq)],
        r->lse[li(P, row / (P->sq * P->hq), row % P->hq, row / P->hq % P->sq)]);
  } else {
    check(SEC_HUGE_FWD, isa, 1, "%s", what);
  }
  if (t->bad_l) {
    check(SEC_HUGE_FWD, isa, 0,
          "%s: lse wrong on %lld rows; first (b %lld, h %lld, i %lld): %.9g, "
          "want %.9g",
          what, (long long)t->bad_l, (long long)(t->first_l / (P->hq * P->sq)),
          (long long)(t->first_l / P->sq % P->hq),
          (long long)(t->first_l % P->sq), (double)P->lse[t->first_l],
          r->lse[t->first_l]);
  } else {
    check(SEC_HUGE_FWD, isa, 1, "%s", what);
  }
}

/* Forward on isa, every row against the oracle; 0 when it did not run. */
static int huge_forward(huge_run *H, attn_isa isa) {
  prob *P = H->P;
  const attn_status st = run_fwd(P, isa);
  check(SEC_HUGE_FWD, isa, st == ATTN_OK, "%s: forward status %d (%s)", H->what,
        (int)st, P->why);
  if (st != ATTN_OK)
    return 0;
  huge_fwd_tally t = {0, 0, -1, -1, 0, 0};
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        huge_fwd_row(H, &t, b, h, i);
  huge_fwd_report(H, isa, &t);
  return 1;
}

/* One-hot set: dQ, dK and dV against the oracle, relative to the natural
 * size. */
static void huge_bwd_compare(const huge_run *H, attn_isa isa) {
  const prob *P = H->P;
  const refres *r = &H->r;
  double e_dq = 0, e_dk = 0, e_dv = 0, e_dq_sat = 0;
  int64_t a_dq = 0, a_dk = 0, a_dv = 0;
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t i = 0; i < P->sq; i++)
      for (int64_t h = 0; h < P->hq; h++)
        for (int64_t c = 0; c < P->d; c++) {
          const int64_t x = qi(P, b, i, h) + c;
          const double e = fabs((double)P->dq[x] - r->dq[x]);
          if (!(e <= e_dq))
            e_dq = e, a_dq = x;
          if (H->sat[li(P, b, h, i)] && !(fabs((double)P->dq[x]) <= e_dq_sat))
            e_dq_sat = fabs((double)P->dq[x]);
        }
  for (int64_t x = 0; x < n_k(P); x++) {
    const double e = fabs((double)P->dk[x] - r->dk[x]);
    if (!(e <= e_dk))
      e_dk = e, a_dk = x;
  }
  for (int64_t x = 0; x < n_v(P); x++) {
    const double e = fabs((double)P->dvv[x] - r->dv[x]);
    if (!(e <= e_dv))
      e_dv = e, a_dv = x;
  }
  const double tol_dq = 1e-4 * H->nat_dq, tol_dk = 1e-4 * H->nat_dk;
  const double tol_dv = 1e-5 * (max_abs_f(P->dout, n_o(P)) + 1.0) *
                        (double)(P->sq * P->hq / P->hk);
  check(SEC_HUGE_BWD, isa, e_dq <= tol_dq,
        "%s: dq err %.3g at %lld (got %.6g, want %.6g) > %.3g; max |dq| on "
        "saturated rows %.3g (want 0)",
        H->what, e_dq, (long long)a_dq, (double)P->dq[a_dq], r->dq[a_dq],
        tol_dq, e_dq_sat);
  if (H->dk_in_range)
    check(SEC_HUGE_BWD, isa, e_dk <= tol_dk,
          "%s: dk err %.3g at %lld (got %.6g, want %.6g) > %.3g", H->what, e_dk,
          (long long)a_dk, (double)P->dk[a_dk], r->dk[a_dk], tol_dk);
  check(SEC_HUGE_BWD, isa, e_dv <= tol_dv,
        "%s: dv err %.3g at %lld (got %.6g, want %.6g) > %.3g", H->what, e_dv,
        (long long)a_dv, (double)P->dvv[a_dv], r->dv[a_dv], tol_dv);
}

/* Backward on isa, from the oracle's O and LSE rounded to f32 (so that it is
 * judged on its own, whatever the forward did). */
static void huge_backward(huge_run *H, attn_isa isa) {
  prob *P = H->P;
  for (int64_t x = 0; x < n_o(P); x++)
    P->o[x] = (float)H->r.o[x];
  for (int64_t x = 0; x < n_l(P); x++)
    P->lse[x] = (float)H->r.lse[x];
  const attn_status st = run_bwd(P, isa);
  check(SEC_HUGE_BWD, isa, st == ATTN_OK, "%s: backward status %d (%s)",
        H->what, (int)st, P->why);
  if (st != ATTN_OK)
    return;
  int64_t nf_dq = 0, nf_dk = 0, nf_dv = 0;
  for (int64_t x = 0; x < n_q(P); x++)
    nf_dq += !isfinite(P->dq[x]);
  for (int64_t x = 0; x < n_k(P); x++)
    nf_dk += !isfinite(P->dk[x]);
  for (int64_t x = 0; x < n_v(P); x++)
    nf_dv += !isfinite(P->dvv[x]);
  check(SEC_HUGE_BWD, isa, nf_dq == 0 && nf_dv == 0,
        "%s: %lld non-finite dq, %lld non-finite dv", H->what, (long long)nf_dq,
        (long long)nf_dv);
  if (H->dk_in_range)
    check(SEC_HUGE_BWD, isa, nf_dk == 0, "%s: %lld non-finite dk", H->what,
          (long long)nf_dk);
  if (H->onehot) /* ties: f32 LSE cannot make them exact; finiteness only */
    huge_bwd_compare(H, isa);
}

static void huge_check(const huge_cfg *cfg, int onehot, attn_causal causal,
                       int kvl, uint64_t seed) {
  huge_run H;
  huge_setup(&H, cfg, onehot, causal, kvl, seed);
  for (int ii = 0; ii < N_ISAS; ii++) {
    const attn_isa isa = all_isas[ii];
    if (!attn_isa_supported(isa))
      continue;
    if (huge_forward(&H, isa))
      huge_backward(&H, isa);
  }
  huge_teardown(&H);
}

void section_huge(void) {
  printf("== huge finite logits ==\n");
  const huge_cfg cfgs[] = {
      {6e9, 0.0f, 0},  {1e20, 0.0f, 0}, {3e38, 0.0f, 0}, /* scores 7.5e37 */
      {3e38, 1.0f, 0},                                   /* scores 3e38 */
      {1e30, 0.0f, 1}, {3e38, 0.0f, 1},
  };
  uint64_t seed = 0x6E0001;
  for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
    for (int onehot = 0; onehot <= 1; onehot++)
      for (int variant = 0; variant < 2; variant++)
        huge_check(&cfgs[c], onehot,
                   variant ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE,
                   variant, seed++);
}
