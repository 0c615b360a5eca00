/* f16 rows widened (vcvtph2ps) and narrowed (vcvtps2ph, nearest even) with
 * F16C, eight at a time. Called by attn_load_row_f32 and attn_store_row
 * (core/convert.c) for contiguous f16 rows where the CPU has AVX2 + F16C,
 * whatever ISA the call runs: both give the bits of the portable path
 * (widening is exact; narrowing rounds the same way and makes the same
 * quiet NaNs), which tests/test_bf16.c checks. */
#include "core/internal.h"
#include "kernels/pack4.h"

#include <immintrin.h>
#include <string.h>

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

int attn_f16_pack_keys4_f16c(const uint16_t *const r[4], int64_t d, int64_t nr,
                             float *kp) {
  /* an f16 is infinite or NaN where its exponent bits are all ones */
  const __m128i em = _mm_set1_epi16(0x7c00);
  __m128i e = _mm_setzero_si128();
  int64_t kk = 0;
  for (; kk + 4 <= d; kk += 4) {
    __m128i h[4];
    attn_pack4_load16(r, kk, em, h, &e);
    attn_pack4_store(_mm_cvtph_ps(h[0]), _mm_cvtph_ps(h[1]), _mm_cvtph_ps(h[2]),
                     _mm_cvtph_ps(h[3]), kk, nr, kp);
  }
  int bad = _mm_movemask_epi8(e) != 0;
  for (; kk < d; kk++)
    for (int i = 0; i < 4; i++) {
      bad |= (r[i][kk] & 0x7c00) == 0x7c00;
      kp[kk * nr + i] = _cvtsh_ss(r[i][kk]);
    }
  return !bad;
}

/* f32 to bf16, sixteen at a time with AVX2: attn_f32_to_bf16's integer
 * rounding (nearest even on the bits, subnormals kept, a NaN made quiet)
 * lane by lane, so the bits are the portable path's (tests/test_bf16.c).
 * Called by attn_store_row for contiguous bf16 rows where the CPU has
 * AVX2 (the SSE2 loop the compiler made was 13% of a short bf16 call). */
static __m256i bf16_bits(__m256i u) {
  const __m256i nan =
      _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                         _mm256_set1_epi32(0x7f800000));
  const __m256i hi = _mm256_srli_epi32(u, 16);
  const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(
      _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)),
      16);
  const __m256i q = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
  return _mm256_blendv_epi8(r, q, nan);
}

void attn_bf16_store_avx2(const float *src, int64_t n, uint16_t *dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = bf16_bits(_mm256_castps_si256(_mm256_loadu_ps(src + i)));
    const __m256i b =
        bf16_bits(_mm256_castps_si256(_mm256_loadu_ps(src + i + 8)));
    /* lanes 0..65535, so the unsigned saturation keeps them; packus
     * interleaves 128-bit halves, the permute puts them in order */
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
    _mm256_storeu_si256((__m256i *)(dst + i), p);
  }
  for (; i < n; i++)
    dst[i] = attn_f32_to_bf16(src[i]);
}

/* dst[i] = src[i] * mul for a contiguous row of dt (f32, bf16 or f16),
 * eight at a time, with attn_load_row_poison's finiteness test on the
 * products on the way: returns 1 if one is not finite (dst then holds the
 * products; the caller poisons the row). The products are the portable
 * loops' (widening is exact; one rounding each). */
int attn_row_load_avx2(const void *src, attn_dtype dt, int64_t n, float mul,
                       float *dst) {
  const __m256 m = _mm256_set1_ps(mul);
  const __m256i em = _mm256_set1_epi32(0x7f800000),
                one = _mm256_set1_epi32(0x00800000);
  const uint16_t *h16 = (const uint16_t *)src;
  const float *f32 = (const float *)src;
  __m256i e = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 x;
    if (dt == ATTN_DTYPE_BF16) {
      const __m128i h = _mm_loadu_si128((const __m128i *)(h16 + i));
      x = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else if (dt == ATTN_DTYPE_F16) {
      x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h16 + i)));
    } else {
      x = _mm256_loadu_ps(f32 + i);
    }
    x = _mm256_mul_ps(x, m);
    e = _mm256_or_si256(
        e, _mm256_add_epi32(_mm256_and_si256(_mm256_castps_si256(x), em), one));
    _mm256_storeu_ps(dst + i, x);
  }
  uint32_t et = 0;
  for (; i < n; i++) {
    uint32_t u;
    if (dt == ATTN_DTYPE_BF16) {
      u = (uint32_t)h16[i] << 16;
      float f;
      memcpy(&f, &u, sizeof f);
      dst[i] = f * mul;
    } else if (dt == ATTN_DTYPE_F16) {
      dst[i] = _cvtsh_ss(h16[i]) * mul;
    } else {
      dst[i] = f32[i] * mul;
    }
    memcpy(&u, &dst[i], sizeof u);
    et |= (u & 0x7f800000u) + 0x00800000u;
  }
  return (_mm256_movemask_ps(_mm256_castsi256_ps(e)) | (int)(et >> 31)) != 0;
}
