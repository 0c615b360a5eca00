/* The forward kernel body, written once against simd.h and compiled once
 * per ISA (generic/fwd_generic.c, avx2/fwd_avx2.c, avx512/fwd_avx512.c).
 *
 * Before including: simd.h, kernels.h, mask/mask.h, and
 *   KSUFFIX  name suffix (generic, avx2, avx512)
 *   MR       query rows per micro-kernel call
 *   BR       query rows per tile   (multiple of MR)
 *   NV       vectors per K panel: NR = NV * VL keys (at most 4)
 *   BC       keys per tile         (multiple of NR)
 *
 * For one tile of BR queries against the keys [j_begin, j_end) the body
 * runs, per key tile of BC keys (FlashAttention-2's loop order):
 *
 *   S   = Q Kᵀ              register-blocked MR x NR micro-kernel   (1)
 *   S   = mods(S)            softcap, ALiBi, bias                    (2)
 *   S   = -inf where masked  only for PARTIAL tiles                  (3)
 *   m'  = max(m, rowmax S);  P = 2^((S - m') log2 e)                 (4)
 *   l   = l 2^((m - m') log2 e) + rowsum P
 *   acc = acc 2^((m - m') log2 e) + P V   MR x NR micro-kernel       (5)
 *
 * and at the end acc /= l, lse = m + log l (Milakov & Gimelshein 2018,
 * "Online normalizer calculation for softmax"). A row that never saw a key
 * keeps m = -inf, l = 0 and ends with acc = 0, lse = -inf.
 */
#include <math.h>

#define NR (NV * VL)

/* Step (1), S = Q Kᵀ for one row block against one K panel:
 *     s[r][0..NR) = sum_k q[r][k] * kp[k][0..NR)   for r < mr <= MR,
 * q: [mr][d] (row stride d), kp: [d][NR], out: row stride BC. mr and fuse
 * are compile-time constants at every call (so a last, short row block, or
 * a single decode query, costs only its rows).
 *
 * fuse = 0 stores S. fuse = 1 fuses step (4) for FULL tiles without score
 * modifiers once every row of the block has a finite running max m[r]: P is
 * computed from the accumulators while they are still in registers,
 *     p = 2^(s log2e - m log2e),   negm[r] = -m[r] log2e,
 * with the running max left as it is (it may be stale: P may then exceed 1,
 * and as long as it stays below 2^FUSED_TAU the normalisation by l is exact
 * and nothing overflows; alpha = 1, so acc needs no rescaling). This removes
 * the separate max and exp passes over S. It adds each row's sum of P to
 * rowsum[r] and returns the largest exponent seen: the caller redoes the
 * block the ordinary way if it exceeds FUSED_TAU. */
#define FUSED_TAU 16.0f
static ALWAYS_INLINE float
KFN(mk_qk)(const int fuse, const int mr, const float *restrict q, int64_t d,
           const float *restrict kp, float *restrict out,
           const float *restrict negm, float *restrict rowsum) {
  vf c[MR][NV];
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int v = 0; v < NV; v++) c[r][v] = vf_zero();
  }
  for (int64_t k = 0; k < d; k++) {
    vf b[NV];
    UNROLL for (int v = 0; v < NV; v++) b[v] = vf_load(kp + k * NR + v * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vf a = vf_set1(q[r * d + k]);
      UNROLL for (int v = 0; v < NV; v++) c[r][v] = vf_fma(a, b[v], c[r][v]);
    }
  }
  if (!fuse) {
    UNROLL for (int r = 0; r < mr; r++) {
      UNROLL for (int v = 0; v < NV; v++)
          vf_store(out + r * BC + v * VL, c[r][v]);
    }
    return 0.0f;
  }
  const vf l2e = vf_set1(kLog2e);
  vf big = vf_set1(-INFINITY);
  UNROLL for (int r = 0; r < mr; r++) {
    const vf nm = vf_set1(negm[r]);
    vf sum = vf_zero();
    UNROLL for (int v = 0; v < NV; v++) {
      const vf x = vf_fma(c[r][v], l2e, nm);
      big = vf_max(big, x);
      const vf e = vf_exp2_nonpos(x);
      vf_store(out + r * BC + v * VL, e);
      sum = vf_add(sum, e);
    }
    rowsum[r] += vf_hsum(sum);
  }
  return vf_hmax(big);
}

/* acc[r][0..nv*VL) = alpha[r] * acc[r][..] + sum_j p[r][j] * v[j][..]
 * for r < mr <= MR and nv <= NV vectors, both compile-time constants at
 * every call. p: [mr][BC] probabilities, v: [ncol][dvp] (row stride dvp). */
static ALWAYS_INLINE void KFN(mk_pv)(const int mr, const int nv,
                                     const float *restrict p, int ncol,
                                     const float *restrict v, int64_t dvp,
                                     const float *restrict alpha,
                                     float *restrict acc) {
  vf c[MR][NV];
  UNROLL for (int r = 0; r < mr; r++) {
    const vf a = vf_set1(alpha[r]);
    UNROLL for (int x = 0; x < nv; x++) c[r][x] =
        vf_mul(vf_load(acc + r * dvp + x * VL), a);
  }
  for (int j = 0; j < ncol; j++) {
    vf b[NV];
    UNROLL for (int x = 0; x < nv; x++) b[x] = vf_load(v + j * dvp + x * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vf a = vf_set1(p[r * BC + j]);
      UNROLL for (int x = 0; x < nv; x++) c[r][x] = vf_fma(a, b[x], c[r][x]);
    }
  }
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int x = 0; x < nv; x++)
        vf_store(acc + r * dvp + x * VL, c[r][x]);
  }
}

/* Expands CASE(n) for n = 1 .. MAXN (MAXN <= 12). */
#define SWITCH_UPTO(MAXN, n, CASE)                                             \
  switch (n) {                                                                 \
  case 1:                                                                      \
    CASE(1) break;                                                             \
  case 2:                                                                      \
    if (MAXN >= 2) {                                                           \
      CASE(2)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 3:                                                                      \
    if (MAXN >= 3) {                                                           \
      CASE(3)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 4:                                                                      \
    if (MAXN >= 4) {                                                           \
      CASE(4)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 5:                                                                      \
    if (MAXN >= 5) {                                                           \
      CASE(5)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 6:                                                                      \
    if (MAXN >= 6) {                                                           \
      CASE(6)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 7:                                                                      \
    if (MAXN >= 7) {                                                           \
      CASE(7)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 8:                                                                      \
    if (MAXN >= 8) {                                                           \
      CASE(8)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 9:                                                                      \
    if (MAXN >= 9) {                                                           \
      CASE(9)                                                                  \
    }                                                                          \
    break;                                                                     \
  case 10:                                                                     \
    if (MAXN >= 10) {                                                          \
      CASE(10)                                                                 \
    }                                                                          \
    break;                                                                     \
  case 11:                                                                     \
    if (MAXN >= 11) {                                                          \
      CASE(11)                                                                 \
    }                                                                          \
    break;                                                                     \
  case 12:                                                                     \
    if (MAXN >= 12) {                                                          \
      CASE(12)                                                                 \
    }                                                                          \
    break;                                                                     \
  default:                                                                     \
    break;                                                                     \
  }

/* S for one row block of mr rows against one K panel. */
static void KFN(qk_block)(int mr, const float *q, int64_t d, const float *kp,
                          float *s) {
#define QK_CASE(n) KFN(mk_qk)(0, (n) <= MR ? (n) : MR, q, d, kp, s, NULL, NULL);
  SWITCH_UPTO(MR, mr, QK_CASE)
#undef QK_CASE
}

/* The fused S and P for one row block against one K panel. */
static float KFN(qk_exp_block)(int mr, const float *q, int64_t d,
                               const float *kp, float *p, const float *negm,
                               float *rowsum) {
  float big = 0.0f;
#define QKE_CASE(n)                                                            \
  big = KFN(mk_qk)(1, (n) <= MR ? (n) : MR, q, d, kp, p, negm, rowsum);
  SWITCH_UPTO(MR, mr, QKE_CASE)
#undef QKE_CASE
  return big;
}

/* acc += P V for one row block of mr rows and one column block of nv
 * vectors. */
static void KFN(pv_block)(int mr, int nv, const float *p, int ncol,
                          const float *v, int64_t dvp, const float *alpha,
                          float *acc) {
#define PV_ROWS(n, NVEC)                                                       \
  KFN(mk_pv)((n) <= MR ? (n) : MR, NVEC, p, ncol, v, dvp, alpha, acc);
#define PV_CASE_FULL(n) PV_ROWS(n, NV)
#define PV_CASE_1(n) PV_ROWS(n, 1)
#define PV_CASE_2(n) PV_ROWS(n, (2 <= NV ? 2 : NV))
#define PV_CASE_3(n) PV_ROWS(n, (3 <= NV ? 3 : NV))
  if (nv == NV) {
    SWITCH_UPTO(MR, mr, PV_CASE_FULL)
  } else if (nv == 1) {
    SWITCH_UPTO(MR, mr, PV_CASE_1)
  } else if (nv == 2) {
    SWITCH_UPTO(MR, mr, PV_CASE_2)
  } else if (nv == 3) {
    SWITCH_UPTO(MR, mr, PV_CASE_3)
  }
#undef PV_ROWS
#undef PV_CASE_FULL
#undef PV_CASE_1
#undef PV_CASE_2
#undef PV_CASE_3
}

/* (2) score modifications on valid rows, in the contract's order. */
static void KFN(apply_mods)(const attn_qtile *t, int r0, int r1, float *s,
                            int ncol, int64_t j0) {
  if (t->softcap > 0) {
    const vf c = vf_set1(t->softcap), inv = vf_set1(1.0f / t->softcap);
    for (int r = r0; r < r1; r++)
      for (int c0 = 0; c0 < ncol; c0 += VL) {
        float *x = s + (r - r0) * BC + c0;
        vf_store(x, vf_mul(c, vf_tanh(vf_mul(vf_load(x), inv))));
      }
  }
  if (t->alibi != 0) {
    const float slope = t->alibi;
    for (int r = r0; r < r1; r++) {
      const int64_t diag = t->i0 + r + t->alibi_diag - j0;
      float *x = s + (r - r0) * BC;
      for (int c = 0; c < ncol; c++) {
        const int64_t dist = diag - c;
        x[c] -= slope * (float)(dist < 0 ? -dist : dist);
      }
    }
  }
  if (t->bias) {
    for (int r = r0; r < r1; r++) {
      const float *b = t->bias + (t->i0 + r) * t->bias_si + j0 * t->bias_sj;
      float *x = s + (r - r0) * BC;
      const int64_t n = ATTN_MIN(ncol, t->j_end - j0);
      if (t->bias_sj == 1)
        for (int64_t c = 0; c < n; c++)
          x[c] += b[c];
      else
        for (int64_t c = 0; c < n; c++)
          x[c] += b[c * t->bias_sj];
    }
  }
}

/* (3) the element predicate of a PARTIAL tile. */
static void KFN(apply_mask)(const attn_qtile *t, int r0, int r1, float *s,
                            int ncol, int64_t j0) {
  for (int r = r0; r < r1; r++) {
    float *x = s + (r - r0) * BC;
    const int64_t a = t->lo[r] - j0, b = t->hi[r] - j0; /* allowed a..b */
    for (int c = 0; c < ncol; c++)
      if (c < a || c > b)
        x[c] = -INFINITY;
    if (t->mask) {
      const uint8_t *m = t->mask + (t->i0 + r) * t->mask_si;
      const int64_t lo = ATTN_MAX(a, 0), hi = ATTN_MIN(b, ncol - 1);
      for (int64_t c = lo; c <= hi; c++)
        if (!m[(j0 + c) * t->mask_sj])
          x[c] = -INFINITY;
    }
  }
}

/* (4) online softmax on the valid rows; writes P over S, alpha per row. */
static void KFN(softmax_step)(const attn_qtile *t, int r0, int r1, float *s,
                              int ncol, float *alpha) {
  for (int r = r0; r < r1; r++) {
    float *x = s + (r - r0) * BC;
    vf mx = vf_load(x);
    for (int c = VL; c < ncol; c += VL)
      mx = vf_max(mx, vf_load(x + c));
    const float m_old = t->m[r];
    float m_new = vf_hmax(mx);
    m_new = m_new > m_old ? m_new : m_old;
    /* Every key so far masked: P must be 0 and nothing may become NaN. */
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const vf l2e = vf_set1(kLog2e), neg = vf_set1(-m_use * kLog2e);
    vf sum0 = vf_zero(), sum1 = vf_zero();
    int c = 0;
    for (; c + 2 * VL <= ncol; c += 2 * VL) {
      const vf p0 = vf_exp2_nonpos(vf_fma(vf_load(x + c), l2e, neg));
      const vf p1 = vf_exp2_nonpos(vf_fma(vf_load(x + c + VL), l2e, neg));
      vf_store(x + c, p0);
      vf_store(x + c + VL, p1);
      sum0 = vf_add(sum0, p0);
      sum1 = vf_add(sum1, p1);
    }
    for (; c < ncol; c += VL) {
      const vf p0 = vf_exp2_nonpos(vf_fma(vf_load(x + c), l2e, neg));
      vf_store(x + c, p0);
      sum0 = vf_add(sum0, p0);
    }
    /* The max seldom moves after the first tiles: skip the exp then. */
    const float a = m_old == m_use ? 1.0f : exp2f((m_old - m_use) * kLog2e);
    alpha[r - r0] = a;
    t->l[r] = t->l[r] * a + vf_hsum(vf_add(sum0, sum1));
    t->m[r] = m_new;
  }
}

static void KFN(fwd_qtile)(const attn_qtile *t) {
  const int64_t d = t->d, dvp = t->dvp;
  float alpha[BR];
  for (int r = 0; r < t->rows; r++) {
    t->m[r] = -INFINITY;
    t->l[r] = 0.0f;
    alpha[r] = 1.0f;
    memset(t->acc + r * dvp, 0, sizeof(float) * (size_t)dvp);
  }
  const int mods = t->softcap > 0 || t->alibi != 0 || t->bias != NULL;
  for (int64_t j0 = t->j_begin; j0 < t->j_end; j0 += BC) {
    const int64_t j1 = ATTN_MIN(j0 + BC, t->j_end);
    const int ncol = (int)((j1 - j0 + NR - 1) / NR * NR);
    attn_tile_kind kind = attn_mask_tile_kind(t->lo, t->hi, t->rows, j0, j1);
    if (kind == ATTN_TILE_EMPTY)
      continue;
    if (t->mask) {
      const attn_tile_kind mk =
          attn_mask_tensor_tile_kind(t->mask + t->i0 * t->mask_si, t->mask_si,
                                     t->mask_sj, t->rows, j0, j1);
      if (mk == ATTN_TILE_EMPTY)
        continue;
      if (mk == ATTN_TILE_PARTIAL)
        kind = ATTN_TILE_PARTIAL;
    }
    if (j1 - j0 < ncol)
      kind = ATTN_TILE_PARTIAL; /* padding keys in the last panel */

    const float *v = t->vp + j0 * dvp;
    float *s = t->s;
    /* GEMM order: each K panel stays in L1 while every row block uses it,
     * then each V column block stays in L1 for every row block. The last
     * row block computes only its valid rows. */
    /* Row blocks that may take the fused path (see mk_qk). */
    int fused[BR / MR];
    float big[BR / MR], negm[BR], rowsum[BR];
    const int full_plain = kind == ATTN_TILE_FULL && !mods;
    for (int r0 = 0, b = 0; r0 < t->rows; r0 += MR, b++) {
      const int r1 = ATTN_MIN(r0 + MR, t->rows);
      fused[b] = full_plain;
      big[b] = -INFINITY;
      for (int r = r0; r < r1; r++) {
        fused[b] &= t->m[r] > -INFINITY;
        negm[r] = -t->m[r] * kLog2e;
        rowsum[r] = 0.0f;
      }
    }
    for (int pc = 0; pc < ncol; pc += NR) { /* (1), fused with (4) */
      const float *kp = t->kp + ((j0 + pc) / NR) * d * NR;
      for (int r0 = 0, b = 0; r0 < t->rows; r0 += MR, b++) {
        const int mr = ATTN_MIN(MR, t->rows - r0);
        if (fused[b]) {
          const float e =
              KFN(qk_exp_block)(mr, t->q + r0 * d, d, kp, s + r0 * BC + pc,
                                negm + r0, rowsum + r0);
          big[b] = e > big[b] ? e : big[b];
        } else {
          KFN(qk_block)(mr, t->q + r0 * d, d, kp, s + r0 * BC + pc);
        }
      }
    }
    for (int r0 = 0, b = 0; r0 < t->rows; r0 += MR, b++) {
      const int r1 = ATTN_MIN(r0 + MR, t->rows); /* rows r0..r1-1 */
      float *sr = s + r0 * BC;
      if (fused[b] && big[b] <= FUSED_TAU) {
        for (int r = r0; r < r1; r++) {
          t->l[r] += rowsum[r];
          alpha[r] = 1.0f;
        }
        continue;
      }
      if (fused[b]) { /* a score far above the running max: redo S */
        for (int pc = 0; pc < ncol; pc += NR) {
          const float *kp = t->kp + ((j0 + pc) / NR) * d * NR;
          KFN(qk_block)(r1 - r0, t->q + r0 * d, d, kp, sr + pc);
        }
      }
      if (mods)
        KFN(apply_mods)(t, r0, r1, sr, ncol, j0); /* (2) */
      if (kind == ATTN_TILE_PARTIAL)
        KFN(apply_mask)(t, r0, r1, sr, ncol, j0);         /* (3) */
      KFN(softmax_step)(t, r0, r1, sr, ncol, alpha + r0); /* (4) */
    }
    for (int64_t cb = 0; cb < dvp; cb += NR) { /* (5) */
      const int nv = (int)(ATTN_MIN((int64_t)NR, dvp - cb) / VL);
      for (int r0 = 0; r0 < t->rows; r0 += MR) {
        const int mr = ATTN_MIN(MR, t->rows - r0);
        float *acc = t->acc + r0 * dvp + cb;
        KFN(pv_block)(mr, nv, s + r0 * BC, ncol, v + cb, dvp, alpha + r0, acc);
      }
    }
  }
  for (int r = 0; r < t->rows; r++) {
    const float l = t->l[r];
    const float inv = l > 0 ? 1.0f / l : 0.0f;
    float *o = t->acc + r * dvp;
    for (int64_t c = 0; c < dvp; c++)
      o[c] *= inv;
    t->lse[r] = l > 0 ? t->m[r] + logf(l) : -INFINITY;
  }
}

/* FMA throughput probe for attn_fma_peak_gflops: 12 independent chains
 * (enough to hide FMA latency on every x86 core we know). Returns FLOPs. */
static double KFN(peak_loop)(int64_t iters) {
  vf a[12];
  const vf x = vf_set1(0.999999f), y = vf_set1(1e-7f);
  UNROLL for (int i = 0; i < 12; i++) a[i] = vf_set1((float)i);
  for (int64_t it = 0; it < iters; it++) {
    UNROLL for (int i = 0; i < 12; i++) a[i] = vf_fma(a[i], x, y);
  }
  vf s = a[0];
  UNROLL for (int i = 1; i < 12; i++) s = vf_add(s, a[i]);
  volatile float sink = vf_hsum(s);
  (void)sink;
  return (double)iters * 12.0 * 2.0 * VL;
}
