/*
 * test_dropout: dropout on the attention probabilities (attn.h,
 * attn_params.dropout_p and dropout_seed, attn_dropout_keep).
 *
 *   philox       Philox4x32-10 against Random123's known answers
 *                (kat_vectors, philox4x32_10), for the library's generator
 *                (src/kernels/philox.h) and for this test's own, written
 *                from the paper; attn_dropout_keep against the documented
 *                rule on this test's generator (random coordinates, seeds
 *                and p, thresholds at their edges, coordinates that wrap);
 *                the vector row functions (AVX2, AVX-512) bitwise against
 *                the scalar loop.
 *   rate         empirical keep rate within 5 binomial sigma for several p,
 *                per word of the Philox output, and two seeds' masks
 *                independent (joint keep rate q^2).
 *   expectation  the mean of O over many seeds against q c O(no dropout)
 *                (= O up to 2^-32 / (1 - p)), each element within 5 sigma
 *                of the exact variance, the mean squared z-score near 1.
 *   mask         O with one-hot value rows: O[i][j] != 0 exactly when
 *                attn_dropout_keep(seed, p, b, h, i, j) (batches, packed
 *                sequences with kv_lens, GQA, decode-sized shapes), on
 *                every ISA the CPU has: the same mask whatever the ISA,
 *                tiles and threads.
 *   oracle       forward and backward (dq, dk, dv, dbias, drel_bias)
 *                against the double oracle given the same mask, over
 *                random tp_problems (every option of the core) and
 *                hand-picked shapes (lengths 1, 63/64/65, primes, GQA,
 *                causal, window, packed, kv_lens, softcap, ALiBi, bias +
 *                dbias, bf16/f16), the oracle's usual rule (oracle_fwd.h,
 *                oracle_bwd.h: 2 x the naive f32 error + floor).
 *   determinism  o, lse and gradients bitwise equal for 1, 2 and 3 threads.
 *   p = 0        bitwise equal to no dropout whatever the seed (and -0).
 *   bad input    dropout_p NaN, < 0, >= 1, +-inf: ATTN_ERR_INVALID_ARGUMENT
 *                with a message naming dropout_p; the KV cache refuses
 *                dropout.
 *
 * Environment: ATTN_TEST_CASES (random oracle cases per pass, default 500),
 * ATTN_TEST_SEED, ATTN_TEST_QUICK=1 (sanitizer builds: fewer cases).
 * The last line is exactly "N passed, N failed".
 */
#include "attn.h"
#include "dropout_vec.h"
#include "kernels/philox.h"
#include "oracle_bwd.h"
#include "oracle_fwd.h"
#include "problem.h"
#include "test_common.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_SEED 0xD20Bull

static long n_pass, n_fail;

static void result(int ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void result(int ok, const char *fmt, ...) {
  if (ok) {
    n_pass++;
    return;
  }
  n_fail++;
  if (n_fail <= 30) {
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
  }
}

static attn_isa g_isas[5];
static int g_nisas;

/* ---------------------------------------------------------------------- */
/* philox: known answers, the keep rule, the vector forms                  */
/* ---------------------------------------------------------------------- */

/* This test's own Philox4x32-10, from Salmon et al. 2011 (section 5):
 * ten rounds of two 32 x 32 -> 64-bit products, the key bumped by the Weyl
 * constants between rounds. */
static void ref_mulhilo(uint32_t a, uint32_t b, uint32_t *hi, uint32_t *lo) {
  const uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  *lo = (uint32_t)p;
}

static void ref_philox(const uint32_t in[4], const uint32_t key_in[2],
                       uint32_t out[4]) {
  uint32_t x[4] = {in[0], in[1], in[2], in[3]};
  uint32_t k[2] = {key_in[0], key_in[1]};
  for (int round = 0; round < 10; round++) {
    if (round > 0) {
      k[0] += 0x9E3779B9u;
      k[1] += 0xBB67AE85u;
    }
    uint32_t hi0, lo0, hi1, lo1;
    ref_mulhilo(0xD2511F53u, x[0], &hi0, &lo0);
    ref_mulhilo(0xCD9E8D57u, x[2], &hi1, &lo1);
    const uint32_t y[4] = {hi1 ^ x[1] ^ k[0], lo1, hi0 ^ x[3] ^ k[1], lo0};
    memcpy(x, y, sizeof x);
  }
  memcpy(out, x, sizeof x);
}

/* The documented rule (attn.h, attn_dropout_keep) on ref_philox. */
static int ref_keep(uint64_t seed, float p, int64_t b, int64_t h, int64_t i,
                    int64_t j) {
  if (p != p || p >= 1.0f)
    return 0;
  if (p <= 0.0f)
    return 1;
  const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  const uint32_t ctr[4] = {(uint32_t)((uint64_t)j / 4), (uint32_t)(uint64_t)i,
                           (uint32_t)(uint64_t)h, (uint32_t)(uint64_t)b};
  uint32_t u[4];
  ref_philox(ctr, key, u);
  const uint64_t thr = (uint64_t)ldexp((double)p, 32); /* exact, >= 0 */
  return (uint64_t)u[(uint64_t)j % 4] >= thr;
}

static void test_philox_kat(void) {
  /* Random123 1.14, examples/kat_vectors: philox4x32 10 rounds */
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
       0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
       0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}};
  for (int v = 0; v < 3; v++) {
    uint32_t lib[4], mine[4];
    attn_philox4x32_10(kat[v], kat[v] + 4, lib);
    ref_philox(kat[v], kat[v] + 4, mine);
    result(memcmp(lib, kat[v] + 6, sizeof lib) == 0,
           "philox KAT %d: library %08x %08x %08x %08x", v, lib[0], lib[1],
           lib[2], lib[3]);
    result(memcmp(mine, kat[v] + 6, sizeof mine) == 0,
           "philox KAT %d: test's generator %08x %08x %08x %08x", v, mine[0],
           mine[1], mine[2], mine[3]);
  }
}

/* attn_dropout_keep against the rule, random and edge inputs. */
static void test_keep_rule(uint64_t seed) {
  tc_rng r = {tc_case_seed(seed, 1)};
  const float edge_p[] = {0.0f,       -0.0f,
                          -0.5f,      1.0f,
                          2.0f,       NAN,
                          INFINITY,   -INFINITY,
                          1e-12f,     0x1p-32f,
                          0x1.8p-32f, 0.5f,
                          0.1f,       nextafterf(1.0f, 0.0f)};
  long bad = 0, n = 0;
  for (int t = 0; t < 40000; t++) {
    const uint64_t s = tc_next(&r);
    float p = t < 14 * 200 ? edge_p[t % 14] : (float)tc_unit(&r);
    int64_t b = tc_below(&r, 9), h = tc_below(&r, 70), i = tc_below(&r, 100000),
            j = tc_below(&r, 100000);
    if (t % 7 == 0) { /* coordinates past 2^32 and negative: they wrap */
      b = (int64_t)tc_next(&r), h = (int64_t)tc_next(&r);
      i = (int64_t)tc_next(&r), j = (int64_t)tc_next(&r);
    }
    n++;
    bad += attn_dropout_keep(s, p, b, h, i, j) != ref_keep(s, p, b, h, i, j);
  }
  result(bad == 0, "attn_dropout_keep differs from the rule in %ld of %ld", bad,
         n);
  /* the threshold's edges: u = 0 is kept only when floor(p 2^32) = 0 */
  result(attn_dropout_keep(1, 0.5f, 0, 0, 0, 0) ==
             ref_keep(1, 0.5f, 0, 0, 0, 0),
         "keep at p = 0.5");
  result(attn_dropout_threshold(0x1p-32f) == 1u &&
             attn_dropout_threshold(0.5f) == 0x80000000u &&
             attn_dropout_threshold(nextafterf(1.0f, 0.0f)) == 0xFFFFFF00u &&
             attn_dropout_threshold(1e-12f) == 0u,
         "floor(p 2^32) at its edges");
  result(attn_dropout_keep(7, 1.0f, 0, 0, 0, 0) == 0 &&
             attn_dropout_keep(7, NAN, 0, 0, 0, 0) == 0 &&
             attn_dropout_keep(7, 0.0f, 0, 0, 0, 0) == 1 &&
             attn_dropout_keep(7, -3.0f, 0, 0, 0, 0) == 1,
         "attn_dropout_keep outside [0, 1)");
}

/* The row functions of every ISA bitwise against the scalar rule: 1 to 5
 * rows (blocks pair up across rows), any length, j0 not a multiple of 4,
 * j / 4 wrapping past 2^32. */
static void test_vector_rows(uint64_t seed) {
  struct {
    const char *name;
    dropout_vec_fn fn;
    attn_isa isa;
  } fns[3] = {
    {"generic", dropout_vec_rows_generic, ATTN_ISA_GENERIC},
#if defined(ATTN_TEST_X86)
    {"avx2", dropout_vec_rows_avx2, ATTN_ISA_AVX2},
    {"avx512", dropout_vec_rows_avx512, ATTN_ISA_AVX512}
#else
    {"avx2", NULL, ATTN_ISA_AVX2},
    {"avx512", NULL, ATTN_ISA_AVX512}
#endif
  };
  enum { MAXR = 5, LD = 403 };
  static float x[MAXR * LD], y[MAXR * LD], want[MAXR * LD];
  for (int f = 0; f < 3; f++) {
    if (!fns[f].fn || !attn_isa_supported(fns[f].isa)) {
      printf("philox rows %s: not supported here, skipped\n", fns[f].name);
      continue;
    }
    tc_rng r = {tc_case_seed(seed, 2)};
    long bad = 0;
    for (int t = 0; t < 2000; t++) {
      const uint64_t s = tc_next(&r);
      const float p = t % 5 == 0 ? 0.5f : (float)tc_uniform(&r, 0.001, 0.999);
      const int64_t b = tc_below(&r, 5), h = tc_below(&r, 40);
      const int64_t i0 = tc_below(&r, 5000);
      const int rows = (int)tc_range(&r, 1, MAXR);
      int64_t j0 = 4 * tc_below(&r, 3000);
      if (t % 9 == 1)
        j0 += 1 + tc_below(&r, 3); /* not a multiple of 4: scalar path */
      if (t % 11 == 2)
        j0 = ((int64_t)1 << 34) - 4 * tc_range(&r, 1, 40); /* j / 4 wraps */
      const int n = (int)tc_range(&r, 1, 400);
      const float scale = (float)(1.0 / (1.0 - (double)p));
      for (int e = 0; e < rows * LD; e++) {
        const int row = e / LD, c = e % LD;
        x[e] = (float)tc_normal(&r);
        want[e] = c >= n ? x[e] /* past n: untouched */
                  : ref_keep(s, p, b, h, i0 + row, j0 + c) ? scale
                                                           : 0.0f;
      }
      memcpy(y, x, sizeof(float) * (size_t)(rows * LD));
      fns[f].fn(s, p, b, h, i0, rows, j0, y, LD, n, 1);
      for (int e = 0; e < rows * LD; e++) {
        const float m = e % LD >= n ? x[e] : x[e] * want[e];
        bad += memcmp(&y[e], &m, sizeof m) != 0;
      }
      memcpy(y, x, sizeof(float) * (size_t)(rows * LD));
      fns[f].fn(s, p, b, h, i0, rows, j0, y, LD, n, 0);
      bad += memcmp(y, want, sizeof(float) * (size_t)(rows * LD)) != 0;
    }
    result(bad == 0, "philox rows %s: %ld elements differ from the rule",
           fns[f].name, bad);
  }
}

/* ---------------------------------------------------------------------- */
/* rate: the keep rate and independence                                    */
/* ---------------------------------------------------------------------- */
static void test_rate(uint64_t seed) {
  const float ps[] = {0.01f, 0.1f, 0.25f, 0.5f, 0.9f, 0.999f};
  tc_rng r = {tc_case_seed(seed, 3)};
  for (int k = 0; k < 6; k++) {
    const float p = ps[k];
    const uint64_t s1 = tc_next(&r), s2 = tc_next(&r);
    /* the exact keep probability of the rule */
    const double q = 1.0 - ldexp((double)attn_dropout_threshold(p), -32);
    long kept = 0, both = 0, word[4] = {0, 0, 0, 0}, n = 0;
    for (int64_t b = 0; b < 2; b++)
      for (int64_t h = 0; h < 4; h++)
        for (int64_t i = 0; i < 128; i++)
          for (int64_t j = 0; j < 256; j++, n++) {
            const int a = attn_dropout_keep(s1, p, b, h, i, j);
            kept += a;
            word[j % 4] += a;
            both += a && attn_dropout_keep(s2, p, b, h, i, j);
          }
    const double sd = sqrt((double)n * q * (1 - q));
    result(fabs((double)kept - (double)n * q) <= 5 * sd,
           "p %g: kept %ld of %ld, want %.1f +- 5 x %.1f", (double)p, kept, n,
           (double)n * q, sd);
    for (int w = 0; w < 4; w++) {
      const double nw = (double)n / 4, sw = sqrt(nw * q * (1 - q));
      result(fabs((double)word[w] - nw * q) <= 5 * sw,
             "p %g: word %d kept %ld of %.0f, want %.1f +- 5 x %.1f", (double)p,
             w, word[w], nw, nw * q, sw);
    }
    const double sb = sqrt((double)n * q * q * (1 - q * q));
    result(fabs((double)both - (double)n * q * q) <= 5 * sb,
           "p %g: two seeds both keep %ld, want %.1f +- 5 x %.1f", (double)p,
           both, (double)n * q * q, sb);
    printf("rate p=%-5g kept %.6f (want %.6f, %+.2f sigma), two seeds %.6f "
           "(want %.6f)\n",
           (double)p, (double)kept / (double)n, q,
           ((double)kept - (double)n * q) / sd, (double)both / (double)n,
           q * q);
  }
}

/* ---------------------------------------------------------------------- */
/* expectation: the mean over seeds is the undropped output                */
/* ---------------------------------------------------------------------- */
#define EB 2
#define EHQ 2
#define ESQ 7
#define ESK 45
#define ED 16
#define EDV 8

static void test_expectation(uint64_t seed, int quick) {
  static float q[EB * ESQ * EHQ * ED], k[EB * ESK * ED], v[EB * ESK * EDV];
  static float o0[EB * ESQ * EHQ * EDV], o[EB * ESQ * EHQ * EDV];
  static double mean[EB * ESQ * EHQ * EDV], var1[EB * ESQ * EHQ * EDV];
  tc_rng r = {tc_case_seed(seed, 4)};
  for (size_t x = 0; x < sizeof q / sizeof q[0]; x++)
    q[x] = (float)tc_normal(&r);
  for (size_t x = 0; x < sizeof k / sizeof k[0]; x++)
    k[x] = (float)tc_normal(&r);
  for (size_t x = 0; x < sizeof v / sizeof v[0]; x++)
    v[x] = (float)tc_normal(&r);
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, EB, ESQ, EHQ, ED);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, EB, ESK, 1, ED);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, EB, ESK, 1, EDV);
  p.o = attn_tensor_bshd(o0, ATTN_DTYPE_F32, EB, ESQ, EHQ, EDV);
  p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
  CHECK(attn_forward(NULL, &p) == ATTN_OK, "expectation: forward");
  /* Var(O_ic) = Var(c Z) sum_j P_ij^2 V_jc^2, Z ~ Bernoulli(q) independent
   * over j: var1 holds sum_j P_ij^2 V_jc^2 (P in double, from the inputs) */
  const double scale = 1.0 / sqrt((double)ED);
  for (int b = 0; b < EB; b++)
    for (int i = 0; i < ESQ; i++)
      for (int h = 0; h < EHQ; h++) {
        double s[ESK], m = -INFINITY, sum = 0;
        const int jmax = i + ESK - ESQ; /* bottom-right causal */
        for (int j = 0; j <= jmax; j++) {
          double acc = 0;
          for (int c = 0; c < ED; c++)
            acc += (double)q[((b * ESQ + i) * EHQ + h) * ED + c] *
                   (double)k[(b * ESK + j) * ED + c];
          s[j] = acc * scale;
          m = fmax(m, s[j]);
        }
        for (int j = 0; j <= jmax; j++)
          sum += exp(s[j] - m);
        for (int c = 0; c < EDV; c++) {
          double acc = 0;
          for (int j = 0; j <= jmax; j++) {
            const double pj = exp(s[j] - m) / sum;
            const double vj = (double)v[(b * ESK + j) * EDV + c];
            acc += pj * pj * vj * vj;
          }
          var1[((b * ESQ + i) * EHQ + h) * EDV + c] = acc;
        }
      }
  const int n = EB * ESQ * EHQ * EDV;
  const int nseeds = quick ? 300 : 2000;
  const float ps[2] = {0.1f, 0.5f};
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, EB, ESQ, EHQ, EDV);
  for (int pi = 0; pi < 2; pi++) {
    const float pd = ps[pi];
    const double qk = 1.0 - ldexp((double)attn_dropout_threshold(pd), -32);
    const double c = (double)(float)(1.0 / (1.0 - (double)pd));
    memset(mean, 0, sizeof mean);
    p.dropout_p = pd;
    for (int t = 0; t < nseeds; t++) {
      p.dropout_seed = tc_next(&r);
      CHECK(attn_forward(NULL, &p) == ATTN_OK, "expectation: forward");
      for (int x = 0; x < n; x++)
        mean[x] += (double)o[x] / nseeds;
    }
    /* E[mean] = q c O0; sd of the mean = c sqrt(q (1 - q) var1 / seeds);
     * slack 1e-6 for the kernel's f32 rounding of O0 (|V| ~ 1) */
    double worst = 0, z2 = 0;
    int bad = 0;
    for (int x = 0; x < n; x++) {
      const double want = qk * c * (double)o0[x];
      const double sd = c * sqrt(qk * (1 - qk) * var1[x] / nseeds);
      const double z = (mean[x] - want) / (sd + 1e-6);
      worst = fmax(worst, fabs(z));
      z2 += z * z / n;
      bad += fabs(z) > 5;
    }
    result(bad == 0, "expectation p %g: %d of %d elements past 5 sigma",
           (double)pd, bad, n);
    const double band = 5 * sqrt(2.0 / n); /* sd of a mean of chi2(1) / n */
    result(fabs(z2 - 1) <= band,
           "expectation p %g: mean z^2 %.3f, want 1 +- %.3f (variance off?)",
           (double)pd, z2, band);
    printf("expectation p=%g over %d seeds: worst |z| %.2f, mean z^2 %.3f "
           "(want 1 +- %.2f)\n",
           (double)pd, nseeds, worst, z2, band);
  }
}

/* ---------------------------------------------------------------------- */
/* mask: read back through one-hot values                                  */
/* ---------------------------------------------------------------------- */

/* One scenario: nseq sequences (packed when varlen), value row j of each
 * sequence one-hot at column j, so O[i][j] = P_ij keep_ij c: the mask. */
typedef struct mask_scen {
  const char *name;
  int64_t nseq, hq, hk, d;
  int varlen;
  int64_t lq[4], lk[4]; /* per sequence (batch: all equal) */
  int kvlens;
  int32_t kv[4];
  float p;
} mask_scen;

static void mask_check(const mask_scen *sc, uint64_t seed) {
  const int64_t tb = sc->varlen ? 1 : sc->nseq;
  int64_t tq = 0, tk = 0, dv = 0;
  int32_t cuq[5] = {0}, cuk[5] = {0};
  for (int b = 0; b < sc->nseq; b++) {
    cuq[b + 1] = cuq[b] + (int32_t)sc->lq[b];
    cuk[b + 1] = cuk[b] + (int32_t)sc->lk[b];
    dv = dv > sc->lk[b] ? dv : sc->lk[b];
  }
  tq = sc->varlen ? cuq[sc->nseq] : sc->lq[0];
  tk = sc->varlen ? cuk[sc->nseq] : sc->lk[0];
  const size_t nq = (size_t)(tb * tq * sc->hq), nk = (size_t)(tb * tk * sc->hk);
  float *q = tc_alloc(nq * (size_t)sc->d * sizeof(float));
  float *k = tc_alloc(nk * (size_t)sc->d * sizeof(float));
  float *v = tc_alloc(nk * (size_t)dv * sizeof(float));
  float *o = tc_alloc(nq * (size_t)dv * sizeof(float));
  tc_rng r = {tc_case_seed(seed, 5)};
  for (size_t x = 0; x < nq * (size_t)sc->d; x++)
    q[x] = (float)tc_uniform(&r, -0.5, 0.5);
  for (size_t x = 0; x < nk * (size_t)sc->d; x++)
    k[x] = (float)tc_uniform(&r, -0.5, 0.5);
  memset(v, 0, nk * (size_t)dv * sizeof(float));
  for (int64_t bt = 0; bt < tb; bt++)
    for (int64_t b = 0; b < sc->nseq; b++) {
      if (!sc->varlen && b != bt)
        continue;
      const int64_t k0 = sc->varlen ? cuk[b] : 0;
      for (int64_t j = 0; j < sc->lk[b]; j++)
        for (int64_t g = 0; g < sc->hk; g++)
          v[((bt * tk + k0 + j) * sc->hk + g) * dv + j] = 1.0f;
    }
  attn_params p;
  attn_params_init(&p);
  char msg[256] = "";
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, tb, tq, sc->hq, sc->d);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, tb, tk, sc->hk, sc->d);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, tb, tk, sc->hk, dv);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, tb, tq, sc->hq, dv);
  if (sc->varlen) {
    p.cu_seqlens_q = cuq;
    p.cu_seqlens_k = cuk;
    p.varlen_batch = sc->nseq;
  }
  if (sc->kvlens)
    p.kv_lens = sc->kv;
  p.dropout_p = sc->p;
  p.dropout_seed = tc_next(&r);
  p.num_threads = 3;
  for (int ii = 0; ii < g_nisas; ii++) {
    p.isa = g_isas[ii];
    memset(o, 0xff, nq * (size_t)dv * sizeof(float)); /* NaN */
    const attn_status st = attn_forward(NULL, &p);
    result(st == ATTN_OK, "mask %s %s: attn_forward: %s", sc->name,
           attn_isa_name(p.isa), msg);
    if (st != ATTN_OK)
      continue;
    long bad = 0, n = 0, kept = 0;
    for (int64_t b = 0; b < sc->nseq; b++) {
      const int64_t bt = sc->varlen ? 0 : b, q0 = sc->varlen ? cuq[b] : 0;
      const int64_t sk = sc->kvlens ? sc->kv[b] : sc->lk[b];
      for (int64_t i = 0; i < sc->lq[b]; i++)
        for (int64_t h = 0; h < sc->hq; h++)
          for (int64_t j = 0; j < dv; j++) {
            const float x = o[((bt * tq + q0 + i) * sc->hq + h) * dv + j];
            const int want =
                j < sk &&
                attn_dropout_keep(p.dropout_seed, p.dropout_p, b, h, i, j);
            bad += (x != 0.0f) != want || !(x == x);
            kept += want;
            n++;
          }
    }
    result(bad == 0 && n > 0,
           "mask %s %s: %ld of %ld elements disagree with attn_dropout_keep",
           sc->name, attn_isa_name(p.isa), bad, n);
    if (ii == 0)
      printf("mask %-26s %ld elements, %.3f kept\n", sc->name, n,
             (double)kept / (double)(n ? n : 1));
  }
  free(q), free(k), free(v), free(o);
}

static void test_mask(uint64_t seed) {
  static const mask_scen sc[] = {
      {"batch 2, GQA 3:1", 2, 3, 1, 8, 0, {50, 50}, {70, 70}, 0, {0}, 0.3f},
      {"batch 3, tile edges 65x129",
       3,
       2,
       2,
       4,
       0,
       {65, 65, 65},
       {129, 129, 129},
       1,
       {129, 64, 1},
       0.5f},
      {"packed 3 seqs + kv_lens",
       3,
       4,
       2,
       8,
       1,
       {20, 0, 37},
       {30, 15, 60},
       1,
       {25, 15, 41},
       0.2f},
      {"decode-sized (1 row)",
       3,
       2,
       1,
       8,
       0,
       {1, 1, 1},
       {200, 200, 200},
       0,
       {0},
       0.6f},
      {"decode-sized (5 rows), p 0.9",
       2,
       4,
       4,
       16,
       0,
       {5, 5},
       {97, 97},
       0,
       {0},
       0.9f},
  };
  for (size_t s = 0; s < sizeof sc / sizeof sc[0]; s++)
    mask_check(&sc[s], tc_case_seed(seed, 100 + s));
}

/* ---------------------------------------------------------------------- */
/* oracle: forward and backward with the same mask                        */
/* ---------------------------------------------------------------------- */
static const float g_ps[3] = {0.1f, 0.5f, 0.85f};

/* Sets dropout on a built problem (p in {0.1, 0.5, 0.85}, a random seed). */
static void set_dropout(const tp_problem *c, attn_params *p) {
  tc_rng r = {tc_case_seed(c->seed, 0xD0)};
  p->dropout_p = g_ps[tc_below(&r, 3)];
  p->dropout_seed = tc_next(&r);
}

static int forward_vs_oracle(const tp_problem *c, attn_params *p, tp_bufs *m) {
  oracle_ref ref;
  oracle_naive nv;
  if (oracle_forward(p, &ref) != 0 || oracle_naive_f32(p, &nv) != 0) {
    fprintf(stderr, "test_dropout: oracle out of memory\n");
    exit(2);
  }
  int ok_all = 1;
  for (int ii = 0; ii < g_nisas; ii++) {
    char why[400] = "";
    tp_reset_forward(c, p, m);
    p->isa = g_isas[ii];
    p->workspace = NULL, p->workspace_size = 0;
    if (c->compiled && m->compile_status != ATTN_OK) {
      result(0, "case %d: attn_mask_compile: %s", c->index,
             attn_strerror(m->compile_status));
      ok_all = 0;
      break;
    }
    if (c->workspace && !tp_attach_workspace(NULL, p, m, 0, why, sizeof why)) {
      result(0, "case %d fwd %s: %s", c->index, attn_isa_name(p->isa), why);
      ok_all = 0;
      continue;
    }
    const attn_status st = attn_forward(NULL, p);
    if (st != ATTN_OK) {
      result(0, "case %d fwd %s: %s (%s)", c->index, attn_isa_name(p->isa),
             attn_strerror(st), p->error_message);
      ok_all = 0;
      continue;
    }
    oracle_cmp cmp;
    oracle_compare(p, &ref, &nv, &cmp);
    if (!cmp.ok)
      snprintf(why, sizeof why, "%s", cmp.problem);
    else
      tp_untouched(m, why, sizeof why);
    result(why[0] == '\0', "case %d fwd %s p %g: %s", c->index,
           attn_isa_name(p->isa), (double)p->dropout_p, why);
    if (why[0]) {
      ok_all = 0;
      if (n_fail <= 30)
        tp_describe(stdout, c);
    }
  }
  oracle_ref_free(&ref);
  oracle_naive_free(&nv);
  return ok_all;
}

static void backward_vs_oracle(const tp_problem *c, attn_params *p,
                               tp_bufs *m) {
  /* the forward writes o and lse with the widest ISA, as a caller would */
  tp_reset_forward(c, p, m);
  p->isa = g_isas[g_nisas - 1];
  p->workspace = NULL, p->workspace_size = 0;
  if (c->compiled && m->compile_status != ATTN_OK)
    return;
  attn_status st = attn_forward(NULL, p);
  if (st != ATTN_OK) {
    result(0, "case %d: forward before the backward: %s (%s)", c->index,
           attn_strerror(st), p->error_message);
    return;
  }
  oracle_grads ref, nv;
  if (oracle_backward(p, &ref) != 0 || oracle_backward_f32(p, &nv) != 0) {
    fprintf(stderr, "test_dropout: oracle out of memory\n");
    exit(2);
  }
  for (int ii = 0; ii < g_nisas; ii++) {
    char why[400] = "";
    p->isa = g_isas[ii];
    tp_reset_backward(m);
    p->workspace = NULL, p->workspace_size = 0;
    if (c->workspace && !tp_attach_workspace(NULL, p, m, 1, why, sizeof why)) {
      result(0, "case %d bwd %s: %s", c->index, attn_isa_name(p->isa), why);
      continue;
    }
    st = attn_backward(NULL, p);
    if (st != ATTN_OK) {
      result(0, "case %d bwd %s: %s (%s)", c->index, attn_isa_name(p->isa),
             attn_strerror(st), p->error_message);
      continue;
    }
    oracle_grad_cmp cmp;
    oracle_grads_compare(p, &ref, &nv, &cmp);
    if (!cmp.ok)
      snprintf(why, sizeof why, "%s", cmp.problem);
    else
      tp_untouched(m, why, sizeof why);
    result(why[0] == '\0', "case %d bwd %s p %g: %s", c->index,
           attn_isa_name(p->isa), (double)p->dropout_p, why);
    if (why[0] && n_fail <= 30)
      tp_describe(stdout, c);
  }
  oracle_grads_free(&ref);
  oracle_grads_free(&nv);
}

/* o, lse and the gradients bitwise equal for 1, 2 and 3 threads. */
static void check_threads(const tp_problem *c, attn_params *p, tp_bufs *m) {
  if (c->compiled && m->compile_status != ATTN_OK)
    return;
  const int grads = p->dq.data != NULL;
  void *data[7] = {m->mem[TP_O],  m->lse_mem, m->mem[TP_DQ], m->mem[TP_DK],
                   m->mem[TP_DV], m->dbias,   m->drel};
  const size_t bytes[7] = {m->bytes[TP_O],
                           m->lse_mem ? (size_t)(m->n_lse + 16) * 4 : 0,
                           grads ? m->bytes[TP_DQ] : 0,
                           grads ? m->bytes[TP_DK] : 0,
                           grads ? m->bytes[TP_DV] : 0,
                           m->dbias_bytes,
                           m->drel_bytes};
  void *first[7] = {0};
  int same = 1;
  p->isa = g_isas[g_nisas - 1];
  p->workspace = NULL, p->workspace_size = 0;
  for (int t = 1; t <= 3 && same; t++) {
    p->num_threads = t;
    tp_reset_forward(c, p, m);
    if (grads)
      tp_reset_backward(m);
    if (attn_forward(NULL, p) != ATTN_OK ||
        (grads && attn_backward(NULL, p) != ATTN_OK)) {
      same = 0;
      break;
    }
    for (int x = 0; x < 7; x++) {
      if (!bytes[x] || !data[x])
        continue;
      if (t == 1) {
        first[x] = tc_alloc(bytes[x]);
        memcpy(first[x], data[x], bytes[x]);
      } else if (memcmp(first[x], data[x], bytes[x]) != 0) {
        same = 0;
      }
    }
  }
  for (int x = 0; x < 7; x++)
    free(first[x]);
  p->num_threads = c->threads;
  result(same, "case %d: results differ across 1/2/3 threads with dropout",
         c->index);
}

static void run_random(uint64_t seed, long n_cases) {
  long fwd = 0, bwd = 0;
  for (long i = 0; i < n_cases; i++) {
    for (int pass = 0; pass < 2; pass++) {
      tp_problem c;
      tp_generate(&c, pass ? &tp_profile_backward : &tp_profile_forward, seed,
                  (int)i);
      attn_params p;
      tp_bufs m;
      char err[256] = "";
      tp_build(&c, &p, &m);
      p.error_message = err;
      p.error_message_size = sizeof err;
      set_dropout(&c, &p);
      if (pass == 0) {
        forward_vs_oracle(&c, &p, &m);
        fwd++;
      } else if (p.dq.data) {
        backward_vs_oracle(&c, &p, &m);
        bwd++;
      }
      if (i % 10 == 3)
        check_threads(&c, &p, &m);
      tp_bufs_free(&m);
    }
  }
  printf("random problems: %ld forward, %ld backward, against the oracle\n",
         fwd, bwd);
}

/* Hand-picked shape n: the lengths the issue names, each with options. */
static int hand_problem(int n, tp_problem *c) {
  static const int64_t lens[][2] = {{1, 1},   {1, 65},    {63, 63},
                                    {64, 64}, {65, 65},   {61, 67},
                                    {67, 61}, {127, 131}, {49, 97}};
  const int nlen = (int)(sizeof lens / sizeof lens[0]);
  if (n >= 2 * nlen)
    return 0;
  const int64_t sq = lens[n % nlen][0], sk = lens[n % nlen][1];
  const int alt = n >= nlen;
  tp_problem_init(c, 2, alt ? 4 : 2, alt ? 2 : 1, sq, sk, 16 + 8 * (n % 3),
                  alt ? 24 : 16);
  c->index = 300000 + n;
  c->seed = tc_case_seed(0xD0D0ull, (uint64_t)n);
  c->grads = 1;
  switch (n % 6) {
  case 0:
    c->causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    c->bias = c->dbias = 1;
    break;
  case 1:
    c->wl = 7, c->wr = 3;
    c->softcap = 5.0f;
    c->kvlens = 1;
    c->kv_lens[0] = (int32_t)sk, c->kv_lens[1] = (int32_t)(sk / 2 + 1);
    break;
  case 2:
    c->alibi = 1;
    c->causal = ATTN_CAUSAL_TOP_LEFT;
    c->in_dt = ATTN_DTYPE_BF16;
    break;
  case 3: {
    const int64_t lq[3] = {sq, 1 + sq / 3, 5}, lk[3] = {sk, 1 + sk / 2, 9};
    tp_problem_varlen(c, 3, lq, lk);
    c->in_dt = ATTN_DTYPE_F16;
    c->out_dt = ATTN_DTYPE_F16;
    break;
  }
  case 4:
    c->bias = c->dbias = 1;
    c->bias_mode[0] = TP_AX_ONE; /* broadcast over the batch */
    c->softcap = 3.0f;
    c->alibi = 2;
    break;
  default:
    c->g_dt[0] = c->g_dt[1] = c->g_dt[2] = ATTN_DTYPE_BF16;
    c->threads = 3;
    break;
  }
  return 1;
}

static void run_hand(void) {
  tp_problem c;
  int count = 0;
  for (int n = 0; hand_problem(n, &c); n++, count++) {
    attn_params p;
    tp_bufs m;
    char err[256] = "";
    tp_build(&c, &p, &m);
    p.error_message = err;
    p.error_message_size = sizeof err;
    for (int k = 0; k < 3; k++) {
      p.dropout_p = g_ps[k];
      p.dropout_seed = c.seed + (uint64_t)k;
      forward_vs_oracle(&c, &p, &m);
      backward_vs_oracle(&c, &p, &m);
    }
    check_threads(&c, &p, &m);
    tp_bufs_free(&m);
  }
  printf("hand-picked shapes: %d, each at p = 0.1, 0.5, 0.85\n", count);
}

/* ---------------------------------------------------------------------- */
/* p = 0 is bitwise no dropout; seeds matter                               */
/* ---------------------------------------------------------------------- */
static void test_p_zero(uint64_t seed) {
  for (int n = 0; n < 6; n++) {
    tp_problem c;
    tp_generate(&c, &tp_profile_backward, seed ^ 0x2E80ull, n);
    attn_params p;
    tp_bufs m;
    char err[256] = "";
    tp_build(&c, &p, &m);
    p.error_message = err;
    p.error_message_size = sizeof err;
    if (c.compiled && m.compile_status != ATTN_OK) {
      tp_bufs_free(&m);
      continue;
    }
    const int grads = p.dq.data != NULL;
    void *data[4] = {m.mem[TP_O], m.mem[TP_DQ], m.mem[TP_DK], m.mem[TP_DV]};
    const size_t bytes[4] = {m.bytes[TP_O], grads ? m.bytes[TP_DQ] : 0,
                             grads ? m.bytes[TP_DK] : 0,
                             grads ? m.bytes[TP_DV] : 0};
    void *ref[4] = {0};
    static const float zeros[3] = {0.0f, 0.0f, -0.0f};
    static const uint64_t seeds[3] = {0, 0x123456789ABCDEFull, 7};
    int same = 1, runs_ok = 1;
    for (int t = 0; t < 3; t++) {
      p.workspace = NULL, p.workspace_size = 0;
      p.dropout_p = zeros[t];
      p.dropout_seed = seeds[t];
      tp_reset_forward(&c, &p, &m);
      if (grads)
        tp_reset_backward(&m);
      if (attn_forward(NULL, &p) != ATTN_OK ||
          (grads && attn_backward(NULL, &p) != ATTN_OK)) {
        runs_ok = 0;
        break;
      }
      for (int x = 0; x < 4; x++) {
        if (!bytes[x])
          continue;
        if (t == 0) {
          ref[x] = tc_alloc(bytes[x]);
          memcpy(ref[x], data[x], bytes[x]);
        } else {
          same = same && memcmp(ref[x], data[x], bytes[x]) == 0;
        }
      }
    }
    result(runs_ok, "p = 0 case %d: a call failed: %s", n, err);
    result(same, "p = 0 case %d: not bitwise equal to no dropout", n);
    /* two seeds at p = 0.5 give different outputs, unless the exact
     * output without dropout is all zeros (every key masked, as offset
     * positions and a window can leave them, or V zero where seen): then
     * nothing dropout keeps or drops can move it */
    int moves = 0;
    if (runs_ok) {
      oracle_ref z;
      p.dropout_p = 0.0f;
      moves = oracle_forward(&p, &z) != 0 || z.max_abs_o > 0.0;
      oracle_ref_free(&z);
    }
    if (runs_ok && moves && c.sq * c.sk > 16) {
      p.dropout_p = 0.5f;
      p.dropout_seed = 1;
      tp_reset_forward(&c, &p, &m);
      CHECK(attn_forward(NULL, &p) == ATTN_OK, "p = 0.5: %s", err);
      memcpy(ref[0], data[0], bytes[0]);
      p.dropout_seed = 2;
      tp_reset_forward(&c, &p, &m);
      CHECK(attn_forward(NULL, &p) == ATTN_OK, "p = 0.5: %s", err);
      result(memcmp(ref[0], data[0], bytes[0]) != 0,
             "p = 0.5 case %d: seeds 1 and 2 give the same output", n);
    }
    for (int x = 0; x < 4; x++)
      free(ref[x]);
    tp_bufs_free(&m);
  }
}

/* ---------------------------------------------------------------------- */
/* bad input                                                               */
/* ---------------------------------------------------------------------- */
static void test_bad_input(void) {
  float q[2 * 8], k[3 * 8], v[3 * 8], o[2 * 8], lse[2];
  float dout[2 * 8], dq[2 * 8], dk[3 * 8], dv[3 * 8];
  for (int x = 0; x < 16; x++)
    q[x] = o[x] = dout[x] = 0.1f * (float)x;
  for (int x = 0; x < 24; x++)
    k[x] = v[x] = 0.05f * (float)x;
  attn_params p;
  attn_params_init(&p);
  char msg[256];
  p.error_message = msg;
  p.error_message_size = sizeof msg;
  p.q = attn_tensor_bshd(q, ATTN_DTYPE_F32, 1, 2, 1, 8);
  p.k = attn_tensor_bshd(k, ATTN_DTYPE_F32, 1, 3, 1, 8);
  p.v = attn_tensor_bshd(v, ATTN_DTYPE_F32, 1, 3, 1, 8);
  p.o = attn_tensor_bshd(o, ATTN_DTYPE_F32, 1, 2, 1, 8);
  p.lse = lse;
  p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, 1, 2, 1, 8);
  p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, 1, 2, 1, 8);
  p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, 1, 3, 1, 8);
  p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, 1, 3, 1, 8);
  p.dropout_p = 0.25f;
  result(attn_forward(NULL, &p) == ATTN_OK, "valid dropout: %s", msg);
  result(attn_backward(NULL, &p) == ATTN_OK, "valid dropout bwd: %s", msg);
  const float bad[] = {NAN, -0.1f, 1.0f, 1.5f, INFINITY, -INFINITY, -1e-30f};
  for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
    p.dropout_p = bad[t];
    msg[0] = '\0';
    attn_status st = attn_forward_check(&p);
    result(st == ATTN_ERR_INVALID_ARGUMENT && strstr(msg, "dropout_p"),
           "dropout_p %g: attn_forward_check gave %s (%s)", (double)bad[t],
           attn_strerror(st), msg);
    msg[0] = '\0';
    st = attn_forward(NULL, &p);
    result(st == ATTN_ERR_INVALID_ARGUMENT && strstr(msg, "dropout_p"),
           "dropout_p %g: attn_forward gave %s (%s)", (double)bad[t],
           attn_strerror(st), msg);
    msg[0] = '\0';
    st = attn_backward(NULL, &p);
    result(st == ATTN_ERR_INVALID_ARGUMENT && strstr(msg, "dropout_p"),
           "dropout_p %g: attn_backward gave %s (%s)", (double)bad[t],
           attn_strerror(st), msg);
    if (t < 2)
      printf("bad dropout_p %g: \"%s\"\n", (double)bad[t], msg);
  }
  /* The KV cache is for inference: dropout is refused. */
  float kc[4 * 8] = {0}, vc[4 * 8] = {0}, qc[8] = {0}, oc[8];
  int32_t lens[1] = {2};
  attn_kv_cache cache;
  attn_kv_cache_init(&cache);
  cache.num_seqs = 1;
  cache.heads_kv = 1;
  cache.head_dim = 8;
  cache.capacity = 4;
  cache.k = kc;
  cache.v = vc;
  cache.seq_lens = lens;
  attn_params pc;
  attn_params_init(&pc);
  pc.error_message = msg;
  pc.error_message_size = sizeof msg;
  pc.q = attn_tensor_bshd(qc, ATTN_DTYPE_F32, 1, 1, 1, 8);
  pc.o = attn_tensor_bshd(oc, ATTN_DTYPE_F32, 1, 1, 1, 8);
  result(attn_kv_cache_attend(NULL, &cache, &pc, NULL) == ATTN_OK,
         "kv cache attend without dropout: %s", msg);
  pc.dropout_p = 0.1f;
  msg[0] = '\0';
  const attn_status st = attn_kv_cache_attend(NULL, &cache, &pc, NULL);
  result(st == ATTN_ERR_INVALID_ARGUMENT && strstr(msg, "dropout"),
         "kv cache attend with dropout gave %s (%s)", attn_strerror(st), msg);
  printf("kv cache with dropout: \"%s\"\n", msg);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  const uint64_t seed = tc_env_ull("ATTN_TEST_SEED", DEFAULT_SEED);
  const int quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  const long n_cases = (long)tc_env_ll("ATTN_TEST_CASES", quick ? 25 : 500);
  static const attn_isa all[5] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                  ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                  ATTN_ISA_AMX_BF16};
  for (int k = 0; k < 5; k++)
    if (attn_isa_supported(all[k]))
      g_isas[g_nisas++] = all[k];
    else
      printf("isa %s: not supported on this CPU, skipped\n",
             attn_isa_name(all[k]));
  printf("test_dropout: seed 0x%llx (ATTN_TEST_SEED), %ld random cases per "
         "pass (ATTN_TEST_CASES)\n",
         (unsigned long long)seed, n_cases);
  const double t0 = tc_now();
  test_philox_kat();
  test_keep_rule(seed);
  test_vector_rows(seed);
  test_rate(seed);
  test_expectation(seed, quick);
  test_mask(seed);
  test_p_zero(seed);
  test_bad_input();
  run_hand();
  run_random(seed, n_cases);
  printf("time %.1f s\n", tc_now() - t0);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
