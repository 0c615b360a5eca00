/* Decode Q K with AMX tiles (ISA amxbf16) for bf16 q and k: step (1) of
 * decode_body.h, S = scale * (Q Kᵀ), as the chunk's c->qk.
 *
 * Sixteen keys of one kv head are an A tile read in place (16 rows of 32
 * bf16, the rows' stride apart), the head's query rows the B tiles (their
 * pairs transposed once per chunk), and tdpbf16ps sums the exact products
 * 32 dims a step into a zeroed 16 x N f32 tile: one tile product per 16
 * keys and 32 dims instead of a vdpbf16ps and a share of a horizontal sum
 * per key and row (docs/decisions.md, "Issue 7: decode Q K with AMX
 * tiles"). The sums are then scaled and written transposed into the
 * score rows. Keys whose 16 rows are not evenly spaced (a page boundary of
 * a paged cache, gathered rows) and a last group of fewer than 16 are
 * copied into a zero-padded block first and take the same tile steps, so
 * every score has the same bits whatever the storage: the paged and the
 * contiguous cache, and attn_forward on the same keys, agree bitwise.
 * The sums follow the forward's AMX rule for bf16 Q and K (docs/bf16.md:
 * exact products, f32 sums in the tile's order, subnormal inputs read as
 * zero). Step (4) stays decode_avx512.c's (V widened: faster here than
 * vdpbf16ps). decode_bf16dot.h is compiled here for the vdpbf16ps Q K,
 * the fallback of a call this file does not take (never from decode.c). */
#define ATTN_SIMD_AVX512 1
#define ATTN_SIMD_BF16 1
#include "kernels/simd.h"

#include "kernels/decode_kernels.h"

#define KSUFFIX amxbf16
#include "kernels/decode_bf16dot.h"

#include "kernels/amx_tiles.h"

/* Query rows (kv heads x rows) the B operands' scratch holds (decode.c
 * sizes it for an item's rows, at most ATTN_DEC_RB) and the head dims the
 * key copy holds. */
#define DQA_ROWS ATTN_DEC_RB
#define DQA_DIMS ATTN_MAX_HEAD_DIM
/* Keys ahead whose rows are asked for: the next group of 16. */
#define DQA_AHEAD 16

/* A prefetch spread over a loop's steps: a cursor over rows in memory
 * order (key by key, heads within a key: one span when the heads are side
 * by side, as in bshd storage and the caches), `per` lines at each step
 * (dqa_pf_step). Asked for in one burst per head instead (16-32
 * lines), the prefetches stalled on the fill buffers: a third of this
 * Q K's samples on the Intel Xeon (docs/decisions.md). */
typedef struct dqa_pf {
  const void *const *row; /* rows of head 0, one a key                  */
  int64_t step;           /* bytes from one head's row to the next's    */
  int64_t j, n;           /* next key asked for, keys                   */
  int64_t line, lines;    /* next line of the current row, lines a row  */
  int hh, nrow;           /* current row of key j, rows a key           */
  int per;                /* lines per step                             */
} dqa_pf;

/* The cursor at key j0 for nh heads of `bytes` bytes a row, `keys` keys'
 * rows spread over `steps` steps. */
static inline dqa_pf dqa_pf_init(const void *const *row, int64_t step,
                                 int64_t bytes, int nh, int64_t j0, int64_t n,
                                 int64_t keys, int64_t steps) {
  const int span = step == bytes;
  dqa_pf pf = {.row = row,
               .step = step,
               .j = j0,
               .n = n,
               .lines = ((span ? nh * bytes : bytes) + 63) / 64,
               .nrow = span ? 1 : nh,
               .per = 1};
  if (steps > 0)
    pf.per = (int)((keys * pf.nrow * pf.lines + steps - 1) / steps);
  return pf;
}

static inline void dqa_pf_step(dqa_pf *pf) {
  for (int i = 0; i < pf->per && pf->j < pf->n; i++) {
    __builtin_prefetch((const char *)pf->row[pf->j] + pf->hh * pf->step +
                           64 * pf->line,
                       0, DEC_PF_HINT);
    if (++pf->line == pf->lines) {
      pf->line = 0;
      if (++pf->hh == pf->nrow) {
        pf->hh = 0;
        pf->j++;
      }
    }
  }
}

/* Tiles: 0 the sums (16 keys x 16 rows), 1, 5, 6, 7 sixteen keys' 32
 * dims each, 2 the pairs of 16 rows; 3 and 4 the sums and pairs of a last
 * block of nl < 16 rows (nl = 0: unused, configured full). */
static void dqa_config(int nl) {
  static const int narrow[2] = {3, 4};
  amx_config_cols(nl > 0 ? 2 : 0, narrow, 4 * nl);
}

/* B tile `tb` from bt's step st for nb rows, then C (tile tc) += A (ta)
 * times it. */
#define DQA_DP(tc, ta, tb)                                                     \
  do {                                                                         \
    if (full)                                                                  \
      _tile_loadd(tb, bt + st * 256, 64);                                      \
    else                                                                       \
      _tile_loadd(tb, bt + st * 16 * nb, 4 * nb);                              \
    _tile_dpbf16ps(tc, ta, tb);                                                \
  } while (0)

/* Step i's product into tc with B tile tb: its A tile is tmm1, 5, 6 or
 * 7 (tile numbers are immediates). */
#define DQA_STEP(tc, tb)                                                       \
  do {                                                                         \
    if (i == 0)                                                                \
      DQA_DP(tc, 1, tb);                                                       \
    else if (i == 1)                                                           \
      DQA_DP(tc, 5, tb);                                                       \
    else if (i == 2)                                                           \
      DQA_DP(tc, 6, tb);                                                       \
    else                                                                       \
      DQA_DP(tc, 7, tb);                                                       \
  } while (0)

/* The sums of one block of nb rows against 16 keys (a: their rows, lda
 * bytes apart; bt: the rows' pairs, [d / 32][16][nb]) into t[16][nb]: up
 * to four 32-dim steps' keys loaded (tmm1, 5, 6, 7) before their
 * products, so that the loads are in flight together. */
static inline void dqa_block(const uint16_t *a, int64_t lda, int64_t d,
                             const uint32_t *bt, int nb, float *t, dqa_pf *pf) {
  const int full = nb == 16;
  if (full)
    _tile_zero(0);
  else
    _tile_zero(3);
  for (int64_t x0 = 0; x0 < d; x0 += 128) {
    const int ns = (int)ATTN_MIN(4, (d - x0) / 32);
    dqa_pf_step(pf);
    _tile_loadd(1, a + x0, lda);
    if (ns > 1)
      _tile_loadd(5, a + x0 + 32, lda);
    if (ns > 2)
      _tile_loadd(6, a + x0 + 64, lda);
    if (ns > 3)
      _tile_loadd(7, a + x0 + 96, lda);
    for (int i = 0; i < ns; i++) {
      const int64_t st = x0 / 32 + i;
      if (full)
        DQA_STEP(0, 2);
      else
        DQA_STEP(3, 4);
      if (i > 0)
        dqa_pf_step(pf);
    }
  }
  if (full)
    _tile_stored(0, t, 64);
  else
    _tile_stored(3, t, nb > 4 ? 64 : 4 * nb);
}

/* s[r * lds + k] = scale * t[k][r] for nb rows and nk keys (t's rows
 * 16 floats apart when nb > 4, else nb). */
static inline void dqa_scatter(const float *t, int nb, int nk, float scale,
                               float *s, int64_t lds) {
  if (nb == 4 && nk == 16) {
    /* t: four vectors of four keys x four rows; row r is every fourth
     * element from r */
    const __m512 t0 = _mm512_loadu_ps(t), t1 = _mm512_loadu_ps(t + 16);
    const __m512 t2 = _mm512_loadu_ps(t + 32), t3 = _mm512_loadu_ps(t + 48);
    const __m512 sc = _mm512_set1_ps(scale);
    for (int r = 0; r < 4; r++) {
      const __m512i ix = _mm512_setr_epi32(
          r, 4 + r, 8 + r, 12 + r, 16 + r, 20 + r, 24 + r, 28 + r, r, 4 + r,
          8 + r, 12 + r, 16 + r, 20 + r, 24 + r, 28 + r);
      const __m512 lo = _mm512_permutex2var_ps(t0, ix, t1);
      const __m512 hi = _mm512_permutex2var_ps(t2, ix, t3);
      const __m512 row = _mm512_shuffle_f32x4(lo, hi, 0x44);
      _mm512_storeu_ps(s + r * lds, _mm512_mul_ps(row, sc));
    }
    return;
  }
  if (nb > 4) {
    /* t: [16][16] (columns past nb unused): one 16 x 16 transpose, the
     * first nb rows written */
    __m512i rw[16];
    _Alignas(64) uint32_t tt[16 * 16];
    for (int k = 0; k < 16; k++)
      rw[k] = _mm512_castps_si512(_mm512_loadu_ps(t + 16 * k));
    amx_t16_u32(rw, tt, 16);
    const __m512 sc = _mm512_set1_ps(scale);
    const __mmask16 m = (__mmask16)((1u << nk) - 1);
    for (int r = 0; r < nb; r++)
      _mm512_mask_storeu_ps(
          s + r * lds, m,
          _mm512_mul_ps(_mm512_castsi512_ps(_mm512_loadu_si512(tt + 16 * r)),
                        sc));
    return;
  }
  for (int r = 0; r < nb; r++)
    for (int k = 0; k < nk; k++)
      s[r * lds + k] = t[k * nb + r] * scale;
}

/* Row r (of nh x rows) of q, d bf16 in q16, as part of the B operands
 * bt: blocks [head][row block of 16] of [d / 32][16][nb] words (a word is
 * a pair of dims). */
static void dqa_pair_row(const uint16_t *q16, int64_t r, int rows, int64_t d,
                         uint32_t *bt) {
  const int64_t h = r / rows, ri = r % rows, rb = ri / 16, i = ri % 16;
  const int64_t nb = ATTN_MIN(16, rows - 16 * rb);
  uint32_t *w = bt + h * rows * (d / 2) + 16 * rb * (d / 2);
  for (int64_t p = 0; p < d / 2; p++) /* a pair as one word */
    memcpy(&w[(p / 16) * 16 * nb + (p % 16) * nb + i], q16 + 2 * p,
           sizeof(uint32_t));
}

/* Step (1) from the B operands bt (dqa_pair_row's blocks). */
static void dqa_run(const attn_dec_chunk *c, const uint32_t *bt) {
  const int64_t d = c->d, n = c->jb - c->ja, lds = ATTN_DEC_LDS;
  const int rows = c->rows, nh = c->nh;
  const float scale = c->scale;
  const int nrb = (rows + 15) / 16, nl = rows % 16;
  _Alignas(64) uint16_t kb[16 * DQA_DIMS]; /* copied keys, zero padded */
  _Alignas(64) float t[16 * 16] = {0};     /* the tile's sums, 16 x nb */
  const int64_t kbytes = 2 * d;
  dqa_config(nl);
  /* the next group's rows over its nh x nrb x d / 32 tile steps */
  dqa_pf pf = dqa_pf_init(c->krow, c->kstep, kbytes, nh, DQA_AHEAD, n, 16,
                          (int64_t)nh * nrb * (d / 32));
  for (int64_t j = 0; j < n; j += 16) {
    const int nk = (int)ATTN_MIN(16, n - j);
    /* the 16 rows evenly spaced (head 0; the heads are kstep apart) */
    int64_t step =
        nk > 1 ? (const char *)c->krow[j + 1] - (const char *)c->krow[j] : 0;
    int even = nk == 16;
    for (int k = 2; even && k < 16; k++)
      even =
          (const char *)c->krow[j + k] == (const char *)c->krow[j] + k * step;
    for (int h = 0; h < nh; h++) {
      const uint16_t *a;
      int64_t lda;
      if (even) {
        a = (const uint16_t *)((const char *)c->krow[j] + h * c->kstep);
        lda = step;
      } else {
        for (int k = 0; k < 16; k++) {
          if (k < nk)
            memcpy(kb + k * d, (const char *)c->krow[j + k] + h * c->kstep,
                   (size_t)kbytes);
          else
            memset(kb + k * d, 0, (size_t)kbytes);
        }
        a = kb;
        lda = kbytes;
      }
      const uint32_t *bh = bt + (int64_t)h * rows * (d / 2);
      for (int rb = 0; rb < nrb; rb++) {
        const int nb = ATTN_MIN(16, rows - 16 * rb);
        dqa_block(a, lda, d, bh + (int64_t)16 * rb * (d / 2), nb, t, &pf);
        dqa_scatter(t, nb, nk, scale,
                    c->s + ((int64_t)h * rows + 16 * rb) * lds + j, lds);
      }
    }
  }
  _tile_release();
}

/* bf16 q (ATTN_DEC_BF16DOT: c->q holds bf16 rows): one part. */
void attn_dec_qk_amx_amxbf16(const attn_dec_chunk *c) {
  const int64_t d = c->d;
  const int nrows = c->nh * c->rows;
  if (nrows > DQA_ROWS || d > DQA_DIMS || d % 32 != 0 || c->dp != d || !c->qt) {
    attn_dec_qk_bf16_amxbf16(c); /* not reached from decode.c */
    return;
  }
  for (int64_t r = 0; r < nrows; r++)
    dqa_pair_row((const uint16_t *)c->q + r * d, r, c->rows, d, c->qt);
  dqa_run(c, c->qt);
}
