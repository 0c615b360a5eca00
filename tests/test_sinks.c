/*
 * Attention sinks (attn_params.sinks, dsinks; 0.4): the checks the random
 * tests (test_forward, test_backward, test_cache draw sinks through
 * problem.h and the oracles) cannot make by themselves:
 *   - a sink is an extra key with score sinks[h] and value 0: the same call
 *     with that key appended (K row 0, a bias column holding the sink, V row
 *     0) gives the same O and LSE, on the tiled path and on the decode path,
 *     for every head ratio; a different code path, no oracle involved;
 *   - a row that sees no key: o = 0 and lse = sinks[h];
 *   - every sink -inf is bitwise the call without sinks (forward and
 *     backward); huge sinks give o = 0 and no NaN;
 *   - dsinks against central differences of the library's own forward;
 *   - bad input: NaN or +inf sinks, dsinks without sinks, dsinks or sinks
 *     overlapping an output.
 * Last line: "N passed, N failed".
 */
#include "attn.h"
#include "test_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long n_pass, n_fail;

typedef struct prob {
  int64_t b, hq, hk, sq, sk, d;
  float *q, *k, *v, *o, *lse, *sinks;
  float *k1, *v1, *bias1, *o1, *lse1; /* with the sink as an extra key */
} prob;

static void prob_init(prob *x, tc_rng *r, int64_t b, int64_t hq, int64_t hk,
                      int64_t sq, int64_t sk, int64_t d, double sink_mag) {
  memset(x, 0, sizeof *x);
  x->b = b, x->hq = hq, x->hk = hk, x->sq = sq, x->sk = sk, x->d = d;
  const size_t nq = (size_t)(b * sq * hq * d), nk = (size_t)(b * sk * hk * d);
  const size_t nk1 = (size_t)(b * (sk + 1) * hk * d);
  x->q = tc_alloc(nq * sizeof(float));
  x->k = tc_alloc(nk * sizeof(float));
  x->v = tc_alloc(nk * sizeof(float));
  x->o = tc_alloc(nq * sizeof(float));
  x->o1 = tc_alloc(nq * sizeof(float));
  x->lse = tc_alloc((size_t)(b * hq * sq) * sizeof(float));
  x->lse1 = tc_alloc((size_t)(b * hq * sq) * sizeof(float));
  x->sinks = tc_alloc((size_t)hq * sizeof(float));
  x->k1 = tc_alloc(nk1 * sizeof(float));
  x->v1 = tc_alloc(nk1 * sizeof(float));
  x->bias1 = tc_alloc((size_t)(hq * (sk + 1)) * sizeof(float));
  for (size_t i = 0; i < nq; i++)
    x->q[i] = (float)tc_normal(r);
  for (size_t i = 0; i < nk; i++) {
    x->k[i] = (float)tc_normal(r);
    x->v[i] = (float)tc_normal(r);
  }
  for (int64_t h = 0; h < hq; h++)
    x->sinks[h] = (float)(sink_mag * tc_normal(r));
  /* K1, V1: the keys, then one zero row per (batch, kv head) */
  memset(x->k1, 0, nk1 * sizeof(float));
  memset(x->v1, 0, nk1 * sizeof(float));
  for (int64_t bb = 0; bb < b; bb++)
    for (int64_t j = 0; j < sk; j++) {
      const size_t src = (size_t)(((bb * sk + j) * hk) * d);
      const size_t dst = (size_t)(((bb * (sk + 1) + j) * hk) * d);
      memcpy(x->k1 + dst, x->k + src, (size_t)(hk * d) * sizeof(float));
      memcpy(x->v1 + dst, x->v + src, (size_t)(hk * d) * sizeof(float));
    }
  for (int64_t h = 0; h < hq; h++)
    for (int64_t j = 0; j <= sk; j++)
      x->bias1[h * (sk + 1) + j] = j == sk ? x->sinks[h] : 0.0f;
}

static void prob_free(prob *x) {
  free(x->q), free(x->k), free(x->v), free(x->o), free(x->o1);
  free(x->lse), free(x->lse1), free(x->sinks), free(x->k1), free(x->v1);
  free(x->bias1);
}

static attn_params params(const prob *x, char *msg) {
  attn_params p;
  attn_params_init(&p);
  p.q = attn_tensor_bshd(x->q, ATTN_DTYPE_F32, x->b, x->sq, x->hq, x->d);
  p.k = attn_tensor_bshd(x->k, ATTN_DTYPE_F32, x->b, x->sk, x->hk, x->d);
  p.v = attn_tensor_bshd(x->v, ATTN_DTYPE_F32, x->b, x->sk, x->hk, x->d);
  p.o = attn_tensor_bshd(x->o, ATTN_DTYPE_F32, x->b, x->sq, x->hq, x->d);
  p.lse = x->lse;
  p.sinks = x->sinks;
  p.error_message = msg;
  p.error_message_size = 256;
  return p;
}

static double max_diff(const float *a, const float *b, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    const double t = fabs((double)a[i] - (double)b[i]);
    e = t > e || t != t ? t : e;
  }
  return e;
}

/* The sink as an extra key, on the path attn_forward picks for sq rows
 * (decode for sq <= ATTN_DECODE_MAX_ROWS without bias; the extra-key call
 * has a bias tensor, so it always runs the tiled kernel). */
static void extra_key(tc_rng *r, int64_t b, int64_t hq, int64_t hk, int64_t sq,
                      int64_t sk, int64_t d, double mag) {
  prob x;
  char msg[256] = "";
  prob_init(&x, r, b, hq, hk, sq, sk, d, mag);
  attn_params p = params(&x, msg);
  attn_status st = attn_forward(NULL, &p);
  CHECK(st == ATTN_OK, "forward with sinks: %s (%s)", attn_strerror(st), msg);
  attn_params p1 = p;
  p1.sinks = NULL;
  p1.k = attn_tensor_bshd(x.k1, ATTN_DTYPE_F32, b, sk + 1, hk, d);
  p1.v = attn_tensor_bshd(x.v1, ATTN_DTYPE_F32, b, sk + 1, hk, d);
  p1.bias = attn_tensor_contiguous(x.bias1, ATTN_DTYPE_F32, 1, hq, 1, sk + 1);
  p1.o.data = x.o1;
  p1.lse = x.lse1;
  st = attn_forward(NULL, &p1);
  CHECK(st == ATTN_OK, "forward with the extra key: %s (%s)", attn_strerror(st),
        msg);
  const size_t no = (size_t)(b * sq * hq * d), nl = (size_t)(b * hq * sq);
  /* Two f32 computations of the same sums in different orders: a few
   * units of rounding of the largest terms. */
  double omax = 0;
  for (size_t i = 0; i < no; i++)
    omax = fmax(omax, fabs(x.o1[i]));
  const double eo = max_diff(x.o, x.o1, no), el = max_diff(x.lse, x.lse1, nl);
  double lmax = 0;
  for (size_t i = 0; i < nl; i++)
    lmax = fmax(lmax, fabs(x.lse1[i]));
  CHECK(eo <= 2e-5 * (1 + omax) && el <= 2e-5 * (1 + lmax),
        "sink != extra key (b %lld hq %lld hk %lld sq %lld sk %lld d %lld "
        "mag %g): o err %.3g, lse err %.3g",
        (long long)b, (long long)hq, (long long)hk, (long long)sq,
        (long long)sk, (long long)d, mag, eo, el);
  prob_free(&x);
}

/* Rows that see no key (kv_lens 0 for one sequence, and a window that
 * excludes every key): o = 0, lse = sink; -inf sinks: lse -inf. */
static void no_key_rows(tc_rng *r) {
  for (int sq = 1; sq <= 70; sq += 69) { /* decode and tiled paths */
    prob x;
    char msg[256] = "";
    prob_init(&x, r, 2, 4, 2, sq, 33, 16, 1.0);
    x.sinks[3] = -INFINITY;
    attn_params p = params(&x, msg);
    int32_t kvl[2] = {0, 33};
    p.kv_lens = kvl;
    attn_status st = attn_forward(NULL, &p);
    CHECK(st == ATTN_OK, "forward: %s (%s)", attn_strerror(st), msg);
    int ok = 1;
    for (int64_t i = 0; i < sq; i++)
      for (int64_t h = 0; h < 4; h++) {
        const float want = h == 3 ? -INFINITY : x.sinks[h];
        ok &= x.lse[(0 * 4 + h) * sq + i] == want;
        for (int64_t c = 0; c < 16; c++)
          ok &= x.o[((0 * sq + i) * 4 + h) * 16 + c] == 0.0f;
        ok &= isfinite(x.lse[(1 * 4 + h) * sq + i]);
      }
    CHECK(ok, "rows without keys (sq %d): o must be 0 and lse the sink", sq);
    prob_free(&x);
  }
}

/* Every sink -inf: bitwise the call without sinks; huge sinks: o = 0. */
static void neutral_and_huge(tc_rng *r) {
  for (int sq = 1; sq <= 130; sq += 129) {
    prob x;
    char msg[256] = "";
    prob_init(&x, r, 1, 4, 1, sq, 77, 32, 1.0);
    attn_params p = params(&x, msg);
    p.sinks = NULL;
    attn_status st = attn_forward(NULL, &p);
    CHECK(st == ATTN_OK, "forward: %s", attn_strerror(st));
    const size_t no = (size_t)(sq * 4 * 32), nl = (size_t)(4 * sq);
    memcpy(x.o1, x.o, no * sizeof(float));
    memcpy(x.lse1, x.lse, nl * sizeof(float));
    for (int h = 0; h < 4; h++)
      x.sinks[h] = -INFINITY;
    p.sinks = x.sinks;
    st = attn_forward(NULL, &p);
    CHECK(st == ATTN_OK && !memcmp(x.o, x.o1, no * sizeof(float)) &&
              !memcmp(x.lse, x.lse1, nl * sizeof(float)),
          "sinks all -inf differ from no sinks (sq %d)", sq);
    for (int h = 0; h < 4; h++)
      x.sinks[h] = h % 2 ? 1e30f : 3e38f;
    st = attn_forward(NULL, &p);
    int ok = st == ATTN_OK;
    for (size_t i = 0; i < no; i++)
      ok &= fabsf(x.o[i]) < 1e-30f;
    for (size_t i = 0; i < nl; i++)
      ok &= x.lse[i] == x.sinks[(i / (size_t)sq) % 4];
    CHECK(ok, "huge sinks: o must vanish, lse be the sink (sq %d)", sq);
    prob_free(&x);
  }
}

/* dsinks against central differences of L = sum(dO * O) through the
 * library's forward, in f32 (step 2^-6 on logits of size ~1). */
static void dsinks_fd(tc_rng *r) {
  for (int sq = 1; sq <= 67; sq += 66) {
    prob x;
    char msg[256] = "";
    const int64_t hq = 4, hk = 2, sk = 45, d = 16;
    prob_init(&x, r, 2, hq, hk, sq, sk, d, 1.0);
    attn_params p = params(&x, msg);
    p.causal = ATTN_CAUSAL_BOTTOM_RIGHT;
    const size_t no = (size_t)(2 * sq * hq * d), nk = (size_t)(2 * sk * hk * d);
    float *dout = tc_alloc(no * sizeof(float)), *dq = tc_alloc(no * 4);
    float *dk = tc_alloc(nk * 4), *dv = tc_alloc(nk * 4);
    float dsinks[4];
    for (size_t i = 0; i < no; i++)
      dout[i] = (float)tc_normal(r);
    attn_status st = attn_forward(NULL, &p);
    p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, 2, sq, hq, d);
    p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, 2, sq, hq, d);
    p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, 2, sk, hk, d);
    p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, 2, sk, hk, d);
    p.dsinks = dsinks;
    st = attn_backward(NULL, &p);
    CHECK(st == ATTN_OK, "backward: %s (%s)", attn_strerror(st), msg);
    double emax = 0, gmax = 0;
    for (int64_t h = 0; h < hq; h++) {
      const float s0 = x.sinks[h], step = 1.0f / 64;
      double l[2];
      for (int k = 0; k < 2; k++) {
        x.sinks[h] = s0 + (k ? -step : step);
        attn_forward(NULL, &p);
        double acc = 0;
        for (size_t i = 0; i < no; i++)
          acc += (double)dout[i] * (double)x.o[i];
        l[k] = acc;
      }
      x.sinks[h] = s0;
      const double fd = (l[0] - l[1]) / (2.0 * step);
      emax = fmax(emax, fabs(fd - dsinks[h]));
      gmax = fmax(gmax, fabs(dsinks[h]));
    }
    /* central differences: truncation ~ step^2 |L'''| plus f32 rounding
     * of L (~1e-6 |L|) over 2 step */
    CHECK(emax <= 2e-3 * (1 + gmax),
          "dsinks vs finite differences (sq %d): "
          "err %.3g of max %.3g",
          sq, emax, gmax);
    /* sinks all -inf: dsinks 0 and dq, dk, dv bitwise as without sinks */
    for (int h = 0; h < 4; h++)
      x.sinks[h] = -INFINITY;
    attn_forward(NULL, &p);
    float *dq0 = tc_alloc(no * 4);
    attn_backward(NULL, &p);
    memcpy(dq0, dq, no * 4);
    int zero = 1;
    for (int h = 0; h < 4; h++)
      zero &= dsinks[h] == 0.0f;
    attn_params q = p;
    q.sinks = NULL;
    q.dsinks = NULL;
    st = attn_backward(NULL, &q);
    CHECK(st == ATTN_OK && zero && !memcmp(dq0, dq, no * 4),
          "-inf sinks: dsinks must be 0 and dq as without sinks");
    free(dq0), free(dout), free(dq), free(dk), free(dv);
    prob_free(&x);
  }
}

static void bad_input(tc_rng *r) {
  prob x;
  char msg[256] = "";
  prob_init(&x, r, 1, 2, 1, 3, 5, 8, 1.0);
  attn_params p = params(&x, msg);
  x.sinks[1] = NAN;
  attn_status st = attn_forward(NULL, &p);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT && strstr(msg, "sinks[1]"),
        "NaN sink: %s (%s)", attn_strerror(st), msg);
  x.sinks[1] = INFINITY;
  st = attn_forward(NULL, &p);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "+inf sink: %s", attn_strerror(st));
  x.sinks[1] = 0.5f;
  /* o overlapping sinks */
  attn_params po = p;
  po.sinks = x.o;
  st = attn_forward(NULL, &po);
  CHECK(st == ATTN_ERR_OVERLAP, "sinks inside o: %s (%s)", attn_strerror(st),
        msg);
  st = attn_forward(NULL, &p);
  CHECK(st == ATTN_OK, "forward: %s (%s)", attn_strerror(st), msg);
  float dout[48], dq[48], dk[40], dv[40], ds[2];
  for (int i = 0; i < 48; i++)
    dout[i] = 1.0f;
  p.dout = attn_tensor_bshd(dout, ATTN_DTYPE_F32, 1, 3, 2, 8);
  p.dq = attn_tensor_bshd(dq, ATTN_DTYPE_F32, 1, 3, 2, 8);
  p.dk = attn_tensor_bshd(dk, ATTN_DTYPE_F32, 1, 5, 1, 8);
  p.dv = attn_tensor_bshd(dv, ATTN_DTYPE_F32, 1, 5, 1, 8);
  attn_params pb = p;
  pb.sinks = NULL;
  pb.dsinks = ds;
  st = attn_backward(NULL, &pb);
  CHECK(st == ATTN_ERR_INVALID_ARGUMENT, "dsinks without sinks: %s",
        attn_strerror(st));
  pb = p;
  pb.dsinks = dq + 4;
  st = attn_backward(NULL, &pb);
  CHECK(st == ATTN_ERR_OVERLAP, "dsinks inside dq: %s (%s)", attn_strerror(st),
        msg);
  pb.dsinks = x.sinks;
  st = attn_backward(NULL, &pb);
  CHECK(st == ATTN_ERR_OVERLAP, "dsinks on sinks: %s (%s)", attn_strerror(st),
        msg);
  pb.dsinks = ds;
  st = attn_backward(NULL, &pb);
  CHECK(st == ATTN_OK, "backward: %s (%s)", attn_strerror(st), msg);
  prob_free(&x);
}

int main(void) {
  tc_rng r = {0x51A45ull};
  static const int64_t heads[][2] = {{1, 1}, {4, 1}, {8, 2}, {6, 6}};
  static const int64_t sqs[] = {1, 2, 17, 48, 49, 64, 65};
  static const int64_t sks[] = {1, 7, 63, 64, 65, 511, 512, 513, 1031};
  static const double mags[] = {0.5, 3.0, 30.0};
  int n = 0;
  for (int h = 0; h < 4; h++)
    for (int a = 0; a < 7; a++)
      for (int b = 0; b < 9; b++, n++) {
        if (sqs[a] * sks[b] > 40000)
          continue;
        extra_key(&r, 1 + n % 2, heads[h][0], heads[h][1], sqs[a], sks[b],
                  n % 3 ? 64 : 40, mags[n % 3]);
      }
  no_key_rows(&r);
  neutral_and_huge(&r);
  dsinks_fd(&r);
  bad_input(&r);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail != 0;
}
