/* simd.h's vf_exp2 and vf_exp2_nonpos for one ISA (SV_SUFFIX generic, avx2
 * or avx512, with the matching ATTN_SIMD_* defined by tests/CMakeLists.txt),
 * over n floats whatever VL is. */
#include "kernels/simd.h"

#include "simd_vec.h"

#define SV_CAT_(a, b) a##_##b
#define SV_CAT(a, b) SV_CAT_(a, b)

void SV_CAT(simd_exp2, SV_SUFFIX)(const float *x, float *out, int64_t n) {
  for (int64_t i = 0; i < n; i += VL)
    vf_store(out + i, vf_exp2(vf_load(x + i)));
}

void SV_CAT(simd_exp2_nonpos, SV_SUFFIX)(const float *x, float *out,
                                         int64_t n) {
  for (int64_t i = 0; i < n; i += VL)
    vf_store(out + i, vf_exp2_nonpos(vf_load(x + i)));
}
