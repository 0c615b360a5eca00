/*
 * carve.h - what the compute fuzz targets (params_fuzz.c, params2_fuzz.c)
 * share: reading the input a byte at a time and a deterministic stream of
 * values seeded from it.
 */
#ifndef ATTN_FUZZ_CARVE_H
#define ATTN_FUZZ_CARVE_H

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

#endif
