/* simd.h's bf16 vocabulary for one ISA (BV_SUFFIX generic or avx512bf16,
 * with ATTN_SIMD_GENERIC or ATTN_SIMD_AVX512 defined by tests/CMakeLists.txt),
 * over 16 lanes whatever VL is. */
#define ATTN_SIMD_BF16 1
#include "kernels/simd.h"

#include "bf16_vec.h"

#define BV_CAT_(a, b) a##_##b
#define BV_CAT(a, b) BV_CAT_(a, b)

void BV_CAT(bf16_dot, BV_SUFFIX)(const float *c, const uint16_t *a,
                                 const uint16_t *b, float *out) {
  for (int i = 0; i < 16; i += VL)
    vf_store(out + i,
             vf_dot2(vf_load(c + i), vbf_load(a + 2 * i), vbf_load(b + 2 * i)));
}

void BV_CAT(bf16_cvt, BV_SUFFIX)(const float *x, uint16_t *h) {
  for (int i = 0; i < 32; i += 2 * VL)
    vbf_store2(h + i, vf_load(x + i), vf_load(x + i + VL));
}
