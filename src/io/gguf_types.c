/* gguf_types.c - GGUF tensor types: names, block sizes, and dequantisation
 * to f32 (see gguf.h). Split from gguf.c, which parses the file. */
#include "gguf.h"

#include <stdint.h>
#include <string.h>

/* ---- tensor types and dequantisation ------------------------------------ */

/* A little-endian 16-bit value (f16/bf16 elements and block scales). */
static uint16_t le16(const uint8_t *p) {
  return (uint16_t)(p[0] | (unsigned)p[1] << 8);
}

const char *gguf_dtype_name(uint32_t dtype) {
  switch (dtype) {
  case GGUF_DTYPE_F32:
    return "f32";
  case GGUF_DTYPE_F16:
    return "f16";
  case GGUF_DTYPE_BF16:
    return "bf16";
  case GGUF_DTYPE_Q8_0:
    return "q8_0";
  case GGUF_DTYPE_Q4_0:
    return "q4_0";
  case GGUF_DTYPE_Q4_1:
    return "q4_1";
  default:
    return NULL;
  }
}

/* elements per block and bytes per block */
static int block_of(uint32_t dtype, int64_t *elems, size_t *bytes) {
  switch (dtype) {
  case GGUF_DTYPE_F32:
    *elems = 1, *bytes = 4;
    return 0;
  case GGUF_DTYPE_F16:
  case GGUF_DTYPE_BF16:
    *elems = 1, *bytes = 2;
    return 0;
  case GGUF_DTYPE_Q8_0:
    *elems = 32, *bytes = 34;
    return 0;
  case GGUF_DTYPE_Q4_0:
    *elems = 32, *bytes = 18;
    return 0;
  case GGUF_DTYPE_Q4_1:
    *elems = 32, *bytes = 20;
    return 0;
  default:
    return -1;
  }
}

size_t gguf_dtype_bytes(uint32_t dtype, int64_t n) {
  int64_t be;
  size_t bb;
  if (block_of(dtype, &be, &bb) || n < 0 || n % be != 0)
    return 0;
  uint64_t blocks = (uint64_t)(n / be);
  if (blocks > SIZE_MAX / bb)
    return 0;
  return (size_t)blocks * bb;
}

/* IEEE half to float, exactly (subnormals, infinities, NaN). */
static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
  if (e == 0) {
    if (m == 0) {
      u = sign;
    } else { /* subnormal: normalise */
      e = 127 - 15 + 1;
      while (!(m & 0x400)) {
        m <<= 1;
        e--;
      }
      u = sign | (e << 23) | ((m & 0x3ff) << 13);
    }
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 127 - 15) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

int gguf_dequantize(uint32_t dtype, const void *src, int64_t n, float *dst) {
  const uint8_t *s = src;
  if (gguf_dtype_bytes(dtype, n) == 0 && n != 0)
    return -1;
  switch (dtype) {
  case GGUF_DTYPE_F32:
    memcpy(dst, s, (size_t)n * 4);
    return 0;
  case GGUF_DTYPE_F16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = f16_to_f32(le16(s + 2 * i));
    return 0;
  case GGUF_DTYPE_BF16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = bf16_to_f32(le16(s + 2 * i));
    return 0;
  case GGUF_DTYPE_Q8_0:
    for (int64_t b = 0; b < n / 32; b++, s += 34, dst += 32) {
      float d = f16_to_f32(le16(s));
      for (int j = 0; j < 32; j++)
        dst[j] = (float)(int8_t)s[2 + j] * d;
    }
    return 0;
  case GGUF_DTYPE_Q4_0:
    for (int64_t b = 0; b < n / 32; b++, s += 18, dst += 32) {
      float d = f16_to_f32(le16(s));
      for (int j = 0; j < 16; j++) {
        dst[j] = (float)((s[2 + j] & 0x0f) - 8) * d;
        dst[j + 16] = (float)((s[2 + j] >> 4) - 8) * d;
      }
    }
    return 0;
  case GGUF_DTYPE_Q4_1:
    for (int64_t b = 0; b < n / 32; b++, s += 20, dst += 32) {
      float d = f16_to_f32(le16(s));
      float m = f16_to_f32(le16(s + 2));
      for (int j = 0; j < 16; j++) {
        float lo = (float)(s[4 + j] & 0x0f) * d,
              hi = (float)(s[4 + j] >> 4) * d;
        dst[j] = lo + m;
        dst[j + 16] = hi + m;
      }
    }
    return 0;
  default:
    return -1;
  }
}
