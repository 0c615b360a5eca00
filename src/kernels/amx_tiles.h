/* AMX tile helpers shared by the forward and backward kernels of ISA
 * amxbf16 (fwd_body.h, bwd_body.h with ATTN_FWD_AMX / ATTN_BWD_AMX;
 * docs/bf16.md). One tile configuration for both: eight tiles of 16 rows
 * of 64 bytes (tmm0-3 sums, tmm4-5 A operands, tmm6-7 B operands). */
#ifndef ATTN_KERNELS_AMX_TILES_H
#define ATTN_KERNELS_AMX_TILES_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

typedef struct {
  uint8_t palette, start_row, reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} amx_cfg;

/* Loads eight tiles of 16 rows, of 64 bytes but the n tiles listed in
 * narrow, of colsb; the caller releases the tiles when done. */
static inline void amx_config_cols(int n, const int *narrow, int colsb) {
  amx_cfg c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int i = 0; i < 8; i++) {
    c.colsb[i] = 64;
    c.rows[i] = 16;
  }
  for (int i = 0; i < n; i++)
    c.colsb[narrow[i]] = (uint16_t)colsb;
  _tile_loadconfig(&c);
}

/* The forward's and backward's configuration: every tile 16 x 64 bytes. */
static inline void amx_config(void) { amx_config_cols(0, NULL, 0); }

/* S = A Kᵀ, unscaled: out[r][0..ncol) (row stride ldo floats) for the nrb
 * blocks of 16 bf16 rows of a (stride lda elements, d a multiple of 32)
 * against the pair panels kp ([ncol / 32][d / 2][32][2], two 16-key B
 * tiles each). Two row blocks at a time against a panel's two halves:
 * four sums per pair of A and B tiles loaded. Every sum is the same
 * sequence of steps (a zeroed tile, 32 elements a step, in order) whatever
 * the blocking, so the backward recomputes the forward's S bit for bit by
 * calling this too. */
static inline void amx_qk_rows(const uint16_t *a, int64_t lda, int64_t d,
                               const uint16_t *kp, int nrb, int ncol,
                               float *out, int64_t ldo) {
  for (int rb = 0; rb < nrb; rb += 2) {
    const int two = rb + 1 < nrb;
    const uint16_t *q = a + rb * 16 * lda;
    float *o = out + rb * 16 * ldo;
    int pc = 0;
    /* A last block alone takes two panels at once: four sums a step, as
     * the pairs, rather than two (a tile product's latency is several of
     * its issue intervals). */
    for (; !two && pc + 64 <= ncol; pc += 64) {
      const uint16_t *p = kp + (pc / 32) * d * 32;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t k = 0; k < d; k += 32) {
        _tile_loadd(4, q + k, (int)(lda * 2));
        _tile_loadd(6, p + k * 32, 128);
        _tile_loadd(7, p + k * 32 + 32, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(6, p + d * 32 + k * 32, 128);
        _tile_loadd(7, p + d * 32 + k * 32 + 32, 128);
        _tile_dpbf16ps(2, 4, 6);
        _tile_dpbf16ps(3, 4, 7);
      }
      _tile_stored(0, o + pc, (int)(ldo * 4));
      _tile_stored(1, o + pc + 16, (int)(ldo * 4));
      _tile_stored(2, o + pc + 32, (int)(ldo * 4));
      _tile_stored(3, o + pc + 48, (int)(ldo * 4));
    }
    for (; pc < ncol; pc += 32) {
      const uint16_t *p = kp + (pc / 32) * d * 32;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t k = 0; k < d; k += 32) {
        _tile_loadd(4, q + k, (int)(lda * 2));
        _tile_loadd(6, p + k * 32, 128);
        _tile_loadd(7, p + k * 32 + 32, 128);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        if (two) {
          _tile_loadd(5, q + 16 * lda + k, (int)(lda * 2));
          _tile_dpbf16ps(2, 5, 6);
          _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, o + pc, (int)(ldo * 4));
      _tile_stored(1, o + pc + 16, (int)(ldo * 4));
      if (two) {
        _tile_stored(2, o + 16 * ldo + pc, (int)(ldo * 4));
        _tile_stored(3, o + 16 * ldo + pc + 16, (int)(ldo * 4));
      }
    }
  }
}

/* c[m][0..ncols) += (A B)[m] for m < nrows: A the sum of np bf16 parts
 * a[0..np) (each rows of nrb blocks of 16, stride lda elements, kd of them,
 * kd a multiple of 32), B pairs [kd / 2][ldb][2] (pair rows of ldb pairs;
 * ncols a multiple of 16). Every 16 x 16 block of the product is summed
 * in its own zeroed tile, 32 elements a step in order (the parts in order
 * within a step), then added to c (two levels, as the f32 kernels'
 * bmk_acc): the same bits whatever the blocking. Rows of A past nrows
 * must be finite; their sums are dropped. */
static inline void amx_acc_rows(const uint16_t *const *a, int np, int64_t lda,
                                int64_t kd, const uint16_t *b, int64_t ldb,
                                int nrb, int64_t ncols, float *c, int64_t ldc,
                                int nrows) {
  float tmp[4][16 * 16];
  for (int rb = 0; rb < nrb; rb += 2) {
    const int two_r = rb + 1 < nrb;
    const int64_t x = rb * 16 * lda;
    for (int64_t cb = 0; cb < ncols; cb += 32) {
      const int two_c = cb + 16 < ncols;
      const uint16_t *y = b + 2 * cb;
      _tile_zero(0);
      _tile_zero(1);
      _tile_zero(2);
      _tile_zero(3);
      for (int64_t k = 0; k < kd; k += 32) {
        _tile_loadd(6, y + k * ldb, (int)(ldb * 4));
        if (two_c)
          _tile_loadd(7, y + k * ldb + 32, (int)(ldb * 4));
        for (int h = 0; h < np; h++) {
          _tile_loadd(4, a[h] + x + k, (int)(lda * 2));
          _tile_dpbf16ps(0, 4, 6);
          if (two_c)
            _tile_dpbf16ps(1, 4, 7);
          if (two_r) {
            _tile_loadd(5, a[h] + x + 16 * lda + k, (int)(lda * 2));
            _tile_dpbf16ps(2, 5, 6);
            if (two_c)
              _tile_dpbf16ps(3, 5, 7);
          }
        }
      }
      _tile_stored(0, tmp[0], 64);
      _tile_stored(1, tmp[1], 64);
      _tile_stored(2, tmp[2], 64);
      _tile_stored(3, tmp[3], 64);
      for (int t = 0; t < 4; t++) {
        const int r0 = (rb + t / 2) * 16;
        const int64_t c0 = cb + 16 * (t % 2);
        if ((t / 2 && !two_r) || (t % 2 && !two_c))
          continue;
        for (int r = 0; r < 16 && r0 + r < nrows; r++) {
          float *o = c + (r0 + r) * ldc + c0;
          _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o),
                                            _mm512_loadu_ps(tmp[t] + 16 * r)));
        }
      }
    }
  }
}

/* x rounded to bf16 (nearest even, subnormals to 0, as vbf_store1) and
 * what remains of x: *rest = x - that (exact in f32). */
static inline __m256i amx_bf16_part(__m512 x, __m512 *rest) {
  const __m256i h = (__m256i)_mm512_cvtneps_pbh(x);
  const __m512 w =
      _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  *rest = _mm512_sub_ps(x, w);
  return h;
}

/* The 16 x 16 transpose of 32-bit elements: row 4L + c of the result
 * (L, c < 4) is column 4L + c of r; written to out rows of ldo elements. */
static inline void amx_t16_u32(const __m512i r[16], uint32_t *out,
                               int64_t ldo) {
  __m512i a[16], b[16];
  /* a: 32-bit interleave of row pairs; b[4g + c]: lane L holds column
   * 4L + c of rows 4g .. 4g + 3 */
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int g = 0; g < 16; g += 4) {
    b[g] = _mm512_unpacklo_epi64(a[g], a[g + 2]);
    b[g + 1] = _mm512_unpackhi_epi64(a[g], a[g + 2]);
    b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
    b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
  }
  /* a 4 x 4 transpose of 128-bit lanes per c: row 4L + c of the result is
   * lane L of b[c], b[4 + c], b[8 + c], b[12 + c] */
  for (int c = 0; c < 4; c++) {
    const __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x44);
    const __m512i e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xEE);
    const __m512i e2 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x44);
    const __m512i e3 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xEE);
    uint32_t *o = out + c * ldo;
    _mm512_storeu_si512((void *)o, _mm512_shuffle_i32x4(e0, e2, 0x88));
    _mm512_storeu_si512((void *)(o + 4 * ldo),
                        _mm512_shuffle_i32x4(e0, e2, 0xDD));
    _mm512_storeu_si512((void *)(o + 8 * ldo),
                        _mm512_shuffle_i32x4(e1, e3, 0x88));
    _mm512_storeu_si512((void *)(o + 12 * ldo),
                        _mm512_shuffle_i32x4(e1, e3, 0xDD));
  }
}

/* out[h][j][0..kq) = part h of column j of p (rows of ldp floats), for
 * the ncol columns (a multiple of 16) and np parts: the transpose that
 * makes P or dS an A operand whose sum runs over queries (dV += Pᵀ dO,
 * dK += dSᵀ Q). Part 0 is p rounded to bf16 (nearest even, subnormals to
 * 0, as vbf_store_zip), part h + 1 what part h left, rounded: three parts
 * sum to p exactly (subnormals aside). Rows from nq to kq (a multiple of
 * 32) are zeros. Pairs of rows zipped, then 16 x 16 transposes of the
 * 32-bit pairs. */
static inline void amx_zip_t(const float *p, int64_t ldp, int nq, int kq,
                             int ncol, int np, uint16_t *const *out,
                             int64_t ldo) {
  for (int j0 = 0; j0 < ncol; j0 += 16)
    for (int q0 = 0; q0 < kq; q0 += 32) {
      __m512 x[16], y[16];
      for (int i = 0; i < 16; i++) {
        const int q = q0 + 2 * i;
        x[i] = q < nq ? _mm512_loadu_ps(p + q * ldp + j0) : _mm512_setzero_ps();
        y[i] = q + 1 < nq ? _mm512_loadu_ps(p + (q + 1) * ldp + j0)
                          : _mm512_setzero_ps();
      }
      for (int h = 0; h < np; h++) {
        __m512i r[16];
        for (int i = 0; i < 16; i++) {
          const __m512i lo = _mm512_cvtepu16_epi32(amx_bf16_part(x[i], &x[i]));
          const __m512i hi = _mm512_cvtepu16_epi32(amx_bf16_part(y[i], &y[i]));
          r[i] = _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
        }
        amx_t16_u32(r, (uint32_t *)(out[h] + j0 * ldo + q0), ldo / 2);
      }
    }
}

#endif
