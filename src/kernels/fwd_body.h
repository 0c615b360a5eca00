/* The forward kernel body, written once against simd.h and compiled once
 * per ISA (generic/fwd_generic.c, avx2/fwd_avx2.c, avx512/fwd_avx512.c).
 *
 * Before including: simd.h, kernels.h (which brings mask.h and score.h),
 * and
 *   KSUFFIX  name suffix (generic, avx2, avx512)
 *   MR       query rows per micro-kernel call
 *   BR       query rows per tile   (multiple of MR)
 *   NV       vectors per K panel: NR = NV * VL keys (at most 4)
 *   BC       keys per tile         (multiple of NR)
 *
 * For one tile of BR queries the body walks the runs of its compiled mask
 * (mask.h: only non-empty key tiles, each FULL or PARTIAL) and runs, per
 * key tile of BC = ATTN_TILE_K keys (FlashAttention-2's loop order):
 *
 *   S   = Q Kᵀ              register-blocked MR x NR micro-kernel   (1)
 *   S   = mods(S)            softcap, ALiBi, T5, bias (score_body.h) (2)
 *   S   = -inf where masked  only for PARTIAL tiles (mask/)          (3)
 *   m'  = max(m, rowmax S);  P = 2^((S - m') log2 e)                 (4)
 *   l   = l 2^((m - m') log2 e) + rowsum P
 *   P   = P * keep(b, h, i, j) / (1 - p)   dropout only (philox.h)
 *   acc = acc 2^((m - m') log2 e) + P V   MR x NR micro-kernel       (5)
 *
 * and at the end acc /= l, lse = m + log l (Milakov & Gimelshein 2018,
 * "Online normalizer calculation for softmax"). A row that never saw a key
 * keeps m = -inf, l = 0 and ends with acc = 0, lse = -inf.
 */
#include <math.h>

#define NR (NV * VL)
#include "kernels/mk_qk.h"
#include "kernels/score_body.h"

/* Rows of a P V block of nv vectors: MR for the whole width; a narrow
 * block (the last one of a head dim that is not a multiple of NR, such as
 * 80 or 112) takes more rows, so that it keeps about MR * NV independent
 * sums in flight (MR x 2 vectors on AVX2 were 6 chains of FMAs, bound by
 * their latency), at most PV_MAX_ROWS (SWITCH_UPTO's limit). */
#define PV_MAX_ROWS 12
#define PV_ROWS(nv)                                                            \
  ((nv) >= NV                       ? MR                                       \
   : MR * (NV / (nv)) > PV_MAX_ROWS ? PV_MAX_ROWS                              \
                                    : MR * (NV / (nv)))

/* acc[r][0..nv*VL) = alpha[r] * acc[r][..] + (sum_j p[r][j] * v[j][..]),
 * the tile's sum formed on its own first,
 * for r < mr <= PV_ROWS(nv) and nv <= NV vectors, both compile-time
 * constants at every call. p: [mr][BC] probabilities, v: [ncol][dvp] (row
 * stride dvp). Each row's sum runs over the keys in order whatever mr is,
 * so the blocking leaves the bits. pf, npf: lines to bring into L2 on the
 * way, one per key (mk_qk). */
static ALWAYS_INLINE void
KFN(mk_pv)(const int mr, const int nv, const float *restrict p, int ncol,
           const float *restrict v, int64_t dvp, const float *restrict alpha,
           float *restrict acc, const char *pf, int npf) {
  vf c[PV_MAX_ROWS][NV];
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int x = 0; x < nv; x++) c[r][x] = vf_zero();
  }
  for (int j = 0; j < ncol; j++) {
    if (j < npf)
      ATTN_PF_L2(pf + 64 * j);
    vf b[NV];
    UNROLL for (int x = 0; x < nv; x++) b[x] = vf_load(v + j * dvp + x * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vf a = vf_set1(p[r * BC + j]);
      UNROLL for (int x = 0; x < nv; x++) c[r][x] = vf_fma(a, b[x], c[r][x]);
    }
  }
  /* The tile's sum is added to the running one only now (two levels). */
  UNROLL for (int r = 0; r < mr; r++) {
    const vf a = vf_set1(alpha[r]);
    UNROLL for (int x = 0; x < nv; x++)
        vf_store(acc + r * dvp + x * VL,
                 vf_fma(vf_load(acc + r * dvp + x * VL), a, c[r][x]));
  }
}

#if defined(ATTN_FWD_BF16)
/* mk_pv with P and V in bf16: p [mr][BC] bf16 probabilities, v the tile's
 * bf16 pairs [ncol / 2][dvp][2] (v[j/2][c] = values j, j + 1 of column c).
 * Each vf_dot2 takes two keys. */
static ALWAYS_INLINE void
KFN(mk_pv_bf16)(const int mr, const int nv, const uint16_t *restrict p,
                int ncol, const uint16_t *restrict v, int64_t dvp,
                const float *restrict alpha, float *restrict acc,
                const char *pf, int npf) {
  vf c[MR][NV];
  UNROLL for (int r = 0; r < mr; r++) {
    UNROLL for (int x = 0; x < nv; x++) c[r][x] = vf_zero();
  }
  for (int j = 0; j < ncol; j += 2) {
    if (j < 2 * npf)
      ATTN_PF_L2(pf + 32 * j);
    vbf b[NV];
    UNROLL for (int x = 0; x < nv; x++) b[x] =
        vbf_load(v + j * dvp + 2 * x * VL);
    UNROLL for (int r = 0; r < mr; r++) {
      const vbf a = vbf_pair(p + r * BC + j);
      UNROLL for (int x = 0; x < nv; x++) c[r][x] = vf_dot2(c[r][x], a, b[x]);
    }
  }
  UNROLL for (int r = 0; r < mr; r++) {
    const vf a = vf_set1(alpha[r]);
    UNROLL for (int x = 0; x < nv; x++)
        vf_store(acc + r * dvp + x * VL,
                 vf_fma(vf_load(acc + r * dvp + x * VL), a, c[r][x]));
  }
}
#endif

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

/* S for one row block of mr rows against the first nv vectors of one K
 * panel. */
static void KFN(qk_block)(int mr, int nv, const qk_t *q, int64_t d,
                          const qk_t *kp, float *s, float scale, const char *pf,
                          int npf) {
#define QK_ROWS(n, NVEC)                                                       \
  KFN(mk_qk)                                                                   \
  (0, (n) <= MR ? (n) : MR, NVEC, q, d, d, kp, s, NULL, NULL, NULL, scale, pf, \
   npf);
#define QK_CASE_FULL(n) QK_ROWS(n, NV)
#define QK_CASE_1(n) QK_ROWS(n, 1)
#define QK_CASE_2(n) QK_ROWS(n, (2 <= NV ? 2 : NV))
#define QK_CASE_3(n) QK_ROWS(n, (3 <= NV ? 3 : NV))
  if (nv == NV) {
    SWITCH_UPTO(MR, mr, QK_CASE_FULL)
  } else if (nv == 1) {
    SWITCH_UPTO(MR, mr, QK_CASE_1)
  } else if (nv == 2) {
    SWITCH_UPTO(MR, mr, QK_CASE_2)
  } else if (nv == 3) {
    SWITCH_UPTO(MR, mr, QK_CASE_3)
  }
#undef QK_ROWS
#undef QK_CASE_FULL
#undef QK_CASE_1
#undef QK_CASE_2
#undef QK_CASE_3
}

/* The fused S and P for one row block against one K panel. */
static void KFN(qk_exp_block)(int mr, const qk_t *q, int64_t d, const qk_t *kp,
                              float *p, const float *negm, float *rowsum,
                              float *rowmax, float scale, const char *pf,
                              int npf) {
#define QKE_CASE(n)                                                            \
  KFN(mk_qk)                                                                   \
  (1, (n) <= MR ? (n) : MR, NV, q, d, d, kp, p, negm, rowsum, rowmax, scale,   \
   pf, npf);
  SWITCH_UPTO(MR, mr, QKE_CASE)
#undef QKE_CASE
}

#if defined(ATTN_FWD_BF16)
/* qk_exp_block with P stored as bf16 at p16 (row stride BC): mk_qk's
 * fuse = 2, for a P V in bf16. */
static void KFN(qk_exp16_block)(int mr, const qk_t *q, int64_t d,
                                const qk_t *kp, uint16_t *p16,
                                const float *negm, float *rowsum, float *rowmax,
                                float scale, const char *pf, int npf) {
#define QKE16_CASE(n)                                                          \
  KFN(mk_qk)                                                                   \
  (2, (n) <= MR ? (n) : MR, NV, q, d, d, kp, (float *)(void *)p16, negm,       \
   rowsum, rowmax, scale, pf, npf);
  SWITCH_UPTO(MR, mr, QKE16_CASE)
#undef QKE16_CASE
}
#endif

/* acc += P V for one row block of mr rows and one column block of nv
 * vectors. */
static ALWAYS_INLINE void KFN(pv_block)(int mr, int nv, const float *p,
                                        int ncol, const float *v, int64_t dvp,
                                        const float *alpha, float *acc,
                                        const char *pf, int npf) {
#define PV_CALL(n, NVEC)                                                       \
  KFN(mk_pv)                                                                   \
  ((n) <= PV_ROWS(NVEC) ? (n) : PV_ROWS(NVEC), NVEC, p, ncol, v, dvp, alpha,   \
   acc, pf, npf);
#define PV_CASE_FULL(n) PV_CALL(n, NV)
#define PV_CASE_1(n) PV_CALL(n, 1)
#define PV_CASE_2(n) PV_CALL(n, (2 <= NV ? 2 : NV))
#define PV_CASE_3(n) PV_CALL(n, (3 <= NV ? 3 : NV))
  if (nv == NV) {
    SWITCH_UPTO(MR, mr, PV_CASE_FULL)
  } else if (nv == 1) {
    SWITCH_UPTO(PV_ROWS(1), mr, PV_CASE_1)
  } else if (nv == 2) {
    SWITCH_UPTO(PV_ROWS(2 <= NV ? 2 : NV), mr, PV_CASE_2)
  } else if (nv == 3) {
    SWITCH_UPTO(PV_ROWS(3 <= NV ? 3 : NV), mr, PV_CASE_3)
  }
#undef PV_CALL
#undef PV_CASE_FULL
#undef PV_CASE_1
#undef PV_CASE_2
#undef PV_CASE_3
}

/* The next key tile's operands, brought into L2 while this tile computes
 * (without it, every tile's K and V come from L3 or memory when a head's
 * K and V exceed L2): bytes from at, spread over a loop's calls, per lines
 * a call (pf_split, once per loop: no division in the calls). */
typedef struct {
  const char *at;
  int64_t bytes, per;
} pf_span;

/* Spreads sp over n calls. */
static void KFN(pf_split)(pf_span *sp, int n) {
  sp->per = ((sp->bytes + 63) / 64 + n - 1) / n;
}

/* Calls i .. i + n - 1's shares of sp: their first line (*line) and
 * count. */
static int KFN(pf_shares)(pf_span sp, int i, int n, const char **line) {
  *line = sp.at;
  if (!sp.at)
    return 0;
  const int64_t first = (int64_t)i * sp.per;
  const int64_t left = (sp.bytes + 63) / 64 - first;
  if (left <= 0)
    return 0;
  *line = sp.at + 64 * first;
  return (int)ATTN_MIN(n * sp.per, left);
}

/* Call i's share of sp. */
static int KFN(pf_share)(pf_span sp, int i, const char **line) {
  return KFN(pf_shares)(sp, i, 1, line);
}

/* Step (5) in f32: acc += P V for every row block and column block (p:
 * the tile's P, row stride BC; v: the tile's first value row; pf: the
 * next tile's V). */
static void KFN(pv_tile)(const attn_qtile *t, const float *p, const float *v,
                         int64_t j0, int ncol, int partial, const float *alpha,
                         pf_span pf) {
  const int64_t dvp = t->dvp;
  const int nrb = (t->rows + MR - 1) / MR, ncb = (int)((dvp + NR - 1) / NR);
  /* A partial tile: each row block's keys [c0, c1), the union of its
   * rows' allowed intervals. P is exactly 0 outside it, and a sum that
   * starts at +0 is unchanged by adding 0 * v for finite v, so skipping
   * those keys leaves the bits (a non-finite V of a masked key no longer
   * reaches the row block: the documented exception only narrows). On
   * the diagonal of a causal mask this skips half of the tile's P V. */
  int c0[BR / MR], c1[BR / MR];
  for (int b = 0; b < nrb; b++) {
    c0[b] = 0;
    c1[b] = ncol;
    for (int r = b * MR; r < ATTN_MIN(t->rows, (b + 1) * MR) && partial; r++) {
      const int64_t a = t->mv.lo[r] - j0, e = t->mv.hi[r] - j0 + 1;
      c0[b] = r == b * MR ? (int)ATTN_MAX(ATTN_MIN(a, ncol), 0)
                          : (int)ATTN_MIN(c0[b], ATTN_MAX(a, 0));
      c1[b] = r == b * MR ? (int)ATTN_MIN(ATTN_MAX(e, 0), ncol)
                          : (int)ATTN_MAX(c1[b], ATTN_MIN(e, ncol));
    }
    if (c1[b] < c0[b])
      c1[b] = c0[b]; /* none: the call only rescales */
  }
  KFN(pf_split)(&pf, ncb * nrb);
  for (int64_t cb = 0; cb < dvp; cb += NR) {
    const int nv = (int)(ATTN_MIN((int64_t)NR, dvp - cb) / VL);
    /* A narrow block takes PV_ROWS(nv) rows at a time on a full tile (a
     * partial tile's row blocks keep their own key ranges). */
    const int step = partial ? MR : PV_ROWS(nv);
    for (int r0 = 0; r0 < t->rows; r0 += step) {
      const int mr = ATTN_MIN(step, t->rows - r0);
      const int b0 = c0[r0 / MR], n = c1[r0 / MR] - b0;
      float *acc = t->accm + r0 * dvp + cb;
      const char *at;
      const int npf =
          KFN(pf_shares)(pf, (int)(cb / NR) * nrb + r0 / MR, step / MR, &at);
      KFN(pv_block)
      (mr, nv, p + r0 * BC + b0, n, v + b0 * dvp + cb, dvp, alpha + r0, acc, at,
       ATTN_MIN(npf, n));
    }
  }
}

#if defined(ATTN_FWD_BF16)
_Static_assert(NV == 2 || NV == 4, "bf16 P rows convert two vectors a step");
/* P's row r (s, row stride BC) rounded to bf16 into pb's. */
static void KFN(round_p_row)(const float *s, int r, int ncol, uint16_t *pb) {
  for (int c = 0; c < ncol; c += 2 * VL)
    vbf_store2(pb + r * BC + c, vf_load(s + r * BC + c),
               vf_load(s + r * BC + c + VL));
}

/* Step (5) for a bf16 output: P rounded to bf16 once (pb, row stride BC:
 * from s now unless rounded, the fused path's mk_qk having stored it so),
 * then acc += P V by bf16 dot products over pairs of keys. */
static void KFN(pv_tile_bf16)(const attn_qtile *t, const float *s, uint16_t *pb,
                              int rounded, int64_t j0, int ncol,
                              const float *alpha, pf_span pf) {
  const int64_t dvp = t->dvp;
  for (int r = 0; r < t->rows && !rounded; r++)
    KFN(round_p_row)(s, r, ncol, pb);
  const uint16_t *v = t->vh + j0 * dvp;
#define PVB_ROWS(n, NVEC)                                                      \
  KFN(mk_pv_bf16)                                                              \
  ((n) <= MR ? (n) : MR, NVEC, pb + r0 * BC, ncol, v + 2 * cb, dvp,            \
   alpha + r0, acc, at, npf);
#define PVB_FULL(n) PVB_ROWS(n, NV)
#define PVB_1(n) PVB_ROWS(n, 1)
#define PVB_2(n) PVB_ROWS(n, (2 <= NV ? 2 : NV))
#define PVB_3(n) PVB_ROWS(n, (3 <= NV ? 3 : NV))
  const int nrb = (t->rows + MR - 1) / MR, ncb = (int)((dvp + NR - 1) / NR);
  KFN(pf_split)(&pf, ncb * nrb);
  for (int64_t cb = 0; cb < dvp; cb += NR) {
    const int nv = (int)(ATTN_MIN((int64_t)NR, dvp - cb) / VL);
    for (int r0 = 0; r0 < t->rows; r0 += MR) {
      const int mr = ATTN_MIN(MR, t->rows - r0);
      float *acc = t->accm + r0 * dvp + cb;
      const char *at;
      const int npf = ATTN_MIN(
          KFN(pf_share)(pf, (int)(cb / NR) * nrb + r0 / MR, &at), ncol / 2);
      if (nv == NV) {
        SWITCH_UPTO(MR, mr, PVB_FULL)
      } else if (nv == 1) {
        SWITCH_UPTO(MR, mr, PVB_1)
      } else if (nv == 2) {
        SWITCH_UPTO(MR, mr, PVB_2)
      } else {
        SWITCH_UPTO(MR, mr, PVB_3)
      }
    }
  }
#undef PVB_ROWS
#undef PVB_FULL
#undef PVB_1
#undef PVB_2
#undef PVB_3
}
#endif

/* (4) online softmax on rows r0..r1-1 (s: their scores, row stride BC):
 * P over S, alpha per row; the running max m, and the sums l (top) and
 * lm (this group of tiles) and the top accumulator acc rescaled. */
static void KFN(softmax_step)(const attn_qtile *t, int r0, int r1, float *s,
                              int ncol, float *alpha, float *lm) {
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
    const float sum = vf_hsum(KFN(softmax_exp_row)(x, ncol, m_use));
    /* The max seldom moves after the first tiles: skip the exp then. */
    const float a = m_old == m_use ? 1.0f : exp2f((m_old - m_use) * kLog2e);
    alpha[r - r0] = a;
    if (a != 1.0f) {
      float *acc = t->acc + r * t->dvp;
      for (int64_t c = 0; c < t->dvp; c++)
        acc[c] *= a;
      t->l[r] *= a;
    }
    lm[r] = lm[r] * a + sum;
    t->m[r] = m_new;
  }
}

/* Accuracy at any length: P V is summed in three levels, each a short
 * f32 sum: within a key tile (registers), over FLUSH tiles (accm, lm),
 * and over the groups (acc, l). */
#define FLUSH 16

static void KFN(flush)(const attn_qtile *t, float *lm) {
  for (int r = 0; r < t->rows; r++) {
    float *acc = t->acc + r * t->dvp, *accm = t->accm + r * t->dvp;
    for (int64_t c = 0; c < t->dvp; c++) {
      acc[c] += accm[c];
      accm[c] = 0.0f;
    }
    t->l[r] += lm[r];
    lm[r] = 0.0f;
  }
}

/* Steps (1)-(5) on key tile [j0, j1) of the given kind. */
/* Steps (2)-(4) the ordinary way on rows ra..rb-1 (s: row ra's scores,
 * row stride BC). */
static void KFN(plain_rows)(const attn_qtile *t, int ra, int rb, float *s,
                            int64_t j0, int ncol, attn_tile_kind kind,
                            float *alpha, float *lm) {
  float lut[BR + BC]; /* T5: one bias per distance of the block */
  if (t->sc.t5)
    attn_score_t5_lut(&t->sc, t->i0 + rb - 1, j0, rb - 1 - ra + ncol, lut);
  for (int r = ra; r < rb && attn_score_any(&t->sc); r++) { /* (2) */
    const float *t5 = t->sc.t5 ? lut + (rb - 1 - r) : NULL;
    float *sr = s + (r - ra) * BC;
    KFN(score_fwd_row)(&t->sc, t->i0 + r, j0, sr, NULL, t5, ncol);
    if (t->sc.mod)
      KFN(score_mod_row)(&t->sc, t->i0 + r, j0, sr, NULL, ncol);
  }
  if (kind == ATTN_TILE_PARTIAL) /* (3) */
    attn_mask_apply(&t->mv, ra, rb, j0, ncol, s, BC);
  KFN(softmax_step)(t, ra, rb, s, ncol, alpha + ra, lm); /* (4) */
}

/* Whether fused row r (largest exponent mx against negm) is kept: P must
 * stay below 2^FUSED_TAU, and a row without a max yet (guess m = 0) must
 * have its largest P at least 2^-FUSED_TAU. NaN fails both tests. */
static int KFN(fused_ok)(float m, float mx) {
  if (m == -INFINITY)
    return mx >= -FUSED_TAU && mx <= FUSED_TAU;
  return m > -65536.0f && m < 65536.0f && mx <= FUSED_TAU;
}

#if defined(ATTN_FWD_AMX)
#include "kernels/fwd_amx.h"
#endif

/* Steps (1)-(5) on key tile [j0, j1) of the given kind; the keys of the
 * next tile, [jn, jn1) (empty: none), are brought into L2 meanwhile. */
static void KFN(key_tile)(const attn_qtile *t, int64_t j0, int64_t j1,
                          int64_t jn, int64_t jn1, attn_tile_kind kind,
                          float *alpha, float *lm) {
  const int64_t d = t->d, dvp = t->dvp;
#if defined(ATTN_FWD_BF16)
  const qk_t *tq = t->qh, *tk = t->kh;
  const float scale = t->qscale;
#else
  const qk_t *tq = t->q, *tk = t->kp;
  const float scale = t->qscale;
#endif
  const int ncol = (int)((j1 - j0 + NR - 1) / NR * NR);
  if (j1 - j0 < ncol)
    kind = ATTN_TILE_PARTIAL; /* padding keys in the last panel */
  const float *v = t->vp + j0 * dvp;
  float *s = t->s;
  /* The next tile's K panels and V rows (whole panels of NR keys). */
  const int64_t nn = jn1 > jn ? (jn1 - jn + NR - 1) / NR * NR : 0;
  pf_span kn = {nn ? (const char *)(tk + (jn / NR) * d * NR) : NULL,
                nn * d * (int64_t)sizeof(qk_t), 0};
  pf_span vn = {NULL, 0, 0}; /* V pairs (a bf16 output) or f32 rows */
  if (nn) {
    vn.at = t->vh ? (const char *)(t->vh + jn * dvp)
                  : (const char *)(t->vp + jn * dvp);
    vn.bytes = nn * dvp * (t->vh ? 2 : 4);
  }
  /* GEMM order: each K panel stays in L1 while every row block uses it,
   * then each V column block stays in L1 for every row block. The last
   * row block computes only its valid rows. FULL tiles without score
   * modifiers take the fused path (mk_qk); each row is then kept or redone
   * on its own. */
#if defined(ATTN_FWD_AMX)
  const int amx = KFN(amx_ok)(t);
#else
  const int amx = 0;
#endif
  const int fused = !amx && kind == ATTN_TILE_FULL && !attn_score_any(&t->sc);
#if defined(ATTN_FWD_BF16)
  /* A bf16 P V after the fused path: mk_qk stores P as bf16 into ph
   * (dropout scales the f32 P first, so it keeps the f32 store) */
  _Alignas(64) uint16_t ph[BR * BC];
  const int p16 = fused && t->vh && !t->drop.on;
#endif
  float negm[BR], rowsum[BR], rowmax[BR * VL];
  for (int r = 0; r < t->rows && fused; r++) {
    const float m = t->m[r];
    negm[r] = m > -65536.0f && m < 65536.0f ? -m * kLog2e : 0.0f;
    rowsum[r] = 0.0f;
    vf_store(rowmax + r * VL, vf_set1(-INFINITY));
  }
#if defined(ATTN_FWD_AMX)
  _Alignas(64) uint16_t pb[BR * BC];
  if (amx) {
    KFN(amx_qk)(t, j0, ncol, s);
    const int nrb = (t->rows + 15) / 16;
    for (int r = t->rows; r < nrb * 16 && t->vh; r++)
      memset(pb + r * BC, 0, sizeof(uint16_t) * (size_t)ncol);
    if (!attn_score_any(&t->sc) && !t->drop.on) {
      _Alignas(64) float pf[BR * BC];
      uint16_t *pbf = t->vh ? pb : NULL; /* P as bf16 for amx_pv */
      KFN(amx_softmax_full)(t, s, j0, ncol, kind, scale, alpha, lm, pbf, pf);
      if (t->vh)
        KFN(amx_pv)(t, pb, j0, ncol, alpha);
      else
        KFN(pv_tile)(t, pf, v, j0, ncol, kind == ATTN_TILE_PARTIAL, alpha, vn);
      return;
    }
    const vf sc = vf_set1(scale);
    for (int r = 0; r < t->rows; r++)
      for (int c = 0; c < ncol; c += VL)
        vf_store(s + r * BC + c, vf_mul(vf_load(s + r * BC + c), sc));
  }
#endif
  const int nrb = (t->rows + MR - 1) / MR, npc = ncol / NR;
  KFN(pf_split)(&kn, npc * nrb);
  for (int pc = 0; pc < ncol && !amx; pc += NR) { /* (1), fused with (4) */
    const qk_t *kp = tk + ((j0 + pc) / NR) * d * NR;
    for (int r0 = 0; r0 < t->rows; r0 += MR) {
      const int mr = ATTN_MIN(MR, t->rows - r0);
      const qk_t *qr = tq + r0 * d;
      const float *nm = negm + r0;
      float *out = s + r0 * BC + pc, *rs = rowsum + r0, *rm = rowmax + r0 * VL;
      const char *at; /* at most one line per step of the sum over d */
      const int npf =
          (int)ATTN_MIN(KFN(pf_share)(kn, (pc / NR) * nrb + r0 / MR, &at),
                        d / (int64_t)(sizeof(float) / sizeof(qk_t)));
#if defined(ATTN_FWD_BF16)
      if (p16) {
        KFN(qk_exp16_block)
        (mr, qr, d, kp, ph + r0 * BC + pc, nm, rs, rm, scale, at, npf);
        continue;
      }
#endif
      if (fused) {
        KFN(qk_exp_block)(mr, qr, d, kp, out, nm, rs, rm, scale, at, npf);
        continue;
      }
      /* A partial tile: only the panel's vectors up to the row block's
       * last allowed key; the rest is masked, -inf without a product (the
       * upper half of a causal diagonal). Not under a user score_mod,
       * which would see the -inf (it is given visible scores only). */
      int nv = NV;
      if (kind == ATTN_TILE_PARTIAL && !t->sc.mod) {
        int64_t e = 0;
        for (int r = r0; r < r0 + mr; r++)
          e = ATTN_MAX(e, t->mv.hi[r] - (j0 + pc) + 1);
        nv = (int)((ATTN_MIN(e, (int64_t)NR) + VL - 1) / VL);
      }
      if (nv > 0)
        KFN(qk_block)(mr, nv, qr, d, kp, out, scale, at, npf);
      for (int r = 0; r < mr && nv < NV; r++)
        for (int c = nv * VL; c < NR; c += VL)
          vf_store(out + r * BC + c, vf_set1(-INFINITY));
    }
  }
  if (!fused)
    KFN(plain_rows)(t, 0, t->rows, s, j0, ncol, kind, alpha, lm);
  for (int r = 0; r < t->rows && fused; r++) {
    const float mx = vf_hmax(vf_load(rowmax + r * VL));
    if (KFN(fused_ok)(t->m[r], mx)) {
      if (t->m[r] == -INFINITY)
        t->m[r] = 0.0f; /* P was taken against the guess 0 */
      lm[r] += rowsum[r];
      alpha[r] = 1.0f;
      continue;
    }
    float *sr = s + r * BC; /* a score far from the max: redo the row */
    for (int pc = 0; pc < ncol; pc += NR) {
      const qk_t *kp = tk + ((j0 + pc) / NR) * d * NR;
      KFN(qk_block)(1, NV, tq + r * d, d, kp, sr + pc, scale, NULL, 0);
    }
    KFN(plain_rows)(t, r, r + 1, sr, j0, ncol, kind, alpha, lm);
#if defined(ATTN_FWD_BF16)
    if (p16) /* its bf16 P from the redone f32 one */
      KFN(round_p_row)(s, r, ncol, ph);
#endif
  }
  /* Dropout: l has summed the undropped P (so lse and the normalisation
   * are the undropped softmax's); P V takes P * keep / (1 - p). */
  if (t->drop.on)
    attn_dropout_apply(&t->drop, t->i0, t->rows, j0, s, BC, ncol);
#if defined(ATTN_FWD_BF16)
  if (t->vh) { /* (5) with P rounded to bf16 (a bf16 output) */
#if defined(ATTN_FWD_AMX)
    if (amx) {
      KFN(amx_round_p)(s, 0, t->rows, ncol, pb);
      KFN(amx_pv)(t, pb, j0, ncol, alpha);
      return;
    }
#endif
    KFN(pv_tile_bf16)(t, s, ph, p16, j0, ncol, alpha, vn);
    return;
  }
#endif
  KFN(pv_tile)
  (t, s, v, j0, ncol, kind == ATTN_TILE_PARTIAL, alpha, vn); /* (5) */
}

static void KFN(fwd_qtile_body)(const attn_qtile *t);

static void KFN(fwd_qtile)(const attn_qtile *t) {
#if defined(ATTN_FWD_AMX)
  if (KFN(amx_ok)(t)) { /* the tile registers hold this call's state */
    amx_config();
    KFN(fwd_qtile_body)(t);
    _tile_release();
    return;
  }
#endif
  KFN(fwd_qtile_body)(t);
}

static void KFN(fwd_qtile_body)(const attn_qtile *t) {
  const int64_t dvp = t->dvp;
  float alpha_own[BR], lm_own[BR];
  int tiles_own = 0;
  float *alpha = t->alpha ? t->alpha : alpha_own;
  float *lm = t->lm ? t->lm : lm_own;
  int *ntiles = t->ntiles ? t->ntiles : &tiles_own;
  if (!t->resume) {
    for (int r = 0; r < t->rows; r++) {
      t->m[r] = -INFINITY;
      t->l[r] = 0.0f;
      lm[r] = 0.0f;
      alpha[r] = 1.0f;
      memset(t->acc + r * dvp, 0, sizeof(float) * (size_t)dvp);
      memset(t->accm + r * dvp, 0, sizeof(float) * (size_t)dvp);
    }
#if defined(ATTN_FWD_AMX) /* amx_pv's tiles load and store whole blocks */
    memset(t->accm + t->rows * dvp, 0,
           sizeof(float) * (size_t)((BR - t->rows) * dvp));
#endif
    *ntiles = 0;
  }
  int tiles = *ntiles;
  for (int ri = 0; ri < t->nruns; ri++) {
    const attn_tile_run *run = &t->runs[ri];
    for (int64_t kt = run->kt0; kt < run->kt1; kt++) {
      const int64_t j0 = kt * BC, j1 = ATTN_MIN(j0 + BC, t->j_end);
      if (j1 <= j0)
        break;
      /* The next tile: in this run, or the first of the next. */
      const int64_t kn = kt + 1 < run->kt1   ? kt + 1
                         : ri + 1 < t->nruns ? t->runs[ri + 1].kt0
                                             : -1;
      const int64_t jn = kn < 0 ? 0 : kn * BC;
      const int64_t jn1 = kn < 0 ? 0 : ATTN_MIN(jn + BC, t->j_end);
      KFN(key_tile)(t, j0, j1, jn, jn1, (attn_tile_kind)run->kind, alpha, lm);
      if (++tiles % FLUSH == 0)
        KFN(flush)(t, lm);
    }
  }
  *ntiles = tiles;
  if (t->partial)
    return;
  KFN(flush)(t, lm);
  for (int r = 0; r < t->rows; r++) {
    /* l = 0: the row saw no key (o = 0, lse = -inf); l NaN: it saw a
     * non-finite score (o and lse NaN, as IEEE arithmetic gives). */
    float l = t->l[r], a = 1.0f;
    if (t->sink > -INFINITY) /* the sink joins the sum, with no value */
      attn_sink_join(t->sink, &t->m[r], &l, &a);
    const float inv = l > 0 ? a / l : l == 0 ? 0.0f : NAN;
    float *o = t->acc + r * dvp;
    for (int64_t c = 0; c < dvp; c++)
      o[c] *= inv;
    t->lse[r] = l > 0 ? t->m[r] + logf(l) : l == 0 ? -INFINITY : NAN;
  }
}
