/* The score pipeline, written once against simd.h and included by both
 * kernel bodies (fwd_body.h, bwd_body.h) of every ISA. Each modifier's
 * forward rule sits beside its backward rule.
 *
 *   modifier   forward                     backward (dS' = dS * ds_out/ds_in)
 *   softcap    s = c tanh(s / c)           dS' = dS (1 - tanh^2)
 *   ALiBi      s -= slope |qk + i - j|     derivative 1
 *   T5         s += rel[bucket(j-i-qk)][h] derivative 1; dRel[bucket] += dS
 *   bias       s += bias[i][j]             derivative 1; dBias = dS
 *   mask       s = -inf where disallowed   P = 0 there, so dS = 0
 *
 * The mask's element predicate lives in src/mask/ (attn_mask_apply). */

/* Forward rules on row i (inside its sequence), keys j0 .. j0 + ncol - 1
 * (ncol a multiple of VL; bias is read only below sc->sk). When g is not
 * NULL it receives softcap's derivative 1 - tanh^2 for the backward. t5:
 * this row's T5 bias of those keys (attn_score_t5_lut), NULL when off. */
static inline void KFN(score_fwd_row)(const attn_score *sc, int64_t i,
                                      int64_t j0, float *restrict s,
                                      float *restrict g,
                                      const float *restrict t5, int ncol) {
  if (sc->softcap > 0) {
    const vf c = vf_set1(sc->softcap), inv = vf_set1(1.0f / sc->softcap);
    const vf one = vf_set1(1.0f);
    for (int c0 = 0; c0 < ncol; c0 += VL) {
      const vf th = vf_tanh(vf_mul(vf_load(s + c0), inv));
      vf_store(s + c0, vf_mul(c, th));
      if (g)
        vf_store(g + c0, vf_sub(one, vf_mul(th, th)));
    }
  }
  if (sc->alibi != 0) {
    const float slope = sc->alibi;
    const int64_t diag = sc->qk + i - j0;
    for (int c = 0; c < ncol; c++) {
      const int64_t dist = diag - c;
      s[c] -= slope * (float)(dist < 0 ? -dist : dist);
    }
  }
  if (t5)
    for (int c = 0; c < ncol; c++)
      s[c] += t5[c];
  if (sc->bias) {
    const float *b = sc->bias + i * sc->bias_si + j0 * sc->bias_sj;
    const int64_t n = ATTN_MIN((int64_t)ncol, sc->sk - j0);
    if (sc->bias_sj == 1)
      for (int64_t c = 0; c < n; c++)
        s[c] += b[c];
    else
      for (int64_t c = 0; c < n; c++)
        s[c] += b[c * sc->bias_sj];
  }
}

/* score_mod (attn/sparse.h) on row i, keys j0 .. j0 + ncol - 1, after
 * score_fwd_row: s = mod(s) for the real keys (j < sk; the padding is
 * masked anyway). When gm is not NULL it receives mod's derivative at the
 * unmodified score (0 where the result is -inf: P = 0 there, and 0 * a
 * non-finite derivative must not make dS NaN). */
static inline void KFN(score_mod_row)(const attn_score *sc, int64_t i,
                                      int64_t j0, float *restrict s,
                                      float *restrict gm, int ncol) {
  const int64_t n = ATTN_MIN((int64_t)ncol, sc->sk - j0);
  for (int64_t c = 0; c < n; c++) {
    const float x = s[c];
    const float y = sc->mod(x, sc->b, sc->h, i, j0 + c, sc->mod_user);
    if (gm)
      gm[c] = y == -INFINITY
                  ? 0.0f
                  : sc->mod_grad(x, sc->b, sc->h, i, j0 + c, sc->mod_user);
    s[c] = y;
  }
  for (int64_t c = ATTN_MAX(n, (int64_t)0); gm && c < ncol; c++)
    gm[c] = 0.0f;
}

/* T5's table gradient of one block: dt5[u] = sum of dS over the diagonal
 * rows - 1 - r + c = u (rows r < rows, in order; c < ncol), the layout of
 * attn_score_t5_lut with i_last = the block's last row. */
static inline void KFN(score_t5_diag)(const float *restrict ds, int rows,
                                      int ncol, float *restrict dt5) {
  for (int u = 0; u < rows - 1 + ncol; u++)
    dt5[u] = 0.0f;
  for (int r = 0; r < rows; r++) {
    float *restrict dst = dt5 + (rows - 1 - r);
    const float *restrict x = ds + r * BC;
    for (int c = 0; c < ncol; c++)
      dst[c] += x[c];
  }
}

/* Backward rules on one row of dS (in place), g from score_fwd_row. */
static inline void KFN(score_bwd_row)(const attn_score *sc, float *restrict ds,
                                      const float *restrict g, int ncol) {
  if (sc->softcap > 0)
    for (int c = 0; c < ncol; c += VL)
      vf_store(ds + c, vf_mul(vf_load(ds + c), vf_load(g + c)));
}

/* The backward's P = 2^((s - lse) log2 e) for s in x[0..n), the
 * subtraction first: exact for the keys within a factor 2 of lse (those
 * that carry the row's weight), so P carries the rounding of s and lse
 * only, not that of lse log2 e (|lse| 2^-24 relative, which the forward's
 * FMA form s log2e - lse log2e would add to every P of a row). */
static ALWAYS_INLINE void KFN(softmax_bwd_row)(float *restrict x, int n,
                                               float lse) {
  const vf l2e = vf_set1(kLog2e), lv = vf_set1(lse);
  for (int c = 0; c < n; c += VL)
    vf_store(x + c, vf_exp2_nonpos(vf_mul(vf_sub(vf_load(x + c), lv), l2e)));
}

/* exp2 of (s - m) log2(e) for the softmax, s in x[0..n), the subtraction
 * first: exact for the scores within a factor 2 of m, so the max gets
 * exactly P = 1 at any magnitude (a row that sees one key gets O = v
 * exactly, and the backward's P = 2^((s - lse) log2 e) the same 1). The
 * one FMA s log2e - m log2e that this replaced rounded m log2e, which
 * gave the max 2^r with r up to |m| 2^-24 (and O = v (1 +- 1 ulp) for one
 * key); the fused path of full tiles (mk_qk) keeps the FMA form, against
 * a possibly stale max, where no P is 1 anyway.
 * Writes P over x and returns the sum of P (vector). */
static ALWAYS_INLINE vf KFN(softmax_exp_row)(float *restrict x, int n,
                                             float m) {
  const vf l2e = vf_set1(kLog2e), mv = vf_set1(m);
  vf sum0 = vf_zero(), sum1 = vf_zero();
  int c = 0;
  for (; c + 2 * VL <= n; c += 2 * VL) {
    const vf p0 = vf_exp2_nonpos(vf_mul(vf_sub(vf_load(x + c), mv), l2e));
    const vf p1 = vf_exp2_nonpos(vf_mul(vf_sub(vf_load(x + c + VL), mv), l2e));
    vf_store(x + c, p0);
    vf_store(x + c + VL, p1);
    sum0 = vf_add(sum0, p0);
    sum1 = vf_add(sum1, p1);
  }
  for (; c < n; c += VL) {
    const vf p0 = vf_exp2_nonpos(vf_mul(vf_sub(vf_load(x + c), mv), l2e));
    vf_store(x + c, p0);
    sum0 = vf_add(sum0, p0);
  }
  return vf_add(sum0, sum1);
}
