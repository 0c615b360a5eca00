/*
 * philox.h's dropout row function compiled for one instruction set, so
 * test_dropout can check the vector forms (8 or 16 Philox calls at once,
 * a 4 x lanes transpose) against the scalar loop. tests/CMakeLists.txt
 * builds this file three times: DV_SUFFIX generic (no ATTN_SIMD_*: the
 * scalar loop the generic kernels use), avx2 (ATTN_SIMD_AVX2, -mavx2) and
 * avx512 (ATTN_SIMD_AVX512, -mavx512f ...).
 */
#include "kernels/philox.h"

#include "dropout_vec.h"

#define DV_CAT_(a, b) a##_##b
#define DV_CAT(a, b) DV_CAT_(a, b)

void DV_CAT(dropout_vec_rows, DV_SUFFIX)(uint64_t seed, float p, int64_t b,
                                         int64_t h, int64_t i0, int rows,
                                         int64_t j0, float *x, int64_t ldx,
                                         int n, int mul) {
  attn_dropout dr;
  attn_dropout_init(&dr, seed, p, b, h);
  if (mul)
    attn_dropout_apply(&dr, i0, rows, j0, x, ldx, n);
  else
    attn_dropout_fill(&dr, i0, rows, j0, x, ldx, n);
}
