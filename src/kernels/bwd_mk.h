/* The backward's f32 register-blocked products (bmk_nt, bmk_acc and the
 * loops over a block, ACC_BLOCKS) and a partial block's reach
 * (block_reach), included by bwd_body.h once per ISA with its MR, NV, NR,
 * BR, BC and KFN. */

/* c[r][0..NR) = sum_k a[r*lda + k] * bp[k*NR + 0..NR) for r < MR (c: row
 * stride BC): the shared micro-kernel, all MR rows, no fusion. */
#if defined(ATTN_BWD_BF16)
/* The bf16 kernel's mk_qk takes bf16 pairs; dP of f32 V or dO (dp16 = 0)
 * takes f32 products: mk_qk's f32 loop (no fusion), the same operations in
 * the same order as the f32 kernel's, so D (its row_dot) matches. */
static ALWAYS_INLINE void KFN(bmk_nt)(const float *restrict a, int64_t lda,
                                      int64_t kdim, const float *restrict bp,
                                      float *restrict c) {
  vf acc[MR][NV];
  UNROLL for (int r = 0; r < MR; r++) {
    UNROLL for (int v = 0; v < NV; v++) acc[r][v] = vf_zero();
  }
  for (int64_t k = 0; k < kdim; k++) {
    vf b[NV];
    UNROLL for (int v = 0; v < NV; v++) b[v] = vf_load(bp + k * NR + v * VL);
    UNROLL for (int r = 0; r < MR; r++) {
      const vf x = vf_set1(a[r * lda + k]);
      UNROLL for (int v = 0; v < NV; v++) acc[r][v] =
          vf_fma(x, b[v], acc[r][v]);
    }
  }
  UNROLL for (int r = 0; r < MR; r++) {
    UNROLL for (int v = 0; v < NV; v++)
        vf_store(c + r * BC + v * VL, acc[r][v]);
  }
}
#else
static ALWAYS_INLINE void KFN(bmk_nt)(const float *restrict a, int64_t lda,
                                      int64_t kdim, const float *restrict bp,
                                      float *restrict c) {
  KFN(mk_qk)(0, MR, NV, a, lda, kdim, bp, c, NULL, NULL, NULL, 1.0f, NULL, 0);
}

/* bmk_nt over the panel's first keys only: the vectors holding keys 0 ..
 * e - 1 (e <= 0: none), the other columns set to fill. */
static void KFN(bmk_nt_part)(int64_t e, const float *restrict a, int64_t lda,
                             int64_t kdim, const float *restrict bp,
                             float *restrict c, float scale, float fill) {
  const int nv = (int)((ATTN_MAX(ATTN_MIN(e, (int64_t)NR), 0) + VL - 1) / VL);
#define NT_PART(n)                                                             \
  KFN(mk_qk)(0, MR, n, a, lda, kdim, bp, c, NULL, NULL, NULL, scale, NULL, 0)
  if (nv == NV)
    NT_PART(NV);
  else if (nv == 1)
    NT_PART(1);
  else if (nv == 2)
    NT_PART((2 <= NV ? 2 : NV));
  else if (nv == 3)
    NT_PART((3 <= NV ? 3 : NV));
#undef NT_PART
  for (int r = 0; r < MR && nv < NV; r++)
    for (int x = nv * VL; x < NR; x += VL)
      vf_store(c + r * BC + x, vf_set1(fill));
}
#endif

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

/* acc_cols for every group of MR rows of c, rows 0 .. nrows - 1: row
 * group r0's A at a + r0 ags (strides ars, acs as in bmk_acc), its c rows
 * at c + r0 ldc; only rows below nrows are written. The column blocks are
 * the outer loop: one block's slice of B (n rows of NR floats) stays in L1
 * while every row group passes over it. Row groups outer, each pass swept
 * the whole of B (Q, dO or the key rows: 24-32 KiB at head_dim 128, L1's
 * size), which then streamed from L2. Every element of c gets the same
 * operations in the same order either way: the same bits. */
/* Plain names for the calls below (clang-format reads KFN(f)(...) after a
 * declaration as another declaration). */
#define BMK_ACC KFN(bmk_acc)
#define ACC_COLS KFN(acc_cols)
#define ACC_BLOCKS KFN(acc_blocks)
#define SCORE_BWD_ROW KFN(score_bwd_row)
static void ACC_BLOCKS(const float *restrict a, int64_t ags, int64_t ars,
                       int64_t acs, int n, const float *restrict b, int64_t ldb,
                       float *restrict c, int64_t ldc, int64_t ncols, int nrows,
                       const int *jlo, const int *jhi) {
  int64_t cb = 0;
  for (; cb + NR <= ncols; cb += NR) {
    for (int r0 = 0; r0 < nrows; r0 += MR) {
      const int nst = ATTN_MIN(MR, nrows - r0);
      const int j0 = jlo ? jlo[r0 / MR] : 0, nj = jlo ? jhi[r0 / MR] - j0 : n;
      if (nj > 0)
        BMK_ACC(NV, a + r0 * ags + j0 * acs, ars, acs, nj, b + j0 * ldb + cb,
                ldb, c + r0 * ldc + cb, ldc, nst);
    }
  }
  for (int r0 = 0; r0 < nrows && cb < ncols; r0 += MR) {
    const int nst = ATTN_MIN(MR, nrows - r0);
    const int j0 = jlo ? jlo[r0 / MR] : 0, nj = jlo ? jhi[r0 / MR] - j0 : n;
    if (nj > 0)
      ACC_COLS(a + r0 * ags + j0 * acs, ars, acs, nj, b + j0 * ldb + cb, ldb,
               c + r0 * ldc + cb, ldc, ncols - cb, nst);
  }
}

/* A partial block's reach (masks as intervals, mv.lo .. mv.hi): the key
 * columns [qlo, qhi) each group of MR query rows may see, and the query
 * rows [klo, khi) that may see each group of MR keys; P and dS are
 * exactly 0 outside them. The products skip those terms: their sums start
 * at +0 and adding 0 * x (x finite) changes no bit (a non-finite operand
 * of a masked element no longer reaches the block: the documented
 * exception only narrows). On a causal diagonal that is half the block. */
static void KFN(block_reach)(const attn_bblock *t, int ncol, int *qlo, int *qhi,
                             int *klo, int *khi) {
  const int rows = t->rows;
  for (int g = 0; g * MR < rows; g++) {
    int64_t a = ncol, e = 0;
    for (int r = g * MR; r < ATTN_MIN(rows, (g + 1) * MR); r++) {
      const int64_t lo = t->mv.lo[r] - t->j0, hi = t->mv.hi[r] - t->j0;
      if (lo > hi || hi < 0 || lo >= ncol)
        continue; /* sees no key of this block */
      a = ATTN_MIN(a, ATTN_MAX(lo, 0));
      e = ATTN_MAX(e, ATTN_MIN(hi + 1, (int64_t)ncol));
    }
    qlo[g] = (int)ATTN_MIN(a, e);
    qhi[g] = (int)e;
  }
  for (int g = 0; g * MR < ncol; g++) {
    const int64_t k0 = t->j0 + g * MR, k1 = k0 + MR - 1;
    int first = rows, last = -1;
    for (int r = 0; r < rows; r++)
      if (t->mv.lo[r] <= k1 && t->mv.hi[r] >= k0 &&
          t->mv.lo[r] <= t->mv.hi[r]) {
        first = ATTN_MIN(first, r);
        last = r;
      }
    klo[g] = last < 0 ? 0 : first;
    khi[g] = last + 1;
  }
}
