/* Step (4) of the decode kernel (decode_body.h), O += P V, included by it
 * after steps (1)-(3), in the same translation unit (KFN, VL, DMR, DNV,
 * dec_ld, dec_ld_bf16x2, DEC_IN_REG and dec_val come from there):
 *   - up to ATTN_DEC_STREAM_ROWS rows per head (decoding): keys four at a
 *     time in memory order, the accumulators in L1 (dec_pv_stream);
 *   - more rows: per head and sub-tile of ATTN_DEC_SUB keys, DMR x DNV
 *     register blocks added to o at the sub-tile's end (dec_pv_tiles). */

#if DEC_BF16X2 && defined(ATTN_SIMD_AVX512)
/* dec_pv_keys for four keys and up to 4 rows (decoding under GQA), f32 or
 * bf16 V: the 16 broadcast probabilities pinned to registers for the
 * whole row of V, each V vector loaded once for every row (instead of one
 * load per FMA for f32, one broadcast load per two FMAs for bf16); per
 * element the same operations in the same order as dec_pv_keys' other
 * paths: the same bits. */
static ALWAYS_INLINE void KFN(dec_pv_pinned)(const int mode, const int rows,
                                             const float *p,
                                             const void *const *v, float *o,
                                             int64_t dvp, const char *pfp,
                                             int64_t pfn) {
  int64_t li = 0;
  vf a[4][4];
  UNROLL for (int r = 0; r < rows; r++) {
    UNROLL for (int k = 0; k < 4; k++) {
      a[r][k] = vf_set1(p[r * ATTN_DEC_LDS + k]);
      DEC_IN_REG(a[r][k]);
    }
  }
  int64_t x = 0;
  for (; x + 2 * VL <= dvp; x += 2 * VL) {
    vf b[4], b2[4];
    KFN(dec_pf_lines)(2 * DEC_PF_STEP, pfp, pfn, &li);
    UNROLL for (int k = 0; k < 4; k++) {
      if (mode == ATTN_DEC_BF16) { /* o reordered (dec_even_odd) */
        KFN(dec_ld_bf16x2)((const uint16_t *)v[k] + x, &b[k], &b2[k]);
      } else {
        b[k] = vf_load((const float *)v[k] + x);
        b2[k] = vf_load((const float *)v[k] + x + VL);
      }
    }
    UNROLL for (int r = 0; r < rows; r++) {
      float *dst = o + r * dvp + x;
      vf t = vf_load(dst), t2 = vf_load(dst + VL);
      UNROLL for (int k = 0; k < 4; k++) {
        t = vf_fma(a[r][k], b[k], t);
        t2 = vf_fma(a[r][k], b2[k], t2);
      }
      vf_store(dst, t);
      vf_store(dst + VL, t2);
    }
  }
  for (; x < dvp; x += VL) {
    vf b[4];
    UNROLL for (int k = 0; k < 4; k++) b[k] = KFN(dec_ld)(v[k], x, mode);
    UNROLL for (int r = 0; r < rows; r++) {
      float *dst = o + r * dvp + x;
      vf t = vf_load(dst);
      UNROLL for (int k = 0; k < 4; k++) t = vf_fma(a[r][k], b[k], t);
      vf_store(dst, t);
    }
  }
  DEC_PF_REST(pfp, pfn, li);
}
#endif

/* o[r] += sum_k p[r][k] v_k over the nk keys and the rows r (row strides
 * ATTN_DEC_LDS for p, dvp for o); the accumulators stay in L1, each
 * loaded and stored once per nk keys. */
/* The prefetch of the span pfp (pfn lines) is spread over the loops
 * (dec_pf_lines: the span's lines over the steps of a row), the rest at
 * the end. */
static ALWAYS_INLINE void KFN(dec_pv_keys)(const int nk, const int mode,
                                           int rows, const float *p,
                                           const void *const *v, float *o,
                                           int64_t dvp, const char *pfp,
                                           int64_t pfn) {
  int64_t li = 0;
#if DEC_BF16X2 && defined(ATTN_SIMD_AVX512)
  if (nk == 4 &&
      (mode == ATTN_DEC_F32 || (mode == ATTN_DEC_BF16 && rows <= 4))) {
    /* Groups of up to four rows; more than four f32 rows load each V
     * vector again from L1 per group (the per-row path below loads every V
     * vector once per row and FMA, five loads per four FMAs: bound by the
     * loads on two ports). More bf16 rows keep that path: their V vectors
     * would be widened again. */
    UNROLL for (int g = 0; g < rows; g += 4)
        KFN(dec_pv_pinned)(mode, ATTN_MIN(4, rows - g), p + g * ATTN_DEC_LDS, v,
                           o + g * dvp, dvp, pfp, g ? 0 : pfn);
    return;
  }
#endif
  if (mode == ATTN_DEC_F32) {
    /* f32: rows outer, each row's nk probabilities broadcast once; the V
     * vectors are reloaded from L1 per row. Same order of operations per
     * element as below (o, then keys in order): the same bits. */
    UNROLL for (int r = 0; r < rows; r++) {
      const float *pr = p + r * ATTN_DEC_LDS;
      vf a[4];
      UNROLL for (int k = 0; k < nk; k++) a[k] = vf_set1(pr[k]);
      float *dst = o + r * dvp;
      for (int64_t x = 0; x < dvp; x += VL) {
        if (r == 0)
          KFN(dec_pf_lines)(2 * DEC_PF_STEP, pfp, pfn, &li);
        vf t = vf_load(dst + x);
        UNROLL for (int k = 0; k < nk; k++) t =
            vf_fma(a[k], vf_load((const float *)v[k] + x), t);
        vf_store(dst + x, t);
      }
    }
    DEC_PF_REST(pfp, pfn, li);
    return;
  }
  if (mode != ATTN_DEC_BF16 && mode != ATTN_DEC_F16) { /* quantised, staged */
    DEC_PF_REST(pfp, pfn, li);
    li = pfn;
  }
#if DEC_QDIRECT
  if (mode == ATTN_DEC_Q8_0 || mode == ATTN_DEC_Q4_0) {
    /* Per block: the scale folded into each probability, (p d) q; each
     * V vector widened once, used by every row (rows <=
     * ATTN_DEC_STREAM_ROWS here). dvp = dv, a whole number of blocks. */
    const int64_t bs = KFN(dec_qbytes)(mode);
    float pd[ATTN_DEC_STREAM_ROWS][4];
    for (int64_t x0 = 0, bo = 0; x0 < dvp; x0 += ATTN_QBLOCK, bo += bs) {
      const uint8_t *blk[4];
      UNROLL for (int k = 0; k < nk; k++) {
        blk[k] = (const uint8_t *)v[k] + bo;
        const float d = KFN(dec_qscale)(blk[k]);
        UNROLL for (int r = 0; r < rows; r++) pd[r][k] =
            p[r * ATTN_DEC_LDS + k] * d;
      }
      UNROLL for (int xv = 0; xv < DEC_QV; xv++) {
        vf b[4];
        UNROLL for (int k = 0; k < nk; k++) b[k] =
            KFN(dec_qld)(mode, blk[k] + 2, xv);
        UNROLL for (int r = 0; r < rows; r++) {
          float *dst = o + r * dvp + x0 + xv * VL;
          vf t = vf_load(dst);
          UNROLL for (int k = 0; k < nk; k++) t =
              vf_fma(vf_set1(pd[r][k]), b[k], t);
          vf_store(dst, t);
        }
      }
    }
    return;
  }
#endif
  int64_t x = 0;
#if defined(ATTN_SIMD_AVX2)
  if (rows <= 4) {
    /* Up to 4 rows (decoding under GQA) on AVX2's 16 registers: the rows'
     * two vectors of o stay in registers while the keys pass (keys inner,
     * each V vector widened into 2 registers, not 2 nk): on one Zen 2
     * thread 8% faster than the keys' vectors first, then the rows, in a
     * standalone loop, 2% in the whole decode from L3 (docs/decisions.md).
     * Per element the same operations in the same order (o, then the
     * keys in order): the same bits. */
    for (; x + 2 * VL <= dvp; x += 2 * VL) {
      vf t[4], t2[4];
      KFN(dec_pf_lines)(2 * DEC_PF_STEP, pfp, pfn, &li);
      UNROLL for (int r = 0; r < rows; r++) {
        t[r] = vf_load(o + r * dvp + x);
        t2[r] = vf_load(o + r * dvp + x + VL);
      }
      UNROLL for (int k = 0; k < nk; k++) {
        vf b, b2;
        if (mode == ATTN_DEC_BF16) { /* o reordered (dec_even_odd) */
          KFN(dec_ld_bf16x2)((const uint16_t *)v[k] + x, &b, &b2);
        } else {
          b = KFN(dec_ld)(v[k], x, mode);
          b2 = KFN(dec_ld)(v[k], x + VL, mode);
        }
        UNROLL for (int r = 0; r < rows; r++) {
          const vf a = vf_set1(p[r * ATTN_DEC_LDS + k]);
          t[r] = vf_fma(a, b, t[r]);
          t2[r] = vf_fma(a, b2, t2[r]);
        }
      }
      UNROLL for (int r = 0; r < rows; r++) {
        vf_store(o + r * dvp + x, t[r]);
        vf_store(o + r * dvp + x + VL, t2[r]);
      }
    }
  }
#endif
  /* Two vectors at a time: each V vector widened once and used by every
   * row, each probability broadcast once per two vectors (the loads, not
   * the FMAs, bound one vector at a time). Per element the same
   * operations in the same order as one at a time: the same bits. */
  for (; x + 2 * VL <= dvp; x += 2 * VL) {
    vf b[4], b2[4];
    KFN(dec_pf_lines)(2 * DEC_PF_STEP, pfp, pfn, &li);
    UNROLL for (int k = 0; k < nk; k++) {
#if DEC_BF16X2
      if (mode == ATTN_DEC_BF16) { /* o reordered (dec_even_odd) */
        KFN(dec_ld_bf16x2)((const uint16_t *)v[k] + x, &b[k], &b2[k]);
        continue;
      }
#endif
      b[k] = KFN(dec_ld)(v[k], x, mode);
      b2[k] = KFN(dec_ld)(v[k], x + VL, mode);
    }
    UNROLL for (int r = 0; r < rows; r++) {
      const float *pr = p + r * ATTN_DEC_LDS;
      float *dst = o + r * dvp + x;
      vf t = vf_load(dst), t2 = vf_load(dst + VL);
      UNROLL for (int k = 0; k < nk; k++) {
        const vf a = vf_set1(pr[k]);
        t = vf_fma(a, b[k], t);
        t2 = vf_fma(a, b2[k], t2);
      }
      vf_store(dst, t);
      vf_store(dst + VL, t2);
    }
  }
  for (; x < dvp; x += VL) {
    vf b[4]; /* each V vector widened once, used by every row */
    UNROLL for (int k = 0; k < nk; k++) b[k] = KFN(dec_ld)(v[k], x, mode);
    UNROLL for (int r = 0; r < rows; r++) {
      const float *pr = p + r * ATTN_DEC_LDS;
      float *dst = o + r * dvp + x;
      vf t = vf_load(dst);
      UNROLL for (int k = 0; k < nk; k++) t = vf_fma(vf_set1(pr[k]), b[k], t);
      vf_store(dst, t);
    }
  }
  DEC_PF_REST(pfp, pfn, li);
}

/* (4), few rows: keys in memory order, four at a time, every head; rows
 * (1 .. ATTN_DEC_STREAM_ROWS) a constant, so that the loops over rows
 * unroll. */
static ALWAYS_INLINE void KFN(dec_pv_stream_rows)(const attn_dec_chunk *c,
                                                  const int mode,
                                                  const int rows) {
  const int64_t n = c->jb - c->ja, dvp = c->dvp, lds = ATTN_DEC_LDS;
  const int64_t vb = attn_row_bytes(c->vdt, c->vs, c->dv);
  for (int64_t j = 0; j < n; j += 4) {
    attn_dec_pf pf = {j + DEC_PREFETCH, 0};
    const int nk = (int)ATTN_MIN((int64_t)4, n - j);
    for (int h = 0; h < c->nh; h++) {
      /* as in (1), four rows a head, two lines a step */
      const char *pfp;
      int64_t pfn;
      DEC_PREFETCH_SPAN(c->vrow, c->vstep, vb, n, c->nh, 4, &pf, &pfp, &pfn);
      const float *p = c->s + (int64_t)h * rows * lds + j;
      float *o = c->part[h] + 2 * c->pstride;
      const void *v[4];
      for (int k = 0; k < nk; k++)
        v[k] = KFN(dec_val)(c, mode, j + k, h, ATTN_DEC_STAGE_ROW(h, k));
      if (nk == 4)
        KFN(dec_pv_keys)(4, mode, rows, p, v, o, dvp, pfp, pfn);
      else
        for (int k = 0; k < nk; k++)
          KFN(dec_pv_keys)
      (1, mode, rows, p + k, v + k, o, dvp, pfp, k == 0 ? pfn : 0);
    }
  }
}

/* One function per (mode, rows): the specialisations in one function
 * made it so large that clang with UBSan spent minutes on each decode
 * translation unit; apart, each is small (the same code). */
#define DEC_PV_STREAM_FN(M, R)                                                 \
  static NOINLINE void KFN(dec_pv_stream_##M##_##R)(const attn_dec_chunk *c) { \
    KFN(dec_pv_stream_rows)(c, ATTN_DEC_##M, R);                               \
  }
#define DEC_PV_STREAM_MODE(M)                                                  \
  DEC_PV_STREAM_FN(M, 1)                                                       \
  DEC_PV_STREAM_FN(M, 2)                                                       \
  DEC_PV_STREAM_FN(M, 3)                                                       \
  DEC_PV_STREAM_FN(M, 4)                                                       \
  DEC_PV_STREAM_FN(M, 5)                                                       \
  DEC_PV_STREAM_FN(M, 6)                                                       \
  DEC_PV_STREAM_FN(M, 7)                                                       \
  DEC_PV_STREAM_FN(M, 8)                                                       \
  static void KFN(dec_pv_stream_##M)(const attn_dec_chunk *c) {                \
    switch (c->rows) {                                                         \
    case 1:                                                                    \
      KFN(dec_pv_stream_##M##_1)(c);                                           \
      break;                                                                   \
    case 2:                                                                    \
      KFN(dec_pv_stream_##M##_2)(c);                                           \
      break;                                                                   \
    case 3:                                                                    \
      KFN(dec_pv_stream_##M##_3)(c);                                           \
      break;                                                                   \
    case 4:                                                                    \
      KFN(dec_pv_stream_##M##_4)(c);                                           \
      break;                                                                   \
    case 5:                                                                    \
      KFN(dec_pv_stream_##M##_5)(c);                                           \
      break;                                                                   \
    case 6:                                                                    \
      KFN(dec_pv_stream_##M##_6)(c);                                           \
      break;                                                                   \
    case 7:                                                                    \
      KFN(dec_pv_stream_##M##_7)(c);                                           \
      break;                                                                   \
    default: /* ATTN_DEC_STREAM_ROWS */                                        \
      KFN(dec_pv_stream_##M##_8)(c);                                           \
      break;                                                                   \
    }                                                                          \
  }
_Static_assert(ATTN_DEC_STREAM_ROWS == 8, "dec_pv_stream_*: one per row count");
DEC_PV_STREAM_MODE(BF16)
DEC_PV_STREAM_MODE(F16)
DEC_PV_STREAM_MODE(F32)
#if DEC_QDIRECT
DEC_PV_STREAM_MODE(Q8_0)
DEC_PV_STREAM_MODE(Q4_0)
#endif

static void KFN(dec_pv_stream)(const attn_dec_chunk *c) {
  switch (c->vmode) {
  case ATTN_DEC_BF16:
    KFN(dec_pv_stream_BF16)(c);
    break;
  case ATTN_DEC_F16:
    KFN(dec_pv_stream_F16)(c);
    break;
#if DEC_QDIRECT
  case ATTN_DEC_Q8_0:
    KFN(dec_pv_stream_Q8_0)(c);
    break;
  case ATTN_DEC_Q4_0:
    KFN(dec_pv_stream_Q4_0)(c);
    break;
#endif
  default: /* f32 in place or staged */
    KFN(dec_pv_stream_F32)(c);
    break;
  }
}

/* o[r][cb ..] += sum_j p[r][j] v_j[cb ..] for r < mr, nv vectors. */
static ALWAYS_INLINE void KFN(dec_pv)(const int mr, const int nv,
                                      const float *restrict p, int n,
                                      const float *const *rowp, int64_t cb,
                                      float *restrict o, int64_t dvp) {
  vf acc[DMR][DNV];
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int x = 0; x < nv; x++) acc[r][x] = vf_zero();
  }
  for (int j = 0; j < n; j++) {
    vf b[DNV];
    UNROLL for (int x = 0; x < nv; x++) b[x] = vf_load(rowp[j] + cb + x * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vf a = vf_set1(p[r * ATTN_DEC_LDS + j]);
      UNROLL for (int x = 0; x < nv; x++) acc[r][x] =
          vf_fma(a, b[x], acc[r][x]);
    }
  }
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int x = 0; x < nv; x++) {
      float *dst = o + r * dvp + cb + x * VL;
      vf_store(dst, vf_add(vf_load(dst), acc[r][x]));
    }
  }
}

/* One register block with run-time mr, nv. */
static void KFN(dec_pv_block)(int mr, int nv, const float *p, int n,
                              const float *const *rowp, int64_t cb, float *o,
                              int64_t dvp) {
#define DEC_PV(R)                                                              \
  if (nv == DNV)                                                               \
    KFN(dec_pv)(R, DNV, p, n, rowp, cb, o, dvp);                               \
  else                                                                         \
    KFN(dec_pv)(R, 1, p, n, rowp, cb, o, dvp);
  switch (mr) {
  case 1:
    DEC_PV(1) break;
  case 2:
    DEC_PV((2 <= DMR ? 2 : DMR)) break;
  case 3:
    DEC_PV((3 <= DMR ? 3 : DMR)) break;
  default:
    DEC_PV(DMR) break;
  }
#undef DEC_PV
}

/* (4), many rows: per head, sub-tiles of ATTN_DEC_SUB keys (aligned in key
 * index) summed in DMR x DNV register blocks, then added to o. */
static void KFN(dec_pv_tiles)(const attn_dec_chunk *c, int h) {
  const int64_t dvp = c->dvp, lds = ATTN_DEC_LDS, sub = ATTN_DEC_SUB;
  const float *s = c->s + (int64_t)h * c->rows * lds;
  float *o = c->part[h] + 2 * c->pstride;
  for (int64_t j0 = c->ja; j0 < c->jb;) {
    const int64_t j1 = ATTN_MIN(c->jb, (j0 / sub + 1) * sub);
    const int nn = (int)(j1 - j0);
    for (int j = 0; j < nn; j++)
      c->rowp[j] = KFN(dec_val_f32)(c, j0 - c->ja + j, h, j);
    for (int64_t cb = 0; cb < dvp;) {
      const int nv = dvp - cb >= DNV * VL ? DNV : 1;
      for (int r0 = 0; r0 < c->rows; r0 += DMR) {
        const int mr = ATTN_MIN(DMR, c->rows - r0);
        KFN(dec_pv_block)
        (mr, nv, s + r0 * lds + (j0 - c->ja), nn, c->rowp, cb, o + r0 * dvp,
         dvp);
      }
      cb += nv * VL;
    }
    j0 = j1;
  }
}
