/* simd.h's exponentials compiled once per instruction set (simd_vec.c), so
 * test_simd can measure each against exact arithmetic. Each function maps
 * n floats (n a multiple of 16) of x to out. */
#ifndef ATTN_TEST_SIMD_VEC_H
#define ATTN_TEST_SIMD_VEC_H

#include <stdint.h>

#define SIMD_VEC_DECLARE(isa)                                                  \
  void simd_exp2_##isa(const float *x, float *out, int64_t n);                 \
  void simd_exp2_nonpos_##isa(const float *x, float *out, int64_t n);
SIMD_VEC_DECLARE(generic)
SIMD_VEC_DECLARE(avx2)
SIMD_VEC_DECLARE(avx512)
#undef SIMD_VEC_DECLARE

#endif
