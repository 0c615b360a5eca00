/* What the decode kernel (decode_body.h) and the bf16 dot-product Q K
 * of decode_bf16dot.h share: operands pinned to registers, the
 * horizontal sums of the Q K accumulators, the prefetch of keys ahead.
 * Include after simd.h with KSUFFIX defined. */

/* Pins a vector to a register: compilers fold a load into every FMA that
 * uses it (a q vector once per key, so a Q K step issued more loads than
 * FMAs, and Zen 4 issues one 512-bit load a cycle); an empty asm that
 * claims to change it makes them load it once. */
#if defined(ATTN_SIMD_AVX512)
#define DEC_IN_REG(x) __asm__("" : "+v"(x))
#elif defined(ATTN_SIMD_AVX2)
#define DEC_IN_REG(x) __asm__("" : "+x"(x))
#else
#define DEC_IN_REG(x) ((void)0)
#endif

#if defined(ATTN_SIMD_AVX2) || defined(ATTN_SIMD_AVX512)
/* s0[r], s1[r] (row stride lds) = the sums of the 8 lanes of c0[r], c1[r],
 * r < 4: the eight at once, each in vf_hsum's order for 8 lanes (halves,
 * then (t0 + t2) + (t1 + t3)): the same bits, fewer instructions. */
static ALWAYS_INLINE void KFN(dec_store4_256)(const __m256 *c0,
                                              const __m256 *c1, float *s0,
                                              float *s1, int64_t lds) {
  __m256 t[4];
  UNROLL for (int r = 0; r < 4; r++) {
    const __m256 lo = _mm256_permute2f128_ps(c0[r], c1[r], 0x20);
    const __m256 hi = _mm256_permute2f128_ps(c0[r], c1[r], 0x31);
    t[r] = _mm256_add_ps(lo, hi); /* [t(k0) | t(k1)] of row r */
  }
  const __m256 u01 =
      _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(1, 0, 1, 0)),
                    _mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 u23 =
      _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], _MM_SHUFFLE(1, 0, 1, 0)),
                    _mm256_shuffle_ps(t[2], t[3], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 res = _mm256_hadd_ps(u01, u23); /* [rows of k0 | of k1] */
  const __m128 a = _mm256_castps256_ps128(res);
  const __m128 b = _mm256_extractf128_ps(res, 1);
  if (s1 == s0 + 1) {
    const __m128 x01 = _mm_unpacklo_ps(a, b), x23 = _mm_unpackhi_ps(a, b);
    _mm_storel_pi((__m64 *)s0, x01);
    _mm_storeh_pi((__m64 *)(s0 + lds), x01);
    _mm_storel_pi((__m64 *)(s0 + 2 * lds), x23);
    _mm_storeh_pi((__m64 *)(s0 + 3 * lds), x23);
  } else {
    float ta[4], tb[4];
    _mm_storeu_ps(ta, a);
    _mm_storeu_ps(tb, b);
    UNROLL for (int r = 0; r < 4; r++) {
      s0[r * lds] = ta[r];
      s1[r * lds] = tb[r];
    }
  }
}
#endif

#if defined(ATTN_SIMD_AVX512)
/* Sixteen horizontal sums at once: lane 4 r + k of the result is
 * vf_hsum(c[r + 4 k]), r, k < 4, with vf_hsum's additions in its order
 * (the 256-bit halves, then the 128-bit ones, then (t0 + t2) + (t1 + t3)):
 * the same bits as sixteen vf_hsum calls, in 45 shuffles and adds instead
 * of 80 (dec_dot_store's, two calls of eight). Each level adds the halves
 * of two vectors' partial sums side by side. */
static ALWAYS_INLINE __m512 KFN(dec_hsum16)(const __m512 *c) {
  __m512 a[8], b[4], z[2];
  UNROLL for (int i = 0; i < 8; i++) /* halves of 512 bits */
      a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0x44),
                           _mm512_shuffle_f32x4(c[2 * i], c[2 * i + 1], 0xee));
  UNROLL for (int i = 0; i < 4; i++) /* halves of 256 bits */
      b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0x88),
                           _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], 0xdd));
  UNROLL for (int i = 0; i < 2; i++) { /* t0 + t2, t1 + t3 */
    const __m512d x = _mm512_castps_pd(b[2 * i]);
    const __m512d y = _mm512_castps_pd(b[2 * i + 1]);
    z[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                         _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  /* (t0 + t2) + (t1 + t3); 128-bit lane r now holds c[r], c[r + 4],
   * c[r + 8], c[r + 12] */
  return _mm512_add_ps(_mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_ps(z[0], z[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Block r of t (four floats) to s + r * lds, r < 4. */
static ALWAYS_INLINE void KFN(dec_store16)(__m512 t, float *s, int64_t lds) {
  _mm_storeu_ps(s, _mm512_castps512_ps128(t));
  _mm_storeu_ps(s + lds, _mm512_extractf32x4_ps(t, 1));
  _mm_storeu_ps(s + 2 * lds, _mm512_extractf32x4_ps(t, 2));
  _mm_storeu_ps(s + 3 * lds, _mm512_extractf32x4_ps(t, 3));
}
#endif

/* s0[r], s1[r] (row stride lds) = hsum(c0[r]), hsum(c1[r]), r < mr. */
static ALWAYS_INLINE void KFN(dec_dot_store)(const int mr, const vf *c0,
                                             const vf *c1, float *s0, float *s1,
                                             int64_t lds) {
#if defined(ATTN_SIMD_AVX2)
  if (mr == 4) {
    KFN(dec_store4_256)(c0, c1, s0, s1, lds);
    return;
  }
#elif defined(ATTN_SIMD_AVX512)
  if (mr == 4) {
    /* vf_hsum's first step (the 256-bit halves added), then the 8-lane
     * order above: vf_hsum's bits */
    __m256 h0[4], h1[4];
    UNROLL for (int r = 0; r < 4; r++) {
      h0[r] = _mm256_add_ps(
          _mm512_castps512_ps256(c0[r]),
          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c0[r]), 1)));
      h1[r] = _mm256_add_ps(
          _mm512_castps512_ps256(c1[r]),
          _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c1[r]), 1)));
    }
    KFN(dec_store4_256)(h0, h1, s0, s1, lds);
    return;
  }
#endif
  UNROLL for (int r = 0; r < mr; r++) {
    s0[r * lds] = vf_hsum(c0[r]);
    s1[r * lds] = vf_hsum(c1[r]);
  }
}

/* Keys ahead that pass (1) and (4) ask the caches for, and the hint:
 * locality 2 (prefetcht1), the lines left in L2; with prefetcht0 each
 * request held one of L1's few miss buffers and one Zen 4 thread read
 * 10-11 GB/s instead of 15-18 (docs/decisions.md). */
#ifndef DEC_PF_HINT
#define DEC_PF_HINT 2
#endif
#ifndef DEC_PREFETCH
#define DEC_PREFETCH 4
#endif

/* Lines of the keys ahead asked for per step of a dot product's loop over
 * a row (Q K: two keys' rows, d / 16 lines of bf16 over d / (2 VL)
 * steps, d / 8 of f32 over d / VL; P V asks for twice as many: four keys'
 * rows), so that the requests spread over the arithmetic. Issued in one
 * burst per head instead, one Zen 3 thread's decode from memory was 7-9%
 * slower (docs/decisions.md). */
#define DEC_PF_STEP (VL >= 8 ? VL / 8 : 1)

/* Issues up to k more lines of the span pfp (pfn lines, *li asked for). */
static ALWAYS_INLINE void KFN(dec_pf_lines)(const int k, const char *pfp,
                                            int64_t pfn, int64_t *li) {
  UNROLL for (int i = 0; i < k; i++) {
    if (*li < pfn) {
      __builtin_prefetch(pfp + 64 * *li, 0, DEC_PF_HINT);
      ++*li;
    }
  }
}

/* Issues the lines of the span not asked for yet. */
static ALWAYS_INLINE void KFN(dec_pf_rest)(const char *pfp, int64_t pfn,
                                           int64_t li) {
  for (; li < pfn; li++)
    __builtin_prefetch(pfp + 64 * li, 0, DEC_PF_HINT);
}

/* Plain names for the calls of the decode bodies (clang-format reads
 * KFN(f)(...) after a declaration as another declaration). */
#define DEC_PREFETCH_SPAN KFN(dec_prefetch_span)
#define DEC_PF_REST KFN(dec_pf_rest)

/* Prefetches key j's rows (bytes each, heads step apart) of nh heads. */
static ALWAYS_INLINE void KFN(dec_prefetch)(const void *row, int nh,
                                            int64_t step, int64_t bytes) {
  if (DEC_PREFETCH <= 0)
    return;
  for (int h = 0; h < nh; h++)
    for (int64_t off = 0; off < bytes; off += 64)
      __builtin_prefetch((const char *)row + h * step + off, 0, DEC_PF_HINT);
}

/* Where a pass over the heads stands in the prefetch of the keys ahead:
 * the next row to ask for is key j's, of head hh. */
#ifndef ATTN_DEC_PF
#define ATTN_DEC_PF
typedef struct attn_dec_pf {
  int64_t j;
  int hh;
} attn_dec_pf;
#endif

/* The next nk rows of the prefetch of keys j0, j0 + 1 ... of every head
 * (the cursor starts at {j0, 0} before the pass), taken in memory order:
 * the rows key by key, heads within a key (adjacent in bshd storage and in
 * the caches), nk at each of the nh calls of a pass over the heads.
 * Requested head by head instead (keys j0 .. j0 + nk - 1 of head h, then
 * of h + 1), the lines jump across the block in strides of a key and one
 * Zen 4 thread read a cache from memory 10-15% slower (docs/decisions.md).
 * The cursor advances by counting (no division per call). Keys from n
 * on are not asked for. */
static ALWAYS_INLINE void KFN(dec_prefetch_next)(const void *const *row,
                                                 int64_t step, int64_t bytes,
                                                 int64_t n, int nh, int nk,
                                                 attn_dec_pf *pf) {
  if (DEC_PREFETCH <= 0)
    return;
  int64_t j = pf->j;
  int hh = pf->hh;
  for (int i = 0; i < nk; i++) {
    if (j < n)
      KFN(dec_prefetch)((const char *)row[j] + hh * step, 1, 0, bytes);
    if (++hh == nh) {
      hh = 0;
      j++;
    }
  }
  pf->j = j;
  pf->hh = hh;
}

/* The prefetch of one head's turn in a pass over the heads ((1) and (4) of
 * decode_body.h): where the next nk rows are one span (heads side by side,
 * as in bshd storage and the caches), its start and line count come back
 * in *pfp, *pfn, for the loop to spread (dec_pf_lines); otherwise they are
 * asked for now, row by row. Advances the cursor either way. */
static ALWAYS_INLINE void
KFN(dec_prefetch_span)(const void *const *row, int64_t step, int64_t bytes,
                       int64_t n, int nh, int nk, attn_dec_pf *pf,
                       const char **pfp, int64_t *pfn) {
  *pfp = NULL;
  *pfn = 0;
  if (step != bytes || pf->hh + nk > nh) {
    KFN(dec_prefetch_next)(row, step, bytes, n, nh, nk, pf);
    return;
  }
  if (pf->j < n && DEC_PREFETCH > 0) {
    *pfp = (const char *)row[pf->j] + pf->hh * bytes;
    *pfn = (nk * bytes + 63) / 64;
  }
  if ((pf->hh += nk) == nh) {
    pf->hh = 0;
    pf->j++;
  }
}
