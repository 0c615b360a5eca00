/* The AMX forward pieces of fwd_body.h (ISA amxbf16, compiled by
 * avx512/fwd_amxbf16.c with ATTN_FWD_AMX): the tile products (amx_qk,
 * amx_pv), P rounded for them (amx_round_p) and the one-pass softmax of
 * a tile from its sums (amx_softmax_full). Included by fwd_body.h after
 * plain_rows and fused_ok, inside its include guard's scope: it uses the
 * body's KFN, MR, NR, BR, BC and vocabulary. */

/* The AMX variant (fwd_amxbf16.c; docs/bf16.md): Q Kᵀ and, with a bf16
 * output, P V as tile dot products (tdpbf16ps: 16 x 16 f32 sums of 32
 * bf16 pairs a step), everything else as the AVX512-BF16 kernel. The
 * packed layouts are the ones the tiles read: a K panel of NR = 32 keys is
 * [d/2][32][2] (two 16-key B tiles, row stride 128 bytes), Q rows are A
 * tiles, V pairs [keys/2][dvp][2] are B tiles of 16 columns. Tiles of 16
 * rows: the rows past the tile's own are zero queries (fwd.c pads them),
 * their sums are computed and never read. Needs d a multiple of 32 (whole
 * 32-element steps); other lengths take the vdpbf16ps micro-kernels. */
#include "kernels/amx_tiles.h"
_Static_assert(NR == 32 && BR % 16 == 0 && BC % 32 == 0,
               "AMX tiles: two 16-key halves per panel, 16-row blocks");

static int KFN(amx_ok)(const attn_qtile *t) { return t->d % 32 == 0; }

/* Step (1): s = Q Kᵀ (unscaled) for keys j0 .. j0 + ncol of every 16-row
 * block holding one of the tile's rows. */
static void KFN(amx_qk)(const attn_qtile *t, int64_t j0, int ncol, float *s) {
  amx_qk_rows(t->qh, t->d, t->d, t->kh + (j0 / NR) * t->d * NR,
              (t->rows + 15) / 16, ncol, s, BC);
}

/* Step (5) for a bf16 output (pv_tile_bf16's arithmetic) from P already
 * rounded (pb: [rows rounded up to 16][BC] bf16, zero rows past the
 * tile's): acc = alpha acc + P V. The rows whose alpha is not 1 are
 * rescaled first; then the tiles load acc (accm) itself, add P V 32 keys a
 * step, and store it back: no separate pass adds the tile's sums (that
 * pass, a load, an FMA and a store per 16 sums, had cost as much as the
 * tile products). Each step's 32 products still form their sum in the
 * tile, so the running sum takes one rounding per 32 keys, against one
 * per 64 before. Two row blocks (tmm4, tmm5) against two 16-column blocks
 * of V (tmm6, tmm7); rows past the tile's are zeros in P and in accm. */
static void KFN(amx_pv)(const attn_qtile *t, const uint16_t *pb, int64_t j0,
                        int ncol, const float *alpha) {
  const int64_t dvp = t->dvp;
  const int nrb = (t->rows + 15) / 16, ld = (int)(dvp * 4);
  const uint16_t *v = t->vh + j0 * dvp;
  for (int r = 0; r < t->rows; r++) {
    if (alpha[r] == 1.0f)
      continue;
    const vf a = vf_set1(alpha[r]);
    float *acc = t->accm + r * dvp;
    for (int64_t c = 0; c < dvp; c += VL)
      vf_store(acc + c, vf_mul(vf_load(acc + c), a));
  }
  for (int rb = 0; rb < nrb; rb += 2) {
    const int two = rb + 1 < nrb;
    const uint16_t *p = pb + rb * 16 * BC;
    for (int64_t cb = 0; cb < dvp; cb += 32) {
      const int w = cb + 32 <= dvp ? 32 : 16;
      float *c0 = t->accm + rb * 16 * dvp + cb, *c1 = c0 + 16 * dvp;
      _tile_loadd(0, c0, ld);
      if (w == 32)
        _tile_loadd(1, c0 + 16, ld);
      if (two) {
        _tile_loadd(2, c1, ld);
        if (w == 32)
          _tile_loadd(3, c1 + 16, ld);
      }
      for (int k = 0; k < ncol; k += 32) {
        _tile_loadd(4, p + k, BC * 2);
        _tile_loadd(6, v + k * dvp + 2 * cb, ld);
        _tile_dpbf16ps(0, 4, 6);
        if (two) {
          _tile_loadd(5, p + 16 * BC + k, BC * 2);
          _tile_dpbf16ps(2, 5, 6);
        }
        if (w == 32) {
          _tile_loadd(7, v + k * dvp + 2 * cb + 32, ld);
          _tile_dpbf16ps(1, 4, 7);
          if (two)
            _tile_dpbf16ps(3, 5, 7);
        }
      }
      _tile_stored(0, c0, ld);
      if (w == 32)
        _tile_stored(1, c0 + 16, ld);
      if (two) {
        _tile_stored(2, c1, ld);
        if (w == 32)
          _tile_stored(3, c1 + 16, ld);
      }
    }
  }
}

/* P of rows r0 .. r1 - 1 from s (f32, row stride BC) into pb as bf16. */
static void KFN(amx_round_p)(const float *s, int r0, int r1, int ncol,
                             uint16_t *pb) {
  for (int r = r0; r < r1; r++)
    for (int c = 0; c < ncol; c += 2 * VL)
      vbf_store2(pb + r * BC + c, vf_load(s + r * BC + c),
                 vf_load(s + r * BC + c + VL));
}

/* Steps (2)-(4) of a FULL or PARTIAL tile without score modifiers or
 * dropout, from the tile sums in s, in one pass per row: mk_qk's fused
 * step (P against the running max as it stands, the same kept-or-redone
 * rule per row), with P written to pb (bf16, a bf16 output) or pf (f32).
 * A partial tile's mask is applied to s first (mask_apply: -inf where
 * masked, whatever the mask: intervals, tensor, sparse patterns), and a
 * sum of -inf enters the exponent as -inf, so P is +0 there exactly, as
 * through the separate softmax. A row redone takes plain_rows on its
 * scores, which are still in s; so does a partial tile's row that has no
 * max yet: a row that sees few keys (a one-key window, the first rows of
 * a causal mask) then gets the exact max and P = 1 at it, so O = v for
 * one key, where the guess would leave P's bf16 rounding (2^-9) or a
 * subnormal V's underflow in O. */
static void KFN(amx_softmax_full)(const attn_qtile *t, float *s, int64_t j0,
                                  int ncol, attn_tile_kind kind, float scale,
                                  float *alpha, float *lm, uint16_t *pb,
                                  float *pf) {
  const vf sc = vf_set1(scale), l2e = vf_set1(kLog2e);
  const vf ninf = vf_set1(-INFINITY);
  const int part = kind == ATTN_TILE_PARTIAL;
  if (part)
    attn_mask_apply(&t->mv, 0, t->rows, j0, ncol, s, BC);
  for (int r = 0; r < t->rows; r++) {
    const float m = t->m[r];
    const vf nm = vf_set1(m > -65536.0f && m < 65536.0f ? -m * kLog2e : 0.0f);
    float *sr = s + r * BC;
    if (part && m == -INFINITY)
      continue; /* no max yet: exact, below */
    vf big = vf_set1(-INFINITY), sum = vf_zero();
    for (int c = 0; c < ncol; c += 2 * VL) {
      const vf s0 = vf_load(sr + c), s1 = vf_load(sr + c + VL);
      vf x0 = vf_fma(vf_mul(s0, sc), l2e, nm);
      vf x1 = vf_fma(vf_mul(s1, sc), l2e, nm);
      if (part) { /* masked: -inf whatever the scale's sign */
        x0 = _mm512_mask_mov_ps(x0, _mm512_cmp_ps_mask(s0, ninf, _CMP_EQ_OQ),
                                ninf);
        x1 = _mm512_mask_mov_ps(x1, _mm512_cmp_ps_mask(s1, ninf, _CMP_EQ_OQ),
                                ninf);
      }
      big = vf_max(x1, vf_max(x0, big)); /* NaN in x stays in big */
      const vf e0 = vf_exp2_nonpos(x0), e1 = vf_exp2_nonpos(x1);
      sum = vf_add(sum, vf_add(e0, e1));
      if (pb)
        vbf_store2(pb + r * BC + c, e0, e1);
      else {
        vf_store(pf + r * BC + c, e0);
        vf_store(pf + r * BC + c + VL, e1);
      }
    }
    if (KFN(fused_ok)(m, vf_hmax(big))) {
      if (m == -INFINITY)
        t->m[r] = 0.0f; /* P was taken against the guess 0 */
      lm[r] += vf_hsum(sum);
      alpha[r] = 1.0f;
      continue;
    }
    for (int c = 0; c < ncol; c += VL) /* a score far from the max */
      vf_store(sr + c, vf_mul(vf_load(sr + c), sc));
    KFN(plain_rows)(t, r, r + 1, sr, j0, ncol, kind, alpha, lm);
    if (pb)
      KFN(amx_round_p)(s, r, r + 1, ncol, pb);
    else
      memcpy(pf + r * BC, sr, sizeof(float) * (size_t)ncol);
  }
  /* A partial tile's rows without a max, in runs of consecutive rows (the
   * first rows of a causal mask): the separate passes, row by row as ever
   * (a row's path depends on its own state only). */
  for (int ra = 0; ra < t->rows && part;) {
    if (t->m[ra] != -INFINITY) {
      ra++;
      continue;
    }
    int rb = ra + 1;
    while (rb < t->rows && t->m[rb] == -INFINITY)
      rb++;
    for (int r = ra; r < rb; r++)
      for (int c = 0; c < ncol; c += VL)
        vf_store(s + r * BC + c, vf_mul(vf_load(s + r * BC + c), sc));
    KFN(plain_rows)(t, ra, rb, s + ra * BC, j0, ncol, kind, alpha, lm);
    if (pb)
      KFN(amx_round_p)(s, ra, rb, ncol, pb);
    else
      memcpy(pf + ra * BC, s + ra * BC,
             sizeof(float) * (size_t)((rb - ra) * BC));
    ra = rb;
  }
}
