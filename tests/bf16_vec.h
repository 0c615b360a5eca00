/* The bf16 vocabulary of simd.h (vf_dot2, vbf_store2) compiled once per
 * instruction set (bf16_vec.c), so test_bf16 can hold the generic
 * emulation against the AVX512-BF16 instructions. Each function works on
 * 16 lanes: c[16], a[32], b[32] -> out[16]; x[32] -> h[32]. */
#ifndef ATTN_TEST_BF16_VEC_H
#define ATTN_TEST_BF16_VEC_H

#include <stdint.h>

void bf16_dot_generic(const float *c, const uint16_t *a, const uint16_t *b,
                      float *out);
void bf16_cvt_generic(const float *x, uint16_t *h);
void bf16_dot_avx512bf16(const float *c, const uint16_t *a, const uint16_t *b,
                         float *out);
void bf16_cvt_avx512bf16(const float *x, uint16_t *h);

#endif
