/* f32 rows to bf16 with AVX-512, sixteen at a time, the tail under a mask:
 * attn_f32_to_bf16's integer rounding (nearest even on the bits,
 * subnormals kept, a NaN made quiet) lane by lane, the bits of the portable
 * path (tests/test_bf16.c). vcvtneps2bf16 would be one instruction but
 * flushes subnormals, so it is not used here. Called by attn_store_row for
 * contiguous bf16 rows where the CPU has AVX-512 (BW): half the
 * instructions of the AVX2 loop, which was 7% of a short bf16 backward. */
#include "core/internal.h"

#include <immintrin.h>

static inline __m256i bf16_16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(
      _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
      _mm512_set1_epi32(0x7f800000));
  const __m512i hi = _mm512_srli_epi32(u, 16);
  const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb)),
      16);
  const __m512i q = _mm512_or_si512(hi, _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q));
}

void attn_bf16_store_avx512(const float *src, int64_t n, uint16_t *dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256((__m256i *)(dst + i),
                        bf16_16(_mm512_loadu_ps(src + i)));
  if (i < n) {
    const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm256_mask_storeu_epi16(dst + i, m,
                             bf16_16(_mm512_maskz_loadu_ps(m, src + i)));
  }
}
