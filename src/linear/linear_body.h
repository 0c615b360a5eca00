/* Linear attention, the maths of one work item (attn/linear.h), written
 * once and compiled per ISA: src/linear/linear_generic.c (plain C) and
 * src/kernels/avx2/linear_avx2.c (AVX2 + FMA flags), each defining
 * LIN_NAME(x) (the suffix of the exported names), LIN_MADD(a, x, y)
 * (a * x + y: fused where the ISA has FMA, like vf_fma) and the SIMD
 * vocabulary's ATTN_SIMD_<ISA> (src/kernels/simd.h) before including this
 * file.
 *
 * Notation (one batch b, query head h, kv head g; C = ATTN_LINEAR_CHUNK):
 *   a_i = phi(q_i) [d], b_j = phi(k_j) [d], v_j [dv], g_i = dout_i [dv]
 *   w_ij = a_i . b_j for visible j, num_i = sum_j w_ij v_j,
 *   den_i = sum_j w_ij, D_i = max(den_i, FLT_MIN), o_i = num_i / D_i
 * Running state of the keys before a chunk: S = sum_j b_j v_j^T [d, dv],
 * z = sum_j b_j [d].
 *
 * Causal chunks: rows [i0, i1) (C rows) see, besides the state of keys
 * [0, a(i0)), the keys [a(i0), a(i1)) exactly, a(i) = clamp(i + off, 0,
 * seq_k); a(i1) - a(i0) <= C. Keys [0, a(0)) (seq_k > seq_q, bottom-right)
 * go into the state before the first chunk.
 *
 * Backward: with dn_i = g_i / D_i and t_i = -(g_i . o_i) / D_i (0 where
 * the guard holds: D does not depend on den there),
 *   dw_ij = dn_i . v_j + t_i,   da_i = sum_j dw_ij b_j = S dn_i + t_i z
 *   (+ the chunk's keys), db_j = sum_i dw_ij a_i = R v_j + y (+ the
 *   chunk's rows), dv_j = sum_i w_ij dn_i = R^T b_j (+ ...),
 * with R = sum_i a_i dn_i^T and y = sum_i t_i a_i over the rows that see
 * key j: the rows after the chunk (a reverse scan) and, summed over the
 * group's query heads, one R for the kv head. dq = da * phi'(q),
 * dk = db * phi'(k). Pass A (forward scan) writes dq and keeps D_i and
 * tD_i = t_i D_i per row; pass B (reverse scan) writes dk and dv. A row
 * that sees no key has g = 0 and tD = 0.
 *
 * g / D is never formed: under the guard (D = FLT_MIN) it overflows for
 * |g| > 4 although every gradient is bounded. Pass A computes da D =
 * S g + tD z + ... and divides by D after the factor phi'(q) (which is the
 * tiny phi(q) when q's features underflow); pass B uses a'_i = a_i / D_i
 * (R = sum_i a'_i g_i^T, y = sum_i tD_i a'_i, w_ij / D_i = a'_i . b_j).
 * What still overflows: a'_i itself when phi(q_i) > 1 while every feature
 * of the visible keys underflows (k < -87 in every dim), a row whose
 * gradient is then inf or NaN.
 *
 * Every loop that carries the arithmetic runs along a contiguous row
 * (axpy form), which compilers vectorise without reassociating anything:
 * the order of every sum is fixed by the shapes alone. */
#include "kernels/simd.h"
#include "linear/linear_internal.h"

#include <string.h>

#if !defined(LIN_NAME) || !defined(LIN_MADD)
#error "define LIN_NAME and LIN_MADD before including linear_body.h"
#endif

#define C ATTN_LINEAR_CHUNK

static int64_t r16(int64_t n) { return lin_round16(n); }

/* ---------------------------------------------------------------------- */
/* Rows in and out                                                        */
/* ---------------------------------------------------------------------- */

static const void *row_at(const attn_tensor *t, int64_t b, int64_t s,
                          int64_t h) {
  const int64_t off = b * t->stride[0] + s * t->stride[1] + h * t->stride[2];
  return (const char *)t->data + off * (int64_t)attn_dtype_size(t->dtype);
}

/* dst[r][0..w) = t[b, s0 + r, h, 0..w) as f32, r < n */
static void load_rows(const attn_tensor *t, int64_t b, int64_t s0, int64_t n,
                      int64_t h, int64_t w, float *dst) {
  for (int64_t r = 0; r < n; r++)
    attn_load_row_f32(row_at(t, b, s0 + r, h), t->dtype, t->stride[3], w, 1.0f,
                      dst + r * w);
}

/* phi(x) = elu(x) + 1 of one vector: x + 1 above 0, else exp(x) as
 * 2^(x log2 e) by the vocabulary's exp2 (a degree-6 polynomial, relative
 * error about 2e-7 plus the rounding of x log2 e: |x| 1.44 u); -inf gives
 * 0, NaN stays NaN. */
static inline vf phi_v(vf x) {
  const vf e = vf_exp2(vf_mul(x, vf_set1(kLog2e)));
  return vf_blend_lt(vf_zero(), x, vf_add(x, vf_set1(1.0f)), e);
}

void LIN_NAME(lin_phi_rows)(float *x, int64_t n) {
  int64_t i = 0;
  for (; i + VL <= n; i += VL)
    vf_store(x + i, phi_v(vf_load(x + i)));
  if (i < n) {
    float t[VL] = {0};
    memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
    vf_store(t, phi_v(vf_load(t)));
    memcpy(x + i, t, (size_t)(n - i) * sizeof(float));
  }
}

/* as load_rows, then phi elementwise */
static void load_phi_rows(const attn_tensor *t, int64_t b, int64_t s0,
                          int64_t n, int64_t h, int64_t w, float *dst) {
  load_rows(t, b, s0, n, h, w, dst);
  LIN_NAME(lin_phi_rows)(dst, n * w);
}

static void store_row(const attn_tensor *t, int64_t b, int64_t s, int64_t h,
                      const float *src) {
  attn_store_row(src, t->shape[3], (void *)row_at(t, b, s, h), t->dtype,
                 t->stride[3]);
}

/* dst [m x n] = src [n x m] transposed */
static void transpose(const float *src, int64_t n, int64_t m, float *dst) {
  for (int64_t j = 0; j < n; j++)
    for (int64_t x = 0; x < m; x++)
      dst[x * n + j] = src[j * m + x];
}

/* ---------------------------------------------------------------------- */
/* Small products, all in axpy form                                       */
/* ---------------------------------------------------------------------- */

/* y[0..n) += a * x[0..n) */
static inline void axpy(int64_t n, float a, const float *restrict x,
                        float *restrict y) {
  for (int64_t c = 0; c < n; c++)
    y[c] = LIN_MADD(a, x[c], y[c]);
}

/* out[0..n) = sum_x u[x] M[x][0..n), M [m x n] (out = M^T u) */
static void vec_mat(const float *u, const float *M, int64_t m, int64_t n,
                    float *restrict out) {
  memset(out, 0, (size_t)n * sizeof *out);
  for (int64_t x = 0; x < m; x++)
    axpy(n, u[x], M + x * n, out);
}

static float dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
  for (int64_t x = 0; x < n; x++)
    s = LIN_MADD(a[x], b[x], s);
  return s;
}

/* Register blocks of the products below: RB rows of CB columns (8 vector
 * registers of 8 floats) stay in registers across the whole inner sum.
 * Every element is still one sum in a fixed order (the inner index
 * ascending, from 0 or from the element's old value), exactly as the
 * plain axpy loops give it: blocked or not, the bits are the same. */
#define RB 4
#define CB (2 * VL)

/* out[r][0..n) = sum_x U[r][x] M[x][0..n) for nr rows: out = U M, with
 * M [m x n] (rows n apart), U rows ldu apart, out rows ldo apart. */
static void mat_mat(const float *U, int64_t ldu, int64_t nr, const float *M,
                    int64_t m, int64_t n, float *out, int64_t ldo) {
  int64_t r = 0;
  for (; r + RB <= nr; r += RB) {
    int64_t c0 = 0;
    for (; c0 + CB <= n; c0 += CB) {
      vf acc[RB][2];
      UNROLL for (int i = 0; i < RB; i++) acc[i][0] = acc[i][1] = vf_zero();
      for (int64_t x = 0; x < m; x++) {
        const vf m0 = vf_load(M + x * n + c0),
                 m1 = vf_load(M + x * n + c0 + VL);
        UNROLL for (int i = 0; i < RB; i++) {
          const vf u = vf_set1(U[(r + i) * ldu + x]);
          acc[i][0] = vf_fma(u, m0, acc[i][0]);
          acc[i][1] = vf_fma(u, m1, acc[i][1]);
        }
      }
      UNROLL for (int i = 0; i < RB; i++) {
        vf_store(out + (r + i) * ldo + c0, acc[i][0]);
        vf_store(out + (r + i) * ldo + c0 + VL, acc[i][1]);
      }
    }
    for (int i = 0; c0 < n && i < RB; i++) {
      float *o = out + (r + i) * ldo + c0;
      memset(o, 0, (size_t)(n - c0) * sizeof *o);
      for (int64_t x = 0; x < m; x++)
        axpy(n - c0, U[(r + i) * ldu + x], M + x * n + c0, o);
    }
  }
  for (; r < nr; r++)
    vec_mat(U + r * ldu, M, m, n, out + r * ldo);
}

/* S [d x dv] += sum_j bk_j v_j^T over n keys (bk [n x d], vv [n x dv]) */
static void outer_add(float *restrict S, const float *bk, const float *vv,
                      int64_t n, int64_t d, int64_t dv) {
  int64_t x0 = 0;
  for (; x0 + RB <= d; x0 += RB) {
    int64_t c0 = 0;
    for (; c0 + CB <= dv; c0 += CB) {
      vf acc[RB][2];
      UNROLL for (int i = 0; i < RB; i++) {
        acc[i][0] = vf_load(S + (x0 + i) * dv + c0);
        acc[i][1] = vf_load(S + (x0 + i) * dv + c0 + VL);
      }
      for (int64_t j = 0; j < n; j++) {
        const vf v0 = vf_load(vv + j * dv + c0),
                 v1 = vf_load(vv + j * dv + c0 + VL);
        UNROLL for (int i = 0; i < RB; i++) {
          const vf b = vf_set1(bk[j * d + x0 + i]);
          acc[i][0] = vf_fma(b, v0, acc[i][0]);
          acc[i][1] = vf_fma(b, v1, acc[i][1]);
        }
      }
      UNROLL for (int i = 0; i < RB; i++) {
        vf_store(S + (x0 + i) * dv + c0, acc[i][0]);
        vf_store(S + (x0 + i) * dv + c0 + VL, acc[i][1]);
      }
    }
    for (int i = 0; c0 < dv && i < RB; i++)
      for (int64_t j = 0; j < n; j++)
        axpy(dv - c0, bk[j * d + x0 + i], vv + j * dv + c0,
             S + (x0 + i) * dv + c0);
  }
  for (; x0 < d; x0++)
    for (int64_t j = 0; j < n; j++)
      axpy(dv, bk[j * d + x0], vv + j * dv, S + x0 * dv);
}

/* S [d x dv] += sum_j bk_j v_j^T and z += sum_j bk_j over n keys */
static void state_add(float *restrict S, float *restrict z, const float *bk,
                      const float *vv, int64_t n, int64_t d, int64_t dv) {
  outer_add(S, bk, vv, n, d, dv);
  for (int64_t j = 0; j < n; j++)
    for (int64_t x = 0; x < d; x++)
      z[x] += bk[j * d + x];
}

/* Keys [k0, k1) of (b, g) into the state, in chunks of C. */
static void state_add_keys(const attn_linear_params *p, const lin_dims *d,
                           int64_t b, int64_t g, int64_t k0, int64_t k1,
                           float *S, float *z, float *pk, float *vc) {
  for (int64_t j0 = k0; j0 < k1; j0 += C) {
    const int64_t n = ATTN_MIN((int64_t)C, k1 - j0);
    load_phi_rows(&p->k, b, j0, n, g, d->d, pk);
    load_rows(&p->v, b, j0, n, g, d->dv, vc);
    state_add(S, z, pk, vc, n, d->d, d->dv);
  }
}

/* a(i) = clamp(i + off, 0, seq_k): the keys before row i's chunk */
static int64_t key_edge(const lin_dims *d, int64_t i) {
  const int64_t a = i + d->off;
  return a < 0 ? 0 : a > d->sk ? d->sk : a;
}

/* Keys of the chunk [ka, ka + nk) row i sees: i + off + 1 - ka, clamped */
static int64_t row_limit(const lin_dims *d, int64_t i, int64_t ka, int64_t nk) {
  const int64_t l = i + d->off + 1 - ka;
  return l < 0 ? 0 : l > nk ? nk : l;
}

/* Whether row i sees any key at all. */
static int row_sees(const lin_dims *d, int64_t i) {
  return !d->causal || i + d->off >= 0;
}

/* ---------------------------------------------------------------------- */
/* Scratch                                                                */
/* ---------------------------------------------------------------------- */

typedef struct lin_scratch {
  float *S, *z, *pq, *pk, *pkT, *vc, *num, *den, *W;
  float *ST, *R, *RT, *y, *vT, *DW, *gq, *accdk, *accdv, *Dr, *Tr;
} lin_scratch;

static float *take(float **at, int64_t n) {
  float *x = *at;
  *at += r16(n);
  return x;
}

static lin_scratch carve(const lin_dims *d, float *at, int bwd) {
  lin_scratch s;
  memset(&s, 0, sizeof s);
  const int64_t sd = d->d * d->dv;
  s.S = take(&at, sd);
  s.z = take(&at, d->d);
  s.pq = take(&at, C * d->d);
  s.pk = take(&at, C * d->d);
  s.pkT = take(&at, C * d->d);
  s.vc = take(&at, C * d->dv);
  s.num = take(&at, C * d->dv);
  s.den = take(&at, C);
  s.W = take(&at, C * C);
  if (bwd) {
    s.ST = take(&at, sd);
    s.R = take(&at, sd);
    s.RT = take(&at, sd);
    s.y = take(&at, d->d);
    s.vT = take(&at, C * d->dv);
    s.DW = take(&at, C * C);
    s.gq = take(&at, C * d->dv);
    s.accdk = take(&at, C * d->d);
    s.accdv = take(&at, C * d->dv);
    s.Dr = take(&at, d->group * d->sq);
    s.Tr = take(&at, d->group * d->sq);
  }
  return s;
}

/* ---------------------------------------------------------------------- */
/* Forward                                                                */
/* ---------------------------------------------------------------------- */

/* dst[i] += sum_{j < lim_i} Wm[i][j] src[j] for the nq rows of the chunk
 * (Wm rows C apart; src, dst rows w floats apart; lim_i = the keys row
 * i0 + i sees among [ka, ka + nk), non-decreasing in i), blocked like
 * mat_mat. A key j >= lim_i never reaches row i (not even as 0 * src: src
 * may hold NaN). */
static void rows_keys(const lin_dims *d, int64_t i0, int64_t nq, int64_t ka,
                      int64_t nk, const float *Wm, const float *src, int64_t w,
                      float *dst) {
  int64_t r = 0;
  for (; r + RB <= nq; r += RB) {
    int64_t lim[RB];
    for (int i = 0; i < RB; i++)
      lim[i] = row_limit(d, i0 + r + i, ka, nk);
    int64_t c0 = 0;
    for (; c0 + CB <= w; c0 += CB) {
      vf acc[RB][2];
      UNROLL for (int i = 0; i < RB; i++) {
        acc[i][0] = vf_load(dst + (r + i) * w + c0);
        acc[i][1] = vf_load(dst + (r + i) * w + c0 + VL);
      }
      for (int64_t j = 0; j < lim[RB - 1]; j++) {
        const vf v0 = vf_load(src + j * w + c0);
        const vf v1 = vf_load(src + j * w + c0 + VL);
        UNROLL for (int i = 0; i < RB; i++) {
          if (j < lim[i]) {
            const vf c = vf_set1(Wm[(r + i) * C + j]);
            acc[i][0] = vf_fma(c, v0, acc[i][0]);
            acc[i][1] = vf_fma(c, v1, acc[i][1]);
          }
        }
      }
      UNROLL for (int i = 0; i < RB; i++) {
        vf_store(dst + (r + i) * w + c0, acc[i][0]);
        vf_store(dst + (r + i) * w + c0 + VL, acc[i][1]);
      }
    }
    for (int i = 0; c0 < w && i < RB; i++)
      for (int64_t j = 0; j < lim[i]; j++)
        axpy(w - c0, Wm[(r + i) * C + j], src + j * w + c0,
             dst + (r + i) * w + c0);
  }
  for (; r < nq; r++) {
    const int64_t lim = row_limit(d, i0 + r, ka, nk);
    for (int64_t j = 0; j < lim; j++)
      axpy(w, Wm[r * C + j], src + j * w, dst + r * w);
  }
}

/* The transpose: dst[j] += sum_{i: j < lim_i} Wm[i][j] src[i] for the nk
 * keys of the chunk (src rows: the chunk's rows), rows i ascending. */
static void keys_rows(const lin_dims *d, int64_t i0, int64_t nq, int64_t ka,
                      int64_t nk, const float *Wm, const float *src, int64_t w,
                      float *dst) {
  int64_t lim[C];
  for (int64_t i = 0; i < nq; i++)
    lim[i] = row_limit(d, i0 + i, ka, nk);
  int64_t j = 0;
  for (; j + RB <= nk; j += RB) {
    int64_t c0 = 0;
    for (; c0 + CB <= w; c0 += CB) {
      vf acc[RB][2];
      UNROLL for (int r = 0; r < RB; r++) {
        acc[r][0] = vf_load(dst + (j + r) * w + c0);
        acc[r][1] = vf_load(dst + (j + r) * w + c0 + VL);
      }
      for (int64_t i = 0; i < nq; i++) {
        if (lim[i] <= j)
          continue;
        const vf v0 = vf_load(src + i * w + c0);
        const vf v1 = vf_load(src + i * w + c0 + VL);
        UNROLL for (int r = 0; r < RB; r++) {
          if (j + r < lim[i]) {
            const vf c = vf_set1(Wm[i * C + j + r]);
            acc[r][0] = vf_fma(c, v0, acc[r][0]);
            acc[r][1] = vf_fma(c, v1, acc[r][1]);
          }
        }
      }
      UNROLL for (int r = 0; r < RB; r++) {
        vf_store(dst + (j + r) * w + c0, acc[r][0]);
        vf_store(dst + (j + r) * w + c0 + VL, acc[r][1]);
      }
    }
    for (int r = 0; c0 < w && r < RB; r++)
      for (int64_t i = 0; i < nq; i++)
        if (j + r < lim[i])
          axpy(w - c0, Wm[i * C + j + r], src + i * w + c0,
               dst + (j + r) * w + c0);
  }
  for (; j < nk; j++)
    for (int64_t i = 0; i < nq; i++)
      if (j < lim[i])
        axpy(w, Wm[i * C + j], src + i * w, dst + j * w);
}

/* num, den of the chunk's nq rows [i0, ..) from the state, then from the
 * chunk's nk keys [ka, ..) (pk, pkT, vc loaded); the weights W [nq x nk]
 * (rows C apart) are kept for the caller. */
static void chunk_rows(const lin_dims *d, lin_scratch *s, int64_t i0,
                       int64_t nq, int64_t ka, int64_t nk) {
  mat_mat(s->pq, d->d, nq, s->S, d->d, d->dv, s->num, d->dv);
  for (int64_t i = 0; i < nq; i++)
    s->den[i] = dot(s->pq + i * d->d, s->z, d->d);
  if (nk == 0)
    return;
  mat_mat(s->pq, d->d, nq, s->pkT, d->d, nk, s->W, C);
  for (int64_t i = 0; i < nq; i++) {
    const int64_t lim = row_limit(d, i0 + i, ka, nk);
    for (int64_t j = 0; j < lim; j++)
      s->den[i] += s->W[i * C + j];
  }
  rows_keys(d, i0, nq, ka, nk, s->W, s->vc, d->dv, s->num);
}

void LIN_NAME(lin_forward_item)(const attn_linear_params *p, const lin_dims *d,
                                int64_t b, int64_t h, float *scratch) {
  lin_scratch s = carve(d, scratch, 0);
  const int64_t g = h / d->group;
  memset(s.S, 0, (size_t)(d->d * d->dv) * sizeof(float));
  memset(s.z, 0, (size_t)d->d * sizeof(float));
  state_add_keys(p, d, b, g, 0, d->causal ? key_edge(d, 0) : d->sk, s.S, s.z,
                 s.pk, s.vc);
  for (int64_t i0 = 0; i0 < d->sq; i0 += C) {
    const int64_t nq = ATTN_MIN((int64_t)C, d->sq - i0);
    const int64_t ka = d->causal ? key_edge(d, i0) : 0;
    const int64_t nk = d->causal ? key_edge(d, i0 + nq) - ka : 0;
    load_phi_rows(&p->q, b, i0, nq, h, d->d, s.pq);
    if (nk > 0) {
      load_phi_rows(&p->k, b, ka, nk, g, d->d, s.pk);
      load_rows(&p->v, b, ka, nk, g, d->dv, s.vc);
      transpose(s.pk, nk, d->d, s.pkT);
    }
    chunk_rows(d, &s, i0, nq, ka, nk);
    for (int64_t i = 0; i < nq; i++) {
      float *num = s.num + i * d->dv;
      const float inv = 1.0f / lin_guard(s.den[i]);
      for (int64_t c = 0; c < d->dv; c++)
        num[c] *= inv;
      store_row(&p->o, b, i0 + i, h, num);
    }
    if (nk > 0)
      state_add(s.S, s.z, s.pk, s.vc, nk, d->d, d->dv);
  }
}

/* ---------------------------------------------------------------------- */
/* Backward, pass A: dq of query head h, D and t of its rows              */
/* ---------------------------------------------------------------------- */

static void pass_a(const attn_linear_params *p, const lin_dims *d, int64_t b,
                   int64_t h, lin_scratch *s) {
  const int64_t g = h / d->group, hl = h % d->group;
  float *Dr = s->Dr + hl * d->sq, *Tr = s->Tr + hl * d->sq;
  memset(s->S, 0, (size_t)(d->d * d->dv) * sizeof(float));
  memset(s->z, 0, (size_t)d->d * sizeof(float));
  state_add_keys(p, d, b, g, 0, d->causal ? key_edge(d, 0) : d->sk, s->S, s->z,
                 s->pk, s->vc);
  for (int64_t i0 = 0; i0 < d->sq; i0 += C) {
    const int64_t nq = ATTN_MIN((int64_t)C, d->sq - i0);
    const int64_t ka = d->causal ? key_edge(d, i0) : 0;
    const int64_t nk = d->causal ? key_edge(d, i0 + nq) - ka : 0;
    load_phi_rows(&p->q, b, i0, nq, h, d->d, s->pq);
    load_rows(&p->dout, b, i0, nq, h, d->dv, s->gq);
    if (nk > 0) {
      load_phi_rows(&p->k, b, ka, nk, g, d->d, s->pk);
      load_rows(&p->v, b, ka, nk, g, d->dv, s->vc);
      transpose(s->pk, nk, d->d, s->pkT);
      transpose(s->vc, nk, d->dv, s->vT);
    }
    transpose(s->S, d->d, d->dv, s->ST);
    chunk_rows(d, s, i0, nq, ka, nk);
    for (int64_t i = 0; i < nq; i++) {
      float *gi = s->gq + i * d->dv, *num = s->num + i * d->dv;
      const float den = s->den[i], D = lin_guard(den);
      const int sees = row_sees(d, i0 + i);
      float go = 0.0f; /* g . num */
      for (int64_t c = 0; c < d->dv; c++)
        go += gi[c] * num[c];
      /* tD = t D = -(g . o) (0 under the guard) */
      Tr[i0 + i] = !sees || den < FLT_MIN ? 0.0f : -(go / D);
      Dr[i0 + i] = D;
      if (!sees)
        memset(gi, 0, (size_t)d->dv * sizeof(float));
    }
    /* da D = ST^T g + tD z + sum_j (g . v_j + tD) b_j over the chunk's
     * keys; dq = (da D) phi'(q) / D: never g / D, which overflows under the
     * guard. The first term for all rows at once, into accdk [nq x d]. */
    mat_mat(s->gq, d->dv, nq, s->ST, d->dv, d->d, s->accdk, d->d);
    for (int64_t i = 0; i < nq; i++)
      axpy(d->d, Tr[i0 + i], s->z, s->accdk + i * d->d);
    if (nk > 0) { /* DW[i][j] = g_i . v_j + tD_i, then sum_j DW b_j */
      mat_mat(s->gq, d->dv, nq, s->vT, d->dv, nk, s->DW, C);
      for (int64_t i = 0; i < nq; i++)
        for (int64_t j = 0; j < nk; j++)
          s->DW[i * C + j] += Tr[i0 + i];
      rows_keys(d, i0, nq, ka, nk, s->DW, s->pk, d->d, s->accdk);
    }
    for (int64_t i = 0; i < nq; i++) {
      const float *a = s->pq + i * d->d;
      const float D = Dr[i0 + i];
      float *da = s->accdk + i * d->d;
      for (int64_t x = 0; x < d->d; x++)
        da[x] = da[x] * lin_dphi(a[x]) / D;
      store_row(&p->dq, b, i0 + i, h, da);
    }
    if (nk > 0)
      state_add(s->S, s->z, s->pk, s->vc, nk, d->d, d->dv);
  }
}

/* ---------------------------------------------------------------------- */
/* Backward, pass B: dk, dv of kv head g                                  */
/* ---------------------------------------------------------------------- */

/* Rows of query head h in [i0, i0 + nq): pq = phi(q) / D, gq = dout (0
 * for a row that sees no key). */
static void load_rows_b(const attn_linear_params *p, const lin_dims *d,
                        int64_t b, int64_t h, int64_t i0, int64_t nq,
                        lin_scratch *s) {
  const float *Dr = s->Dr + (h % d->group) * d->sq;
  load_phi_rows(&p->q, b, i0, nq, h, d->d, s->pq);
  load_rows(&p->dout, b, i0, nq, h, d->dv, s->gq);
  for (int64_t i = 0; i < nq; i++) {
    float *gi = s->gq + i * d->dv, *a = s->pq + i * d->d;
    if (!row_sees(d, i0 + i))
      memset(gi, 0, (size_t)d->dv * sizeof(float));
    const float D = Dr[i0 + i];
    for (int64_t x = 0; x < d->d; x++)
      a[x] /= D;
  }
}

/* R += sum_i (a_i / D_i) g_i^T, y += sum_i tD_i (a_i / D_i) */
static void r_add(const lin_dims *d, lin_scratch *s, int64_t h, int64_t i0,
                  int64_t nq) {
  const float *Tr = s->Tr + (h % d->group) * d->sq;
  outer_add(s->R, s->pq, s->gq, nq, d->d, d->dv);
  for (int64_t i = 0; i < nq; i++)
    axpy(d->d, Tr[i0 + i], s->pq + i * d->d, s->y);
}

/* accdk[j] = RT^T v_j + y, accdv[j] = R^T b_j for the nk loaded keys */
static void keys_from_r(const lin_dims *d, lin_scratch *s, int64_t nk) {
  transpose(s->R, d->d, d->dv, s->RT);
  mat_mat(s->vc, d->dv, nk, s->RT, d->dv, d->d, s->accdk, d->d);
  for (int64_t j = 0; j < nk; j++)
    axpy(d->d, 1.0f, s->y, s->accdk + j * d->d);
  mat_mat(s->pk, d->d, nk, s->R, d->d, d->dv, s->accdv, d->dv);
}

/* The chunk's rows of head h (loaded: a' = a / D, g) into its nk keys
 * [ka, ..): w_ij / D_i = a'_i . b_j, dw_ij D_i = g_i . v_j + tD_i,
 * db_j += dw_ij a_i = (dw_ij D_i) a'_i, dv_j += (w_ij / D_i) g_i. */
static void keys_from_rows(const lin_dims *d, lin_scratch *s, int64_t h,
                           int64_t i0, int64_t nq, int64_t ka, int64_t nk) {
  const float *Tr = s->Tr + (h % d->group) * d->sq;
  mat_mat(s->pq, d->d, nq, s->pkT, d->d, nk, s->W, C);
  mat_mat(s->gq, d->dv, nq, s->vT, d->dv, nk, s->DW, C);
  for (int64_t i = 0; i < nq; i++)
    for (int64_t j = 0; j < nk; j++)
      s->DW[i * C + j] += Tr[i0 + i];
  keys_rows(d, i0, nq, ka, nk, s->DW, s->pq, d->d, s->accdk);
  keys_rows(d, i0, nq, ka, nk, s->W, s->gq, d->dv, s->accdv);
}

/* dk = accdk * phi'(k), dv = accdv for the nk keys [k0, ..) */
static void store_keys(const attn_linear_params *p, const lin_dims *d,
                       int64_t b, int64_t g, int64_t k0, int64_t nk,
                       lin_scratch *s) {
  for (int64_t j = 0; j < nk; j++) {
    float *dk = s->accdk + j * d->d;
    const float *bk = s->pk + j * d->d;
    for (int64_t x = 0; x < d->d; x++)
      dk[x] *= lin_dphi(bk[x]);
    store_row(&p->dk, b, k0 + j, g, dk);
    store_row(&p->dv, b, k0 + j, g, s->accdv + j * d->dv);
  }
}

/* Keys [k0, k1) that every row counted in R sees: from R and y alone. */
static void keys_all_rows(const attn_linear_params *p, const lin_dims *d,
                          int64_t b, int64_t g, int64_t k0, int64_t k1,
                          lin_scratch *s) {
  for (int64_t j0 = k0; j0 < k1; j0 += C) {
    const int64_t n = ATTN_MIN((int64_t)C, k1 - j0);
    load_phi_rows(&p->k, b, j0, n, g, d->d, s->pk);
    load_rows(&p->v, b, j0, n, g, d->dv, s->vc);
    keys_from_r(d, s, n);
    store_keys(p, d, b, g, j0, n, s);
  }
}

static void pass_b(const attn_linear_params *p, const lin_dims *d, int64_t b,
                   int64_t g, lin_scratch *s) {
  const int64_t h0 = g * d->group;
  memset(s->R, 0, (size_t)(d->d * d->dv) * sizeof(float));
  memset(s->y, 0, (size_t)d->d * sizeof(float));
  if (!d->causal) {
    for (int64_t h = h0; h < h0 + d->group; h++)
      for (int64_t i0 = 0; i0 < d->sq; i0 += C) {
        const int64_t nq = ATTN_MIN((int64_t)C, d->sq - i0);
        load_rows_b(p, d, b, h, i0, nq, s);
        r_add(d, s, h, i0, nq);
      }
    keys_all_rows(p, d, b, g, 0, d->sk, s);
    return;
  }
  const int64_t last = (d->sq - 1) / C * C;
  for (int64_t i0 = last; i0 >= 0; i0 -= C) {
    const int64_t nq = ATTN_MIN((int64_t)C, d->sq - i0);
    const int64_t ka = key_edge(d, i0), nk = key_edge(d, i0 + nq) - ka;
    if (nk > 0) {
      load_phi_rows(&p->k, b, ka, nk, g, d->d, s->pk);
      load_rows(&p->v, b, ka, nk, g, d->dv, s->vc);
      transpose(s->pk, nk, d->d, s->pkT);
      transpose(s->vc, nk, d->dv, s->vT);
      keys_from_r(d, s, nk); /* the rows after the chunk */
    }
    for (int64_t h = h0; h < h0 + d->group; h++) {
      load_rows_b(p, d, b, h, i0, nq, s);
      if (nk > 0)
        keys_from_rows(d, s, h, i0, nq, ka, nk);
      r_add(d, s, h, i0, nq);
    }
    if (nk > 0)
      store_keys(p, d, b, g, ka, nk, s);
  }
  keys_all_rows(p, d, b, g, 0, key_edge(d, 0), s);
  /* keys no row sees (top-left with seq_k > seq_q): zero gradients */
  memset(s->accdk, 0, (size_t)(d->d) * sizeof(float));
  memset(s->accdv, 0, (size_t)(d->dv) * sizeof(float));
  for (int64_t j = key_edge(d, d->sq); j < d->sk; j++) {
    store_row(&p->dk, b, j, g, s->accdk);
    store_row(&p->dv, b, j, g, s->accdv);
  }
}

void LIN_NAME(lin_backward_item)(const attn_linear_params *p, const lin_dims *d,
                                 int64_t b, int64_t g, float *scratch) {
  lin_scratch s = carve(d, scratch, 1);
  for (int64_t h = g * d->group; h < (g + 1) * d->group; h++)
    pass_a(p, d, b, h, &s);
  pass_b(p, d, b, g, &s);
}
