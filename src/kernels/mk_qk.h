/* The one Q·Kᵀ micro-kernel, included by both kernel bodies (fwd_body.h
 * for S = Q Kᵀ, bwd_body.h for S = Q Kᵀ and dP = dO Vᵀ), compiled with the
 * including body's MR, NV (NR = NV * VL) and BC. */

/* Step (1), S = scale (Q Kᵀ) for one row block against one K panel:
 *     s[r][0..NR) = scale * (sum_k q[r][k] * kp[k][0..NR))   for r < mr <= MR,
 * the sums rounded first and then scaled, as PyTorch's and the oracle's
 * arithmetic does (queries scaled before the products would add one
 * rounding per term, which huge cancelling logits feel),
 * q: [mr][d] (row stride lda), kp: [d][NR], out: row stride BC. mr, nv
 * (vectors of the panel: keys 0 .. nv VL - 1; NV for the whole panel) and
 * fuse are compile-time constants at every call (so a last, short row
 * block, a single decode query or a causal diagonal costs only its part).
 *
 * fuse = 0 stores S. fuse = 1 fuses step (4) for FULL tiles without score
 * modifiers once every row of the block has a finite running max m[r]: P is
 * computed from the accumulators while they are still in registers,
 *     p = 2^(s log2e - m log2e),   negm[r] = -m[r] log2e,
 * with the running max left as it is (it may be stale: P may then exceed 1,
 * and as long as it stays below 2^FUSED_TAU the normalisation by l is exact
 * and nothing overflows; alpha = 1, so acc needs no rescaling). This removes
 * the separate max and exp passes over S. It adds each row's sum of P to
 * rowsum[r] and folds the exponents of row r into the vector rowmax[r][VL]
 * (a per-row maximum, reduced by the caller once per tile): the caller
 * redoes a row the ordinary way if its largest exponent exceeds FUSED_TAU.
 * A row that has seen no key yet may take the fused path too, guessing
 * m = 0 (negm[r] = 0): the caller accepts the guess when the row's largest
 * exponent lies within +-FUSED_TAU. Every decision is per row, so no row's
 * result depends on another row's data. fuse = 2 (the bf16 kernel, when
 * P V takes P in bf16) is fuse = 1 with P stored as bf16 at out instead
 * (uint16_t, row stride BC): the rounding pass over P is then not needed.
 *
 * pf, npf: npf lines of 64 bytes from pf to bring into L2, one per step of
 * k (the next key tile's panel while this one computes; npf 0: none). */
#define FUSED_TAU 16.0f
#if defined(ATTN_FWD_BF16) || defined(ATTN_BWD_BF16)
/* bf16 kernels (docs/bf16.md): q holds bf16 rows of an even length d (the
 * unscaled queries), kp a panel of bf16 pairs [d / 2][NR][2] (kp[k/2][c] =
 * keys c's elements k, k + 1), and S = scale * (vdpbf16ps sums). */
typedef uint16_t qk_t;
#else
typedef float qk_t; /* q: queries (unscaled); kp: [d][NR] */
#endif
static ALWAYS_INLINE void
KFN(mk_qk)(const int fuse, const int mr, const int nv, const qk_t *restrict q,
           int64_t lda, int64_t d, const qk_t *restrict kp, float *restrict out,
           const float *restrict negm, float *restrict rowsum,
           float *restrict rowmax, float scale, const char *pf, int npf) {
  vf c[MR][NV];
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int v = 0; v < nv; v++) c[r][v] = vf_zero();
  }
#if defined(ATTN_FWD_BF16) || defined(ATTN_BWD_BF16)
  for (int64_t k = 0; k < d; k += 2) {
    if (k < 2 * npf)
      ATTN_PF_L2(pf + 32 * k);
    vbf b[NV];
    UNROLL for (int v = 0; v < nv; v++) b[v] =
        vbf_load(kp + k * NR + 2 * v * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vbf a = vbf_pair(q + r * lda + k);
      UNROLL for (int v = 0; v < nv; v++) c[r][v] = vf_dot2(c[r][v], a, b[v]);
    }
  }
#else
  for (int64_t k = 0; k < d; k++) {
    if (k < npf)
      ATTN_PF_L2(pf + 64 * k);
    vf b[NV];
    UNROLL for (int v = 0; v < nv; v++) b[v] = vf_load(kp + k * NR + v * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vf a = vf_set1(q[r * lda + k]);
      UNROLL for (int v = 0; v < nv; v++) c[r][v] = vf_fma(a, b[v], c[r][v]);
    }
  }
#endif
  /* S = scale (Q Kᵀ): the sums rounded, then scaled; the fused path folds
   * the scale into log2 e below (one rounding of scale log2 e, against
   * that of the product it saves) */
  if (!fuse && scale != 1.0f) {
    const vf sc = vf_set1(scale);
    UNROLL for (int r = 0; r < mr; r++) {
      UNROLL for (int v = 0; v < nv; v++) c[r][v] = vf_mul(c[r][v], sc);
    }
  }
  const float xscale = kLog2e * scale;
  if (!fuse) {
    UNROLL for (int r = 0; r < mr; r++) {
      UNROLL for (int v = 0; v < nv; v++)
          vf_store(out + r * BC + v * VL, c[r][v]);
    }
    return;
  }
  const vf l2e = vf_set1(xscale);
  UNROLL for (int r = 0; r < mr; r++) {
    const vf nm = vf_set1(negm[r]);
    vf sum = vf_zero(), big = vf_load(rowmax + r * VL);
    UNROLL for (int v = 0; v < nv; v++) {
      const vf x = vf_fma(c[r][v], l2e, nm);
      big = vf_max(x, big); /* NaN in x stays in big */
      const vf e = vf_exp2_nonpos(x);
      if (fuse == 1)
        vf_store(out + r * BC + v * VL, e);
      c[r][v] = e;
      sum = vf_add(sum, e);
    }
#if defined(ATTN_FWD_BF16)
    /* fuse = 2: P goes out as bf16 (out: uint16_t [mr][BC]), for a P V in
     * bf16 (fwd_body.h pv_tile_bf16), the same rounding as its pass */
    if (fuse == 2) {
      for (int v = 0; v + 1 < nv; v += 2)
        vbf_store2((uint16_t *)(void *)out + r * BC + v * VL, c[r][v],
                   c[r][v + 1]);
    }
#endif
    vf_store(rowmax + r * VL, big);
    rowsum[r] += vf_hsum(sum);
  }
}
