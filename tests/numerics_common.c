/*
 * test_numerics' common parts (numerics.h): the problem (allocation, the
 * library's parameters, running forward and backward), which keys a row
 * sees, and the double-precision oracle.
 */
#define _POSIX_C_SOURCE 200809L

#include "numerics.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const attn_isa all_isas[N_ISAS] = {ATTN_ISA_GENERIC, ATTN_ISA_AVX2,
                                   ATTN_ISA_AVX512, ATTN_ISA_AVX512_BF16,
                                   ATTN_ISA_AMX_BF16};

prob *prob_new(int64_t b, int64_t sq, int64_t sk, int64_t hq, int64_t hk,
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

void prob_free(prob *P) {
  if (!P)
    return;
  free(P->q), free(P->k), free(P->v), free(P->o), free(P->lse);
  free(P->dout), free(P->dq), free(P->dk), free(P->dvv);
  free(P->bias), free(P->mask);
  free(P);
}

void prob_params(prob *P, attn_params *p, attn_isa isa) {
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

attn_status run_fwd(prob *P, attn_isa isa) {
  attn_params p;
  prob_params(P, &p, isa);
  fill_const(P->o, n_o(P), 777.0f);
  fill_const(P->lse, n_l(P), 777.0f);
  P->why[0] = '\0';
  return attn_forward(NULL, &p);
}

attn_status run_bwd(prob *P, attn_isa isa) {
  attn_params p;
  prob_params(P, &p, isa);
  fill_const(P->dq, n_q(P), 777.0f);
  fill_const(P->dk, n_k(P), 777.0f);
  fill_const(P->dvv, n_v(P), 777.0f);
  P->why[0] = '\0';
  return attn_backward(NULL, &p);
}

/* Whether query row (b, h, i) may see key j: kv_lens, causal, window, mask
 * tensor and -inf bias (attn.h's contract). */
int visible(const prob *P, int64_t b, int64_t h, int64_t i, int64_t j) {
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
int block_live(const prob *P, int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t i0 = i / ATTN_TILE_Q * ATTN_TILE_Q;
  const int64_t j0 = j / ATTN_TILE_K * ATTN_TILE_K;
  for (int64_t ii = i0; ii < i0 + ATTN_TILE_Q && ii < P->sq; ii++)
    for (int64_t jj = j0; jj < j0 + ATTN_TILE_K && jj < P->sk; jj++)
      if (visible(P, b, h, ii, jj))
        return 1;
  return 0;
}

int row_sees_any(const prob *P, int64_t b, int64_t h, int64_t i) {
  for (int64_t j = 0; j < P->sk; j++)
    if (visible(P, b, h, i, j))
      return 1;
  return 0;
}

/* ---------------------------------------------------------------------- */
/* Double-precision oracle (finite inputs)                                */
/* ---------------------------------------------------------------------- */
void ref_free(refres *r) {
  free(r->o), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
  memset(r, 0, sizeof *r);
}

double *dalloc0(int64_t n) {
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
void ref_rows(const prob *P, refres *r, int bwd, int64_t bh0, int64_t bh1,
              double *dk_acc, double *dv_acc) {
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

void ref_alloc(const prob *P, refres *r, int bwd) {
  memset(r, 0, sizeof *r);
  r->o = dalloc0(n_o(P));
  r->lse = dalloc0(n_l(P));
  if (bwd) {
    r->dq = dalloc0(n_q(P));
    r->dk = dalloc0(n_k(P));
    r->dv = dalloc0(n_v(P));
  }
}

void ref_compute(const prob *P, refres *r, int bwd) {
  ref_alloc(P, r, bwd);
  ref_rows(P, r, bwd, 0, P->b * P->hq, r->dk, r->dv);
}

double max_abs_f(const float *x, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    if (fabs((double)x[i]) > m)
      m = fabs((double)x[i]);
  return m;
}

int all_finite(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(x[i]))
      return 0;
  return 1;
}

int bits_equal(const float *a, const float *b, int64_t n) {
  return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}
