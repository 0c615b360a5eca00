/* The decode kernel body (decode_kernels.h), written once against simd.h
 * and compiled once per ISA (generic/decode_generic.c, avx2/decode_avx2.c,
 * avx512/decode_avx512.c).
 *
 * Before including: simd.h, decode_kernels.h and
 *   KSUFFIX  name suffix (generic, avx2, avx512)
 *   DMR      rows of the P V register block
 *   DNV      vectors of the P V register block
 *
 * One chunk of keys for nh units of rows (decode_kernels.h), kv heads
 * side by side:
 *   (1) keys two at a time in memory order (every head of key j, then of
 *       j + 1), S = Q Kᵀ by 4 rows x 2 keys of vector dot products (on
 *       AVX-512 units of 4, 8 ... rows take four keys at a time, each
 *       group of four rows' sixteen sums in one transposing reduction,
 *       dec_dot4); bf16
 *       and f16 rows are widened in registers, strided rows or head dims
 *       that are not a whole number of vectors are converted to f32 rows
 *       first (the stage); the rows DEC_PREFETCH keys ahead are prefetched
 *       (a head's rows sit a whole row of heads apart);
 *   (2) per row: a non-finite raw score becomes NaN (the forward's rule:
 *       a non-finite Q or K element a row sees makes its result NaN), the
 *       score modifiers (score_body.h, T5 through its per-row table),
 *       -inf outside the row's interval;
 *   (3) per row: max, P = exp2 and the sum, as the tiled kernel does
 *       (softmax_exp_row: the exact (s - m) path for huge logits);
 *   (4) O += P V: up to ATTN_DEC_STREAM_ROWS rows per head (decoding),
 *       keys four at a time in memory order with the accumulators in L1;
 *       more rows, per head and sub-tile of ATTN_DEC_SUB keys, DMR x DNV
 *       register blocks whose sums are added to o at the sub-tile's end.
 * With bf16 q and k (and v and output) on an ISA with bf16 dot products,
 * steps (1) (and (4)) are the chunk's c->qk (c->pv) instead
 * (decode_bf16dot.h, ATTN_DEC_BF16DOT).
 * Keys outside ja .. jb - 1 are never read. A masked key's non-finite V
 * can reach the unit's other rows through 0 * inf, as the tiled kernel
 * allows inside one ATTN_TILE_Q x ATTN_TILE_K tile (the framework keeps a
 * unit inside one query tile; a chunk reads only the keys between the
 * first and the last any row of the unit sees).
 */
#include <float.h>
#include <math.h>

/* The loops over a unit's rows ask to be unrolled (UNROLL): their bound is
 * a constant wherever dec_pv_stream_rows is inlined, which clang cannot
 * always see below -O2 (the sanitizer builds); it then warns that it
 * could not, which is not an error here. */
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

#ifndef BC
#define BC ATTN_TILE_K /* score_body.h's block width (its T5 gradient) */
#endif
#include "kernels/score_body.h"

/* q8_0 and q4_0 (decode_kernels.h): read in place by the AVX2 and AVX-512
 * kernels, staged by the generic one. */
#if defined(ATTN_SIMD_AVX512) || defined(ATTN_SIMD_AVX2)
#define DEC_QDIRECT 1
#else
#define DEC_QDIRECT 0
#endif
#define DEC_QV (ATTN_QBLOCK / VL) /* vectors per block */

static ALWAYS_INLINE int64_t KFN(dec_qbytes)(const int mode) {
  return mode == ATTN_DEC_Q8_0 ? ATTN_Q8_0_BYTES : ATTN_Q4_0_BYTES;
}

#if DEC_QDIRECT
/* The f16 scale at the head of a block. */
static ALWAYS_INLINE float KFN(dec_qscale)(const uint8_t *blk) {
  uint16_t h;
  memcpy(&h, blk, 2);
  return _cvtsh_ss(h);
}

/* Vector xv (of DEC_QV) of a block's quants at qs, widened to f32 exactly:
 * q8_0 values q_i, q4_0 values n_i - 8 (elements 0..15 are the low
 * nibbles of bytes 0..15, elements 16..31 the high ones). */
static ALWAYS_INLINE vf KFN(dec_qld)(const int mode, const uint8_t *qs,
                                     int xv) {
#if defined(ATTN_SIMD_AVX512)
  if (mode == ATTN_DEC_Q8_0)
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(qs + 16 * xv))));
  __m128i b = _mm_loadu_si128((const __m128i *)qs);
  if (xv)
    b = _mm_srli_epi16(b, 4);
  b = _mm_and_si128(b, _mm_set1_epi8(0x0f));
  const __m512i w =
      _mm512_sub_epi32(_mm512_cvtepu8_epi32(b), _mm512_set1_epi32(8));
  return _mm512_cvtepi32_ps(w);
#else
  if (mode == ATTN_DEC_Q8_0)
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(qs + 8 * xv))));
  __m128i b = _mm_loadl_epi64((const __m128i *)(qs + 8 * (xv & 1)));
  if (xv >= 2)
    b = _mm_srli_epi16(b, 4);
  b = _mm_and_si128(b, _mm_set1_epi8(0x0f));
  const __m256i w =
      _mm256_sub_epi32(_mm256_cvtepu8_epi32(b), _mm256_set1_epi32(8));
  return _mm256_cvtepi32_ps(w);
#endif
}
#endif

/* n values of a quantised row to f32 (the stage): d q, exact, so the same
 * bits as attn_dequant_row on every ISA. */
static void KFN(dec_load_q)(const void *src, attn_dtype dt, int64_t n,
                            float *restrict dst) {
#if DEC_QDIRECT
  const int mode = dt == ATTN_DTYPE_Q8_0 ? ATTN_DEC_Q8_0 : ATTN_DEC_Q4_0;
  const int64_t bs = KFN(dec_qbytes)(mode);
  const uint8_t *blk = (const uint8_t *)src;
  for (int64_t x = 0; x < n; x += ATTN_QBLOCK, blk += bs) {
    const vf d = vf_set1(KFN(dec_qscale)(blk));
    UNROLL for (int xv = 0; xv < DEC_QV; xv++) {
      const vf w = KFN(dec_qld)(mode, blk + 2, xv);
      vf_store(dst + x + xv * VL, vf_mul(w, d));
    }
  }
#else
  attn_dequant_row(src, dt, n, 1.0f, dst);
#endif
}

/* One row of n elements (element stride st) to f32 dst[0..np), zero
 * padded. Every conversion is exact and the same on every ISA. */
static void KFN(dec_load)(const void *src, attn_dtype dt, int64_t st, int64_t n,
                          int64_t np, float *restrict dst) {
  int64_t i = 0;
  if (dt == ATTN_DTYPE_F32 && st == 1) {
    memcpy(dst, src, sizeof(float) * (size_t)n);
    i = n;
  } else if (dt == ATTN_DTYPE_BF16 && st == 1) {
    const uint16_t *s = (const uint16_t *)src;
#if defined(ATTN_SIMD_AVX512)
    for (; i + 16 <= n; i += 16) {
      const __m256i h = _mm256_loadu_si256((const __m256i *)(s + i));
      const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
      _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(w));
    }
#elif defined(ATTN_SIMD_AVX2)
    for (; i + 8 <= n; i += 8) {
      const __m128i h = _mm_loadu_si128((const __m128i *)(s + i));
      const __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
      _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
#endif
    for (; i < n; i++)
      dst[i] = attn_bf16_to_f32(s[i]);
  } else if (dt == ATTN_DTYPE_F16 && st == 1) {
    const uint16_t *s = (const uint16_t *)src;
#if defined(ATTN_SIMD_AVX512) || defined(ATTN_SIMD_AVX2)
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(
          dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
#endif
    for (; i < n; i++)
      dst[i] = attn_f16_to_f32(s[i]);
  } else if (attn_dtype_is_quant(dt)) {
    KFN(dec_load_q)(src, dt, n, dst); /* whole blocks, adjacent */
    i = n;
  } else {
    attn_load_row_f32(src, dt, st, n, 1.0f, dst);
    i = n;
  }
  for (; i < np; i++)
    dst[i] = 0.0f;
}

/* VL elements of a row at p, widened to f32 (exactly). */
static ALWAYS_INLINE vf KFN(dec_ld_bf16)(const uint16_t *p) {
#if defined(ATTN_SIMD_AVX512)
  const __m256i h = _mm256_loadu_si256((const __m256i *)p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
#elif defined(ATTN_SIMD_AVX2)
  const __m128i h = _mm_loadu_si128((const __m128i *)p);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
#else
  float t[VL];
  for (int i = 0; i < VL; i++)
    t[i] = attn_bf16_to_f32(p[i]);
  return vf_load(t);
#endif
}

#include "kernels/decode_common.h"

/* Pairs of bf16 (AVX2, AVX-512): 2 VL elements at p in one load, widened
 * with a shift and a mask, no shuffle: ev holds the even elements (0, 2,
 * ...), od the odd ones. A row read this way meets q (Q K) or o (P V)
 * reordered the same way, block by block of 2 VL (dec_even_odd): two
 * cheap integer operations per 2 VL elements instead of two widening
 * shuffles and two shifts, which on Zen 4 share pipes with the FMAs. */
#if defined(ATTN_SIMD_AVX512) || defined(ATTN_SIMD_AVX2)
#define DEC_BF16X2 1
static ALWAYS_INLINE void KFN(dec_ld_bf16x2)(const uint16_t *p, vf *ev,
                                             vf *od) {
#if defined(ATTN_SIMD_AVX512)
  const __m512i w = _mm512_loadu_si512((const void *)p);
  *ev = _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
  *od = _mm512_castsi512_ps(
      _mm512_and_si512(w, _mm512_set1_epi32((int)0xffff0000u)));
#else
  const __m256i w = _mm256_loadu_si256((const __m256i *)p);
  *ev = _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  *od = _mm256_castsi256_ps(
      _mm256_and_si256(w, _mm256_set1_epi32((int)0xffff0000u)));
#endif
}
#else
#define DEC_BF16X2 0
#endif

/* The order dec_ld_bf16x2 reads in, on rows of n floats (row stride ld):
 * each whole block of 2 VL becomes its even elements, then its odd ones
 * (inverse = 0), or back (inverse = 1); a partial last block stays. */
static void KFN(dec_even_odd)(float *x, int64_t rows, int64_t n, int64_t ld,
                              int inverse) {
  float t[2 * VL];
  for (int64_t r = 0; r < rows; r++)
    for (int64_t b = 0; b + 2 * VL <= n; b += 2 * VL) {
      float *blk = x + r * ld + b;
      for (int i = 0; i < VL; i++) {
        if (inverse) {
          t[2 * i] = blk[i];
          t[2 * i + 1] = blk[VL + i];
        } else {
          t[i] = blk[2 * i];
          t[VL + i] = blk[2 * i + 1];
        }
      }
      memcpy(blk, t, sizeof t);
    }
}

static ALWAYS_INLINE vf KFN(dec_ld_f16)(const uint16_t *p) {
#if defined(ATTN_SIMD_AVX512)
  return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
#elif defined(ATTN_SIMD_AVX2)
  return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
#else
  float t[VL];
  for (int i = 0; i < VL; i++)
    t[i] = attn_f16_to_f32(p[i]);
  return vf_load(t);
#endif
}

static ALWAYS_INLINE vf KFN(dec_ld)(const void *p, int64_t x, const int mode) {
  if (mode == ATTN_DEC_BF16)
    return KFN(dec_ld_bf16)((const uint16_t *)p + x);
  if (mode == ATTN_DEC_F16)
    return KFN(dec_ld_f16)((const uint16_t *)p + x);
  return vf_load((const float *)p + x);
}

/* s0[r], s1[r] (row stride lds) = dot(q[r], k0), dot(q[r], k1) for mr <= 4
 * rows of q. */
static ALWAYS_INLINE void KFN(dec_dot)(const int mr, const int mode,
                                       const float *restrict q, int64_t dp,
                                       const void *k0, const void *k1,
                                       float *s0, float *s1, int64_t lds,
                                       const char *pfp, int64_t pfn) {
  vf c0[4], c1[4];
  int64_t li = 0; /* lines of pfp asked for (dec_pf_lines) */
  UNROLL for (int r = 0; r < mr; r++) {
    c0[r] = vf_zero();
    c1[r] = vf_zero();
  }
#if DEC_QDIRECT
  if (mode == ATTN_DEC_Q8_0 || mode == ATTN_DEC_Q4_0) {
    DEC_PF_REST(pfp, pfn, li);
    /* d q is exact in f32 (an f16 scale times an integer below 2^8), so
     * each vector is dequantised exactly, then used like an f32 row: no
     * per-block partial sums, no chains of dependent FMAs. */
    const int64_t bs = KFN(dec_qbytes)(mode);
    const uint8_t *b0 = (const uint8_t *)k0, *b1 = (const uint8_t *)k1;
    for (int64_t x = 0; x < dp; x += ATTN_QBLOCK, b0 += bs, b1 += bs) {
      const vf d0 = vf_set1(KFN(dec_qscale)(b0));
      const vf d1 = vf_set1(KFN(dec_qscale)(b1));
      UNROLL for (int xv = 0; xv < DEC_QV; xv++) {
        const vf a = vf_mul(KFN(dec_qld)(mode, b0 + 2, xv), d0);
        const vf b = vf_mul(KFN(dec_qld)(mode, b1 + 2, xv), d1);
        UNROLL for (int r = 0; r < mr; r++) {
          vf qv = vf_load(q + r * dp + x + xv * VL);
          DEC_IN_REG(qv);
          c0[r] = vf_fma(qv, a, c0[r]);
          c1[r] = vf_fma(qv, b, c1[r]);
        }
      }
    }
    KFN(dec_dot_store)(mr, c0, c1, s0, s1, lds);
    return;
  }
#endif
  int64_t x = 0;
#if DEC_BF16X2
  if (mode == ATTN_DEC_BF16) /* q reordered (dec_even_odd) */
    for (; x + 2 * VL <= dp; x += 2 * VL) {
      vf a, a2, b, b2;
      KFN(dec_pf_lines)(DEC_PF_STEP, pfp, pfn, &li);
      KFN(dec_ld_bf16x2)((const uint16_t *)k0 + x, &a, &a2);
      KFN(dec_ld_bf16x2)((const uint16_t *)k1 + x, &b, &b2);
      UNROLL for (int r = 0; r < mr; r++) {
        vf qv = vf_load(q + r * dp + x), qv2 = vf_load(q + r * dp + x + VL);
        DEC_IN_REG(qv);
        DEC_IN_REG(qv2);
        c0[r] = vf_fma(qv, a, c0[r]);
        c1[r] = vf_fma(qv, b, c1[r]);
        c0[r] = vf_fma(qv2, a2, c0[r]);
        c1[r] = vf_fma(qv2, b2, c1[r]);
      }
    }
#endif
  for (; x < dp; x += VL) {
    KFN(dec_pf_lines)(DEC_PF_STEP, pfp, pfn, &li);
    const vf a = KFN(dec_ld)(k0, x, mode), b = KFN(dec_ld)(k1, x, mode);
    UNROLL for (int r = 0; r < mr; r++) {
      vf qv = vf_load(q + r * dp + x);
      DEC_IN_REG(qv);
      c0[r] = vf_fma(qv, a, c0[r]);
      c1[r] = vf_fma(qv, b, c1[r]);
    }
  }
  DEC_PF_REST(pfp, pfn, li);
  KFN(dec_dot_store)(mr, c0, c1, s0, s1, lds);
}

#if defined(ATTN_SIMD_AVX512)
/* s[r * lds + k] = dot(q[r], key k), r, k < 4: dec_dot's sums for four
 * keys at once (each accumulator takes the same products in the same
 * order, so the same bits), their sums in one dec_hsum16. Modes F32 (in
 * place), BF16 (q in dec_even_odd's order) and F16. */
static ALWAYS_INLINE void KFN(dec_dot4)(const int mode, const float *restrict q,
                                        int64_t dp, const void *const *k,
                                        float *s, int64_t lds, const char *pfp,
                                        int64_t pfn) {
  vf c[16];
  int64_t li = 0;
  UNROLL for (int i = 0; i < 16; i++) c[i] = vf_zero();
  int64_t x = 0;
  if (mode == ATTN_DEC_BF16) /* q reordered (dec_even_odd) */
    for (; x + 2 * VL <= dp; x += 2 * VL) {
      KFN(dec_pf_lines)(2 * DEC_PF_STEP, pfp, pfn, &li);
      vf qa[4], qb[4];
      UNROLL for (int r = 0; r < 4; r++) {
        qa[r] = vf_load(q + r * dp + x);
        qb[r] = vf_load(q + r * dp + x + VL);
        DEC_IN_REG(qa[r]);
        DEC_IN_REG(qb[r]);
      }
      UNROLL for (int kk = 0; kk < 4; kk++) {
        vf a, a2;
        KFN(dec_ld_bf16x2)((const uint16_t *)k[kk] + x, &a, &a2);
        UNROLL for (int r = 0; r < 4; r++) {
          c[r + 4 * kk] = vf_fma(qa[r], a, c[r + 4 * kk]);
          c[r + 4 * kk] = vf_fma(qb[r], a2, c[r + 4 * kk]);
        }
      }
    }
  for (; x < dp; x += VL) {
    KFN(dec_pf_lines)(2 * DEC_PF_STEP, pfp, pfn, &li);
    vf qv[4];
    UNROLL for (int r = 0; r < 4; r++) {
      qv[r] = vf_load(q + r * dp + x);
      DEC_IN_REG(qv[r]);
    }
    UNROLL for (int kk = 0; kk < 4; kk++) {
      const vf a = KFN(dec_ld)(k[kk], x, mode);
      UNROLL for (int r = 0; r < 4; r++) c[r + 4 * kk] =
          vf_fma(qv[r], a, c[r + 4 * kk]);
    }
  }
  DEC_PF_REST(pfp, pfn, li);
  KFN(dec_store16)(KFN(dec_hsum16)(c), s, lds);
}
#endif

/* Key j's row (j counted from ja) of head h: in place, or converted to
 * f32 into stage slot `slot` (ATTN_DEC_STAGED, read by the F32 mode's
 * loops: only that mode looks). */
static ALWAYS_INLINE const void *KFN(dec_key)(const attn_dec_chunk *c,
                                              const int mode, int64_t j, int h,
                                              int slot) {
  const char *at = (const char *)c->krow[j] + h * c->kstep;
  if (mode != ATTN_DEC_F32 || c->kmode != ATTN_DEC_STAGED)
    return at;
  float *dst = c->stage + slot * ATTN_MAX(c->dp, c->dvp);
  KFN(dec_load)(at, c->kdt, c->ks, c->d, c->dp, dst);
  return dst;
}

static ALWAYS_INLINE const void *KFN(dec_val)(const attn_dec_chunk *c,
                                              const int mode, int64_t j, int h,
                                              int slot) {
  const char *at = (const char *)c->vrow[j] + h * c->vstep;
  if (mode != ATTN_DEC_F32 || c->vmode != ATTN_DEC_STAGED)
    return at;
  float *dst = c->stage + slot * ATTN_MAX(c->dp, c->dvp);
  KFN(dec_load)(at, c->vdt, c->vs, c->dv, c->dvp, dst);
  return dst;
}

/* An f32 row of V for the register-blocked path: converted unless f32. */
static ALWAYS_INLINE const float *KFN(dec_val_f32)(const attn_dec_chunk *c,
                                                   int64_t j, int h, int slot) {
  const char *at = (const char *)c->vrow[j] + h * c->vstep;
  if (c->vmode == ATTN_DEC_F32)
    return (const float *)at;
  float *dst = c->stage + slot * ATTN_MAX(c->dp, c->dvp);
  KFN(dec_load)(at, c->vdt, c->vs, c->dv, c->dvp, dst);
  return dst;
}

/* (1) S = Q Kᵀ for every head and row, keys two at a time in memory order
 * (all heads of key j, then of j + 1 ...). An odd last key is paired with
 * itself, its copy going to the last (never used) column. */
static ALWAYS_INLINE void KFN(dec_qk_mode)(const attn_dec_chunk *c,
                                           const int mode, const int crows) {
  const int64_t dp = c->dp, n = c->jb - c->ja, lds = ATTN_DEC_LDS;
  const int rows = crows ? crows : c->rows;
  const int64_t kb = attn_row_bytes(c->kdt, c->ks, c->d);
  int64_t j = 0;
#if defined(ATTN_SIMD_AVX512)
  /* Rows in fours (a unit of 4, 8 ... query heads a kv head): keys four
   * at a time where they are read in place, each group's sixteen sums in
   * one reduction (dec_dot4); the rest two at a time. */
  if (rows % 4 == 0 && mode != ATTN_DEC_Q8_0 && mode != ATTN_DEC_Q4_0 &&
      (mode != ATTN_DEC_F32 || c->kmode != ATTN_DEC_STAGED))
    for (; j + 4 <= n; j += 4) {
      attn_dec_pf pf = {j + DEC_PREFETCH, 0};
      for (int h = 0; h < c->nh; h++) {
        const char *pfp;
        int64_t pfn;
        DEC_PREFETCH_SPAN(c->krow, c->kstep, kb, n, c->nh, 4, &pf, &pfp, &pfn);
        const void *k4[4];
        for (int kk = 0; kk < 4; kk++)
          k4[kk] = (const char *)c->krow[j + kk] + h * c->kstep;
        for (int r0 = 0; r0 < rows; r0 += 4) /* the first group prefetches */
          KFN(dec_dot4)
        (mode, c->q + ((int64_t)h * rows + r0) * dp, dp, k4,
         c->s + ((int64_t)h * rows + r0) * lds + j, lds, pfp, r0 ? 0 : pfn);
      }
    }
#endif
  for (; j < n; j += 2) {
    const int pair = j + 1 < n;
    attn_dec_pf pf = {j + DEC_PREFETCH, 0};
    for (int h = 0; h < c->nh; h++) {
      /* the rows of the keys DEC_PREFETCH ahead, nk = 2 a head: their
       * lines go one a step of the first dot product's loop */
      const char *pfp;
      int64_t pfn;
      DEC_PREFETCH_SPAN(c->krow, c->kstep, kb, n, c->nh, 2, &pf, &pfp, &pfn);
      const void *k0 = KFN(dec_key)(c, mode, j, h, 2 * h);
      const void *k1 = pair ? KFN(dec_key)(c, mode, j + 1, h, 2 * h + 1) : k0;
      const float *q = c->q + (int64_t)h * rows * dp;
      float *s = c->s + (int64_t)h * rows * lds;
      for (int r0 = 0; r0 < rows; r0 += 4) {
        float *s0 = s + r0 * lds + j;
        float *s1 = pair ? s0 + 1 : s + r0 * lds + lds - 1;
        const float *qr = q + r0 * dp;
        if (r0 > 0)
          pfn = 0; /* asked for by the first group of rows */
        switch (ATTN_MIN(4, rows - r0)) {
        case 1:
          KFN(dec_dot)(1, mode, qr, dp, k0, k1, s0, s1, lds, pfp, pfn);
          break;
        case 2:
          KFN(dec_dot)(2, mode, qr, dp, k0, k1, s0, s1, lds, pfp, pfn);
          break;
        case 3:
          KFN(dec_dot)(3, mode, qr, dp, k0, k1, s0, s1, lds, pfp, pfn);
          break;
        default:
          KFN(dec_dot)(4, mode, qr, dp, k0, k1, s0, s1, lds, pfp, pfn);
          break;
        }
      }
    }
  }
}

/* One function per mode (see dec_pv_stream: the same reason). */
#define DEC_QK_FN(M)                                                           \
  static NOINLINE void KFN(dec_qk_##M##_4)(const attn_dec_chunk *c) {          \
    KFN(dec_qk_mode)(c, ATTN_DEC_##M, 4);                                      \
  }                                                                            \
  static NOINLINE void KFN(dec_qk_##M)(const attn_dec_chunk *c) {              \
    if (c->rows == 4)                                                          \
      KFN(dec_qk_##M##_4)(c);                                                  \
    else                                                                       \
      KFN(dec_qk_mode)(c, ATTN_DEC_##M, 0);                                    \
  }
DEC_QK_FN(BF16)
DEC_QK_FN(F16)
DEC_QK_FN(F32)
#if DEC_QDIRECT
DEC_QK_FN(Q8_0)
DEC_QK_FN(Q4_0)
#endif

static void KFN(dec_qk)(const attn_dec_chunk *c) {
  switch (c->kmode) {
  case ATTN_DEC_BF16:
    KFN(dec_qk_BF16)(c);
    break;
  case ATTN_DEC_F16:
    KFN(dec_qk_F16)(c);
    break;
#if DEC_QDIRECT
  case ATTN_DEC_Q8_0:
    KFN(dec_qk_Q8_0)(c);
    break;
  case ATTN_DEC_Q4_0:
    KFN(dec_qk_Q4_0)(c);
    break;
#endif
  default: /* f32 in place or staged */
    KFN(dec_qk_F32)(c);
    break;
  }
}

/* (2)-(3) on row r of head h: scores of keys ja .. ja + n - 1 in
 * x[0..ncol). */
static void KFN(dec_softmax_row)(const attn_dec_chunk *c, int h, int r,
                                 float *x, int n, int ncol) {
  /* S = scale (q . k): the sums rounded, then scaled, as in the tiled
   * kernels (mk_qk.h); the bf16 dot products' qk has scaled them */
  const float scale = c->kmode == ATTN_DEC_BF16DOT ? 1.0f : c->scale;
  for (int j = 0; j < n; j++) { /* inf or NaN: the row's result is NaN */
    const float v = x[j] * scale;
    x[j] = fabsf(v) <= FLT_MAX ? v : NAN; /* no branch: vectorised */
  }
  for (int j = n; j < ncol; j++)
    x[j] = 0.0f;
  const attn_score *sc = &c->sc[h * c->rows + r];
  if (attn_score_any(sc)) {
    const float *t5 = NULL;
    if (sc->t5) {
      attn_score_t5_lut(sc, c->qi[r], c->ja, ncol, c->lut);
      t5 = c->lut;
    }
    KFN(score_fwd_row)(sc, c->qi[r], c->ja, x, NULL, t5, ncol);
  }
  const int64_t a = c->lo[r] - c->ja, b = ATTN_MIN(c->hi[r] - c->ja, n - 1);
  for (int64_t j = 0; j < ATTN_MIN(a, (int64_t)ncol); j++)
    x[j] = -INFINITY; /* before the row's interval */
  for (int64_t j = ATTN_MAX(b + 1, (int64_t)0); j < ncol; j++)
    x[j] = -INFINITY; /* after it */
  vf mx = vf_load(x);
  for (int j = VL; j < ncol; j += VL)
    mx = vf_max(mx, vf_load(x + j));
  const float m = vf_hmax(mx);
  /* Every key masked: P must be 0 and nothing may become NaN. */
  const float m_use = m == -INFINITY ? 0.0f : m;
  float *part = c->part[h];
  part[c->pstride + r] = vf_hsum(KFN(softmax_exp_row)(x, ncol, m_use));
  part[r] = m;
}

#include "kernels/decode_pv_body.h" /* (4) */

static void KFN(dec_chunk)(const attn_dec_chunk *cin) {
  attn_dec_chunk cq = *cin;
  if (!DEC_QDIRECT) { /* quantised rows: staged (dequantised) here */
    if (cq.kmode == ATTN_DEC_Q8_0 || cq.kmode == ATTN_DEC_Q4_0)
      cq.kmode = ATTN_DEC_STAGED;
    if (cq.vmode == ATTN_DEC_Q8_0 || cq.vmode == ATTN_DEC_Q4_0)
      cq.vmode = ATTN_DEC_STAGED;
  }
  const attn_dec_chunk *c = &cq;
  const int n = (int)(c->jb - c->ja);
  const int ncol = (n + VL - 1) / VL * VL;
  if (DEC_BF16X2 && c->kmode == ATTN_DEC_BF16)
    KFN(dec_even_odd)(c->q, (int64_t)c->nh * c->rows, c->dp, c->dp, 0);
  if (c->kmode == ATTN_DEC_BF16DOT)
    c->qk(c); /* (1), bf16 dot products */
  else
    KFN(dec_qk)(c); /* (1) */
  for (int h = 0; h < c->nh; h++) {
    float *o = c->part[h] + 2 * c->pstride;
    for (int r = 0; r < c->rows; r++) { /* (2), (3) */
      float *x = c->s + ((int64_t)h * c->rows + r) * ATTN_DEC_LDS;
      KFN(dec_softmax_row)(c, h, r, x, n, ncol);
    }
    memset(o, 0, sizeof(float) * (size_t)(c->rows * c->dvp));
  }
  if (c->vmode == ATTN_DEC_BF16DOT) {
    c->pv(c);                                   /* (4), bf16 dot products */
  } else if (c->rows <= ATTN_DEC_STREAM_ROWS) { /* (4) */
    KFN(dec_pv_stream)(c);
    if (DEC_BF16X2 && c->vmode == ATTN_DEC_BF16)
      for (int h = 0; h < c->nh; h++)
        KFN(dec_even_odd)
    (c->part[h] + 2 * c->pstride, c->rows, c->dvp, c->dvp, 1);
  } else
    for (int h = 0; h < c->nh; h++)
      KFN(dec_pv_tiles)(c, h);
}
