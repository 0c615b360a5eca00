/*
 * carve.h - what the compute fuzz targets (params_fuzz.c, params2_fuzz.c)
 * share: reading the input a byte at a time and a deterministic stream of
 * values seeded from it.
 */
#ifndef ATTN_FUZZ_CARVE_H
#define ATTN_FUZZ_CARVE_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

typedef struct bytes {
  const uint8_t *p;
  size_t n;
} bytes;

/* Next input byte modulo mod (0 when the input is exhausted). */
static inline int64_t take(bytes *b, int64_t mod) {
  unsigned v = 0;
  if (b->n > 0) {
    v = *b->p++;
    b->n--;
  }
  return mod > 0 ? (int64_t)(v % (unsigned)mod) : 0;
}

/* Uniform in [-1, 1) from an xorshift64* stream (s nonzero). */
static inline float frand(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return (float)((double)((x * 0x2545F4914F6CDD1DULL) >> 40) / 8388608.0 - 1.0);
}

/* Element (b, i, h, x) of a 4-d view of a storage dtype (f32, bf16, f16),
 * read as a double and written from a float: what the harnesses of
 * attn_tensor operands (merge_fuzz.c, linear_fuzz.c) share. */
static inline void *fz_elem(const attn_tensor *t, int64_t b, int64_t i,
                            int64_t h, int64_t x) {
  const int64_t off =
      b * t->stride[0] + i * t->stride[1] + h * t->stride[2] + x * t->stride[3];
  return (char *)t->data + off * (int64_t)attn_dtype_size(t->dtype);
}

static inline double fz_get(const attn_tensor *t, int64_t b, int64_t i,
                            int64_t h, int64_t x) {
  const void *p = fz_elem(t, b, i, h, x);
  switch (t->dtype) {
  case ATTN_DTYPE_BF16:
    return attn_bf16_to_f32(*(const uint16_t *)p);
  case ATTN_DTYPE_F16:
    return attn_f16_to_f32(*(const uint16_t *)p);
  default:
    return *(const float *)p;
  }
}

static inline void fz_set(const attn_tensor *t, int64_t b, int64_t i, int64_t h,
                          int64_t x, float v) {
  void *p = fz_elem(t, b, i, h, x);
  switch (t->dtype) {
  case ATTN_DTYPE_BF16:
    *(uint16_t *)p = attn_f32_to_bf16(v);
    break;
  case ATTN_DTYPE_F16:
    *(uint16_t *)p = attn_f32_to_f16(v);
    break;
  default:
    *(float *)p = v;
    break;
  }
}

#endif
