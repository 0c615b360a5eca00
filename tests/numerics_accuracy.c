/*
 * test_numerics, section "accuracy" (see test_numerics.c): error against the
 * double oracle at long key lengths, within FlashAttention's budget of twice
 * an f32 peer's error plus 1e-6.
 */
#define _POSIX_C_SOURCE 200809L

#include "numerics.h"

#include <pthread.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* 3. Accuracy at long key lengths                                        */
/* ====================================================================== */
#define PEER_BLOCK 512

static void fill_normal(float *x, int64_t n, double mean, double sd,
                        tc_rng *rng) {
  for (int64_t i = 0; i < n; i += 2) { /* Box-Muller, both values */
    double u1 = tc_unit(rng), u2 = tc_unit(rng);
    if (u1 < 1e-300)
      u1 = 1e-300;
    const double r = sqrt(-2.0 * log(u1));
    x[i] = (float)(mean + sd * r * cos(6.283185307179586 * u2));
    if (i + 1 < n)
      x[i + 1] = (float)(mean + sd * r * sin(6.283185307179586 * u2));
  }
}

/* f32 dot product the way a SIMD GEMM sums: 8 lanes, then the lanes
 * pairwise. */
static float dot_f32(const float *a, const float *b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int u = 0; u < 8; u++)
      s[u] += a[c + u] * b[c + u];
  for (; c < n; c++)
    s[0] += a[c] * b[c];
  return ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
}

/* The f32 peer's forward: S in f32, stable softmax in f32, sums over keys
 * in blocks of PEER_BLOCK (each block in f32, the blocks added in f32). No
 * masks (the accuracy problems have none). */
static void peer_forward(const prob *P, float *o, float *lse) {
  const int64_t dv = P->dv, group = P->hq / P->hk;
  const float scale = (float)eff_scale(P);
  float *s = falloc(P->sk);
  float *acc = falloc(dv), *blk = falloc(dv);
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++) {
        const int64_t g = h / group;
        const float *qr = P->q + qi(P, b, i, h);
        float m = -INFINITY;
        for (int64_t j = 0; j < P->sk; j++) {
          s[j] = scale * dot_f32(qr, P->k + ki(P, b, j, g), P->d);
          if (s[j] > m)
            m = s[j];
        }
        float l = 0.0f;
        for (int64_t c = 0; c < dv; c++)
          acc[c] = 0.0f;
        for (int64_t j0 = 0; j0 < P->sk; j0 += PEER_BLOCK) {
          const int64_t j1 = j0 + PEER_BLOCK < P->sk ? j0 + PEER_BLOCK : P->sk;
          float lb = 0.0f;
          for (int64_t c = 0; c < dv; c++)
            blk[c] = 0.0f;
          for (int64_t j = j0; j < j1; j++) {
            const float pj = expf(s[j] - m);
            const float *vr = P->v + vi(P, b, j, g);
            lb += pj;
            for (int64_t c = 0; c < dv; c++)
              blk[c] += pj * vr[c];
          }
          l += lb;
          for (int64_t c = 0; c < dv; c++)
            acc[c] += blk[c];
        }
        float *orow = o + oi(P, b, i, h);
        for (int64_t c = 0; c < dv; c++)
          orow[c] = acc[c] / l;
        lse[li(P, b, h, i)] = m + logf(l);
      }
  free(s), free(acc), free(blk);
}

/* The f32 peer's dK and dV (batch 1): P = exp(S - lse) from the peer's
 * forward, dS = P (dO.V - dO.O), the sums over the query rows of all heads
 * (row order: head, then row) in blocks of PEER_BLOCK rows, each block in
 * f32, the blocks added in f32. */
static void peer_backward_kv(const prob *P, const float *o, const float *lse,
                             float *dk, float *dv) {
  const int64_t d = P->d, ndv = P->dv, group = P->hq / P->hk;
  const float scale = (float)eff_scale(P);
  const int64_t nk = n_k(P), nv = n_v(P);
  float *bk = falloc(nk), *bv = falloc(nv);
  memset(dk, 0, (size_t)nk * 4), memset(dv, 0, (size_t)nv * 4);
  memset(bk, 0, (size_t)nk * 4), memset(bv, 0, (size_t)nv * 4);
  int64_t rows = 0;
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++) {
        const int64_t g = h / group;
        const float *qr = P->q + qi(P, b, i, h);
        const float *dor = P->dout + oi(P, b, i, h);
        const float D = dot_f32(dor, o + oi(P, b, i, h), ndv);
        const float L = lse[li(P, b, h, i)];
        for (int64_t j = 0; j < P->sk; j++) {
          const float sj = scale * dot_f32(qr, P->k + ki(P, b, j, g), d);
          const float pj = expf(sj - L);
          const float dp = dot_f32(dor, P->v + vi(P, b, j, g), ndv);
          const float ds = scale * (pj * (dp - D));
          float *bkr = bk + ki(P, b, j, g), *bvr = bv + vi(P, b, j, g);
          for (int64_t c = 0; c < d; c++)
            bkr[c] += ds * qr[c];
          for (int64_t c = 0; c < ndv; c++)
            bvr[c] += pj * dor[c];
        }
        if (++rows % PEER_BLOCK == 0 ||
            (b == P->b - 1 && h == P->hq - 1 && i == P->sq - 1)) {
          for (int64_t x = 0; x < nk; x++)
            dk[x] += bk[x], bk[x] = 0.0f;
          for (int64_t x = 0; x < nv; x++)
            dv[x] += bv[x], bv[x] = 0.0f;
        }
      }
  free(bk), free(bv);
}

static double max_err(const float *x, const double *ref, int64_t n) {
  double e = 0;
  for (int64_t i = 0; i < n; i++) {
    const double d = fabs((double)x[i] - ref[i]);
    if (!(d <= e))
      e = d; /* NaN wins */
  }
  return e;
}

static void acc_forward(int64_t sq, int64_t sk, uint64_t seed) {
  prob *P = prob_new(1, sq, sk, 1, 1, 64, 64);
  tc_rng rng = {seed};
  fill_normal(P->q, n_q(P), 0.0, 0.1, &rng);
  fill_normal(P->k, n_k(P), 0.0, 0.1, &rng);
  fill_normal(P->v, n_v(P), 1.0, 0.1, &rng);
  refres r;
  ref_compute(P, &r, 0);
  float *po = falloc(n_o(P)), *pl = falloc(n_l(P));
  peer_forward(P, po, pl);
  const double e_peer = max_err(po, r.o, n_o(P));
  const double e_peer_l = max_err(pl, r.lse, n_l(P));
  const double budget = 2 * e_peer + 1e-6;
  for (int ii = 0; ii < N_ISAS; ii++) {
    const attn_isa isa = all_isas[ii];
    if (!attn_isa_supported(isa))
      continue;
    const double t0 = tc_now();
    attn_status st = run_fwd(P, isa);
    const double t1 = tc_now();
    check(SEC_ACC_FWD, isa, st == ATTN_OK, "forward %lld x %lld: status %d",
          (long long)sq, (long long)sk, (int)st);
    if (st != ATTN_OK)
      continue;
    const double e = max_err(P->o, r.o, n_o(P));
    const double el = max_err(P->lse, r.lse, n_l(P));
    printf("accuracy forward, %lld rows x %lld keys, d 64, isa %-7s: err o "
           "%.3g, f32 peer %.3g, budget %.3g (%s); err lse %.3g, peer %.3g "
           "[%.2fs]\n",
           (long long)sq, (long long)sk, attn_isa_name(isa), e, e_peer, budget,
           e <= budget ? "ok" : "OVER", el, e_peer_l, t1 - t0);
    check(SEC_ACC_FWD, isa, e <= budget,
          "forward %lld rows x %lld keys: err o %.3g > budget %.3g (2 x peer "
          "%.3g + 1e-6)",
          (long long)sq, (long long)sk, e, budget, e_peer);
  }
  free(po), free(pl);
  ref_free(&r);
  prob_free(P);
}

/* The MQA oracle and peer are the slow part of the test: the oracle runs in
 * two halves (by head) and the peer alongside, on three threads. */
typedef struct ref_job {
  const prob *P;
  refres *r;
  int64_t bh0, bh1;
  double *dk, *dv;
} ref_job;

static void *ref_job_run(void *arg) {
  ref_job *j = (ref_job *)arg;
  ref_rows(j->P, j->r, 1, j->bh0, j->bh1, j->dk, j->dv);
  return NULL;
}

typedef struct peer_job {
  const prob *P;
  float *o, *lse, *dk, *dv;
} peer_job;

static void *peer_job_run(void *arg) {
  peer_job *j = (peer_job *)arg;
  peer_forward(j->P, j->o, j->lse);
  peer_backward_kv(j->P, j->o, j->lse, j->dk, j->dv);
  return NULL;
}

/* The oracle's O, LSE, dQ, dK, dV into r (allocated here) and the peer's O,
 * LSE, dK, dV: the oracle's second half of the heads and the peer on two
 * more threads. */
static void acc_mqa_reference(const prob *P, refres *r, peer_job *pj) {
  ref_alloc(P, r, 1);
  double *dk2 = dalloc0(n_k(P)), *dv2 = dalloc0(n_v(P));
  const int64_t nbh = P->b * P->hq, mid = nbh / 2;
  ref_job half = {P, r, mid, nbh, dk2, dv2};
  pthread_t th[2];
  const int t_half = pthread_create(&th[0], NULL, ref_job_run, &half) == 0;
  const int t_peer = pthread_create(&th[1], NULL, peer_job_run, pj) == 0;
  ref_rows(P, r, 1, 0, mid, r->dk, r->dv);
  if (t_half)
    pthread_join(th[0], NULL);
  else
    ref_job_run(&half);
  if (t_peer)
    pthread_join(th[1], NULL);
  else
    peer_job_run(pj);
  for (int64_t x = 0; x < n_k(P); x++)
    r->dk[x] += dk2[x];
  for (int64_t x = 0; x < n_v(P); x++)
    r->dv[x] += dv2[x];
  free(dk2), free(dv2);
}

static void acc_backward_mqa(int64_t hq, int64_t seq, uint64_t seed) {
  prob *P = prob_new(1, seq, seq, hq, 1, 64, 64);
  tc_rng rng = {seed};
  fill_normal(P->q, n_q(P), 0.0, 0.1, &rng);
  fill_normal(P->k, n_k(P), 0.0, 0.1, &rng);
  fill_normal(P->v, n_v(P), 1.0, 0.1, &rng);
  fill_normal(P->dout, n_o(P), 1.0, 0.1, &rng);
  const double t0 = tc_now();
  refres r;
  peer_job pj = {P, falloc(n_o(P)), falloc(n_l(P)), falloc(n_k(P)),
                 falloc(n_v(P))};
  acc_mqa_reference(P, &r, &pj);
  const double e_pk = max_err(pj.dk, r.dk, n_k(P));
  const double e_pv = max_err(pj.dv, r.dv, n_v(P));
  const double bk = 2 * e_pk + 1e-6, bv = 2 * e_pv + 1e-6;
  printf("accuracy backward: MQA %lld heads x %lld: oracle and f32 peer "
         "%.1fs (3 threads)\n",
         (long long)hq, (long long)seq, tc_now() - t0);
  for (int ii = 0; ii < N_ISAS; ii++) {
    const attn_isa isa = all_isas[ii];
    if (!attn_isa_supported(isa))
      continue;
    const double t1 = tc_now();
    attn_status st = run_fwd(P, isa);
    if (st == ATTN_OK)
      st = run_bwd(P, isa);
    check(SEC_ACC_BWD, isa, st == ATTN_OK, "MQA backward: status %d (%s)",
          (int)st, P->why);
    if (st != ATTN_OK)
      continue;
    const double ek = max_err(P->dk, r.dk, n_k(P));
    const double ev = max_err(P->dvv, r.dv, n_v(P));
    const double eq = max_err(P->dq, r.dq, n_q(P));
    printf("accuracy backward, MQA %lld q heads, 1 kv head, seq %lld, isa "
           "%-7s: err dk %.3g (peer %.3g, budget %.3g, %s), err dv %.3g "
           "(peer %.3g, budget %.3g, %s); dq err %.3g [%.2fs]\n",
           (long long)hq, (long long)seq, attn_isa_name(isa), ek, e_pk, bk,
           ek <= bk ? "ok" : "OVER", ev, e_pv, bv, ev <= bv ? "ok" : "OVER", eq,
           tc_now() - t1);
    check(SEC_ACC_BWD, isa, ek <= bk,
          "MQA %lld heads seq %lld: err dk %.3g > budget %.3g (2 x peer %.3g "
          "+ 1e-6)",
          (long long)hq, (long long)seq, ek, bk, e_pk);
    check(SEC_ACC_BWD, isa, ev <= bv,
          "MQA %lld heads seq %lld: err dv %.3g > budget %.3g (2 x peer %.3g "
          "+ 1e-6)",
          (long long)hq, (long long)seq, ev, bv, e_pv);
  }
  free(pj.o), free(pj.lse), free(pj.dk), free(pj.dv);
  ref_free(&r);
  prob_free(P);
}

void section_accuracy(int quick) {
  printf("== accuracy at long key lengths (%s) ==\n",
         quick ? "ATTN_TEST_QUICK" : "full");
  acc_forward(64, 4096, 0xACC001);
  acc_forward(4, quick ? 262144 : 1048576, 0xACC002);
  if (quick)
    acc_backward_mqa(8, 512, 0xACC003);
  else
    acc_backward_mqa(32, 2048, 0xACC003);
}
