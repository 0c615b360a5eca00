/* bf16 / f16 <-> f32 conversions (round to nearest even), GGUF's q8_0 and
 * q4_0 blocks (quantise, dequantise), and strided row loads/stores used by
 * the packing code. Portable C: these run once per element of Q, K, V and
 * O, never in the O(n^2) loops. */
#include "core/internal.h"

#include <float.h>
#include <math.h>
#include <string.h>

static inline uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* The conversions are static inline below and exported as thin wrappers:
 * inside the shared library a call to an exported function goes through
 * the PLT and cannot be inlined, which made the row loops below cost more
 * than a bf16 backward at seq 128 (perf, Zen 4). */
static inline float bf16_f32(uint16_t x) { return u2f((uint32_t)x << 16); }
float attn_bf16_to_f32(uint16_t x) { return bf16_f32(x); }

static inline uint16_t f32_bf16(float x) {
  uint32_t u = f2u(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}
uint16_t attn_f32_to_bf16(float x) { return f32_bf16(x); }

static inline float f16_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0) {
    if (man == 0)
      return u2f(sign);
    /* subnormal: man * 2^-24 */
    float f = (float)man * (1.0f / 16777216.0f);
    return sign ? -f : f;
  }
  if (exp == 31)
    return u2f(sign | 0x7f800000u | (man << 13));
  return u2f(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t f32_f16(float x) {
  uint32_t u = f2u(x);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) /* NaN */
    return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) /* rounds to >= 65520: inf */
    return (uint16_t)(sign | 0x7c00u);
  if (a < 0x38800000u) { /* below 2^-14: subnormal or zero */
    /* value = a as float; f16 subnormal unit is 2^-24 */
    float f = u2f(a) * 16777216.0f; /* exact scaling by 2^24 */
    /* round to nearest even integer */
    float r = f + 8388608.0f; /* 2^23 trick: rounds to integer (RNE) */
    uint32_t m = f2u(r) - 0x4b000000u;
    return (uint16_t)(sign | m);
  }
  /* normal: rebias exponent, round mantissa 23 -> 10 bits (RNE) */
  uint32_t r = a - ((uint32_t)(127 - 15) << 23);
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

float attn_f16_to_f32(uint16_t h) { return f16_f32(h); }
uint16_t attn_f32_to_f16(float x) { return f32_f16(x); }

/* ------------------------------------------------------------------------
 * GGUF's q8_0 and q4_0 (ggml's quantize_row_q8_0_ref / q4_0_ref rule, so a
 * row quantised here has the bytes ggml gives it), blocks of 32 values:
 *   q8_0  d = amax / 127 (amax = max |x|), id = 1 / d (0 when d = 0),
 *         q_i = round(x_i id) (halves away from zero); x_i = d q_i
 *   q4_0  m = the x of largest magnitude, with its sign (the first such),
 *         d = m / -8, id = 1 / d (0 when d = 0),
 *         n_i = min(15, trunc(x_i id + 8.5)); x_i = d (n_i - 8)
 * d is stored as f16 (rounded from the f32 d; id is from the f32 d, as in
 * ggml). A block holding a NaN or an infinity (where ggml's conversions
 * are undefined) gets d = NaN and quants 0 (q4_0: 8), so it dequantises to
 * NaN: attention then treats the row as non-finite. A block whose d
 * overflows f16 (|x| beyond 65504 * 127 for q8_0, 65504 * 8 for q4_0) gets
 * d = inf, as in ggml, and dequantises to non-finite values too.
 * Dequantised values (an int8 or a nibble times an f16) are exact in f32.
 * ------------------------------------------------------------------------ */

static void quant_block_q8_0(const float *x, uint8_t *blk) {
  float amax = 0.0f;
  int finite = 1;
  for (int i = 0; i < ATTN_QBLOCK; i++) {
    const float a = fabsf(x[i]);
    if (!(a <= FLT_MAX))
      finite = 0;
    else if (a > amax)
      amax = a;
  }
  int8_t *q = (int8_t *)(blk + 2);
  uint16_t h;
  if (!finite) {
    h = 0x7e00u; /* NaN */
    memset(q, 0, ATTN_QBLOCK);
  } else {
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    h = attn_f32_to_f16(d);
    for (int i = 0; i < ATTN_QBLOCK; i++) {
      /* |x id| <= 127 but when 1 / d overflows (|x| < 1e-36, d rounds
       * to 0 in f16 anyway): clamp, NaN (0 * inf) to 0, so no cast is
       * undefined */
      const float r = roundf(x[i] * id);
      q[i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : r == r ? r : 0);
    }
  }
  memcpy(blk, &h, 2);
}

/* min(15, trunc(v)): x id is in [-8, 8] (+ rounding), so v = x id + 8.5
 * is positive and the cast truncates as ggml's (int8_t) cast does; v is
 * clamped first (NaN to 0) for when 1 / d overflows (|x| < 1e-36, where d
 * rounds to 0 in f16 anyway), so no cast is undefined. */
static int q4_nibble(float v) {
  return v >= 15.0f ? 15 : v > 0.0f ? (int)v : 0;
}

static void quant_block_q4_0(const float *x, uint8_t *blk) {
  float amax = 0.0f, max = 0.0f;
  int finite = 1;
  for (int i = 0; i < ATTN_QBLOCK; i++) {
    const float a = fabsf(x[i]);
    if (!(a <= FLT_MAX))
      finite = 0;
    else if (amax < a) {
      amax = a;
      max = x[i];
    }
  }
  uint8_t *q = blk + 2;
  uint16_t h;
  if (!finite) {
    h = 0x7e00u; /* NaN */
    memset(q, 0x88, ATTN_QBLOCK / 2);
  } else {
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    h = attn_f32_to_f16(d);
    for (int i = 0; i < ATTN_QBLOCK / 2; i++) {
      const int n0 = q4_nibble(x[i] * id + 8.5f);
      const int n1 = q4_nibble(x[i + ATTN_QBLOCK / 2] * id + 8.5f);
      q[i] = (uint8_t)(n0 | n1 << 4);
    }
  }
  memcpy(blk, &h, 2);
}

void attn_quant_row(const float *src, int64_t n, void *dst, attn_dtype dt) {
  const size_t bs = attn_dtype_size(dt);
  uint8_t *d = (uint8_t *)dst;
  for (int64_t b = 0; b < n / ATTN_QBLOCK; b++) {
    if (dt == ATTN_DTYPE_Q8_0)
      quant_block_q8_0(src + b * ATTN_QBLOCK, d + (size_t)b * bs);
    else
      quant_block_q4_0(src + b * ATTN_QBLOCK, d + (size_t)b * bs);
  }
}

void attn_dequant_row(const void *src, attn_dtype dt, int64_t n, float mul,
                      float *dst) {
  const size_t bs = attn_dtype_size(dt);
  const uint8_t *s = (const uint8_t *)src;
  for (int64_t b = 0; b < n / ATTN_QBLOCK; b++) {
    const uint8_t *blk = s + (size_t)b * bs;
    uint16_t h;
    memcpy(&h, blk, 2);
    const float d = attn_f16_to_f32(h);
    float *y = dst + b * ATTN_QBLOCK;
    if (dt == ATTN_DTYPE_Q8_0) {
      const int8_t *q = (const int8_t *)(blk + 2);
      for (int i = 0; i < ATTN_QBLOCK; i++)
        y[i] = (float)q[i] * d * mul;
    } else {
      const uint8_t *q = blk + 2;
      for (int i = 0; i < ATTN_QBLOCK / 2; i++) {
        y[i] = (float)((q[i] & 0x0f) - 8) * d * mul;
        y[i + ATTN_QBLOCK / 2] = (float)((q[i] >> 4) - 8) * d * mul;
      }
    }
  }
}

attn_status attn_quantize_row(attn_dtype dtype, const float *x, int64_t n,
                              void *dst) {
  if (!attn_dtype_is_quant(dtype))
    return ATTN_ERR_INVALID_DTYPE;
  if (n < 0 || n % ATTN_QBLOCK != 0)
    return ATTN_ERR_INVALID_SHAPE;
  if (n > 0 && (!x || !dst))
    return ATTN_ERR_NULL_POINTER;
  attn_quant_row(x, n, dst, dtype);
  return ATTN_OK;
}

attn_status attn_dequantize_row(attn_dtype dtype, const void *src, int64_t n,
                                float *dst) {
  if (!attn_dtype_is_quant(dtype))
    return ATTN_ERR_INVALID_DTYPE;
  if (n < 0 || n % ATTN_QBLOCK != 0)
    return ATTN_ERR_INVALID_SHAPE;
  if (n > 0 && (!src || !dst))
    return ATTN_ERR_NULL_POINTER;
  attn_dequant_row(src, dtype, n, 1.0f, dst);
  return ATTN_OK;
}

void attn_load_row_f32(const void *src, attn_dtype dt, int64_t stride,
                       int64_t n, float mul, float *dst) {
  switch (dt) {
  case ATTN_DTYPE_F32: {
    const float *s = (const float *)src;
    if (stride == 1 && mul == 1.0f) /* x * 1 is x (a signalling NaN aside) */
      memcpy(dst, s, sizeof(float) * (size_t)n);
    else if (stride == 1)
      for (int64_t i = 0; i < n; i++)
        dst[i] = s[i] * mul;
    else
      for (int64_t i = 0; i < n; i++)
        dst[i] = s[i * stride] * mul;
    break;
  }
  case ATTN_DTYPE_BF16: {
    const uint16_t *s = (const uint16_t *)src;
#if defined(ATTN_HAVE_X86)
    if (stride == 1 && attn_cpu_has_avx2()) { /* the same products */
      (void)attn_row_load_avx2(s, ATTN_DTYPE_BF16, n, mul, dst);
      break;
    }
#endif
    if (stride == 1) /* vectorised by the compiler */
      for (int64_t i = 0; i < n; i++)
        dst[i] = bf16_f32(s[i]) * mul;
    else
      for (int64_t i = 0; i < n; i++)
        dst[i] = bf16_f32(s[i * stride]) * mul;
    break;
  }
  case ATTN_DTYPE_F16: {
    const uint16_t *s = (const uint16_t *)src;
#if defined(ATTN_HAVE_X86)
    /* vcvtph2ps is exact, so the same bits as the loop below; the loop
     * made f16 calls 5-15% slower than f32 at seq 512 (decisions.md) */
    if (stride == 1 && attn_cpu_has_avx2()) {
      attn_f16_row_f16c(s, n, mul, dst);
      break;
    }
#endif
    for (int64_t i = 0; i < n; i++)
      dst[i] = f16_f32(s[i * stride]) * mul;
    break;
  }
  case ATTN_DTYPE_Q8_0:
  case ATTN_DTYPE_Q4_0:
    /* a row's blocks are adjacent (stride[3] = 1, validated) */
    attn_dequant_row(src, dt, n, mul, dst);
    break;
  case ATTN_DTYPE_BOOL:
    break; /* rejected by validation */
  }
}

int attn_load_row_poison(const void *src, attn_dtype dt, int64_t stride,
                         int64_t n, float mul, float *dst) {
  int bad;
#if defined(ATTN_HAVE_X86)
  if (stride == 1 &&
      (dt == ATTN_DTYPE_F32 || dt == ATTN_DTYPE_BF16 || dt == ATTN_DTYPE_F16) &&
      attn_cpu_has_avx2())
    bad = attn_row_load_avx2(src, dt, n, mul, dst);
  else
#endif
  {
    attn_load_row_f32(src, dt, stride, n, mul, dst);
    uint32_t e = 0; /* the test of internal.h */
    for (int64_t i = 0; i < n; i++) {
      uint32_t u;
      memcpy(&u, &dst[i], sizeof u);
      e |= (u & 0x7f800000u) + 0x00800000u;
    }
    bad = (e & 0x80000000u) != 0;
  }
  if (bad)
    for (int64_t i = 0; i < n; i++)
      dst[i] = NAN;
  return bad;
}

void attn_store_row(const float *src, int64_t n, void *dst, attn_dtype dt,
                    int64_t stride) {
  switch (dt) {
  case ATTN_DTYPE_F32: {
    float *d = (float *)dst;
    if (stride == 1)
      memcpy(d, src, sizeof(float) * (size_t)n);
    else
      for (int64_t i = 0; i < n; i++)
        d[i * stride] = src[i];
    break;
  }
  case ATTN_DTYPE_BF16: {
    uint16_t *d = (uint16_t *)dst;
#if defined(ATTN_HAVE_X86)
    if (stride == 1 && attn_cpu_has_avx512()) {
      attn_bf16_store_avx512(src, n, d);
      break;
    }
    if (stride == 1 && attn_cpu_has_avx2()) {
      attn_bf16_store_avx2(src, n, d);
      break;
    }
#endif
    if (stride == 1) /* vectorised by the compiler */
      for (int64_t i = 0; i < n; i++)
        d[i] = f32_bf16(src[i]);
    else
      for (int64_t i = 0; i < n; i++)
        d[i * stride] = f32_bf16(src[i]);
    break;
  }
  case ATTN_DTYPE_F16: {
    uint16_t *d = (uint16_t *)dst;
#if defined(ATTN_HAVE_X86)
    if (stride == 1 && attn_cpu_has_avx2()) {
      attn_f16_store_f16c(src, n, d);
      break;
    }
#endif
    for (int64_t i = 0; i < n; i++)
      d[i * stride] = f32_f16(src[i]);
    break;
  }
  case ATTN_DTYPE_Q8_0:
  case ATTN_DTYPE_Q4_0:
    attn_quant_row(src, n, dst, dt); /* blocks adjacent, as above */
    break;
  case ATTN_DTYPE_BOOL:
    break;
  }
}
