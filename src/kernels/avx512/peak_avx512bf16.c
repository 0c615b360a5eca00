/* The bf16 dot-product peak probe (peak_body.h) for AVX512-BF16. */
#define ATTN_SIMD_AVX512 1
#define ATTN_SIMD_BF16 1
#include "kernels/simd.h"

#include "core/internal.h"

#define KSUFFIX avx512bf16
#include "kernels/peak_body.h"

double attn_peak_loop_avx512bf16(int64_t iters) {
  return peak_loop_bf16_avx512bf16(iters);
}
