/* The backward kernel body (one block, see bwd_kernels.h), written once
 * against simd.h and compiled once per ISA (generic/bwd_generic.c,
 * avx2/bwd_avx2.c, avx512/bwd_avx512.c).
 *
 * Before including: simd.h, bwd_kernels.h, and
 *   KSUFFIX  name suffix (generic, avx2, avx512)
 *   MR       rows per micro-kernel call
 *   NV       vectors per panel: NR = NV * VL keys
 *   BR       query rows per block (multiple of MR)
 *   BC       keys per block (multiple of NR); buffers of BC rows have
 *            MR rows of padding (the key-row loops run in steps of MR)
 *
 * Two register-blocked micro-kernels do all the O(br x bc x d) work:
 *   bmk_nt   C[MR][NR]  = A[MR][k] . Bpanel[k][NR]      S = Q K^T, dO V^T
 *   bmk_acc  C[MR][nv] += A(r, j) . B[j][nv vectors]    P^T dO, dS^T Q, dS K
 * where A(r, j) is read through two strides, so transposed operands need no
 * copy. Every element is computed by the same instruction sequence whatever
 * the thread count.
 */
#include <math.h>

#define NR (NV * VL)
#include "kernels/mk_qk.h"
#include "kernels/score_body.h"

/* c[r][0..NR) = sum_k a[r*lda + k] * bp[k*NR + 0..NR) for r < MR (c: row
 * stride BC): the shared micro-kernel, all MR rows, no fusion. */
static ALWAYS_INLINE void KFN(bmk_nt)(const float *restrict a, int64_t lda,
                                      int64_t kdim, const float *restrict bp,
                                      float *restrict c) {
  KFN(mk_qk)(0, MR, a, lda, kdim, bp, c, NULL, NULL, NULL, 1.0f);
}

/* c[r][x] += sum_{j<n} a[r*ars + j*acs] * b[j*ldb + x] for r < MR and the
 * nv vectors x (a compile-time constant at every call); only rows r < nst
 * of c are read and written (rows past them are computed and dropped). */
static ALWAYS_INLINE void KFN(bmk_acc)(const int nv, const float *restrict a,
                                       int64_t ars, int64_t acs, int n,
                                       const float *restrict b, int64_t ldb,
                                       float *restrict c, int64_t ldc,
                                       int nst) {
  vf acc[MR][NV];
  UNROLL for (int r = 0; r < MR; r++) {
    UNROLL for (int x = 0; x < nv; x++) acc[r][x] = vf_zero();
  }
  for (int j = 0; j < n; j++) {
    vf bv[NV];
    UNROLL for (int x = 0; x < nv; x++) bv[x] = vf_load(b + j * ldb + x * VL);
    UNROLL for (int r = 0; r < MR; r++) {
      const vf s = vf_set1(a[r * ars + j * acs]);
      UNROLL for (int x = 0; x < nv; x++) acc[r][x] =
          vf_fma(s, bv[x], acc[r][x]);
    }
  }
  /* The block's sum is added to the running one only now (two levels). */
  UNROLL for (int r = 0; r < MR; r++) {
    if (r < nst) {
      UNROLL for (int x = 0; x < nv; x++)
          vf_store(c + r * ldc + x * VL,
                   vf_add(vf_load(c + r * ldc + x * VL), acc[r][x]));
    }
  }
}

/* bmk_acc over all ncols (a multiple of VL) columns of c and b. */
static void KFN(acc_cols)(const float *restrict a, int64_t ars, int64_t acs,
                          int n, const float *restrict b, int64_t ldb,
                          float *restrict c, int64_t ldc, int64_t ncols,
                          int nst) {
  int64_t cb = 0;
  for (; cb + NR <= ncols; cb += NR)
    KFN(bmk_acc)(NV, a, ars, acs, n, b + cb, ldb, c + cb, ldc, nst);
  switch ((int)((ncols - cb) / VL)) {
#if NV > 3
  case 3:
    KFN(bmk_acc)(3, a, ars, acs, n, b + cb, ldb, c + cb, ldc, nst);
    break;
#endif
#if NV > 2
  case 2:
    KFN(bmk_acc)(2, a, ars, acs, n, b + cb, ldb, c + cb, ldc, nst);
    break;
#endif
  case 1:
    KFN(bmk_acc)(1, a, ars, acs, n, b + cb, ldb, c + cb, ldc, nst);
    break;
  default:
    break;
  }
}

/* attn_bwd_kernel.row_dot: the sequence of mk_qk's accumulation for one
 * lane (c starts at 0, one vf_fma per k in order). */
static float KFN(row_dot)(const float *a, const float *b, int64_t n) {
  float acc = 0.0f;
  for (int64_t c = 0; c < n; c++)
#if defined(ATTN_SIMD_GENERIC)
    acc = a[c] * b[c] + acc;
#else
    acc = fmaf(a[c], b[c], acc);
#endif
  return acc;
}

static void KFN(bwd_block)(const attn_bblock *t) {
  const int rows = t->rows;
  const int rows_mr = (rows + MR - 1) / MR * MR;
  const int ncol = (t->nkeys + NR - 1) / NR * NR;
  const int partial = t->partial || t->nkeys < ncol;
  const int64_t d = t->d, dv = t->dv, dp = t->dp, dvp = t->dvp;
  float *restrict s = t->s;
  float *restrict ds = t->ds;

  /* (1) S = Qs K^T */
  for (int pc = 0; pc < ncol; pc += NR) {
    const float *kp = t->kt + (pc / NR) * d * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR)
      KFN(bmk_nt)(t->q + r0 * dp, dp, d, kp, s + r0 * BC + pc);
  }
  /* (2) the forward's pipeline, then P = 2^((S - lse) log2 e) */
  float lut[BR + BC]; /* T5: one bias per distance of the block */
  if (t->sc.t5)
    attn_score_t5_lut(&t->sc, t->i0 + rows - 1, t->j0, rows - 1 + ncol, lut);
  for (int r = 0; r < rows; r++) {
    float *x = s + r * BC;
    const float lse = t->lse[r];
    if (lse == -INFINITY) { /* the row sees no key: contributes nothing */
      memset(x, 0, sizeof(float) * (size_t)ncol);
      continue;
    }
    float *g = t->sc.softcap > 0 ? t->g + r * BC : NULL;
    const float *t5 = t->sc.t5 ? lut + (rows - 1 - r) : NULL;
    KFN(score_fwd_row)(&t->sc, t->i0 + r, t->j0, x, g, t5, ncol);
    if (t->sc.mod)
      KFN(score_mod_row)(&t->sc, t->i0 + r, t->j0, x, t->gm + r * BC, ncol);
    if (partial)
      attn_mask_apply(&t->mv, r, r + 1, t->j0, ncol, x, BC);
    KFN(softmax_bwd_row)(x, ncol, lse);
  }
  for (int r = rows; r < rows_mr; r++)
    memset(s + r * BC, 0, sizeof(float) * (size_t)ncol);
  /* Dropout: z = keep / (1 - p), the forward's factors; ds holds P z
   * until (4) overwrites it. */
  const int drop = t->drop.on;
  if (drop)
    attn_dropout_fill(&t->drop, t->i0, rows, t->j0, t->z, BC, ncol);
  for (int r = 0; r < rows_mr && drop; r++) {
    float *z = t->z + r * BC, *pz = ds + r * BC;
    const float *p = s + r * BC;
    if (r >= rows)
      memset(z, 0, sizeof(float) * (size_t)ncol);
    for (int c = 0; c < ncol; c += VL)
      vf_store(pz + c, vf_mul(vf_load(p + c), vf_load(z + c)));
  }

  /* (3) dV += (P z)^T dO: rows of dV are keys, the sum runs over queries */
  const float *pv = drop ? ds : s;
  for (int r0 = 0; r0 < ncol && t->dvacc; r0 += MR) {
    float *c = t->dvacc + r0 * dvp;
    KFN(acc_cols)(pv + r0, 1, BC, rows_mr, t->dout, dvp, c, dvp, dvp, MR);
  }

  /* (4) dP = dO V^T into ds, (5) dS = P (dP - D) */
  for (int pc = 0; pc < ncol; pc += NR) {
    const float *vp = t->vt + (pc / NR) * dv * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR)
      KFN(bmk_nt)(t->dout + r0 * dvp, dvp, dv, vp, ds + r0 * BC + pc);
  }
  for (int r = 0; r < rows_mr; r++) {
    float *x = ds + r * BC;
    const float *p = s + r * BC;
    if (r >= rows || t->lse[r] == -INFINITY) {
      memset(x, 0, sizeof(float) * (size_t)ncol);
      continue;
    }
    const vf dd = vf_set1(t->dd[r]);
    if (drop) { /* dP = (dO V^T) z: the forward used P z */
      const float *z = t->z + r * BC;
      for (int c = 0; c < ncol; c += VL) {
        const vf dpz = vf_mul(vf_load(x + c), vf_load(z + c));
        vf_store(x + c, vf_mul(vf_load(p + c), vf_sub(dpz, dd)));
      }
      continue;
    }
    for (int c = 0; c < ncol; c += VL)
      vf_store(x + c, vf_mul(vf_load(p + c), vf_sub(vf_load(x + c), dd)));
  }
  for (int r = 0; r < rows && t->sc.mod; r++) { /* score_mod's chain rule */
    float *x = ds + r * BC;
    const float *gm = t->gm + r * BC;
    if (t->lse[r] != -INFINITY)
      for (int c = 0; c < ncol; c += VL)
        vf_store(x + c, vf_mul(vf_load(x + c), vf_load(gm + c)));
  }
  if (t->dt5) /* T5's table gradient: dS summed per distance */
    KFN(score_t5_diag)(ds, rows, ncol, t->dt5);
  if (!t->dk && !t->dq)
    return; /* dBias only wants dS */

  /* (6) the modifiers' backward rules (softcap's chain rule) */
  for (int r = 0; r < rows; r++)
    if (t->lse[r] != -INFINITY)
      KFN(score_bwd_row)(&t->sc, ds + r * BC, t->g + r * BC, ncol);

  /* (7) dK += dS'^T Qs, (8) dQ += dS' K */
  for (int r0 = 0; r0 < ncol && t->dk; r0 += MR) {
    float *c = t->dk + r0 * dp;
    KFN(acc_cols)(ds + r0, 1, BC, rows_mr, t->q, dp, c, dp, dp, MR);
  }
  for (int r0 = 0; r0 < rows && t->dq; r0 += MR) {
    float *c = t->dq + r0 * dp;
    const int nst = rows - r0 < MR ? rows - r0 : MR;
    KFN(acc_cols)(ds + r0 * BC, BC, 1, ncol, t->krow, dp, c, dp, dp, nst);
  }
}
