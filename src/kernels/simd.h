/* The small SIMD vocabulary the kernel body (fwd_body.h) is written in.
 *
 * Include once per ISA translation unit after defining exactly one of
 * ATTN_SIMD_AVX512, ATTN_SIMD_AVX2 or ATTN_SIMD_GENERIC. Every vector loop
 * in the kernels is written once against these names:
 *
 *   vf            a vector of VL floats
 *   vf_load/store unaligned load and store of VL floats
 *   vf_set1/zero  broadcast, zero
 *   vf_fma(a,b,c) a*b + c (fused on AVX2/AVX-512, two roundings in generic)
 *   vf_add/sub/mul/div/max/min, vf_hmax/vf_hsum (horizontal, fixed order)
 *   vf_round      round to nearest integer (ties to even), as float
 *   vf_pow2i      2^n for integral-valued n in [-127, 127]; 2^-127 -> 0.0
 *   vf_abs, vf_blend_lt(a, t, x, y): per lane a < t ? x : y
 *   vf_shl23      the bits of each lane shifted left by 23, as float
 *
 * The generic vocabulary is plain C on 8-float structs: no intrinsics, so
 * the reference kernels read as ordinary loops.
 */
#ifndef ATTN_KERNELS_SIMD_H
#define ATTN_KERNELS_SIMD_H

#include <stdint.h>
#include <string.h>

#if defined(ATTN_SIMD_AVX512)
#include <immintrin.h>
#define VL 16
typedef __m512 vf;
#define vf_load(p) _mm512_loadu_ps(p)
#define vf_store(p, x) _mm512_storeu_ps((p), (x))
#define vf_set1(x) _mm512_set1_ps(x)
#define vf_zero() _mm512_setzero_ps()
#define vf_fma(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define vf_add(a, b) _mm512_add_ps((a), (b))
#define vf_sub(a, b) _mm512_sub_ps((a), (b))
#define vf_mul(a, b) _mm512_mul_ps((a), (b))
#define vf_div(a, b) _mm512_div_ps((a), (b))
#define vf_max(a, b) _mm512_max_ps((a), (b))
#define vf_min(a, b) _mm512_min_ps((a), (b))
#define vf_round(a)                                                            \
  _mm512_roundscale_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
static inline vf vf_pow2i(vf n) {
  __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127));
  return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
static inline vf vf_abs(vf a) {
  return _mm512_castsi512_ps(
      _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(0x7fffffff)));
}
static inline vf vf_blend_lt(vf a, vf t, vf x, vf y) {
  __mmask16 k = _mm512_cmp_ps_mask(a, t, _CMP_LT_OQ);
  return _mm512_mask_blend_ps(k, y, x);
}
static inline vf vf_shl23(vf a) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(a), 23));
}
static inline float vf_hmax(vf a) { return _mm512_reduce_max_ps(a); }
static inline float vf_hsum(vf a) {
  __m256 lo = _mm512_castps512_ps256(a);
  __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
  __m256 s = _mm256_add_ps(lo, hi);
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}

#elif defined(ATTN_SIMD_AVX2)
#include <immintrin.h>
#define VL 8
typedef __m256 vf;
#define vf_load(p) _mm256_loadu_ps(p)
#define vf_store(p, x) _mm256_storeu_ps((p), (x))
#define vf_set1(x) _mm256_set1_ps(x)
#define vf_zero() _mm256_setzero_ps()
#define vf_fma(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define vf_add(a, b) _mm256_add_ps((a), (b))
#define vf_sub(a, b) _mm256_sub_ps((a), (b))
#define vf_mul(a, b) _mm256_mul_ps((a), (b))
#define vf_div(a, b) _mm256_div_ps((a), (b))
#define vf_max(a, b) _mm256_max_ps((a), (b))
#define vf_min(a, b) _mm256_min_ps((a), (b))
#define vf_round(a)                                                            \
  _mm256_round_ps((a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
static inline vf vf_pow2i(vf n) {
  __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
  return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
static inline vf vf_abs(vf a) {
  return _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}
static inline vf vf_blend_lt(vf a, vf t, vf x, vf y) {
  return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, t, _CMP_LT_OQ));
}
static inline vf vf_shl23(vf a) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(a), 23));
}
static inline float vf_hmax(vf a) {
  __m128 t = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  t = _mm_max_ps(t, _mm_movehl_ps(t, t));
  t = _mm_max_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}
static inline float vf_hsum(vf a) {
  __m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  t = _mm_add_ps(t, _mm_movehl_ps(t, t));
  t = _mm_add_ss(t, _mm_movehdup_ps(t));
  return _mm_cvtss_f32(t);
}

#elif defined(ATTN_SIMD_GENERIC)
#include <math.h>
#define VL 8
typedef struct vf {
  float x[VL];
} vf;
#define VF_MAP1(name, expr)                                                    \
  static inline vf name(vf a) {                                                \
    vf r;                                                                      \
    for (int i = 0; i < VL; i++)                                               \
      r.x[i] = (expr);                                                         \
    return r;                                                                  \
  }
#define VF_MAP2(name, expr)                                                    \
  static inline vf name(vf a, vf b) {                                          \
    vf r;                                                                      \
    for (int i = 0; i < VL; i++)                                               \
      r.x[i] = (expr);                                                         \
    return r;                                                                  \
  }
static inline vf vf_load(const float *p) {
  vf r;
  memcpy(r.x, p, sizeof r.x);
  return r;
}
static inline void vf_store(float *p, vf a) { memcpy(p, a.x, sizeof a.x); }
static inline vf vf_set1(float s) {
  vf r;
  for (int i = 0; i < VL; i++)
    r.x[i] = s;
  return r;
}
static inline vf vf_zero(void) { return vf_set1(0.0f); }
/* Multiply then add: the portable build may run where fmaf is a slow
 * library call, and the generic kernels are the reference, not the fast
 * path. */
static inline vf vf_fma(vf a, vf b, vf c) {
  vf r;
  for (int i = 0; i < VL; i++)
    r.x[i] = a.x[i] * b.x[i] + c.x[i];
  return r;
}
VF_MAP2(vf_add, a.x[i] + b.x[i])
VF_MAP2(vf_sub, a.x[i] - b.x[i])
VF_MAP2(vf_mul, a.x[i] * b.x[i])
VF_MAP2(vf_div, a.x[i] / b.x[i])
VF_MAP2(vf_max, a.x[i] > b.x[i] ? a.x[i] : b.x[i])
VF_MAP2(vf_min, a.x[i] < b.x[i] ? a.x[i] : b.x[i])
VF_MAP1(vf_round, nearbyintf(a.x[i]))
VF_MAP1(vf_abs, fabsf(a.x[i]))
static inline vf vf_pow2i(vf n) {
  vf r;
  for (int i = 0; i < VL; i++) {
    /* NaN: any exponent (the callers multiply by a NaN); no UB cast */
    const int32_t e = n.x[i] == n.x[i] ? (int32_t)n.x[i] : 0;
    uint32_t bits = (uint32_t)(e + 127) << 23;
    memcpy(&r.x[i], &bits, 4);
  }
  return r;
}
static inline vf vf_blend_lt(vf a, vf t, vf x, vf y) {
  vf r;
  for (int i = 0; i < VL; i++)
    r.x[i] = a.x[i] < t.x[i] ? x.x[i] : y.x[i];
  return r;
}
static inline vf vf_shl23(vf a) {
  vf r;
  for (int i = 0; i < VL; i++) {
    uint32_t u;
    memcpy(&u, &a.x[i], 4);
    u <<= 23;
    memcpy(&r.x[i], &u, 4);
  }
  return r;
}
static inline float vf_hmax(vf a) {
  float m = a.x[0];
  for (int i = 1; i < VL; i++)
    m = a.x[i] > m ? a.x[i] : m;
  return m;
}
static inline float vf_hsum(vf a) {
  float s = 0.0f;
  for (int i = 0; i < VL; i++)
    s += a.x[i];
  return s;
}
#else
#error "define one of ATTN_SIMD_AVX512, ATTN_SIMD_AVX2, ATTN_SIMD_GENERIC"
#endif

/* 2^f for |f| <= 1/2: degree-6 minimax polynomial (Horner). */
static inline vf vf_exp2_frac(vf f) {
  vf p = vf_set1(1.535336188319500e-4f);
  p = vf_fma(p, f, vf_set1(1.339887440266574e-3f));
  p = vf_fma(p, f, vf_set1(9.618437357674640e-3f));
  p = vf_fma(p, f, vf_set1(5.550332471162809e-2f));
  p = vf_fma(p, f, vf_set1(2.402264791363012e-1f));
  p = vf_fma(p, f, vf_set1(6.931472028550421e-1f));
  return vf_fma(p, f, vf_set1(1.0f));
}

/* 2^x for x <= ~127, built from the vocabulary above.
 * x = n + f with n = round(x), |f| <= 1/2; 2^f by a degree-6 polynomial
 * (minimax on [-1/2, 1/2]: max relative error 2.0e-9 with these
 * coefficients in exact arithmetic, 1.6e-8 with them rounded to f32);
 * inputs below -127 (including -inf) give exactly 0.
 * tests/test_simd.c measures the error over the whole range on every ISA
 * (about 1e-7 with the roundings). */
static inline vf vf_exp2(vf x) {
  /* The clamp's operand order keeps NaN: x86 max/min return their second
   * operand when either is NaN (and the generic ones do the same). */
  x = vf_max(vf_set1(-127.0f), x);
  x = vf_min(vf_set1(127.0f), x);
  const vf n = vf_round(x);
  const vf f = vf_sub(x, n);
  const vf p = vf_exp2_frac(f);
  return vf_mul(p, vf_pow2i(n));
}

/* 2^x for x <= 0 (or a tiny rounding above), the softmax's exp, with
 * vf_exp2's polynomial. AVX-512: f = x - round(x) in one vreduceps and the
 * scaling by 2^(x - f) in one vscalefps, which also takes -inf (f = 0) to
 * +0 and huge negative x to 0: 4 operations fewer than vf_exp2, 1.6-2%
 * of a forward on the Intel Xeon of bench/RESULTS.md. Below 2^-126 the
 * result is subnormal down to x = -150, +0 below (the others give +0 from
 * round(x) = -127 down). Elsewhere the rounding is done by adding 1.5*2^23
 * + 127, whose low mantissa bits are then round(x) + 127, the biased
 * exponent of 2^n; inputs below -127, and -inf, give exactly 0. NaN gives
 * NaN. Inputs must stay below 128 (the exponent would wrap; vscalefps
 * would overflow): the callers guarantee it (the softmax subtracts the
 * exact row max; the fused path of fwd_body.h checks its largest input and
 * redoes the block above 16). */
static inline vf vf_exp2_nonpos(vf x) {
#if defined(ATTN_SIMD_AVX512)
  const vf fr =
      _mm512_reduce_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm512_scalef_ps(vf_exp2_frac(fr), vf_sub(x, fr));
#else
  const vf magic = vf_set1(12583039.0f); /* 1.5 * 2^23 + 127 */
  x = vf_max(vf_set1(-127.0f), x);       /* NaN stays NaN (see vf_exp2) */
  const vf t = vf_add(x, magic);
  const vf f = vf_sub(x, vf_sub(t, magic)); /* x - round(x), |f| <= 1/2 */
  const vf p = vf_exp2_frac(f);
  return vf_mul(p, vf_shl23(t));
#endif
}

/* tanh(x): odd Taylor series below |x| = 0.4 (relative error < 1e-8 in
 * exact arithmetic), 1 - 2/(e^2|x| + 1) above, sign restored. */
static inline vf vf_tanh(vf x) {
  const vf a = vf_abs(x);
  const vf z = vf_mul(x, x);
  vf s = vf_set1(21844.0f / 6081075.0f);
  s = vf_fma(s, z, vf_set1(-1382.0f / 155925.0f));
  s = vf_fma(s, z, vf_set1(62.0f / 2835.0f));
  s = vf_fma(s, z, vf_set1(-17.0f / 315.0f));
  s = vf_fma(s, z, vf_set1(2.0f / 15.0f));
  s = vf_fma(s, z, vf_set1(-1.0f / 3.0f));
  s = vf_fma(vf_mul(s, z), x, x);
  const vf e = vf_exp2(vf_mul(a, vf_set1(2.0f * 1.4426950408889634f)));
  vf big =
      vf_sub(vf_set1(1.0f), vf_div(vf_set1(2.0f), vf_add(e, vf_set1(1.0f))));
  big = vf_blend_lt(x, vf_zero(), vf_sub(vf_zero(), big), big);
  return vf_blend_lt(a, vf_set1(0.4f), s, big);
}

/* The bf16 pair vocabulary, for translation units that also define
 * ATTN_SIMD_BF16 (the bf16 kernels; docs/bf16.md):
 *
 *   vbf             2 VL bf16 values: VL pairs
 *   vbf_load(p)     2 VL bf16 from p (unaligned)
 *   vbf_pair(p)     the pair p[0], p[1] in every lane
 *   vf_dot2(c,a,b)  lane i: c + a[2i+1] b[2i+1], rounded, + a[2i] b[2i],
 *                   rounded: two fused steps in that order, bf16 and f32
 *                   subnormal inputs read as 0, subnormal results flushed
 *                   to 0, round to nearest even (vdpbf16ps, Intel SDM)
 *   vbf_store2(p, lo, hi)  2 VL floats to bf16 (nearest even, subnormals
 *                   to 0, NaN kept quiet) at p: lo first (vcvtne2ps2bf16)
 *   vbf_store1(p, x)       VL floats to bf16 at p, the same rounding
 *   vbf_store_zip(p, x, y) pairs: p[2i] = bf16(x[i]), p[2i+1] = bf16(y[i])
 *
 * The generic versions compute exactly that, lane by lane, so the bf16
 * kernels' numerics are the same on every machine (tests/test_bf16.c
 * checks them against the instructions where the CPU has them). */
#if defined(ATTN_SIMD_BF16) && defined(ATTN_SIMD_AVX512)
typedef __m512bh vbf;
static inline vbf vbf_load(const uint16_t *p) {
  return (vbf)_mm512_loadu_si512((const void *)p);
}
static inline vbf vbf_pair(const uint16_t *p) {
  uint32_t u;
  memcpy(&u, p, sizeof u);
  return (vbf)_mm512_set1_epi32((int)u);
}
#define vf_dot2(c, a, b) _mm512_dpbf16_ps((c), (a), (b))
static inline void vbf_store2(uint16_t *p, vf lo, vf hi) {
  _mm512_storeu_si512((void *)p, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}
static inline void vbf_store1(uint16_t *p, vf x) {
  _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(x));
}
static inline void vbf_store_zip(uint16_t *p, vf x, vf y) {
  const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x));
  const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(y));
  _mm512_storeu_si512((void *)p,
                      _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
}
#elif defined(ATTN_SIMD_BF16) && defined(ATTN_SIMD_GENERIC)
#include <float.h>
typedef struct vbf {
  uint16_t x[2 * VL];
} vbf;
static inline vbf vbf_load(const uint16_t *p) {
  vbf r;
  memcpy(r.x, p, sizeof r.x);
  return r;
}
static inline vbf vbf_pair(const uint16_t *p) {
  vbf r;
  for (int i = 0; i < VL; i++) {
    r.x[2 * i] = p[0];
    r.x[2 * i + 1] = p[1];
  }
  return r;
}
/* A bf16 as f32, subnormals read as 0. */
static inline float bf16_daz(uint16_t h) {
  const uint32_t u =
      (h & 0x7f80u) ? (uint32_t)h << 16 : (uint32_t)(h & 0x8000u) << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
/* Subnormal f32 to a zero of the same sign (both as input and output). */
static inline float f32_ftz(float x) {
  return fabsf(x) < FLT_MIN ? copysignf(0.0f, x) : x;
}
static inline vf vf_dot2(vf c, vbf a, vbf b) {
  vf r;
  for (int i = 0; i < VL; i++) {
    float t = fmaf(bf16_daz(a.x[2 * i + 1]), bf16_daz(b.x[2 * i + 1]),
                   f32_ftz(c.x[i]));
    t = fmaf(bf16_daz(a.x[2 * i]), bf16_daz(b.x[2 * i]), f32_ftz(t));
    r.x[i] = f32_ftz(t);
  }
  return r;
}
static inline uint16_t bf16_rne_ftz(float x) {
  uint32_t u;
  x = f32_ftz(x);
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return (uint16_t)((u >> 16) | 0x0040u); /* NaN, quiet */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}
static inline void vbf_store2(uint16_t *p, vf lo, vf hi) {
  for (int i = 0; i < VL; i++) {
    p[i] = bf16_rne_ftz(lo.x[i]);
    p[VL + i] = bf16_rne_ftz(hi.x[i]);
  }
}
static inline void vbf_store1(uint16_t *p, vf x) {
  for (int i = 0; i < VL; i++)
    p[i] = bf16_rne_ftz(x.x[i]);
}
static inline void vbf_store_zip(uint16_t *p, vf x, vf y) {
  for (int i = 0; i < VL; i++) {
    p[2 * i] = bf16_rne_ftz(x.x[i]);
    p[2 * i + 1] = bf16_rne_ftz(y.x[i]);
  }
}
#elif defined(ATTN_SIMD_BF16)
#error "the bf16 vocabulary exists for AVX512 (with AVX512-BF16) and generic"
#endif

/* Helpers for the kernel bodies (fwd_body.h, bwd_body.h): KFN(name) gives
 * name_<KSUFFIX>, the including file's ISA suffix. */
#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define KFN(name) CAT(name, KSUFFIX)

#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define UNROLL _Pragma("GCC unroll 16")
#else
#define UNROLL
#endif

#if defined(__GNUC__)
#define ALWAYS_INLINE __attribute__((always_inline)) inline
#define NOINLINE __attribute__((noinline))
#else
#define ALWAYS_INLINE inline
#define NOINLINE
#endif

/* A hint to bring the 64-byte line at p into L2 (a later tile's operands,
 * fetched while this tile computes; fwd_body.h). */
#if defined(__GNUC__)
#define ATTN_PF_L2(p) __builtin_prefetch((p), 0, 2)
#else
#define ATTN_PF_L2(p) ((void)(p))
#endif

static const float kLog2e = 1.4426950408889634f;

#endif
