/* bf16 / f16 <-> f32 conversions (round to nearest even) and strided row
 * loads/stores used by the packing code. Portable C: these run once per
 * element of Q, K, V and O, never in the O(n^2) loops. */
#include "core/internal.h"

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

float attn_bf16_to_f32(uint16_t x) { return u2f((uint32_t)x << 16); }

uint16_t attn_f32_to_bf16(float x) {
  uint32_t u = f2u(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a quiet NaN */
    return (uint16_t)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(u >> 16);
}

float attn_f16_to_f32(uint16_t h) {
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

uint16_t attn_f32_to_f16(float x) {
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

void attn_load_row_f32(const void *src, attn_dtype dt, int64_t stride,
                       int64_t n, float mul, float *dst) {
  switch (dt) {
  case ATTN_DTYPE_F32: {
    const float *s = (const float *)src;
    if (stride == 1)
      for (int64_t i = 0; i < n; i++)
        dst[i] = s[i] * mul;
    else
      for (int64_t i = 0; i < n; i++)
        dst[i] = s[i * stride] * mul;
    break;
  }
  case ATTN_DTYPE_BF16: {
    const uint16_t *s = (const uint16_t *)src;
    for (int64_t i = 0; i < n; i++)
      dst[i] = attn_bf16_to_f32(s[i * stride]) * mul;
    break;
  }
  case ATTN_DTYPE_F16: {
    const uint16_t *s = (const uint16_t *)src;
    for (int64_t i = 0; i < n; i++)
      dst[i] = attn_f16_to_f32(s[i * stride]) * mul;
    break;
  }
  case ATTN_DTYPE_BOOL:
    break; /* rejected by validation */
  }
}

void attn_store_row(const float *src, int64_t n, void *dst, attn_dtype dt,
                    int64_t stride) {
  switch (dt) {
  case ATTN_DTYPE_F32: {
    float *d = (float *)dst;
    for (int64_t i = 0; i < n; i++)
      d[i * stride] = src[i];
    break;
  }
  case ATTN_DTYPE_BF16: {
    uint16_t *d = (uint16_t *)dst;
    for (int64_t i = 0; i < n; i++)
      d[i * stride] = attn_f32_to_bf16(src[i]);
    break;
  }
  case ATTN_DTYPE_F16: {
    uint16_t *d = (uint16_t *)dst;
    for (int64_t i = 0; i < n; i++)
      d[i * stride] = attn_f32_to_f16(src[i]);
    break;
  }
  case ATTN_DTYPE_BOOL:
    break;
  }
}
