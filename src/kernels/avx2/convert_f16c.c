/* f16 rows widened (vcvtph2ps) and narrowed (vcvtps2ph, nearest even) with
 * F16C, eight at a time. Called by attn_load_row_f32 and attn_store_row
 * (core/convert.c) for contiguous f16 rows where the CPU has AVX2 + F16C,
 * whatever ISA the call runs: both give the bits of the portable path
 * (widening is exact; narrowing rounds the same way and makes the same
 * quiet NaNs), which tests/test_bf16.c checks. */
#include "core/internal.h"

#include <immintrin.h>

void attn_f16_row_f16c(const uint16_t *src, int64_t n, float mul, float *dst) {
  const __m256 m = _mm256_set1_ps(mul);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(h), m));
  }
  for (; i < n; i++)
    dst[i] = _cvtsh_ss(src[i]) * mul;
}

void attn_f16_store_f16c(const float *src, int64_t n, uint16_t *dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128((__m128i *)(dst + i), h);
  }
  for (; i < n; i++)
    dst[i] = _cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT);
}
