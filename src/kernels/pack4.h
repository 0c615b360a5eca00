/* What the forward's four-key packings share (fwd_pack.c for f32 and bf16
 * rows, kernels/avx2/convert_f16c.c for f16 with F16C): the 16-bit rows'
 * loads with their non-finite test, and the 4 x 4 transpose into a panel.
 * SSE2 only, so any x86-64 translation unit may include it. */
#ifndef ATTN_PACK4_H
#define ATTN_PACK4_H

#include <emmintrin.h>
#include <stdint.h>

/* Elements kk .. kk + 3 of four 16-bit rows r[0..3] (f16 or bf16) into
 * the low halves of h[0..3]; *e gets the lanes whose exponent bits (em)
 * are all ones: an infinity or a NaN. */
static inline void attn_pack4_load16(const uint16_t *const r[4], int64_t kk,
                                     __m128i em, __m128i h[4], __m128i *e) {
  for (int i = 0; i < 4; i++)
    h[i] = _mm_loadl_epi64((const __m128i *)(r[i] + kk));
  const __m128i h01 = _mm_unpacklo_epi64(h[0], h[1]);
  const __m128i h23 = _mm_unpacklo_epi64(h[2], h[3]);
  *e = _mm_or_si128(*e, _mm_cmpeq_epi16(_mm_and_si128(h01, em), em));
  *e = _mm_or_si128(*e, _mm_cmpeq_epi16(_mm_and_si128(h23, em), em));
}

/* Elements kk .. kk + 3 of four key rows (x0 .. x3, one row each) into
 * rows kk .. kk + 3, columns 0 .. 3, of a panel of nr keys at kp
 * (kp[kk * nr + i] = row i's element kk). */
static inline void attn_pack4_store(__m128 x0, __m128 x1, __m128 x2, __m128 x3,
                                    int64_t kk, int64_t nr, float *kp) {
  _MM_TRANSPOSE4_PS(x0, x1, x2, x3);
  _mm_storeu_ps(kp + (kk + 0) * nr, x0);
  _mm_storeu_ps(kp + (kk + 1) * nr, x1);
  _mm_storeu_ps(kp + (kk + 2) * nr, x2);
  _mm_storeu_ps(kp + (kk + 3) * nr, x3);
}

#endif
