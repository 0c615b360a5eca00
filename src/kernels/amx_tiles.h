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

/* Loads the configuration; the caller releases the tiles when done. */
static inline void amx_config(void) {
  amx_cfg c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int i = 0; i < 8; i++) {
    c.colsb[i] = 64;
    c.rows[i] = 16;
  }
  _tile_loadconfig(&c);
}

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
    for (int pc = 0; pc < ncol; pc += 32) {
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

#endif
