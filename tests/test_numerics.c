/*
 * test_numerics (test "numerics", issue 6): numerical edge cases of the
 * forward and the backward, on every ISA the CPU supports (p.isa set).
 *
 *   test_numerics [huge] [nonfinite] [accuracy]     (no argument: all)
 *
 * huge       Huge finite logits: scores of magnitude 6e9, 1e20, 7.5e37 and
 *            3e38 (q = +-A in one dimension, k in [-1, 1]; and through the
 *            bias). Softmax rows that saturate must come out exactly: one-hot,
 *            an exact two-way split when two keys tie, the mean when every
 *            visible key ties; O and LSE finite and equal to a double
 *            oracle (never o = 0, lse = -inf or NaN). Backward (fed the
 *            oracle's O and LSE rounded to f32, so that it is judged on its
 *            own): finite, and on rows that saturate one-hot (dS = 0) dQ and
 *            their share of dK zero, compared with the double oracle relative
 *            to the natural magnitude scale*|q|*|dO|*|V|. (Ties cannot be
 *            exact in a backward that reads an f32 LSE: there only finiteness
 *            is checked. With scores near 3e38 the true dK exceeds the f32
 *            range: there dK is not checked.)
 * nonfinite  The rule: -inf in the bias masks; any other non-finite value a
 *            row can see (NaN or +-inf in its Q row, in a K row it sees; NaN
 *            or +inf in a bias element it sees) makes that row's O and LSE
 *            NaN; a non-finite V element propagates through P.V (that column
 *            of the rows that see the key is not finite, LSE unchanged). Rows
 *            that cannot see the bad value (other batches, heads, rows masked
 *            by causal, window, kv_lens, the mask tensor) are bitwise equal to
 *            the run without it; keys beyond kv_lens may hold NaN and are
 *            never read. Backward: dQ of an affected row NaN (not finite for a
 *            bad V), dQ of the others bitwise equal to the clean run, dK/dV of
 *            keys an affected row sees not silently finite; and (checks
 *            labelled "extra") dK/dV of keys no affected row sees bitwise
 *            equal. The documented exception (docs/decisions.md,
 *            "Numerics"): inside a (query tile, key tile) block with a
 *            visible element, a bad V, K, Q or dO of a masked element may
 *            reach the block's other rows and keys through 0 * x (a masked
 *            P is an exact 0 inside the same matrix products); outside
 *            such blocks the bitwise checks hold.
 * accuracy   FlashAttention's rule err <= 2 * err(f32 peer) + 1e-6 against a
 *            double oracle, err = max |x - oracle|. The peer computes S = QK^T
 *            in f32, a stable softmax in f32 and sums P.V over keys in blocks
 *            of 512 (each block summed in f32, the blocks added in f32), as
 *            PyTorch's CPU SDPA does. q, k = 0.1 N(0,1), v = 1 + 0.1 N(0,1),
 *            d 64, one head: 4096 keys x 64 query rows, and 1,048,576 keys x 4
 *            rows (262,144 with ATTN_TEST_QUICK=1). Backward: multi-query
 *            attention (1 kv head, 32 query heads, seq 2048; 8 heads, seq 512
 *            with ATTN_TEST_QUICK=1), dO = 1 + 0.1 N(0,1), dK and dV against
 *            the double oracle; the peer sums over the query rows of all
 *            heads in blocks of 512.
 *
 * Failures print one line each (at most ATTN_NUMERICS_MAX_FAILS, default 40,
 * per section and ISA). Last lines: a table of checks and failures per
 * section and ISA, then "N passed, N failed".
 */
#define _POSIX_C_SOURCE 200809L

#include <attn.h>

#include "test_common.h"

#include <pthread.h>

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* Tally per section and ISA                                              */
/* ---------------------------------------------------------------------- */
enum {
  SEC_HUGE_FWD,
  SEC_HUGE_BWD,
  SEC_NF_FWD,
  SEC_NF_BWD,
  SEC_NF_EXTRA,
  SEC_ACC_FWD,
  SEC_ACC_BWD,
  SEC_COUNT
};
static const char *const sec_name[SEC_COUNT] = {
    "huge forward",       "huge backward",   "nonfinite forward",
    "nonfinite backward", "nonfinite extra", "accuracy forward",
    "accuracy backward"};
static long tally_checks[SEC_COUNT][4], tally_fails[SEC_COUNT][4];
static long n_pass, n_fail;

static void check(int sec, attn_isa isa, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void check(int sec, attn_isa isa, int ok, const char *fmt, ...) {
  tally_checks[sec][isa]++;
  if (ok) {
    n_pass++;
    return;
  }
  n_fail++;
  tally_fails[sec][isa]++;
  const long cap = (long)tc_env_ll("ATTN_NUMERICS_MAX_FAILS", 40);
  if (tally_fails[sec][isa] > cap) {
    if (tally_fails[sec][isa] == cap + 1)
      printf("FAIL: [%s, %s] more failures not shown\n", sec_name[sec],
             attn_isa_name(isa));
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  printf("FAIL: [%s, %s] ", sec_name[sec], attn_isa_name(isa));
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
}

/* ---------------------------------------------------------------------- */
/* A problem: contiguous [b, s, h, d] f32 tensors, full-shape bias/mask    */
/* ---------------------------------------------------------------------- */
typedef struct prob {
  int64_t b, sq, sk, hq, hk, d, dv;
  float scale; /* 0: 1/sqrt(d) */
  attn_causal causal;
  int64_t wl, wr;
  float *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dvv;
  float *bias;         /* NULL or [b, hq, sq, sk] */
  unsigned char *mask; /* NULL or [b, hq, sq, sk] */
  int32_t *kv_lens;    /* NULL or kv_store */
  int32_t kv_store[8];
  char why[256];
} prob;

static int64_t n_q(const prob *P) { return P->b * P->sq * P->hq * P->d; }
static int64_t n_k(const prob *P) { return P->b * P->sk * P->hk * P->d; }
static int64_t n_v(const prob *P) { return P->b * P->sk * P->hk * P->dv; }
static int64_t n_o(const prob *P) { return P->b * P->sq * P->hq * P->dv; }
static int64_t n_l(const prob *P) { return P->b * P->hq * P->sq; }
static int64_t n_s(const prob *P) { return P->b * P->hq * P->sq * P->sk; }
static int64_t qi(const prob *P, int64_t b, int64_t i, int64_t h) {
  return ((b * P->sq + i) * P->hq + h) * P->d;
}
static int64_t ki(const prob *P, int64_t b, int64_t j, int64_t g) {
  return ((b * P->sk + j) * P->hk + g) * P->d;
}
static int64_t vi(const prob *P, int64_t b, int64_t j, int64_t g) {
  return ((b * P->sk + j) * P->hk + g) * P->dv;
}
static int64_t oi(const prob *P, int64_t b, int64_t i, int64_t h) {
  return ((b * P->sq + i) * P->hq + h) * P->dv;
}
static int64_t li(const prob *P, int64_t b, int64_t h, int64_t i) {
  return (b * P->hq + h) * P->sq + i;
}
static int64_t si(const prob *P, int64_t b, int64_t h, int64_t i, int64_t j) {
  return ((b * P->hq + h) * P->sq + i) * P->sk + j;
}
static double eff_scale(const prob *P) {
  return P->scale != 0.0f ? (double)P->scale : 1.0 / sqrt((double)P->d);
}

static float *falloc(int64_t n) {
  return (float *)tc_alloc((size_t)n * sizeof(float));
}

static prob *prob_new(int64_t b, int64_t sq, int64_t sk, int64_t hq, int64_t hk,
                      int64_t d, int64_t dv) {
  prob *P = (prob *)tc_alloc(sizeof *P);
  memset(P, 0, sizeof *P);
  P->b = b, P->sq = sq, P->sk = sk, P->hq = hq, P->hk = hk, P->d = d;
  P->dv = dv;
  P->wl = P->wr = -1;
  P->q = falloc(n_q(P));
  P->k = falloc(n_k(P));
  P->v = falloc(n_v(P));
  P->o = falloc(n_o(P));
  P->lse = falloc(n_l(P));
  P->dout = falloc(n_o(P));
  P->dq = falloc(n_q(P));
  P->dk = falloc(n_k(P));
  P->dvv = falloc(n_v(P));
  return P;
}

static void prob_free(prob *P) {
  if (!P)
    return;
  free(P->q), free(P->k), free(P->v), free(P->o), free(P->lse);
  free(P->dout), free(P->dq), free(P->dk), free(P->dvv);
  free(P->bias), free(P->mask);
  free(P);
}

static void prob_params(prob *P, attn_params *p, attn_isa isa) {
  attn_params_init(p);
  p->q = attn_tensor_bshd(P->q, ATTN_DTYPE_F32, P->b, P->sq, P->hq, P->d);
  p->k = attn_tensor_bshd(P->k, ATTN_DTYPE_F32, P->b, P->sk, P->hk, P->d);
  p->v = attn_tensor_bshd(P->v, ATTN_DTYPE_F32, P->b, P->sk, P->hk, P->dv);
  p->o = attn_tensor_bshd(P->o, ATTN_DTYPE_F32, P->b, P->sq, P->hq, P->dv);
  p->lse = P->lse;
  p->scale = P->scale;
  p->causal = P->causal;
  p->window_left = P->wl;
  p->window_right = P->wr;
  if (P->bias)
    p->bias = attn_tensor_contiguous(P->bias, ATTN_DTYPE_F32, P->b, P->hq,
                                     P->sq, P->sk);
  if (P->mask)
    p->mask = attn_tensor_contiguous(P->mask, ATTN_DTYPE_BOOL, P->b, P->hq,
                                     P->sq, P->sk);
  p->kv_lens = P->kv_lens;
  p->isa = isa;
  p->dout =
      attn_tensor_bshd(P->dout, ATTN_DTYPE_F32, P->b, P->sq, P->hq, P->dv);
  p->dq = attn_tensor_bshd(P->dq, ATTN_DTYPE_F32, P->b, P->sq, P->hq, P->d);
  p->dk = attn_tensor_bshd(P->dk, ATTN_DTYPE_F32, P->b, P->sk, P->hk, P->d);
  p->dv = attn_tensor_bshd(P->dvv, ATTN_DTYPE_F32, P->b, P->sk, P->hk, P->dv);
  p->error_message = P->why;
  p->error_message_size = sizeof P->why;
}

static void fill_const(float *x, int64_t n, float val) {
  for (int64_t i = 0; i < n; i++)
    x[i] = val;
}

static attn_status run_fwd(prob *P, attn_isa isa) {
  attn_params p;
  prob_params(P, &p, isa);
  fill_const(P->o, n_o(P), 777.0f);
  fill_const(P->lse, n_l(P), 777.0f);
  P->why[0] = '\0';
  return attn_forward(NULL, &p);
}

static attn_status run_bwd(prob *P, attn_isa isa) {
  attn_params p;
  prob_params(P, &p, isa);
  fill_const(P->dq, n_q(P), 777.0f);
  fill_const(P->dk, n_k(P), 777.0f);
  fill_const(P->dvv, n_v(P), 777.0f);
  P->why[0] = '\0';
  return attn_backward(NULL, &p);
}

/* Effective key count of batch b. */
static int64_t sk_eff(const prob *P, int64_t b) {
  return P->kv_lens ? P->kv_lens[b] : P->sk;
}

/* Whether query row (b, h, i) may see key j: kv_lens, causal, window, mask
 * tensor and -inf bias (attn.h's contract). */
static int visible(const prob *P, int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t sk = sk_eff(P, b);
  if (j >= sk)
    return 0;
  const int64_t off = P->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : sk - P->sq;
  if (P->causal != ATTN_CAUSAL_NONE && j > i + off)
    return 0;
  if (P->wl >= 0 && j < i + off - P->wl)
    return 0;
  if (P->wr >= 0 && j > i + off + P->wr)
    return 0;
  if (P->mask && !P->mask[si(P, b, h, i, j)])
    return 0;
  if (P->bias && P->bias[si(P, b, h, i, j)] == -INFINITY)
    return 0;
  return 1;
}

/* The documented exception (docs/decisions.md, "Numerics"): inside a block
 * of one query tile (ATTN_TILE_Q rows) and one key tile (ATTN_TILE_K keys)
 * that has a visible element, a non-finite value of a masked element's
 * operand (V or K of a masked key, Q or dO of a masked row) may reach the
 * others through 0 * x. Outside such blocks nothing may change. */
static int block_live(const prob *P, int64_t b, int64_t h, int64_t i,
                      int64_t j) {
  const int64_t i0 = i / ATTN_TILE_Q * ATTN_TILE_Q;
  const int64_t j0 = j / ATTN_TILE_K * ATTN_TILE_K;
  for (int64_t ii = i0; ii < i0 + ATTN_TILE_Q && ii < P->sq; ii++)
    for (int64_t jj = j0; jj < j0 + ATTN_TILE_K && jj < P->sk; jj++)
      if (visible(P, b, h, ii, jj))
        return 1;
  return 0;
}

static int row_sees_any(const prob *P, int64_t b, int64_t h, int64_t i) {
  for (int64_t j = 0; j < P->sk; j++)
    if (visible(P, b, h, i, j))
      return 1;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Double-precision oracle (finite inputs)                                */
/* ---------------------------------------------------------------------- */
typedef struct refres {
  double *o, *lse, *dq, *dk, *dv; /* layouts of prob's tensors */
} refres;

static void ref_free(refres *r) {
  free(r->o), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
  memset(r, 0, sizeof *r);
}

static double *dalloc0(int64_t n) {
  double *x = (double *)tc_alloc((size_t)n * sizeof(double));
  memset(x, 0, (size_t)n * sizeof(double));
  return x;
}

/* Dot products: four independent partial sums (in double the order does
 * not matter; it lets the loop run at the speed of the hardware). */
static double dot_fd(const float *a, const float *b, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 4 <= n; c += 4)
    for (int u = 0; u < 4; u++)
      s[u] += (double)a[c + u] * (double)b[c + u];
  for (; c < n; c++)
    s[0] += (double)a[c] * (double)b[c];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

static double dot_fdd(const float *a, const double *b, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 4 <= n; c += 4)
    for (int u = 0; u < 4; u++)
      s[u] += (double)a[c + u] * b[c + u];
  for (; c < n; c++)
    s[0] += (double)a[c] * b[c];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Forward (and, with bwd, the analytic gradients of L = sum(dout * O)),
 * straight from attn.h's formulas, every quantity in double, for the rows of
 * the (batch, head) pairs bh0 .. bh1-1; dK and dV are added into dk_acc,
 * dv_acc (so that parts can run at once). */
static void ref_rows(const prob *P, refres *r, int bwd, int64_t bh0,
                     int64_t bh1, double *dk_acc, double *dv_acc) {
  const int64_t d = P->d, dv = P->dv, group = P->hq / P->hk;
  const double scale = eff_scale(P);
  double *s = dalloc0(P->sk + 1), *pr = dalloc0(P->sk + 1);
  double *acc = dalloc0(dv), *dqa = dalloc0(d);
  for (int64_t bh = bh0; bh < bh1; bh++) {
    const int64_t b = bh / P->hq, h = bh % P->hq;
    const int64_t g = h / group;
    for (int64_t i = 0; i < P->sq; i++) {
      const float *qr = P->q + qi(P, b, i, h);
      double m = -INFINITY;
      for (int64_t j = 0; j < P->sk; j++) {
        s[j] = -INFINITY;
        if (!visible(P, b, h, i, j))
          continue;
        double x = dot_fd(qr, P->k + ki(P, b, j, g), d) * scale;
        if (P->bias)
          x += (double)P->bias[si(P, b, h, i, j)];
        s[j] = x;
        if (x > m)
          m = x;
      }
      if (m == -INFINITY) {
        r->lse[li(P, b, h, i)] = -INFINITY;
        continue;
      }
      double l = 0;
      for (int64_t j = 0; j < P->sk; j++) {
        pr[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - m);
        l += pr[j];
      }
      for (int64_t c = 0; c < dv; c++)
        acc[c] = 0;
      for (int64_t j = 0; j < P->sk; j++) {
        if (pr[j] == 0.0)
          continue;
        pr[j] /= l;
        const float *vr = P->v + vi(P, b, j, g);
        for (int64_t c = 0; c < dv; c++)
          acc[c] += pr[j] * (double)vr[c];
      }
      double *orow = r->o + oi(P, b, i, h);
      for (int64_t c = 0; c < dv; c++)
        orow[c] = acc[c];
      r->lse[li(P, b, h, i)] = m + log(l);
      if (!bwd)
        continue;
      const float *dor = P->dout + oi(P, b, i, h);
      const double D = dot_fdd(dor, orow, dv);
      for (int64_t c = 0; c < d; c++)
        dqa[c] = 0;
      for (int64_t j = 0; j < P->sk; j++) {
        if (pr[j] == 0.0)
          continue;
        const float *vr = P->v + vi(P, b, j, g);
        const float *kr = P->k + ki(P, b, j, g);
        const double dp = dot_fd(dor, vr, dv);
        const double ds = pr[j] * (dp - D) * scale;
        double *dkr = dk_acc + ki(P, b, j, g);
        double *dvr = dv_acc + vi(P, b, j, g);
        for (int64_t c = 0; c < d; c++) {
          dqa[c] += ds * (double)kr[c];
          dkr[c] += ds * (double)qr[c];
        }
        for (int64_t c = 0; c < dv; c++)
          dvr[c] += pr[j] * (double)dor[c];
      }
      double *dqr = r->dq + qi(P, b, i, h);
      for (int64_t c = 0; c < d; c++)
        dqr[c] = dqa[c];
    }
  }
  free(s), free(pr), free(acc), free(dqa);
}

static void ref_alloc(const prob *P, refres *r, int bwd) {
  memset(r, 0, sizeof *r);
  r->o = dalloc0(n_o(P));
  r->lse = dalloc0(n_l(P));
  if (bwd) {
    r->dq = dalloc0(n_q(P));
    r->dk = dalloc0(n_k(P));
    r->dv = dalloc0(n_v(P));
  }
}

static void ref_compute(const prob *P, refres *r, int bwd) {
  ref_alloc(P, r, bwd);
  ref_rows(P, r, bwd, 0, P->b * P->hq, r->dk, r->dv);
}

static double max_abs_f(const float *x, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    if (fabs((double)x[i]) > m)
      m = fabs((double)x[i]);
  return m;
}

static int all_finite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i]))
      return 0;
  return 1;
}

static int bits_equal(const float *a, const float *b, int64_t n) {
  return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

static const attn_isa all_isas[3] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                     ATTN_ISA_AVX512};

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

static void huge_check(const huge_cfg *cfg, int onehot, attn_causal causal,
                       int kvl, uint64_t seed) {
  prob *P = huge_build(cfg, onehot, causal, kvl, seed);
  refres r;
  ref_compute(P, &r, 1);
  const double maxv = max_abs_f(P->v, n_v(P));
  const double maxq = max_abs_f(P->q, n_q(P));
  const double maxk = max_abs_f(P->k, n_k(P));
  const double maxdo = max_abs_f(P->dout, n_o(P));
  const double scale = eff_scale(P);
  const double rootdv = sqrt((double)P->dv);
  /* natural magnitudes: |dS| <= 2 |dO| |V| sqrt(dv) per key */
  const double nat_dq = scale * maxk * 2 * maxdo * maxv * rootdv;
  const double nat_dk = scale * maxq * 2 * maxdo * maxv * rootdv;
  const int dk_in_range = cfg->a * scale * (cfg->via_bias ? 0.0 : 1.0) < 1e30;
  char what[160];
  snprintf(what, sizeof what, "%s A=%.3g scale=%g %s causal=%s%s",
           cfg->via_bias ? "bias" : "q*k", cfg->a, scale,
           onehot ? "one-hot" : "ties",
           causal == ATTN_CAUSAL_NONE ? "none" : "bottom-right",
           kvl ? " kv_lens" : "");
  unsigned char *sat = (unsigned char *)tc_alloc((size_t)n_l(P));
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        sat[li(P, b, h, i)] = (unsigned char)row_onehot(P, &r, b, h, i);

  for (int ii = 0; ii < 3; ii++) {
    const attn_isa isa = all_isas[ii];
    if (!attn_isa_supported(isa))
      continue;
    attn_status st = run_fwd(P, isa);
    check(SEC_HUGE_FWD, isa, st == ATTN_OK, "%s: forward status %d (%s)", what,
          (int)st, P->why);
    if (st != ATTN_OK)
      continue;
    /* forward: every row against the oracle */
    int64_t bad_o = 0, bad_l = 0, first_o = -1, first_l = -1;
    double worst_o = 0, worst_l = 0;
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t h = 0; h < P->hq; h++)
        for (int64_t i = 0; i < P->sq; i++) {
          const int64_t L = li(P, b, h, i);
          const double want_l = r.lse[L], got_l = P->lse[L];
          int ok_l;
          if (want_l == -INFINITY)
            ok_l = got_l == -INFINITY;
          else
            ok_l = isfinite(got_l) &&
                   fabs(got_l - want_l) <= 1e-6 * fabs(want_l) + 1e-4;
          if (!ok_l) {
            if (bad_l++ == 0)
              first_l = L;
          }
          if (isfinite(want_l) && fabs(got_l - want_l) > worst_l)
            worst_l = fabs(got_l - want_l);
          const int64_t O = oi(P, b, i, h);
          int ok_o = 1;
          for (int64_t c = 0; c < P->dv; c++) {
            const double e = fabs((double)P->o[O + c] - r.o[O + c]);
            if (!isfinite(P->o[O + c]) || e > 1e-4 * maxv)
              ok_o = 0;
            if (isfinite(e) && e > worst_o)
              worst_o = e;
          }
          if (!ok_o && bad_o++ == 0)
            first_o = O;
        }
    if (bad_o) {
      const int64_t row = first_o / P->dv;
      check(SEC_HUGE_FWD, isa, 0,
            "%s: o wrong on %lld rows; first (b %lld, i %lld, h %lld): o[0] "
            "= %.9g, want %.9g (lse %.9g, want %.9g)",
            what, (long long)bad_o, (long long)(row / (P->sq * P->hq)),
            (long long)(row / P->hq % P->sq), (long long)(row % P->hq),
            (double)P->o[first_o], r.o[first_o],
            (double)P->lse[li(P, row / (P->sq * P->hq), row % P->hq,
                              row / P->hq % P->sq)],
            r.lse[li(P, row / (P->sq * P->hq), row % P->hq,
                     row / P->hq % P->sq)]);
    } else {
      check(SEC_HUGE_FWD, isa, 1, "%s", what);
    }
    if (bad_l) {
      check(SEC_HUGE_FWD, isa, 0,
            "%s: lse wrong on %lld rows; first (b %lld, h %lld, i %lld): %.9g, "
            "want %.9g",
            what, (long long)bad_l, (long long)(first_l / (P->hq * P->sq)),
            (long long)(first_l / P->sq % P->hq), (long long)(first_l % P->sq),
            (double)P->lse[first_l], r.lse[first_l]);
    } else {
      check(SEC_HUGE_FWD, isa, 1, "%s", what);
    }

    /* backward, from the oracle's O and LSE rounded to f32 (so that it is
     * judged on its own, whatever the forward did) */
    for (int64_t x = 0; x < n_o(P); x++)
      P->o[x] = (float)r.o[x];
    for (int64_t x = 0; x < n_l(P); x++)
      P->lse[x] = (float)r.lse[x];
    st = run_bwd(P, isa);
    check(SEC_HUGE_BWD, isa, st == ATTN_OK, "%s: backward status %d (%s)", what,
          (int)st, P->why);
    if (st != ATTN_OK)
      continue;
    int64_t nf_dq = 0, nf_dk = 0, nf_dv = 0;
    for (int64_t x = 0; x < n_q(P); x++)
      nf_dq += !isfinite(P->dq[x]);
    for (int64_t x = 0; x < n_k(P); x++)
      nf_dk += !isfinite(P->dk[x]);
    for (int64_t x = 0; x < n_v(P); x++)
      nf_dv += !isfinite(P->dvv[x]);
    check(SEC_HUGE_BWD, isa, nf_dq == 0 && nf_dv == 0,
          "%s: %lld non-finite dq, %lld non-finite dv", what, (long long)nf_dq,
          (long long)nf_dv);
    if (dk_in_range)
      check(SEC_HUGE_BWD, isa, nf_dk == 0, "%s: %lld non-finite dk", what,
            (long long)nf_dk);
    if (!onehot)
      continue; /* ties: f32 LSE cannot make them exact; finiteness only */
    /* one-hot set: compare with the oracle, relative to the natural size */
    double e_dq = 0, e_dk = 0, e_dv = 0, e_dq_sat = 0;
    int64_t a_dq = 0, a_dk = 0, a_dv = 0;
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t i = 0; i < P->sq; i++)
        for (int64_t h = 0; h < P->hq; h++)
          for (int64_t c = 0; c < P->d; c++) {
            const int64_t x = qi(P, b, i, h) + c;
            const double e = fabs((double)P->dq[x] - r.dq[x]);
            if (!(e <= e_dq))
              e_dq = e, a_dq = x;
            if (sat[li(P, b, h, i)] && !(fabs((double)P->dq[x]) <= e_dq_sat))
              e_dq_sat = fabs((double)P->dq[x]);
          }
    for (int64_t x = 0; x < n_k(P); x++) {
      const double e = fabs((double)P->dk[x] - r.dk[x]);
      if (!(e <= e_dk))
        e_dk = e, a_dk = x;
    }
    for (int64_t x = 0; x < n_v(P); x++) {
      const double e = fabs((double)P->dvv[x] - r.dv[x]);
      if (!(e <= e_dv))
        e_dv = e, a_dv = x;
    }
    const double tol_dq = 1e-4 * nat_dq, tol_dk = 1e-4 * nat_dk;
    const double tol_dv = 1e-5 * (max_abs_f(P->dout, n_o(P)) + 1.0) *
                          (double)(P->sq * P->hq / P->hk);
    check(SEC_HUGE_BWD, isa, e_dq <= tol_dq,
          "%s: dq err %.3g at %lld (got %.6g, want %.6g) > %.3g; max |dq| on "
          "saturated rows %.3g (want 0)",
          what, e_dq, (long long)a_dq, (double)P->dq[a_dq], r.dq[a_dq], tol_dq,
          e_dq_sat);
    if (dk_in_range)
      check(SEC_HUGE_BWD, isa, e_dk <= tol_dk,
            "%s: dk err %.3g at %lld (got %.6g, want %.6g) > %.3g", what, e_dk,
            (long long)a_dk, (double)P->dk[a_dk], r.dk[a_dk], tol_dk);
    check(SEC_HUGE_BWD, isa, e_dv <= tol_dv,
          "%s: dv err %.3g at %lld (got %.6g, want %.6g) > %.3g", what, e_dv,
          (long long)a_dv, (double)P->dvv[a_dv], r.dv[a_dv], tol_dv);
  }
  free(sat);
  ref_free(&r);
  prob_free(P);
}

static void section_huge(void) {
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

/* ====================================================================== */
/* 2. Non-finite inputs                                                   */
/* ====================================================================== */
typedef enum { T_Q, T_K, T_V, T_BIAS, T_KVPAD } nf_target;

typedef struct nf_case {
  const char *name;
  nf_target t;
  float val;
  int64_t b, x, y, z; /* Q: (b, i, h, c); K/V: (b, j, g, c);
                         bias: (b, h, i, j) */
} nf_case;

typedef struct outs {
  float *o, *lse, *dq, *dk, *dv;
} outs;

static void outs_save(const prob *P, outs *s) {
  s->o = falloc(n_o(P)), s->lse = falloc(n_l(P)), s->dq = falloc(n_q(P));
  s->dk = falloc(n_k(P)), s->dv = falloc(n_v(P));
  memcpy(s->o, P->o, (size_t)n_o(P) * 4);
  memcpy(s->lse, P->lse, (size_t)n_l(P) * 4);
  memcpy(s->dq, P->dq, (size_t)n_q(P) * 4);
  memcpy(s->dk, P->dk, (size_t)n_k(P) * 4);
  memcpy(s->dv, P->dvv, (size_t)n_v(P) * 4);
}

static void outs_free(outs *s) {
  free(s->o), free(s->lse), free(s->dq), free(s->dk), free(s->dv);
}

static float *nf_slot(prob *P, const nf_case *c) {
  switch (c->t) {
  case T_Q:
    return P->q + qi(P, c->b, c->x, c->y) + c->z;
  case T_K:
    return P->k + ki(P, c->b, c->x, c->y) + c->z;
  case T_V:
    return P->v + vi(P, c->b, c->x, c->y) + c->z;
  case T_BIAS:
    return P->bias + si(P, c->b, c->x, c->y, c->z);
  default:
    return NULL;
  }
}

/* Does row (b, h, i) see the bad value of c (in the clean problem)? */
static int nf_affects(const prob *P, const nf_case *c, int64_t b, int64_t h,
                      int64_t i) {
  if (b != c->b)
    return 0;
  const int64_t group = P->hq / P->hk;
  switch (c->t) {
  case T_Q:
    return i == c->x && h == c->y && row_sees_any(P, b, h, i);
  case T_K:
  case T_V:
    return h / group == c->y && visible(P, b, h, i, c->x);
  case T_BIAS:
    return h == c->x && i == c->y && c->val != -INFINITY &&
           visible(P, b, h, i, c->z);
  default:
    return 0;
  }
}

static void nf_run_case(prob *P, const outs *clean, const nf_case *c,
                        attn_isa isa, const char *shape) {
  char what[200];
  const int64_t group = P->hq / P->hk;
  snprintf(what, sizeof what, "%s causal=%s: %s", shape,
           P->causal == ATTN_CAUSAL_NONE ? "none" : "bottom-right", c->name);
  /* inject */
  float *slot = NULL, saved = 0;
  float *kpad = NULL, *vpad = NULL;
  if (c->t == T_KVPAD) {
    kpad = falloc(n_k(P)), vpad = falloc(n_v(P));
    memcpy(kpad, P->k, (size_t)n_k(P) * 4);
    memcpy(vpad, P->v, (size_t)n_v(P) * 4);
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t j = sk_eff(P, b); j < P->sk; j++)
        for (int64_t g = 0; g < P->hk; g++) {
          for (int64_t x = 0; x < P->d; x++)
            P->k[ki(P, b, j, g) + x] = NAN;
          for (int64_t x = 0; x < P->dv; x++)
            P->v[vi(P, b, j, g) + x] = NAN;
        }
  } else {
    slot = nf_slot(P, c);
    saved = *slot;
  }
  /* which rows are affected: decided on the clean problem */
  unsigned char *aff = (unsigned char *)tc_alloc((size_t)n_l(P));
  int64_t n_aff = 0, n_unaff = 0;
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++) {
        const int a = c->t == T_KVPAD ? 0 : nf_affects(P, c, b, h, i);
        aff[li(P, b, h, i)] = (unsigned char)a;
        n_aff += a;
        n_unaff += !a;
      }
  /* keys an affected row sees */
  unsigned char *kseen =
      (unsigned char *)tc_alloc((size_t)(P->b * P->sk * P->hk));
  memset(kseen, 0, (size_t)(P->b * P->sk * P->hk));
  for (int64_t b = 0; b < P->b; b++)
    for (int64_t h = 0; h < P->hq; h++)
      for (int64_t i = 0; i < P->sq; i++)
        if (aff[li(P, b, h, i)])
          for (int64_t j = 0; j < P->sk; j++)
            if (visible(P, b, h, i, j))
              kseen[(b * P->sk + j) * P->hk + h / group] = 1;
  if (c->t != T_KVPAD && !(c->t == T_BIAS && c->val == -INFINITY) &&
      !strstr(c->name, "masks") && !strstr(c->name, "beyond"))
    check(SEC_NF_FWD, isa, n_aff > 0 && n_unaff > 0,
          "%s: test setup: %lld affected and %lld unaffected rows", what,
          (long long)n_aff, (long long)n_unaff);
  if (slot)
    *slot = c->val;
  /* the -inf bias case: the oracle of the problem with that key masked */
  refres r;
  memset(&r, 0, sizeof r);
  const int masks = c->t == T_BIAS && c->val == -INFINITY;
  if (masks)
    ref_compute(P, &r, 1);

  attn_status st = run_fwd(P, isa);
  check(SEC_NF_FWD, isa, st == ATTN_OK, "%s: forward status %d (%s)", what,
        (int)st, P->why);
  if (st == ATTN_OK) {
    int64_t bad_aff = 0, bad_unaff = 0, bad_col = 0, bad_rest = 0;
    int64_t ex_aff = -1, ex_unaff = -1, ex_col = 0;
    for (int64_t b = 0; b < P->b; b++)
      for (int64_t h = 0; h < P->hq; h++)
        for (int64_t i = 0; i < P->sq; i++) {
          const int64_t L = li(P, b, h, i), O = oi(P, b, i, h);
          if (masks && b == c->b && h == c->x && i == c->y) {
            /* the masked-by--inf row: finite and equal to the oracle */
            int ok = isfinite(P->lse[L]) &&
                     fabs(P->lse[L] - r.lse[L]) <= 1e-5 * (1 + fabs(r.lse[L]));
            for (int64_t x = 0; x < P->dv; x++)
              ok = ok && isfinite(P->o[O + x]) &&
                   fabs(P->o[O + x] - r.o[O + x]) <= 1e-4;
            check(SEC_NF_FWD, isa, ok,
                  "%s: row (b %lld, h %lld, i %lld) with a -inf bias: o[0] = "
                  "%.6g (want %.6g), lse %.6g (want %.6g)",
                  what, (long long)b, (long long)h, (long long)i,
                  (double)P->o[O], r.o[O], (double)P->lse[L], r.lse[L]);
            continue;
          }
          if (!aff[L]) {
            /* a bad V in a live block may reach column z through 0 * x */
            const int vleak = c->t == T_V && b == c->b && h / group == c->y &&
                              block_live(P, b, h, i, c->x);
            int same = bits_equal(P->lse + L, clean->lse + L, 1);
            for (int64_t x = 0; x < P->dv; x++)
              if (!(vleak && x == c->z))
                same = same && bits_equal(P->o + O + x, clean->o + O + x, 1);
            if (!same) {
              if (bad_unaff++ == 0) {
                ex_unaff = L;
                while (ex_col < P->dv - 1 &&
                       bits_equal(P->o + O + ex_col, clean->o + O + ex_col, 1))
                  ex_col++;
              }
            }
            continue;
          }
          if (c->t == T_V) {
            /* column z not finite; the other columns and lse unchanged */
            if (isfinite(P->o[O + c->z]) && bad_col++ == 0)
              ex_aff = L;
            int same = bits_equal(P->lse + L, clean->lse + L, 1);
            for (int64_t x = 0; x < P->dv; x++)
              if (x != c->z && !bits_equal(P->o + O + x, clean->o + O + x, 1))
                same = 0;
            bad_rest += !same;
            continue;
          }
          int ok = isnan(P->lse[L]);
          for (int64_t x = 0; x < P->dv; x++)
            ok = ok && isnan(P->o[O + x]);
          if (!ok && bad_aff++ == 0)
            ex_aff = L;
        }
#define ROWFMT "(b %lld, h %lld, i %lld)"
#define ROWARG(L)                                                              \
  (long long)((L) / (P->hq * P->sq)), (long long)((L) / P->sq % P->hq),        \
      (long long)((L) % P->sq)
#define OAT(L) oi(P, (L) / (P->hq * P->sq), (L) % P->sq, (L) / P->sq % P->hq)
#define DQAT(L) qi(P, (L) / (P->hq * P->sq), (L) % P->sq, (L) / P->sq % P->hq)
    if (c->t != T_V) {
      check(SEC_NF_FWD, isa, bad_aff == 0,
            "%s: %lld of %lld affected rows not NaN; e.g. " ROWFMT
            ": o[0] = %.6g, lse = %.6g",
            what, (long long)bad_aff, (long long)n_aff,
            ROWARG(ex_aff < 0 ? 0 : ex_aff),
            ex_aff < 0 ? 0.0 : (double)P->o[OAT(ex_aff)],
            ex_aff < 0 ? 0.0 : (double)P->lse[ex_aff]);
    } else {
      check(SEC_NF_FWD, isa, bad_col == 0,
            "%s: %lld of %lld rows that see the bad V have a finite o[%lld]; "
            "e.g. " ROWFMT ": %.6g",
            what, (long long)bad_col, (long long)n_aff, (long long)c->z,
            ROWARG(ex_aff < 0 ? 0 : ex_aff),
            ex_aff < 0 ? 0.0 : (double)P->o[OAT(ex_aff) + c->z]);
      check(SEC_NF_FWD, isa, bad_rest == 0,
            "%s: %lld rows that see the bad V changed lse or another column",
            what, (long long)bad_rest);
    }
    check(SEC_NF_FWD, isa, bad_unaff == 0,
          "%s: %lld of %lld rows that cannot see the bad value differ from "
          "the clean run; e.g. " ROWFMT ": o[%lld] = %.6g (clean %.6g), lse "
          "= %.6g (clean %.6g)",
          what, (long long)bad_unaff, (long long)n_unaff,
          ROWARG(ex_unaff < 0 ? 0 : ex_unaff), (long long)ex_col,
          ex_unaff < 0 ? 0.0 : (double)P->o[OAT(ex_unaff) + ex_col],
          ex_unaff < 0 ? 0.0 : (double)clean->o[OAT(ex_unaff) + ex_col],
          ex_unaff < 0 ? 0.0 : (double)P->lse[ex_unaff],
          ex_unaff < 0 ? 0.0 : (double)clean->lse[ex_unaff]);

    /* backward, from this forward's o and lse */
    st = run_bwd(P, isa);
    check(SEC_NF_BWD, isa, st == ATTN_OK, "%s: backward status %d (%s)", what,
          (int)st, P->why);
    if (st == ATTN_OK) {
      int64_t b_aff = 0, b_unaff = 0, b_masked = 0;
      int64_t ex_a = -1, ex_u = -1, ex_uc = 0;
      for (int64_t b = 0; b < P->b; b++)
        for (int64_t h = 0; h < P->hq; h++)
          for (int64_t i = 0; i < P->sq; i++) {
            const int64_t L = li(P, b, h, i), Q = qi(P, b, i, h);
            if (masks && b == c->b && h == c->x && i == c->y) {
              int ok = 1;
              for (int64_t x = 0; x < P->d; x++)
                ok = ok && isfinite(P->dq[Q + x]) &&
                     fabs(P->dq[Q + x] - r.dq[Q + x]) <= 1e-4;
              b_masked += !ok;
              continue;
            }
            if (!aff[L]) {
              /* a bad K or V in a live block may reach dq through 0 * x */
              if ((c->t == T_K || c->t == T_V) && b == c->b &&
                  h / group == c->y && block_live(P, b, h, i, c->x))
                continue;
              if (!bits_equal(P->dq + Q, clean->dq + Q, P->d) &&
                  b_unaff++ == 0) {
                ex_u = L;
                while (ex_uc < P->d - 1 &&
                       bits_equal(P->dq + Q + ex_uc, clean->dq + Q + ex_uc, 1))
                  ex_uc++;
              }
              continue;
            }
            int ok = 1;
            for (int64_t x = 0; x < P->d; x++)
              ok = ok && (c->t == T_V ? !isfinite(P->dq[Q + x])
                                      : isnan(P->dq[Q + x]));
            if (!ok && b_aff++ == 0)
              ex_a = L;
          }
      if (masks)
        check(SEC_NF_BWD, isa, b_masked == 0,
              "%s: dq of the row with the -inf bias differs from the oracle",
              what);
      check(SEC_NF_BWD, isa, b_aff == 0,
            "%s: dq of %lld of %lld affected rows not %s; e.g. " ROWFMT
            ": dq[0] = %.6g",
            what, (long long)b_aff, (long long)n_aff,
            c->t == T_V ? "all non-finite" : "all NaN",
            ROWARG(ex_a < 0 ? 0 : ex_a),
            ex_a < 0 ? 0.0 : (double)P->dq[DQAT(ex_a)]);
      check(SEC_NF_BWD, isa, b_unaff == 0,
            "%s: dq of %lld of %lld unaffected rows differs from the clean "
            "run; e.g. " ROWFMT ": dq[%lld] = %.6g (clean %.6g)",
            what, (long long)b_unaff, (long long)n_unaff,
            ROWARG(ex_u < 0 ? 0 : ex_u), (long long)ex_uc,
            ex_u < 0 ? 0.0 : (double)P->dq[DQAT(ex_u) + ex_uc],
            ex_u < 0 ? 0.0 : (double)clean->dq[DQAT(ex_u) + ex_uc]);
      /* keys: seen by an affected row -> not silently finite; others
       * bitwise equal (extra); kv_lens padding -> 0 */
      int64_t k_fin = 0, v_fin = 0, k_seen = 0, k_chg = 0, pad_bad = 0;
      for (int64_t b = 0; b < P->b; b++)
        for (int64_t j = 0; j < P->sk; j++)
          for (int64_t g = 0; g < P->hk; g++) {
            const int64_t K = ki(P, b, j, g), V = vi(P, b, j, g);
            if (j >= sk_eff(P, b)) {
              for (int64_t x = 0; x < P->d; x++)
                pad_bad += P->dk[K + x] != 0.0f;
              for (int64_t x = 0; x < P->dv; x++)
                pad_bad += P->dvv[V + x] != 0.0f;
            }
            if (masks)
              continue;
            if (kseen[(b * P->sk + j) * P->hk + g]) {
              k_seen++;
              k_fin += all_finite(P->dk + K, P->d);
              if (c->t != T_V)
                v_fin += all_finite(P->dvv + V, P->dv);
            } else if (!bits_equal(P->dk + K, clean->dk + K, P->d) ||
                       !bits_equal(P->dvv + V, clean->dv + V, P->dv)) {
              /* an affected row (or the bad key itself) in a live block
               * may reach this key through 0 * x */
              int leak = (c->t == T_K || c->t == T_V) && j == c->x;
              for (int64_t h = g * group; h < (g + 1) * group && !leak; h++)
                for (int64_t i = 0; i < P->sq && !leak; i++)
                  leak = aff[li(P, b, h, i)] && block_live(P, b, h, i, j);
              k_chg += !leak;
            }
          }
      if (!masks) {
        check(SEC_NF_BWD, isa, k_fin == 0 && v_fin == 0,
              "%s: of %lld keys an affected row sees, %lld have an all-finite "
              "dk and %lld an all-finite dv (silently finite)",
              what, (long long)k_seen, (long long)k_fin, (long long)v_fin);
        check(SEC_NF_EXTRA, isa, k_chg == 0,
              "%s: dk/dv of %lld keys that no affected row sees differ from "
              "the clean run",
              what, (long long)k_chg);
        if (c->t == T_V)
          check(SEC_NF_EXTRA, isa, bits_equal(P->dvv, clean->dv, n_v(P)),
                "%s: dv changed (it does not depend on V)", what);
      }
      check(SEC_NF_BWD, isa, pad_bad == 0,
            "%s: %lld dk/dv elements of kv_lens padding keys are not 0", what,
            (long long)pad_bad);
    }
  }
  /* restore */
  if (slot)
    *slot = saved;
  if (kpad) {
    memcpy(P->k, kpad, (size_t)n_k(P) * 4);
    memcpy(P->v, vpad, (size_t)n_v(P) * 4);
    free(kpad), free(vpad);
  }
  if (masks)
    ref_free(&r);
  free(aff), free(kseen);
}

typedef enum { V_PLAIN, V_BIAS, V_MASK, V_WINDOW } nf_variant;

static void section_nonfinite(void) {
  printf("== non-finite inputs ==\n");
  static const char *const vname[4] = {"plain", "bias", "mask", "window"};
  for (int shape = 0; shape < 2; shape++) {
    for (int vr = 0; vr < 4; vr++) {
      if (shape == 0 && vr >= V_MASK)
        continue;
      for (int cz = 0; cz < 2; cz++) {
        prob *P = shape == 0 ? prob_new(2, 5, 5, 2, 2, 16, 16)
                             : prob_new(2, 70, 130, 4, 2, 16, 16);
        tc_rng rng = {0x4E460000ull + (uint64_t)(shape * 100 + vr * 10 + cz)};
        P->causal = cz ? ATTN_CAUSAL_BOTTOM_RIGHT : ATTN_CAUSAL_NONE;
        for (int64_t x = 0; x < n_q(P); x++)
          P->q[x] = (float)tc_normal(&rng);
        for (int64_t x = 0; x < n_k(P); x++)
          P->k[x] = (float)tc_normal(&rng);
        for (int64_t x = 0; x < n_v(P); x++)
          P->v[x] = (float)tc_normal(&rng);
        for (int64_t x = 0; x < n_o(P); x++)
          P->dout[x] = (float)tc_normal(&rng);
        if (shape == 1) {
          P->kv_store[0] = 130;
          P->kv_store[1] = 101;
          P->kv_lens = P->kv_store;
        }
        if (vr == V_BIAS) {
          P->bias = falloc(n_s(P));
          for (int64_t x = 0; x < n_s(P); x++)
            P->bias[x] = (float)(0.5 * tc_normal(&rng));
        }
        if (vr == V_MASK) {
          P->mask = (unsigned char *)tc_alloc((size_t)n_s(P));
          for (int64_t x = 0; x < n_s(P); x++)
            P->mask[x] = (unsigned char)(tc_unit(&rng) < 0.7);
        }
        if (vr == V_WINDOW)
          P->wl = 20, P->wr = 5;

        nf_case cases[24];
        int nc = 0;
#define ADD(...)                                                               \
  do {                                                                         \
    const nf_case c_ = {__VA_ARGS__};                                          \
    cases[nc++] = c_;                                                          \
  } while (0)
        const int64_t iq = shape ? 50 : 3, hqb = shape ? 2 : 1;
        const int64_t jk = shape ? 100 : 2, jv = shape ? 90 : 1;
        if (vr == V_PLAIN) {
          ADD("Q NaN", T_Q, NAN, 1, iq, hqb, 3);
          ADD("Q +inf", T_Q, INFINITY, 1, iq, hqb, 3);
          ADD("Q -inf", T_Q, -INFINITY, 1, iq, hqb, 3);
          ADD("K NaN", T_K, NAN, 0, jk, 0, 5);
          ADD("K +inf", T_K, INFINITY, 0, jk, 0, 5);
          ADD("K -inf", T_K, -INFINITY, 0, jk, 0, 5);
          ADD("V NaN", T_V, NAN, 1, jv, 1, 2);
          ADD("V +inf", T_V, INFINITY, 1, jv, 1, 2);
          if (shape == 1)
            ADD("K and V NaN beyond kv_lens", T_KVPAD, NAN, 1, 0, 0, 0);
        } else if (vr == V_BIAS) {
          const int64_t bh = shape ? 3 : 0, bi = shape ? 20 : 3;
          const int64_t bj = shape ? 40 : 1;
          ADD("bias NaN", T_BIAS, NAN, 1, bh, bi, bj);
          ADD("bias +inf", T_BIAS, INFINITY, 1, bh, bi, bj);
          ADD("bias -inf (masks)", T_BIAS, -INFINITY, 1, bh, bi, bj);
          if (cz) /* masked by causal */
            ADD("bias NaN where causal masks", T_BIAS, NAN, shape ? 0 : 1,
                shape ? 1 : 1, shape ? 5 : 1, shape ? 100 : 4);
          if (shape == 1) /* masked by kv_lens */
            ADD("bias NaN beyond kv_lens", T_BIAS, NAN, 1, 0, 10, 120);
        } else if (vr == V_MASK) {
          ADD("K NaN, mask tensor", T_K, NAN, 0, 77, 1, 0);
          ADD("V NaN, mask tensor", T_V, NAN, 0, 77, 1, 0);
          ADD("Q NaN, mask tensor", T_Q, NAN, 1, 33, 3, 7);
        } else {
          ADD("K NaN, window (20, 5)", T_K, NAN, 1, 60, 1, 4);
          ADD("V NaN, window (20, 5)", T_V, NAN, 1, 60, 1, 4);
        }
#undef ADD
        char shape_name[96];
        snprintf(shape_name, sizeof shape_name, "b2 %lldx%lld hq%lld hk%lld %s",
                 (long long)P->sq, (long long)P->sk, (long long)P->hq,
                 (long long)P->hk, vname[vr]);
        for (int ii = 0; ii < 3; ii++) {
          const attn_isa isa = all_isas[ii];
          if (!attn_isa_supported(isa))
            continue;
          attn_status s1 = run_fwd(P, isa);
          attn_status s2 = s1 == ATTN_OK ? run_bwd(P, isa) : s1;
          check(SEC_NF_FWD, isa, s1 == ATTN_OK && s2 == ATTN_OK,
                "%s: clean run failed (%d, %d: %s)", shape_name, (int)s1,
                (int)s2, P->why);
          if (s1 != ATTN_OK || s2 != ATTN_OK)
            continue;
          outs clean;
          outs_save(P, &clean);
          for (int k = 0; k < nc; k++)
            nf_run_case(P, &clean, &cases[k], isa, shape_name);
          outs_free(&clean);
        }
        prob_free(P);
      }
    }
  }
}

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
  for (int ii = 0; ii < 3; ii++) {
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

static void acc_backward_mqa(int64_t hq, int64_t seq, uint64_t seed) {
  prob *P = prob_new(1, seq, seq, hq, 1, 64, 64);
  tc_rng rng = {seed};
  fill_normal(P->q, n_q(P), 0.0, 0.1, &rng);
  fill_normal(P->k, n_k(P), 0.0, 0.1, &rng);
  fill_normal(P->v, n_v(P), 1.0, 0.1, &rng);
  fill_normal(P->dout, n_o(P), 1.0, 0.1, &rng);
  const double t0 = tc_now();
  refres r;
  ref_alloc(P, &r, 1);
  float *po = falloc(n_o(P)), *pl = falloc(n_l(P));
  float *pdk = falloc(n_k(P)), *pdv = falloc(n_v(P));
  double *dk2 = dalloc0(n_k(P)), *dv2 = dalloc0(n_v(P));
  const int64_t nbh = P->b * P->hq, mid = nbh / 2;
  ref_job half = {P, &r, mid, nbh, dk2, dv2};
  peer_job pj = {P, po, pl, pdk, pdv};
  pthread_t th[2];
  const int t_half = pthread_create(&th[0], NULL, ref_job_run, &half) == 0;
  const int t_peer = pthread_create(&th[1], NULL, peer_job_run, &pj) == 0;
  ref_rows(P, &r, 1, 0, mid, r.dk, r.dv);
  if (t_half)
    pthread_join(th[0], NULL);
  else
    ref_job_run(&half);
  if (t_peer)
    pthread_join(th[1], NULL);
  else
    peer_job_run(&pj);
  for (int64_t x = 0; x < n_k(P); x++)
    r.dk[x] += dk2[x];
  for (int64_t x = 0; x < n_v(P); x++)
    r.dv[x] += dv2[x];
  free(dk2), free(dv2);
  const double e_pk = max_err(pdk, r.dk, n_k(P));
  const double e_pv = max_err(pdv, r.dv, n_v(P));
  const double bk = 2 * e_pk + 1e-6, bv = 2 * e_pv + 1e-6;
  printf("accuracy backward: MQA %lld heads x %lld: oracle and f32 peer "
         "%.1fs (3 threads)\n",
         (long long)hq, (long long)seq, tc_now() - t0);
  for (int ii = 0; ii < 3; ii++) {
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
  free(po), free(pl), free(pdk), free(pdv);
  ref_free(&r);
  prob_free(P);
}

static void section_accuracy(int quick) {
  printf("== accuracy at long key lengths (%s) ==\n",
         quick ? "ATTN_TEST_QUICK" : "full");
  acc_forward(64, 4096, 0xACC001);
  acc_forward(4, quick ? 262144 : 1048576, 0xACC002);
  if (quick)
    acc_backward_mqa(8, 512, 0xACC003);
  else
    acc_backward_mqa(32, 2048, 0xACC003);
}

/* ====================================================================== */
int main(int argc, char **argv) {
  int want[3] = {argc <= 1, argc <= 1, argc <= 1};
  for (int a = 1; a < argc; a++) {
    if (strcmp(argv[a], "huge") == 0)
      want[0] = 1;
    else if (strcmp(argv[a], "nonfinite") == 0)
      want[1] = 1;
    else if (strcmp(argv[a], "accuracy") == 0)
      want[2] = 1;
    else {
      fprintf(stderr, "usage: test_numerics [huge] [nonfinite] [accuracy]\n");
      return 2;
    }
  }
  const int quick = tc_env_ll("ATTN_TEST_QUICK", 0) != 0;
  printf("libattn %s; ISAs:", attn_version_string());
  for (int ii = 0; ii < 3; ii++)
    if (attn_isa_supported(all_isas[ii]))
      printf(" %s", attn_isa_name(all_isas[ii]));
  printf("\n");
  if (want[0])
    section_huge();
  if (want[1])
    section_nonfinite();
  if (want[2])
    section_accuracy(quick);

  printf("\n%-20s %-8s %7s %7s\n", "section", "isa", "checks", "failed");
  for (int s = 0; s < SEC_COUNT; s++)
    for (int ii = 0; ii < 3; ii++)
      if (tally_checks[s][all_isas[ii]])
        printf("%-20s %-8s %7ld %7ld\n", sec_name[s],
               attn_isa_name(all_isas[ii]), tally_checks[s][all_isas[ii]],
               tally_fails[s][all_isas[ii]]);
  printf("%ld passed, %ld failed\n", n_pass, n_fail);
  return n_fail ? 1 : 0;
}
