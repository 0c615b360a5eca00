/* Dropout's counter-based generator: Philox4x32-10 (Salmon, Moraes, Dror
 * and Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011; the
 * philox4x32_10 of Random123), and the keep rule of attn_params.dropout_p
 * (attn.h, attn_dropout_keep):
 *
 *   key     (seed & 0xffffffff, seed >> 32)
 *   counter (j / 4, i, h, b)            32-bit words, coordinates mod 2^32
 *   u       word j % 4 of Philox4x32-10(counter, key)
 *   keep    u >= floor(p 2^32)          probability 1 - floor(p 2^32) 2^-32
 *   scale   1 / (1 - p), rounded to f32, multiplies the kept elements
 *
 * One Philox call serves 4 adjacent keys of one row. The mask depends on
 * (seed, p, b, h, i, j) only: never on tiles, threads or the ISA.
 *
 * Scalar code always; with simd.h's ATTN_SIMD_AVX2 or ATTN_SIMD_AVX512
 * defined (the kernel translation units), the row functions run 8 or 16
 * Philox calls per vector (32 or 64 keys), two vectors interleaved, the
 * 32x32 -> 64-bit products on _mm256_mul_epu32 / _mm512_mul_epu32. The
 * generic kernels use the scalar loop, so they read as the reference.
 */
#ifndef ATTN_KERNELS_PHILOX_H
#define ATTN_KERNELS_PHILOX_H

#include <math.h>
#include <stdint.h>

#define ATTN_PHILOX_M0 0xD2511F53u /* multipliers (Random123) */
#define ATTN_PHILOX_M1 0xCD9E8D57u
#define ATTN_PHILOX_W0 0x9E3779B9u /* Weyl key increments: golden ratio, */
#define ATTN_PHILOX_W1 0xBB67AE85u /* sqrt(3) - 1                        */
#define ATTN_PHILOX_ROUNDS 10

/* out = Philox4x32-10(ctr, key). */
static inline void attn_philox4x32_10(const uint32_t ctr[4],
                                      const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int r = 0; r < ATTN_PHILOX_ROUNDS; r++) {
    const uint64_t p0 = (uint64_t)ATTN_PHILOX_M0 * c0;
    const uint64_t p1 = (uint64_t)ATTN_PHILOX_M1 * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += ATTN_PHILOX_W0; /* the bump after the last round is unused */
    k1 += ATTN_PHILOX_W1;
  }
  out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* floor(p 2^32) for p in [0, 1): exact in double (p has 24 bits), at most
 * 2^32 - 2^8. */
static inline uint32_t attn_dropout_threshold(float p) {
  return (uint32_t)floor((double)p * 4294967296.0);
}

/* Dropout of one (sequence b, query head h) of a call. */
typedef struct attn_dropout {
  int on;             /* dropout_p > 0                                  */
  uint32_t key[2];    /* the seed's low and high words                  */
  uint32_t threshold; /* floor(p 2^32): word u is kept when u >= it     */
  float scale;        /* 1 / (1 - p) in f32: the kept elements' factor  */
  uint32_t h, b;      /* counter words 2 and 3                          */
} attn_dropout;

/* p must be in [0, 1) (validated); p = 0 turns dropout off. */
static inline void attn_dropout_init(attn_dropout *dr, uint64_t seed, float p,
                                     int64_t b, int64_t h) {
  dr->on = p > 0.0f;
  dr->key[0] = (uint32_t)seed;
  dr->key[1] = (uint32_t)(seed >> 32);
  dr->threshold = dr->on ? attn_dropout_threshold(p) : 0u;
  dr->scale = dr->on ? (float)(1.0 / (1.0 - (double)p)) : 1.0f;
  dr->h = (uint32_t)(uint64_t)h;
  dr->b = (uint32_t)(uint64_t)b;
}

/* The 4 words of keys 4q .. 4q + 3 of row i. */
static inline void attn_dropout_words(const attn_dropout *dr, uint32_t q,
                                      int64_t i, uint32_t u[4]) {
  const uint32_t ctr[4] = {q, (uint32_t)(uint64_t)i, dr->h, dr->b};
  attn_philox4x32_10(ctr, dr->key, u);
}

/* 1 when element (i, j) is kept. */
static inline int attn_dropout_kept(const attn_dropout *dr, int64_t i,
                                    int64_t j) {
  uint32_t u[4];
  attn_dropout_words(dr, (uint32_t)((uint64_t)j >> 2), i, u);
  return u[(uint64_t)j & 3u] >= dr->threshold;
}

/* z[c] = keep(i, j0 + c) ? scale : 0 (mul = 0), or x[c] *= that (mul = 1),
 * for c in [c0, n), one Philox call per 4 keys. */
static inline void attn_dropout_scalar(const attn_dropout *dr, int64_t i,
                                       int64_t j0, float *x, int c0, int n,
                                       int mul) {
  uint32_t u[4];
  uint64_t have = UINT64_MAX; /* the q whose words u holds */
  for (int c = c0; c < n; c++) {
    const uint64_t j = (uint64_t)j0 + (uint64_t)c;
    if (j >> 2 != have) {
      have = j >> 2;
      attn_dropout_words(dr, (uint32_t)have, i, u);
    }
    const float f = u[j & 3u] >= dr->threshold ? dr->scale : 0.0f;
    x[c] = mul ? x[c] * f : f;
  }
}

#if defined(ATTN_SIMD_AVX2) || defined(ATTN_SIMD_AVX512)
#include <immintrin.h>
#endif

#if defined(ATTN_SIMD_AVX512)
/* 16 Philox calls at once (lanes: counter word 0 = q0 + lane). */
#define ATTN_DROP_LANES 16
typedef __m512i attn_vu;
static inline attn_vu attn_vu_set1(uint32_t x) {
  return _mm512_set1_epi32((int)x);
}
static inline attn_vu attn_vu_xor(attn_vu a, attn_vu b) {
  return _mm512_xor_si512(a, b);
}
/* hi and lo words of a[l] * m for every 32-bit lane l: mul_epu32 takes the
 * even lanes, the odd ones after a shift, and blends put them back. */
static inline void attn_vu_mulhilo(attn_vu a, attn_vu m, attn_vu *hi,
                                   attn_vu *lo) {
  const __m512i pe = _mm512_mul_epu32(a, m);
  const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}
static inline attn_vu attn_vu_ctr0(uint32_t q0) {
  return _mm512_add_epi32(
      _mm512_set1_epi32((int)q0),
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}
/* o[w][l] = word w of lane l; t[v] = the words of keys 16v .. 16v + 15
 * in key order (key 4l + w is word w of lane l): a 4 x 16 transpose. */
static inline void attn_vu_transpose(const attn_vu o[4], attn_vu t[4]) {
  /* within each 128-bit block: r_k = [lane k | k+4 | k+8 | k+12] */
  const __m512i a0 = _mm512_unpacklo_epi32(o[0], o[1]);
  const __m512i a1 = _mm512_unpacklo_epi32(o[2], o[3]);
  const __m512i a2 = _mm512_unpackhi_epi32(o[0], o[1]);
  const __m512i a3 = _mm512_unpackhi_epi32(o[2], o[3]);
  const __m512i r0 = _mm512_unpacklo_epi64(a0, a1);
  const __m512i r1 = _mm512_unpackhi_epi64(a0, a1);
  const __m512i r2 = _mm512_unpacklo_epi64(a2, a3);
  const __m512i r3 = _mm512_unpackhi_epi64(a2, a3);
  /* s0 = [0 4 1 5], s1 = [2 6 3 7], s2 = [8 12 9 13], s3 = [10 14 11 15] */
  const __m512i s0 = _mm512_shuffle_i32x4(r0, r1, 0x44);
  const __m512i s1 = _mm512_shuffle_i32x4(r2, r3, 0x44);
  const __m512i s2 = _mm512_shuffle_i32x4(r0, r1, 0xEE);
  const __m512i s3 = _mm512_shuffle_i32x4(r2, r3, 0xEE);
  t[0] = _mm512_shuffle_i32x4(s0, s1, 0x88); /* lanes 0 1 2 3     */
  t[1] = _mm512_shuffle_i32x4(s0, s1, 0xDD); /* lanes 4 5 6 7     */
  t[2] = _mm512_shuffle_i32x4(s2, s3, 0x88); /* lanes 8 9 10 11   */
  t[3] = _mm512_shuffle_i32x4(s2, s3, 0xDD); /* lanes 12 13 14 15 */
}
/* 16 multipliers from 16 words: u >= threshold ? scale : 0. */
static inline __m512 attn_vu_factor(attn_vu u, attn_vu thr, float scale) {
  const __mmask16 k = _mm512_cmp_epu32_mask(u, thr, _MM_CMPINT_NLT);
  return _mm512_maskz_mov_ps(k, _mm512_set1_ps(scale));
}
#define attn_vf_loadu(p) _mm512_loadu_ps(p)
#define attn_vf_storeu(p, x) _mm512_storeu_ps((p), (x))
#define attn_vf_mul(a, b) _mm512_mul_ps((a), (b))
typedef __m512 attn_vf;

#elif defined(ATTN_SIMD_AVX2)
/* 8 Philox calls at once (lanes: counter word 0 = q0 + lane). */
#define ATTN_DROP_LANES 8
typedef __m256i attn_vu;
static inline attn_vu attn_vu_set1(uint32_t x) {
  return _mm256_set1_epi32((int)x);
}
static inline attn_vu attn_vu_xor(attn_vu a, attn_vu b) {
  return _mm256_xor_si256(a, b);
}
/* hi and lo words of a[l] * m for every 32-bit lane l (see AVX-512). */
static inline void attn_vu_mulhilo(attn_vu a, attn_vu m, attn_vu *hi,
                                   attn_vu *lo) {
  const __m256i pe = _mm256_mul_epu32(a, m);
  const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}
static inline attn_vu attn_vu_ctr0(uint32_t q0) {
  return _mm256_add_epi32(_mm256_set1_epi32((int)q0),
                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* o[w][l] = word w of lane l; t[v] = the words of keys 8v .. 8v + 7 in
 * key order (key 4l + w is word w of lane l): a 4 x 8 transpose. */
static inline void attn_vu_transpose(const attn_vu o[4], attn_vu t[4]) {
  /* within each 128-bit half: r_k = [lane k | lane k + 4] */
  const __m256i a0 = _mm256_unpacklo_epi32(o[0], o[1]);
  const __m256i a1 = _mm256_unpacklo_epi32(o[2], o[3]);
  const __m256i a2 = _mm256_unpackhi_epi32(o[0], o[1]);
  const __m256i a3 = _mm256_unpackhi_epi32(o[2], o[3]);
  const __m256i r0 = _mm256_unpacklo_epi64(a0, a1);
  const __m256i r1 = _mm256_unpackhi_epi64(a0, a1);
  const __m256i r2 = _mm256_unpacklo_epi64(a2, a3);
  const __m256i r3 = _mm256_unpackhi_epi64(a2, a3);
  t[0] = _mm256_permute2x128_si256(r0, r1, 0x20); /* lanes 0 1 */
  t[1] = _mm256_permute2x128_si256(r2, r3, 0x20); /* lanes 2 3 */
  t[2] = _mm256_permute2x128_si256(r0, r1, 0x31); /* lanes 4 5 */
  t[3] = _mm256_permute2x128_si256(r2, r3, 0x31); /* lanes 6 7 */
}
/* 8 multipliers from 8 words: u >= threshold ? scale : 0 (max_epu32:
 * AVX2 has no unsigned compare). */
static inline __m256 attn_vu_factor(attn_vu u, attn_vu thr, float scale) {
  const __m256i keep = _mm256_cmpeq_epi32(_mm256_max_epu32(u, thr), u);
  return _mm256_and_ps(_mm256_castsi256_ps(keep), _mm256_set1_ps(scale));
}
#define attn_vf_loadu(p) _mm256_loadu_ps(p)
#define attn_vf_storeu(p, x) _mm256_storeu_ps((p), (x))
#define attn_vf_mul(a, b) _mm256_mul_ps((a), (b))
typedef __m256 attn_vf;
#endif

#if defined(ATTN_DROP_LANES)
/* Two independent sets of LANES Philox calls, interleaved so that one
 * set's multiplications hide the other's latency (about 25% faster than
 * one at a time): set s covers keys 4 q[s] .. 4 (q[s] + LANES) - 1 of row
 * i[s], and t[s][v] receives LANES of their words in key order. */
static inline void attn_dropout_block2(const attn_dropout *dr,
                                       const uint32_t q[2], const int64_t i[2],
                                       attn_vu t[2][4]) {
  attn_vu c[2][4];
  for (int s = 0; s < 2; s++) {
    c[s][0] = attn_vu_ctr0(q[s]);
    c[s][1] = attn_vu_set1((uint32_t)(uint64_t)i[s]);
    c[s][2] = attn_vu_set1(dr->h);
    c[s][3] = attn_vu_set1(dr->b);
  }
  const attn_vu m0 = attn_vu_set1(ATTN_PHILOX_M0);
  const attn_vu m1 = attn_vu_set1(ATTN_PHILOX_M1);
  uint32_t k0 = dr->key[0], k1 = dr->key[1];
  for (int r = 0; r < ATTN_PHILOX_ROUNDS; r++) {
    const attn_vu kv0 = attn_vu_set1(k0), kv1 = attn_vu_set1(k1);
    for (int s = 0; s < 2; s++) {
      attn_vu hi0, lo0, hi1, lo1;
      attn_vu_mulhilo(c[s][0], m0, &hi0, &lo0);
      attn_vu_mulhilo(c[s][2], m1, &hi1, &lo1);
      c[s][0] = attn_vu_xor(attn_vu_xor(hi1, c[s][1]), kv0);
      c[s][2] = attn_vu_xor(attn_vu_xor(hi0, c[s][3]), kv1);
      c[s][1] = lo1;
      c[s][3] = lo0;
    }
    k0 += ATTN_PHILOX_W0;
    k1 += ATTN_PHILOX_W1;
  }
  attn_vu_transpose(c[0], t[0]);
  attn_vu_transpose(c[1], t[1]);
}

/* The vector form of attn_dropout_scalar on rows i0 .. i0 + rows - 1
 * (row r at x + r ldx), the same results: the whole vectors of every row
 * in blocks of 4 LANES keys, two blocks at a time (across rows when a row
 * has one block), the scalar loop for the rest of each row and when j0
 * is not a multiple of 4. */
static inline void attn_dropout_rows(const attn_dropout *dr, int64_t i0,
                                     int rows, int64_t j0, float *x,
                                     int64_t ldx, int n, int mul) {
  const int lanes = ATTN_DROP_LANES, blk = 4 * ATTN_DROP_LANES;
  const int nvec = ((uint64_t)j0 & 3u) == 0 ? n / lanes : 0;
  const int nblk = (nvec + 3) / 4; /* blocks per row, the last partial */
  const int items = rows * nblk;
  const attn_vu thr = attn_vu_set1(dr->threshold);
  for (int it = 0; it < items; it += 2) {
    int row[2], col[2];
    uint32_t q[2];
    int64_t i[2];
    for (int s = 0; s < 2; s++) { /* an odd last item is done twice */
      const int e = it + s < items ? it + s : it;
      row[s] = e / nblk;
      col[s] = e % nblk * blk;
      q[s] = (uint32_t)(((uint64_t)j0 + (uint64_t)col[s]) >> 2);
      i[s] = i0 + row[s];
    }
    attn_vu t[2][4];
    attn_dropout_block2(dr, q, i, t);
    for (int s = 0; s < 2 && it + s < items; s++)
      for (int v = 0; v < 4 && col[s] + (v + 1) * lanes <= nvec * lanes; v++) {
        float *xp = x + row[s] * ldx + col[s] + v * lanes;
        const attn_vf f = attn_vu_factor(t[s][v], thr, dr->scale);
        attn_vf_storeu(xp, mul ? attn_vf_mul(attn_vf_loadu(xp), f) : f);
      }
  }
  for (int r = 0; r < rows; r++)
    attn_dropout_scalar(dr, i0 + r, j0, x + r * ldx, nvec * lanes, n, mul);
}
#else
static inline void attn_dropout_rows(const attn_dropout *dr, int64_t i0,
                                     int rows, int64_t j0, float *x,
                                     int64_t ldx, int n, int mul) {
  for (int r = 0; r < rows; r++)
    attn_dropout_scalar(dr, i0 + r, j0, x + r * ldx, 0, n, mul);
}
#endif

/* Rows i0 .. i0 + rows - 1 (row r at x + r ldx), keys j0 .. j0 + n - 1:
 * x[r][c] *= keep ? scale : 0. */
static inline void attn_dropout_apply(const attn_dropout *dr, int64_t i0,
                                      int rows, int64_t j0, float *x,
                                      int64_t ldx, int n) {
  attn_dropout_rows(dr, i0, rows, j0, x, ldx, n, 1);
}

/* The same rows and keys: z[r][c] = keep ? scale : 0. */
static inline void attn_dropout_fill(const attn_dropout *dr, int64_t i0,
                                     int rows, int64_t j0, float *z,
                                     int64_t ldx, int n) {
  attn_dropout_rows(dr, i0, rows, j0, z, ldx, n, 0);
}

#endif
