/* Steps (1) and (4) of the decode kernel (decode_body.h) with bf16 dot
 * products. (1):
 * S = scale * (Q Kᵀ) when q and k are both bf16 (ATTN_DEC_BF16DOT), the
 * forward's rule for bf16 Q and K (docs/bf16.md): the products are exact,
 * the pairs summed by vf_dot2 (vdpbf16ps, or its exact emulation), the
 * lanes by the decode kernel's horizontal sum, then times the scale (never
 * applied to a bf16 operand). Against the widening path it halves the
 * arithmetic per key and reads K without converting it.
 *
 * Before including: simd.h with ATTN_SIMD_BF16, decode_kernels.h and
 * KSUFFIX. Defines attn_dec_qk_bf16_<KSUFFIX> and attn_dec_pv_bf16_<KSUFFIX>
 * (decode_kernels.h), the functions the decode framework hands the kernel
 * (attn_dec_chunk.qk, .pv). The chunk's q holds, per row,
 * dp bf16 values (unscaled) where the f32 kernels keep dp floats; dp is a
 * multiple of 2 VL and equals the head dim (decode.c checks both). */
#include "kernels/decode_common.h"

/* s0[r], s1[r] (row stride lds) = q[r] . k0, q[r] . k1 for mr <= 4 rows
 * (raw sums: dqb_scale scales them). */
static ALWAYS_INLINE void KFN(dqb_dot)(const int mr, const uint16_t *q,
                                       int64_t dp, const uint16_t *k0,
                                       const uint16_t *k1, float *s0, float *s1,
                                       int64_t lds) {
  vf c0[4], c1[4];
  UNROLL for (int r = 0; r < mr; r++) {
    c0[r] = vf_zero();
    c1[r] = vf_zero();
  }
  for (int64_t x = 0; x < dp; x += 2 * VL) {
    const vbf a = vbf_load(k0 + x), b = vbf_load(k1 + x);
    UNROLL for (int r = 0; r < mr; r++) {
      vbf qv = vbf_load(q + r * dp + x);
      DEC_IN_REG(qv);
      c0[r] = vf_dot2(c0[r], qv, a);
      c1[r] = vf_dot2(c1[r], qv, b);
    }
  }
  KFN(dec_dot_store)(mr, c0, c1, s0, s1, lds);
}

/* Rows of 4 keys: their 16 sums reduced together (on AVX-512 in one
 * dec_hsum16, which leaves the sum of (row r, key k), accumulator r + 4 k,
 * in block r, lane k), then times the scale, one 128-bit store per row.
 * Elsewhere a horizontal sum each. */
static ALWAYS_INLINE void KFN(dqb_dot4x4)(const uint16_t *q, int64_t dp,
                                          const uint16_t *const *k, float *s,
                                          int64_t lds, float scale) {
  vf c[16];
  UNROLL for (int i = 0; i < 16; i++) c[i] = vf_zero();
  for (int64_t x = 0; x < dp; x += 2 * VL) {
    vbf kv[4];
    UNROLL for (int kk = 0; kk < 4; kk++) kv[kk] = vbf_load(k[kk] + x);
    UNROLL for (int r = 0; r < 4; r++) {
      vbf qv = vbf_load(q + r * dp + x);
      DEC_IN_REG(qv);
      UNROLL for (int kk = 0; kk < 4; kk++) c[r + 4 * kk] =
          vf_dot2(c[r + 4 * kk], qv, kv[kk]);
    }
  }
#if defined(ATTN_SIMD_AVX512)
  KFN(dec_store16)
  (_mm512_mul_ps(KFN(dec_hsum16)(c), _mm512_set1_ps(scale)), s, lds);
#else
  UNROLL for (int r = 0; r < 4; r++) UNROLL for (int kk = 0; kk < 4; kk++)
      s[r * lds + kk] = vf_hsum(c[r + 4 * kk]) * scale;
#endif
}

/* Row r of the columns j0 .. j1 - 1 (and the spare last column): S =
 * scale * (the sums), element by element. */
static ALWAYS_INLINE void KFN(dqb_scale)(float *s, int mr, int64_t lds,
                                         int64_t j0, int64_t j1, float scale) {
  for (int r = 0; r < mr; r++)
    for (int64_t j = j0; j < j1; j++)
      s[r * lds + j] *= scale;
}

/* Two keys for rows r0 .. r0 + mr - 1 of one head (a key pair, or half of
 * a group of four when fewer than four rows remain). */
static ALWAYS_INLINE void KFN(dqb_pair)(int mr, const uint16_t *q, int64_t dp,
                                        const uint16_t *k0, const uint16_t *k1,
                                        float *s, int64_t j, int pair,
                                        int64_t lds, float scale) {
  float *s0 = s + j;
  float *s1 = pair ? s0 + 1 : s + lds - 1;
  switch (mr) {
  case 1:
    KFN(dqb_dot)(1, q, dp, k0, k1, s0, s1, lds);
    break;
  case 2:
    KFN(dqb_dot)(2, q, dp, k0, k1, s0, s1, lds);
    break;
  case 3:
    KFN(dqb_dot)(3, q, dp, k0, k1, s0, s1, lds);
    break;
  default:
    KFN(dqb_dot)(4, q, dp, k0, k1, s0, s1, lds);
    break;
  }
  KFN(dqb_scale)(s, mr, lds, j, j + 1 + pair, scale);
}

/* Keys four at a time in memory order (all heads of keys j .. j + 3), as
 * dec_qk_mode (decode_body.h) takes them two at a time; a last group of
 * fewer keys, and rows past a multiple of four, in pairs. */
void KFN(attn_dec_qk_bf16)(const attn_dec_chunk *c) {
  const int64_t dp = c->dp, n = c->jb - c->ja, lds = ATTN_DEC_LDS;
  const int rows = c->rows;
  const int64_t kb = 2 * c->d;
  const float scale = c->scale;
  for (int64_t j = 0; j < n; j += 4) {
    const int64_t nk = ATTN_MIN(4, n - j);
    attn_dec_pf pf = {j + 2 * DEC_PREFETCH, 0};
    for (int h = 0; h < c->nh; h++) {
      KFN(dec_prefetch_next)(c->krow, c->kstep, kb, n, c->nh, 4, &pf);
      const uint16_t *k[4];
      for (int kk = 0; kk < 4; kk++)
        k[kk] =
            (const uint16_t *)((const char *)c->krow[j + ATTN_MIN(kk, nk - 1)] +
                               h * c->kstep);
      const uint16_t *q = (const uint16_t *)c->q + (int64_t)h * rows * dp;
      float *s = c->s + (int64_t)h * rows * lds;
      for (int r0 = 0; r0 < rows; r0 += 4) {
        const int mr = ATTN_MIN(4, rows - r0);
        const uint16_t *qr = q + r0 * dp;
        float *sr = s + r0 * lds;
        if (mr == 4 && nk == 4) {
          KFN(dqb_dot4x4)(qr, dp, k, sr + j, lds, scale);
          continue;
        }
        KFN(dqb_pair)(mr, qr, dp, k[0], k[1], sr, j, nk > 1, lds, scale);
        if (nk > 2)
          KFN(dqb_pair)(mr, qr, dp, k[2], k[3], sr, j + 2, nk > 3, lds, scale);
      }
    }
  }
}

/* Step (4) with bf16 dot products (ATTN_DEC_BF16DOT V: bf16 q, k, v and a
 * bf16 output, the forward's rule for rounding P, docs/bf16.md): P rounded
 * to bf16 once (l has summed it unrounded, as in the forward), then o +=
 * P V by vf_dot2 over pairs of keys, eight keys per update of o. The pairs
 * (v_j[x], v_j+1[x]) come from two rows by one interleave: on AVX-512
 * vpunpck{l,h}wd, which leaves dims in the order dqb_unpermute undoes at
 * the chunk's end; elsewhere lane i is dim i (low vector) and VL + i. */
#if defined(ATTN_SIMD_AVX512)
#define DQB_PERMUTED 1
#else
#define DQB_PERMUTED 0
#endif

static ALWAYS_INLINE void KFN(dqb_vpairs)(const uint16_t *a, const uint16_t *b,
                                          vbf *lo, vbf *hi) {
#if defined(ATTN_SIMD_AVX512)
  const __m512i va = _mm512_loadu_si512((const void *)a);
  const __m512i vb = _mm512_loadu_si512((const void *)b);
  *lo = (vbf)_mm512_unpacklo_epi16(va, vb);
  *hi = (vbf)_mm512_unpackhi_epi16(va, vb);
#else
  for (int i = 0; i < VL; i++) {
    lo->x[2 * i] = a[i];
    lo->x[2 * i + 1] = b[i];
    hi->x[2 * i] = a[VL + i];
    hi->x[2 * i + 1] = b[VL + i];
  }
#endif
}

#if DQB_PERMUTED
/* Per block of 2 VL = 32 dims: element e of the low half holds dim
 * 8 (e / 4) + e % 4, of the high half dim 8 (e / 4) + 4 + e % 4
 * (vpunpck* work within 128-bit lanes); back to dim order. */
static void KFN(dqb_unpermute)(float *o, int64_t rows, int64_t dvp) {
  float t[2 * VL];
  for (int64_t r = 0; r < rows; r++)
    for (int64_t b = 0; b < dvp; b += 2 * VL) {
      float *blk = o + r * dvp + b;
      for (int e = 0; e < VL; e++) {
        t[8 * (e / 4) + e % 4] = blk[e];
        t[8 * (e / 4) + 4 + e % 4] = blk[VL + e];
      }
      memcpy(blk, t, sizeof t);
    }
}
#endif

/* Keys j .. j + 7 (v[k], a zero row past the chunk) for `rows` rows of one
 * head: p[r] the row's bf16 probabilities from key j on, o[r] its sums.
 * Eight keys per update of o: with four, its loads and stores (a 512-bit
 * store takes two cycles on Zen 4) bounded the loop, not the dot products. */
static ALWAYS_INLINE void KFN(dqb_pv8)(const int rows, const uint16_t *p,
                                       const uint16_t *const *v, float *o,
                                       int64_t dvp) {
  vbf pp[4][4];
  const int hoist = rows <= 4;
  for (int r = 0; r < (hoist ? rows : 0); r++)
    for (int k = 0; k < 4; k++)
      pp[r][k] = vbf_pair(p + r * 2 * ATTN_DEC_LDS + 2 * k);
  for (int64_t x = 0; x < dvp; x += 2 * VL) {
    vbf a[4], a2[4];
    UNROLL for (int k = 0; k < 4; k++)
        KFN(dqb_vpairs)(v[2 * k] + x, v[2 * k + 1] + x, &a[k], &a2[k]);
    for (int r = 0; r < rows; r++) {
      const uint16_t *pr = p + r * 2 * ATTN_DEC_LDS;
      float *dst = o + r * dvp + x;
      vf t = vf_load(dst), t2 = vf_load(dst + VL);
      UNROLL for (int k = 0; k < 4; k++) {
        const vbf pk = hoist ? pp[r][k] : vbf_pair(pr + 2 * k);
        t = vf_dot2(t, pk, a[k]);
        t2 = vf_dot2(t2, pk, a2[k]);
      }
      vf_store(dst, t);
      vf_store(dst + VL, t2);
    }
  }
}

/* One head's rows at a constant count (so the row loops unroll), or any. */
#define DQB_PV_FN(R)                                                           \
  static NOINLINE void KFN(dqb_pv8_##R)(int rows, const uint16_t *p,           \
                                        const uint16_t *const *v, float *o,    \
                                        int64_t dvp) {                         \
    KFN(dqb_pv8)(R ? R : rows, p, v, o, dvp);                                  \
  }
DQB_PV_FN(1)
DQB_PV_FN(2)
DQB_PV_FN(4)
DQB_PV_FN(0)

void KFN(attn_dec_pv_bf16)(const attn_dec_chunk *c) {
  const int64_t n = c->jb - c->ja, dvp = c->dvp, lds = ATTN_DEC_LDS;
  const int64_t ncol = (n + VL - 1) / VL * VL;
  const int rows = c->rows;
  /* P to bf16, in place at the front of each score row (element j's two
   * bytes never reach floats not yet read) */
  for (int64_t rr = 0; rr < (int64_t)c->nh * rows; rr++) {
    float *x = c->s + rr * lds;
    for (int64_t j = 0; j < ncol; j += VL)
      vbf_store1((uint16_t *)x + j, vf_load(x + j));
  }
  uint16_t *zero = (uint16_t *)c->stage; /* the partner of a missing key */
  memset(zero, 0, sizeof(uint16_t) * (size_t)dvp);
  const int64_t vb = 2 * c->dv;
  for (int64_t j = 0; j < n; j += 8) {
    const int64_t nk = ATTN_MIN(8, n - j);
    attn_dec_pf pf = {j + 2 * DEC_PREFETCH, 0};
    for (int h = 0; h < c->nh; h++) {
      KFN(dec_prefetch_next)(c->vrow, c->vstep, vb, n, c->nh, 8, &pf);
      const uint16_t *v[8];
      for (int k = 0; k < 8; k++)
        v[k] = k < nk ? (const uint16_t *)((const char *)c->vrow[j + k] +
                                           h * c->vstep)
                      : zero;
      const uint16_t *p =
          (const uint16_t *)(c->s + (int64_t)h * rows * lds) + j;
      float *o = c->part[h] + 2 * c->pstride;
      switch (rows) {
      case 1:
        KFN(dqb_pv8_1)(1, p, v, o, dvp);
        break;
      case 2:
        KFN(dqb_pv8_2)(2, p, v, o, dvp);
        break;
      case 4:
        KFN(dqb_pv8_4)(4, p, v, o, dvp);
        break;
      default:
        KFN(dqb_pv8_0)(rows, p, v, o, dvp);
        break;
      }
    }
  }
#if DQB_PERMUTED
  for (int h = 0; h < c->nh; h++)
    KFN(dqb_unpermute)(c->part[h] + 2 * c->pstride, rows, dvp);
#endif
}
