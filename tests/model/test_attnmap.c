/*
 * test_attnmap.c - src/model/attnmap.c against a naive double-precision
 * softmax of scale q.k over many shapes (lengths 1, tile edges 47/48/49,
 * 63/64/65, primes, longer than ATTNMAP_EXACT_MAX), GQA ratios, head dims
 * 1 to 64, bidirectional and causal, self-attention and cross-attention
 * (seq_k != seq, causal bottom-right, rows that see no key are all 0):
 * exact rows and pooled maps match the
 * oracle and sum to 1, and the view `attn show` draws holds the right
 * maps and zoom rows.
 *
 * Tolerance (the project's rule): an error against the double oracle of
 * at most twice that of a naive float32 implementation on the same inputs,
 * plus a floor. The exact rows are p = exp(s - lse) with s in double and
 * the LSE the kernel saved (a float): their error is the LSE's, which the
 * kernel holds to that rule, so the rows are checked against the bound
 * propagated through exp: |dp| <= exp(2 e + 1e-6) - 1 + 1e-7 (p <= 1), e
 * being the largest error of the naive float32 LSE over the shape's rows
 * (float scores, max, logf of the sum of expf), 1e-7 the float rounding
 * of p; the row sums likewise (exp(2 e + 1e-6) - 1 + n 6e-8). The pooled maps
 * are attn_forward's float32 outputs against the naive float32 sums of the
 * naive float32 softmax rows (twice their error + 1e-6).
 */
#include "attnmap.h"
#include "synth_trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *fmt, long long a, long long b,
                  long long c, double x, double y) {
  if (ok) {
    passed++;
  } else {
    failed++;
    fprintf(stderr, "FAIL: ");
    fprintf(stderr, fmt, a, b, c, x, y);
    fprintf(stderr, "\n");
  }
}

/* Oracle row in double (p) and the naive float32 row (pf). */
static double oracle_row(const model_trace_layer *y, int64_t h, int64_t i,
                         double *p, float *pf) {
  const int64_t n = y->seq, nk = attnmap_keys(y), d = y->head_dim;
  const int64_t g = h / (y->heads_q / y->heads_kv);
  const int64_t last = y->causal ? i + nk - n : nk - 1;
  double m = -INFINITY;
  float mf = -INFINITY;
  for (int64_t j = 0; j <= last; j++) {
    const float *q = y->q + (i * y->heads_q + h) * d;
    const float *k = y->k + (j * y->heads_kv + g) * d;
    double s = 0.0;
    float sf = 0.0f;
    for (int64_t c = 0; c < d; c++) {
      s += (double)q[c] * k[c];
      sf += q[c] * k[c];
    }
    p[j] = s * (double)y->scale;
    pf[j] = sf * y->scale;
    m = fmax(m, p[j]);
    mf = fmaxf(mf, pf[j]);
  }
  double z = 0.0;
  float zf = 0.0f;
  for (int64_t j = 0; j <= last; j++) {
    z += exp(p[j] - m);
    zf += expf(pf[j] - mf);
  }
  for (int64_t j = 0; j <= last; j++) {
    p[j] = exp(p[j] - m) / z;
    pf[j] = expf(pf[j] - mf) / zf;
  }
  for (int64_t j = last + 1 > 0 ? last + 1 : 0; j < nk; j++) {
    p[j] = 0.0;
    pf[j] = 0.0f;
  }
  if (last < 0)
    return 0.0;                                        /* no key: no LSE */
  return fabs((double)(mf + logf(zf)) - (m + log(z))); /* naive LSE error */
}

/* Exact rows of every head of layer 0, and pooled maps for a few blocks. */
static void one_shape(int64_t n, int64_t nk, int64_t hq, int64_t hk, int64_t d,
                      int causal, float amp, uint64_t seed, double *worst) {
  model_trace t;
  if (synth_trace_qk(&t, 1, n, nk, hq, hk, d, causal, amp, seed, NULL, NULL) !=
      0) {
    check(0, "synth n=%lld hq=%lld d=%lld %g %g", n, hq, d, 0, 0);
    return;
  }
  const model_trace_layer *y = &t.layers[0];
  double *od = malloc((size_t)(hq * n * nk) * sizeof *od); /* (hq, n, nk) */
  float *of = malloc((size_t)(hq * n * nk) * sizeof *of);
  float *row = malloc((size_t)nk * sizeof *row);
  double err = 0, sum_err = 0, e_naive = 0;
  for (int64_t h = 0; h < hq; h++)
    for (int64_t i = 0; i < n; i++) {
      double *p = od + (h * n + i) * nk;
      float *pf = of + (h * n + i) * nk;
      e_naive = fmax(e_naive, oracle_row(y, h, i, p, pf));
      if (attnmap_row(y, h, i, row) != 0) {
        check(0, "attnmap_row n=%lld h=%lld i=%lld %g %g", n, h, i, 0, 0);
        continue;
      }
      double s = 0;
      for (int64_t j = 0; j < nk; j++) {
        err = fmax(err, fabs(row[j] - p[j]));
        s += row[j];
      }
      const int seen = !causal || i + nk - n >= 0; /* a key is visible */
      sum_err = fmax(sum_err, fabs(s - (seen ? 1.0 : 0.0)));
    }
  const double grow = expm1(2 * e_naive + 1e-6);
  const double ratio = err / (grow + 1e-7);
  check(ratio <= 1, "rows n=%lld hq=%lld d=%lld: error %.3g > %.3g", n, hq, d,
        err, grow + 1e-7);
  check(sum_err <= grow + (double)n * 6e-8,
        "row sums n=%lld hq=%lld d=%lld: |sum - 1| %.3g > %.3g", n, hq, d,
        sum_err, grow + (double)n * 6e-8);
  if (ratio > *worst)
    *worst = ratio;

  static const int64_t blocks[] = {1, 2, 3, 7, 16, 64};
  for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
    const int64_t bs = blocks[bi], nb = attnmap_blocks(n, bs);
    const int64_t nbk = attnmap_blocks(nk, bs);
    if (nb > 256 || nbk > 256 || (bs > 1 && bs >= 2 * n && bs >= 2 * nk))
      continue;
    float *m = malloc((size_t)(hq * nb * nbk) * sizeof *m);
    char msg[256] = "";
    if (attnmap_pooled(y, bs, 0, m, msg, sizeof msg) != 0) {
      fprintf(stderr, "%s\n", msg);
      check(0, "pooled n=%lld bs=%lld hq=%lld %g %g", n, bs, hq, 0, 0);
      free(m);
      continue;
    }
    if (bs == 1 && n <= ATTNMAP_EXACT_MAX && nk <= ATTNMAP_EXACT_MAX) {
      int same = 1; /* the exact rows themselves */
      for (int64_t h = 0; h < hq; h++)
        for (int64_t i = 0; i < n; i++) {
          attnmap_row(y, h, i, row);
          same &= memcmp(row, m + (h * n + i) * nk, (size_t)nk * 4) == 0;
        }
      check(same, "exact map n=%lld hq=%lld is the rows %lld %g %g", n, hq, 0,
            0, 0);
      free(m);
      continue;
    }
    double e = 0, ef = 0, se = 0;
    for (int64_t h = 0; h < hq; h++)
      for (int64_t a = 0; a < nb; a++) {
        const int64_t i0 = a * bs, i1 = i0 + bs < n ? i0 + bs : n;
        double rs = 0, want_sum = 0;
        for (int64_t b = 0; b < nbk; b++) {
          const int64_t j0 = b * bs, j1 = j0 + bs < nk ? j0 + bs : nk;
          double want = 0;
          float naive = 0;
          for (int64_t i = i0; i < i1; i++) {
            float rowf = 0;
            for (int64_t j = j0; j < j1; j++) {
              want += od[(h * n + i) * nk + j];
              rowf += of[(h * n + i) * nk + j];
            }
            naive += rowf;
          }
          want /= (double)(i1 - i0);
          naive /= (float)(i1 - i0);
          const float got = m[(h * nb + a) * nbk + b];
          e = fmax(e, fabs(got - want));
          ef = fmax(ef, fabs(naive - want));
          rs += got;
          want_sum += want;
        }
        se = fmax(se, fabs(rs - want_sum)); /* 1, less rows with no key */
      }
    check(e <= 2 * ef + 1e-6, "pooled n=%lld bs=%lld hq=%lld: err %.3g > %.3g",
          n, bs, hq, e, 2 * ef + 1e-6);
    /* a pooled row sums nb float outputs of the kernel, each within its
     * rule; 1e-5 covers nb <= 256 terms of relative error 2^-24 plus the
     * kernel's normalisation (measured: < 2e-6). */
    check(se <= 1e-5, "pooled sums n=%lld bs=%lld hq=%lld: %.3g %g", n, bs, hq,
          se, 0);
    free(m);
  }
  free(od);
  free(of);
  free(row);
  model_trace_free(&t);
}

static void shapes(void) {
  static const int64_t seqs[] = {1,  2,  3,  5,  13,  47,  48,  49,
                                 63, 64, 65, 97, 128, 129, 200, 257};
  static const int64_t heads[][2] = {{1, 1}, {2, 1}, {4, 2}, {9, 3}, {12, 12}};
  static const int64_t dims[] = {1, 7, 16, 64, 33};
  double worst = 0;
  int k = 0;
  for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++)
    for (int causal = 0; causal < 2; causal++, k++) {
      const int64_t *hh = heads[k % 5];
      const int64_t d = dims[(k / 2 + s) % 5];
      const float amp = (k % 3 == 2) ? 4.0f : 1.5f;
      one_shape(seqs[s], seqs[s], hh[0], hh[1], d, causal, amp, (uint64_t)k + 7,
                &worst);
    }
  /* cross-attention: seq_q != seq_k, either longer */
  static const int64_t qk[][2] = {{1, 5},    {5, 1},    {7, 13},   {13, 7},
                                  {48, 129}, {129, 48}, {100, 65}, {65, 150}};
  for (size_t s = 0; s < sizeof qk / sizeof qk[0]; s++)
    for (int causal = 0; causal < 2; causal++, k++) {
      const int64_t *hh = heads[k % 5];
      one_shape(qk[s][0], qk[s][1], hh[0], hh[1], dims[k % 5], causal, 2.0f,
                (uint64_t)k + 7, &worst);
    }
  printf("exact rows: worst error / allowed = %.3f\n", worst);
}

static void bad_arguments(void) {
  model_trace t;
  if (synth_trace(&t, 1, 4, 2, 1, 8, 1, 1.0f, 3, NULL) != 0) {
    check(0, "synth %lld %lld %lld %g %g", 0, 0, 0, 0, 0);
    return;
  }
  float row[4];
  model_trace_layer *y = &t.layers[0];
  check(attnmap_row(y, 2, 0, row) == -1, "head out of range %lld%lld%lld%g%g",
        0, 0, 0, 0, 0);
  check(attnmap_row(y, 0, 4, row) == -1, "row out of range %lld%lld%lld%g%g", 0,
        0, 0, 0, 0);
  check(attnmap_row(y, 0, 0, NULL) == -1, "NULL out %lld%lld%lld%g%g", 0, 0, 0,
        0, 0);
  char msg[128] = "";
  float m[4];
  check(attnmap_pooled(y, 0, 0, m, msg, sizeof msg) == -1 && msg[0],
        "block 0 refused %lld%lld%lld%g%g", 0, 0, 0, 0, 0);
  /* a row the trace says saw no key (lse -inf) is all zeros */
  y->lse[1] = -INFINITY;
  attnmap_row(y, 0, 1, row);
  check(row[0] == 0 && row[1] == 0 && row[2] == 0 && row[3] == 0,
        "lse -inf gives zeros %lld%lld%lld%g%g", 0, 0, 0, 0, 0);
  /* causal: keys after the query are exactly 0 */
  attnmap_row(y, 1, 2, row);
  check(row[3] == 0 && row[2] > 0, "causal zero %lld%lld%lld%g%g", 0, 0, 0, 0,
        0);
  model_trace_free(&t);
}

/* The view: exact below ATTNMAP_EXACT_MAX, pooled + zoom rows above. */
static void views(void) {
  static const int64_t lens[] = {11, ATTNMAP_EXACT_MAX, ATTNMAP_EXACT_MAX + 1,
                                 1000, 5000};
  for (size_t c = 0; c < sizeof lens / sizeof lens[0]; c++) {
    const int64_t n = lens[c];
    model_trace t;
    if (synth_trace(&t, 2, n, 4, 2, 8, (int)(c & 1), 2.0f, 11 + c, NULL)) {
      check(0, "synth view %lld %lld %lld %g %g", n, 0, 0, 0, 0);
      continue;
    }
    attnmap_view v;
    char msg[256] = "";
    const int64_t tok = n / 2;
    if (attnmap_view_build(&v, &t, 1, tok, 0, NULL, msg, sizeof msg) != 0) {
      fprintf(stderr, "%s\n", msg);
      check(0, "view n=%lld %lld %lld %g %g", n, 0, 0, 0, 0);
      model_trace_free(&t);
      continue;
    }
    const int exact = n <= ATTNMAP_EXACT_MAX;
    check(exact ? v.block == 1 && v.n_blocks == n && v.zoom == NULL
                : v.block > 1 && v.n_blocks <= ATTNMAP_BLOCKS_MAX &&
                      v.zoom != NULL && v.zoom_layer == 1 &&
                      v.zoom_rows <= ATTNMAP_ZOOM_ROWS && tok >= v.zoom_row0 &&
                      tok < v.zoom_row0 + v.zoom_rows,
          "view geometry n=%lld block=%lld nb=%lld %g %g", n, v.block,
          v.n_blocks, 0, 0);
    float *row = malloc((size_t)n * sizeof *row);
    double e = 0;
    if (exact) { /* maps are the rows of every layer and head */
      for (int64_t l = 0; l < 2; l++)
        for (int64_t h = 0; h < 4; h++)
          for (int64_t i = 0; i < n; i += 3) {
            attnmap_row(&t.layers[l], h, i, row);
            const float *m = attnmap_view_map(&v, l, h) + i * n;
            for (int64_t j = 0; j < n; j++)
              e = fmax(e, fabs(m[j] - row[j]));
          }
    } else { /* zoom rows are the exact rows of layer 1 */
      for (int64_t h = 0; h < 4; h++)
        for (int64_t r = 0; r < v.zoom_rows; r++) {
          attnmap_row(&t.layers[1], h, v.zoom_row0 + r, row);
          const float *z = v.zoom + (h * v.zoom_rows + r) * n;
          for (int64_t j = 0; j < n; j++)
            e = fmax(e, fabs(z[j] - row[j]));
        }
    }
    check(e == 0, "view n=%lld holds the exact rows %lld %lld: %g %g", n, 0, 0,
          e, 0);
    free(row);
    attnmap_view_free(&v);
    model_trace_free(&t);
  }
}

int main(void) {
  shapes();
  bad_arguments();
  views();
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
