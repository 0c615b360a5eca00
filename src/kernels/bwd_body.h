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
_Static_assert(MR <= 8, "bwd.c pads buffers of key rows by KEY_PAD = 8 rows");
#include "kernels/mk_qk.h"
#include "kernels/score_body.h"
/* after mk_qk.h and score_body.h, which it uses */
#include "kernels/bwd_mk.h"

#if defined(ATTN_BWD_BF16)
/* The bf16 kernel (docs/bf16.md): its operands are the f32 ones of
 * bwd_kernels.h converted per block into t->bf (exactly, for the inputs,
 * which hold bf16 values; P and dS rounded where pv16 / dk16 / dq16). */
_Static_assert(MR % 2 == 0, "query pairs: rows_mr must be even");
/* Plain names for two calls below (clang-format reads KFN(f)(...) inside
 * this #if as a declaration). */
#define BF_MK_QK KFN(mk_qk)
#define BF_ACC_COLS2 KFN(acc_cols2)

/* n floats of x (a multiple of VL) to bf16 at h. */
static void KFN(cvt_row)(const float *x, int64_t n, uint16_t *h) {
  int64_t c = 0;
  for (; c + 2 * VL <= n; c += 2 * VL)
    vbf_store2(h + c, vf_load(x + c), vf_load(x + c + VL));
  if (c < n)
    vbf_store1(h + c, vf_load(x + c));
}

/* Rows x and y (n floats each, a multiple of VL; y NULL: zeros) to the
 * pairs h[c][2] = (x[c], y[c]). */
static void KFN(cvt_zip)(const float *x, const float *y, int64_t n,
                         uint16_t *h) {
  for (int64_t c = 0; c < n; c += VL)
    vbf_store_zip(h + 2 * c, vf_load(x + c), y ? vf_load(y + c) : vf_zero());
}

/* The length of a bf16 row of n elements (Q, dO) and of a pair panel of
 * K or V: even; the AMX kernel's tiles take 32 elements a step, so there
 * lengths of 16 mod 32 get 16 zeros more (as fwd.c's Q and K rows). */
static int64_t KFN(kd_pad)(int64_t n) {
#if defined(ATTN_BWD_AMX)
  if (n % 16 == 0)
    return (n + 31) / 32 * 32;
#endif
  return (n + 1) / 2 * 2;
}

/* np panels [kd][NR] of f32 to bf16 pair panels [kdp / 2][NR][2], kdp =
 * kd_pad(kd) (pairs past kd zero). */
static void KFN(cvt_panels)(const float *src, int np, int64_t kd,
                            uint16_t *dst) {
  const int64_t kdp = KFN(kd_pad)(kd), kd2 = (kd + 1) / 2 * 2;
  for (int pn = 0; pn < np; pn++) {
    const float *x = src + pn * kd * NR;
    uint16_t *h = dst + pn * kdp * NR;
    for (int64_t k = 0; k < kd; k += 2) {
      const float *y = k + 1 < kd ? x + (k + 1) * NR : NULL;
      KFN(cvt_zip)(x + k * NR, y, NR, h + k * NR);
    }
    memset(h + kd2 * NR, 0, sizeof(uint16_t) * (size_t)((kdp - kd2) * NR));
  }
}

/* n rows (n even) of x (row stride ld, ncols floats) to pairs of rows:
 * h[i / 2][c][2] = (x[i][c], x[i + 1][c]), pair row stride 2 hld. */
static void KFN(cvt_rowpairs)(const float *x, int64_t ld, int n, int64_t ncols,
                              uint16_t *h, int64_t hld) {
  for (int i = 0; i < n; i += 2)
    KFN(cvt_zip)(x + i * ld, x + (i + 1) * ld, ncols, h + i * hld);
}

#if !defined(ATTN_BWD_AMX) /* the AMX kernel sums pairs in tiles */
/* bmk_acc over bf16 pairs: c[r][x] += sum_{p<np} A2(r, p) . B2[p][x],
 * A2(r, p) the pair at a + r ars + p aps, B2 pairs [np][ldb][2]. */
static ALWAYS_INLINE void
KFN(bmk_acc2)(const int nv, const uint16_t *restrict a, int64_t ars,
              int64_t aps, int np, const uint16_t *restrict b, int64_t ldb,
              float *restrict c, int64_t ldc, int nst) {
  vf acc[MR][NV];
  UNROLL for (int r = 0; r < MR; r++) {
    UNROLL for (int x = 0; x < nv; x++) acc[r][x] = vf_zero();
  }
  for (int p = 0; p < np; p++) {
    vbf bv[NV];
    UNROLL for (int x = 0; x < nv; x++) bv[x] =
        vbf_load(b + p * 2 * ldb + 2 * x * VL);
    UNROLL for (int r = 0; r < MR; r++) {
      const vbf s = vbf_pair(a + r * ars + p * aps);
      UNROLL for (int x = 0; x < nv; x++) acc[r][x] =
          vf_dot2(acc[r][x], s, bv[x]);
    }
  }
  UNROLL for (int r = 0; r < MR; r++) {
    if (r < nst) {
      UNROLL for (int x = 0; x < nv; x++)
          vf_store(c + r * ldc + x * VL,
                   vf_add(vf_load(c + r * ldc + x * VL), acc[r][x]));
    }
  }
}

/* bmk_acc2 over all ncols (a multiple of VL) columns of c and b. */
static void KFN(acc_cols2)(const uint16_t *a, int64_t ars, int64_t aps, int np,
                           const uint16_t *b, int64_t ldb, float *c,
                           int64_t ldc, int64_t ncols, int nst) {
  int64_t cb = 0;
  for (; cb + NR <= ncols; cb += NR)
    KFN(bmk_acc2)(NV, a, ars, aps, np, b + 2 * cb, ldb, c + cb, ldc, nst);
  if (cb < ncols) /* NV == 2: one vector left */
    KFN(bmk_acc2)(1, a, ars, aps, np, b + 2 * cb, ldb, c + cb, ldc, nst);
}
_Static_assert(NV == 2, "acc_cols2 leaves at most one vector");
#endif

/* The bf16 operands in t->bf (ATTN_BWD_BF16_SCRATCH elements). */
typedef struct KFN(bf_ops) {
  uint16_t *qh, *doh; /* [BR][dp], [BR][dvp]: Q and dO rows             */
  uint16_t *qp, *dop; /* pairs of query rows [BR / 2][dp or dvp][2]      */
  uint16_t *kh, *vh;  /* pair panels of K and V [BC / NR][d2 / 2][NR][2] */
  uint16_t *kq;       /* pairs of key rows [BC / 2][dp][2]               */
  uint16_t *pq, *dsq; /* P, dS as pairs of query rows [BR / 2][BC][2]    */
  uint16_t *dsb;      /* dS rows [BR][BC]; AMX: pq, dsq, dsb hold parts  */
} KFN(bf_ops);

/* Query rows rounded up to a tile step (32): the AMX kernel's products
 * that sum over queries pad them with zeros (ATTN_BWD_BF16_SCRATCH). */
#define BRP ((BR + 31) / 32 * 32)

/* Q's and dO's pieces (qh, doh, qp, dop) from rows (ATTN_BWD_ROWS16). */
static void KFN(rows_carve)(const attn_bblock *t, uint16_t *rows,
                            KFN(bf_ops) * o) {
  const int64_t dp = (t->dp + 31) / 32 * 32, dvp = (t->dvp + 31) / 32 * 32;
  o->qh = rows, o->doh = o->qh + BRP * dp, o->qp = o->doh + BRP * dvp;
  o->dop = o->qp + BRP * dp;
}

static KFN(bf_ops) KFN(bf_carve)(const attn_bblock *t) {
  /* as ATTN_BWD_BF16_SCRATCH: row lengths up to a multiple of 32 */
  const int64_t dp = (t->dp + 31) / 32 * 32, dvp = (t->dvp + 31) / 32 * 32;
  KFN(bf_ops) o;
  KFN(rows_carve)(t, t->bf, &o);
  o.kh = o.dop + BRP * dvp, o.vh = o.kh + BC * dp;
  o.kq = o.vh + BC * dvp, o.pq = o.kq + BC * dp;
  o.dsq = o.pq + BRP * BC + 64, o.dsb = o.dsq + BRP * BC + 64;
  return o;
}

/* attn_bwd_kernel.prep_keys: the key tile's bf16 operands (kh, vh, kq)
 * from kt, vt and krow, once for every block of the tile. */
static void KFN(prep_keys)(const attn_bblock *t) {
  const KFN(bf_ops) o = KFN(bf_carve)(t);
  const int ncol = (t->nkeys + NR - 1) / NR * NR;
  KFN(cvt_panels)(t->kt, ncol / NR, t->d, o.kh);
  KFN(cvt_panels)(t->vt, ncol / NR, t->dv, o.vh);
  KFN(cvt_rowpairs)(t->krow, t->dp, ncol, t->dp, o.kq, t->dp);
}

/* attn_bwd_kernel.prep_keys of this body (the ISA files fill it in). */
#define KPREP KFN(prep_keys)

/* n rows of x (row stride ldx floats, a multiple of VL) to bf16 rows of h
 * (row stride ldh >= ldx, zeros past ldx), then zero rows up to m. */
static void KFN(cvt_rows)(const float *x, int64_t ldx, int n, int m,
                          uint16_t *h, int64_t ldh) {
  for (int r = 0; r < n; r++) {
    KFN(cvt_row)(x + r * ldx, ldx, h + r * ldh);
    memset(h + r * ldh + ldx, 0, sizeof(uint16_t) * (size_t)(ldh - ldx));
  }
  memset(h + n * ldh, 0, sizeof(uint16_t) * (size_t)((m - n) * ldh));
}

/* Q and dO (t->q, t->dout) in the forms the block reads: bf16 rows (qh:
 * S; doh: dP with bf16 products) and pairs of rows (qp: dK; dop: dV),
 * with the zeros the AMX tiles read past rows_mr. Once per query tile
 * for all its blocks (prep_rows: phase A keeps them per item), or by a
 * block alone. Per block, these conversions were 15-20% of a short AMX
 * backward (h8 s128, s512 causal; d64). */
static void KFN(conv_rows)(const attn_bblock *t, const KFN(bf_ops) * o) {
  const int rows_mr = (t->rows + MR - 1) / MR * MR;
  const int64_t d = t->d, dv = t->dv, dp = t->dp, dvp = t->dvp;
#if defined(ATTN_BWD_AMX)
  const int nrb = (rows_mr + 15) / 16, nq = (rows_mr + 31) / 32 * 32;
  const int64_t d2 = KFN(kd_pad)(d), dv2 = KFN(kd_pad)(dv);
  if (d % 16 == 0) /* dp = d: rows of d2 for the tiles */
    KFN(cvt_rows)(t->q, dp, rows_mr, nrb * 16, o->qh, d2);
  else
    KFN(cvt_rows)(t->q, dp, rows_mr, rows_mr, o->qh, dp);
  if (t->dp16 && dv % 16 == 0)
    KFN(cvt_rows)(t->dout, dvp, rows_mr, nrb * 16, o->doh, dv2);
  else if (t->dp16)
    KFN(cvt_rows)(t->dout, dvp, rows_mr, rows_mr, o->doh, dvp);
  const int dop = t->dvacc && t->do16, qp = t->dk != NULL;
#else
  const int nq = rows_mr;
  (void)d, (void)dv;
  KFN(cvt_rows)(t->q, dp, rows_mr, rows_mr, o->qh, dp);
  if (t->dp16)
    KFN(cvt_rows)(t->dout, dvp, rows_mr, rows_mr, o->doh, dvp);
  const int dop = t->dvacc && t->pv16, qp = t->dk && t->dk16;
#endif
  if (dop) {
    KFN(cvt_rowpairs)(t->dout, dvp, rows_mr, dvp, o->dop, dvp);
    memset(o->dop + rows_mr * dvp, 0,
           sizeof(uint16_t) * (size_t)((nq - rows_mr) * dvp));
  }
  if (qp) {
    KFN(cvt_rowpairs)(t->q, dp, rows_mr, dp, o->qp, dp);
    memset(o->qp + rows_mr * dp, 0,
           sizeof(uint16_t) * (size_t)((nq - rows_mr) * dp));
  }
}

/* attn_bwd_kernel.prep_rows of this body. */
static void KFN(prep_rows)(const attn_bblock *t, uint16_t *out) {
  KFN(bf_ops) o;
  KFN(rows_carve)(t, out, &o);
  KFN(conv_rows)(t, &o);
}
#define KROWS KFN(prep_rows)

static inline float KFN(ftz)(float x) {
  return fabsf(x) < 1.17549435e-38f ? copysignf(0.0f, x) : x;
}

/* One step of row_dot (below): vf_dot2's lane (pairs in order, the second
 * element first, subnormals flushed), dP's arithmetic in this kernel. */
#define DOT_STEP 2
static ALWAYS_INLINE float KFN(dot_step)(float acc, const float *a,
                                         const float *b, int64_t c, int64_t n) {
  if (c + 1 < n)
    acc = KFN(ftz)(fmaf(KFN(ftz)(a[c + 1]), KFN(ftz)(b[c + 1]), acc));
  return KFN(ftz)(fmaf(KFN(ftz)(a[c]), KFN(ftz)(b[c]), acc));
}

/* dot_step without the flushes, for rows where they change nothing. */
static ALWAYS_INLINE float KFN(dot_step_plain)(float acc, const float *a,
                                               const float *b, int64_t c,
                                               int64_t n) {
  if (c + 1 < n)
    acc = fmaf(a[c + 1], b[c + 1], acc);
  return fmaf(a[c], b[c], acc);
}

/* 1 when every nonzero element of x[0 .. n) has magnitude at least 2^-40
 * (NaN passes: it stays NaN through both chains). For rows of a and b
 * like that, every flush of dot_step is a no-op: each element is a
 * multiple of 2^-63 (its last place), so each product is a multiple of
 * 2^-126; by induction so is each partial sum (a multiple of 2^-126 below
 * 2^-102 is exact in f32, and above it the rounding's last place is
 * itself a multiple of 2^-126), and a nonzero multiple of 2^-126 is at
 * least FLT_MIN: never subnormal. The chain without the flushes then
 * gives the same bits, at a fifth of the instructions (D of a short bf16
 * backward had cost 11% of it on Zen 4). */
static int KFN(row_plain)(const float *x, int64_t n) {
  int tiny = 0;
  for (int64_t c = 0; c < n; c++) {
    const float m = fabsf(x[c]);
    tiny |= (m < 0x1p-40f) & (m != 0.0f);
  }
  return !tiny;
}
#define ROW_PLAIN(a, b, n) (KFN(row_plain)(a, n) && KFN(row_plain)(b, n))
#else
/* attn_bwd_kernel.prep_keys of this body: the f32 kernels have none. */
#define KPREP NULL
#define KROWS NULL

/* One step of row_dot (below): the sequence of mk_qk's accumulation for
 * one lane (c starts at 0, one vf_fma per k in order). */
#define DOT_STEP 1
static ALWAYS_INLINE float KFN(dot_step)(float acc, const float *a,
                                         const float *b, int64_t c, int64_t n) {
  (void)n;
#if defined(ATTN_SIMD_GENERIC)
  return a[c] * b[c] + acc;
#else
  return fmaf(a[c], b[c], acc);
#endif
}
#endif

/* attn_bwd_kernel.row_dot: out[i] = the chain of dot_step over row i of a
 * and of b. Four rows at a time, their chains interleaved: each is one
 * long dependent chain (at head_dim 64, 64 FMA latencies), which alone
 * kept a short backward (8 heads, seq 128) 5% of its time in D. Every row
 * gets the same operations in the same order as alone: the same bits. */
static void KFN(row_dot_chain)(const float *a, int64_t lda, const float *b,
                               int64_t ldb, int64_t n, int64_t rows,
                               float *out) {
  int64_t i = 0;
  for (; i + 4 <= rows; i += 4) {
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#if DOT_STEP == 2
    int plain = 1;
    for (int k = 0; k < 4 && plain; k++)
      plain = ROW_PLAIN(a + (i + k) * lda, b + (i + k) * ldb, n);
    if (plain) {
      for (int64_t c = 0; c < n; c += DOT_STEP) {
        UNROLL for (int k = 0; k < 4; k++) acc[k] = KFN(dot_step_plain)(
            acc[k], a + (i + k) * lda, b + (i + k) * ldb, c, n);
      }
      UNROLL for (int k = 0; k < 4; k++) out[i + k] = acc[k];
      continue;
    }
#endif
    for (int64_t c = 0; c < n; c += DOT_STEP) {
      UNROLL for (int k = 0; k < 4; k++) acc[k] =
          KFN(dot_step)(acc[k], a + (i + k) * lda, b + (i + k) * ldb, c, n);
    }
    UNROLL for (int k = 0; k < 4; k++) out[i + k] = acc[k];
  }
  for (; i < rows; i++) {
    float acc = 0.0f;
    for (int64_t c = 0; c < n; c += DOT_STEP)
      acc = KFN(dot_step)(acc, a + i * lda, b + i * ldb, c, n);
    out[i] = acc;
  }
}

#if defined(ATTN_BWD_AMX)
/* The AMX variant (bwd_amxbf16.c; docs/bf16.md, "AMX"). S = scale (Q Kᵀ)
 * by the forward's own routine (amx_qk_rows, then the scale), so that P is
 * recomputed with the forward's arithmetic (bwd.c's use_bf16 explains
 * why); it needs d a multiple of 16 (rows padded to 32, as the forward's).
 * dP = dO Vᵀ takes tiles too where dv is a multiple of 16 (and V, dO are
 * bf16: dp16), with D = rowsum(dO ∘ O) in the same tile arithmetic
 * (row_dot below). dV (with a bf16 dO), dK and dQ take tiles of P or dS
 * rounded to bf16 where their gradient is stored in bf16 (pv16, dk16,
 * dq16, as the avx512bf16 kernel), split into three bf16 parts otherwise.
 * Other head dims keep vdpbf16ps for S and dP. */
#include "kernels/amx_tiles.h"
_Static_assert(NR == 32 && BR % 16 == 0, "AMX: 16-key halves, 16-row blocks");

static inline vf KFN(widen)(const uint16_t *h) { /* VL bf16 to f32 */
  const __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const void *)h));
  return _mm512_castsi512_ps(_mm512_slli_epi32(x, 16));
}

/* attn_bwd_kernel.row_dot of the AMX kernel: where n is a multiple of 16
 * (dP on tiles), each row's sum is the diagonal of a tile product of 16
 * dO rows against 16 O rows, in the steps dP takes (a zeroed tile, 32
 * elements a step, zeros past n, in order). O is f32: it is split into
 * three bf16 parts that sum to it exactly (head, then the rounded rest,
 * then what remains, subnormals aside), summed in that order. Where a row
 * sees one key, O is that key's bf16 V row, the other parts are zero, and
 * D equals that key's dP bit for bit, so dS is exactly 0 (the chain
 * version's reason). */

static void KFN(row_dot)(const float *a, int64_t lda, const float *b,
                         int64_t ldb, int64_t n, int64_t rows, float *out) {
  if (n % 16 != 0 || n > ATTN_MAX_HEAD_DIM) {
    KFN(row_dot_chain)(a, lda, b, ldb, n, rows, out);
    return;
  }
  const int64_t n32 = KFN(kd_pad)(n); /* zeros past n, as dP's rows */
  _Alignas(64) uint16_t ah[16 * ATTN_MAX_HEAD_DIM];
  _Alignas(64) uint16_t rows3[3][16 * ATTN_MAX_HEAD_DIM]; /* O's parts */
  _Alignas(64) uint32_t part[3][8 * ATTN_MAX_HEAD_DIM];   /* [n32 / 2][16] */
  _Alignas(64) float c[16 * 16], rest[ATTN_MAX_HEAD_DIM];
  amx_config();
  for (int64_t i0 = 0; i0 < rows; i0 += 16) {
    const int m = rows - i0 < 16 ? (int)(rows - i0) : 16;
    for (int r = 0; r < 16; r++) {
      uint16_t *x = ah + r * n32;
      if (r >= m) {
        memset(x, 0, sizeof(uint16_t) * (size_t)n32);
        for (int h = 0; h < 3; h++)
          memset(rows3[h] + r * n32, 0, sizeof(uint16_t) * (size_t)n32);
        continue;
      }
      KFN(cvt_row)(a + (i0 + r) * lda, n, x);
      memset(x + n, 0, sizeof(uint16_t) * (size_t)(n32 - n));
      memcpy(rest, b + (i0 + r) * ldb, sizeof(float) * (size_t)n);
      for (int h = 0; h < 3; h++) {
        uint16_t *y = rows3[h] + r * n32;
        for (int64_t k = 0; k < n; k += VL) {
          const vf z = vf_load(rest + k);
          vbf_store1(y + k, z);
          vf_store(rest + k, vf_sub(z, KFN(widen)(y + k)));
        }
        memset(y + n, 0, sizeof(uint16_t) * (size_t)(n32 - n));
      }
    }
    for (int h = 0; h < 3; h++) /* rows of pairs to the panel [n32 / 2][16] */
      for (int64_t p0 = 0; p0 < n32 / 2; p0 += 16) {
        __m512i t[16];
        for (int r = 0; r < 16; r++)
          t[r] =
              _mm512_loadu_si512((const void *)(rows3[h] + r * n32 + 2 * p0));
        amx_t16_u32(t, part[h] + p0 * 16, 16);
      }
    _tile_zero(0);
    for (int h = 0; h < 3; h++)
      for (int64_t k = 0; k < n32; k += 32) {
        _tile_loadd(4, ah + k, (int)(n32 * 2));
        _tile_loadd(6, part[h] + k * 8, 64);
        _tile_dpbf16ps(0, 4, 6);
      }
    _tile_stored(0, c, 64);
    for (int r = 0; r < m; r++)
      out[i0 + r] = c[r * 16 + r];
  }
  _tile_release();
}
#else
#define ROW_DOT_CHAIN KFN(row_dot_chain)
static void KFN(row_dot)(const float *a, int64_t lda, const float *b,
                         int64_t ldb, int64_t n, int64_t rows, float *out) {
  ROW_DOT_CHAIN(a, lda, b, ldb, n, rows, out);
}
#endif

#if defined(ATTN_BWD_AMX)
/* c[j][0..ldy) += sum_q x[q][j] y[q][0..ldy) for the ncol keys j on tiles
 * (dV += Pᵀ dO, dK += dSᵀ Q): x (P or dS, rows of BC floats) transposed
 * into np bf16 parts (1: rounded; 3: exact), y (dO or Q) as query row
 * pairs yp (conv_rows), both padded with zero queries from rows_mr to nq
 * (a multiple of 32); c has row stride ldy. */
#define AMX_XT_Y KFN(amx_xt_y)
static void AMX_XT_Y(const float *x, int np, const uint16_t *yp, int64_t ldy,
                     float *c, int rows_mr, int nq, int ncol,
                     uint16_t *const *part) {
  amx_zip_t(x, BC, rows_mr, nq, ncol, np, part, nq);
  amx_acc_rows((const uint16_t *const *)part, np, nq, nq, yp, ldy, ncol / 16,
               ldy, c, ldy, ncol);
}

#endif

static void KFN(bwd_block_body)(const attn_bblock *t);

static void KFN(bwd_block)(const attn_bblock *t) {
#if defined(ATTN_BWD_AMX) /* the tile registers hold this block's state */
  if (t->tiles_on) {      /* configured once per thread (bwd.c) */
    if (!*t->tiles_on)
      amx_config();
    *t->tiles_on = 1;
    KFN(bwd_block_body)(t);
    return;
  }
  amx_config();
  KFN(bwd_block_body)(t);
  _tile_release();
#else
  KFN(bwd_block_body)(t);
#endif
}

#if defined(ATTN_BWD_AMX)
static void KFN(tiles_done)(void) { _tile_release(); }
#define KDONE KFN(tiles_done)
#else
#define KDONE NULL
#endif

static void KFN(bwd_block_body)(const attn_bblock *t) {
  const int rows = t->rows;
  const int rows_mr = (rows + MR - 1) / MR * MR;
  const int ncol = (t->nkeys + NR - 1) / NR * NR;
  const int partial = t->partial || t->nkeys < ncol;
  const int64_t d = t->d, dv = t->dv, dp = t->dp, dvp = t->dvp;
  float *restrict s = t->s;
  float *restrict ds = t->ds;
  int qlo[BR / MR + 1], qhi[BR / MR + 1], klo[BC / MR + 1], khi[BC / MR + 1];
  if (partial)
    KFN(block_reach)(t, ncol, qlo, qhi, klo, khi);
#define KREACH partial ? klo : NULL, partial ? khi : NULL
#define QREACH partial ? qlo : NULL, partial ? qhi : NULL

#if defined(ATTN_BWD_BF16)
  const int64_t d2 = KFN(kd_pad)(d), dv2 = KFN(kd_pad)(dv);
  const KFN(bf_ops) o = KFN(bf_carve)(t);
  uint16_t *qh = o.qh, *doh = o.doh, *qp = o.qp, *dop = o.dop, *kh = o.kh;
  uint16_t *vh = o.vh, *kq = o.kq, *pq = o.pq, *dsq = o.dsq, *dsb = o.dsb;
  if (t->rows16) { /* converted once for the query tile (prep_rows) */
    KFN(bf_ops) r;
    KFN(rows_carve)(t, (uint16_t *)t->rows16, &r);
    qh = r.qh, doh = r.doh, qp = r.qp, dop = r.dop;
  } else {
    KFN(conv_rows)(t, &o);
  }
  if (!t->keys_bf16) {
    KFN(prep_keys)(t);
  }
  /* (1) S = scale (Q K^T) with bf16 dot products */
#if defined(ATTN_BWD_AMX)
  /* tiles where d and dv are multiples of 16 (rows padded to d2, dv2) */
  const int amx = d % 16 == 0, amx_dp = t->dp16 && dv % 16 == 0;
  const int pv16 = t->pv16, dk16 = t->dk16, dq16 = t->dq16;
  const int nrb = (rows_mr + 15) / 16;  /* blocks of 16 query rows */
  const int qpad = (rows_mr + 31) / 32; /* query pairs: qpad * 32 rows */
  if (amx) {                            /* dp = d here */
    amx_qk_rows(qh, d2, d2, kh, nrb, ncol, s, BC);
    const vf sc = vf_set1(t->qscale);
    for (int r = 0; r < rows_mr; r++)
      for (int c = 0; c < ncol; c += VL)
        vf_store(s + r * BC + c, vf_mul(vf_load(s + r * BC + c), sc));
  }
#else
  const int amx = 0;
  const int pv16 = t->pv16, dk16 = t->dk16, dq16 = t->dq16;
#endif
  for (int pc = 0; pc < ncol && !amx; pc += NR) {
    const uint16_t *kp = kh + (pc / NR) * d2 * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR) {
      float *c = s + r0 * BC + pc;
      BF_MK_QK(0, MR, NV, qh + r0 * dp, dp, d2, kp, c, NULL, NULL, NULL,
               t->qscale, NULL, 0);
    }
  }
#else
  /* (1) S = scale (Q K^T), the forward's rounding; in a partial block
   * without score modifiers, each row group only up to its last allowed
   * key (-inf past it, as the mask would store) */
  const int trim = partial && !attn_score_any(&t->sc);
  for (int pc = 0; pc < ncol; pc += NR) {
    const float *kp = t->kt + (pc / NR) * d * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR)
      KFN(bmk_nt_part)
    (trim ? qhi[r0 / MR] - pc : NR, t->q + r0 * dp, dp, d, kp, s + r0 * BC + pc,
     t->qscale, -INFINITY);
  }
#endif
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
#if defined(ATTN_BWD_BF16)
#if defined(ATTN_BWD_AMX)
  /* Pᵀ on tiles wherever dO is bf16: rounded to bf16 for a bf16 dV, else
   * split into three bf16 parts that sum to it (f32's accuracy) */
  uint16_t *const part[3] = {pq, dsq, dsb}; /* three bf16 slots */
  const int dv32 = t->dvacc && !t->do16;
  if (t->dvacc && t->do16)
    AMX_XT_Y(pv, pv16 ? 1 : 3, dop, dvp, t->dvacc, rows_mr, 32 * qpad, ncol,
             part);
#else
  if (t->dvacc && pv16) { /* P rounded to bf16: a bf16 dV */
    KFN(cvt_rowpairs)(pv, BC, rows_mr, ncol, pq, BC);
    for (int r0 = 0; r0 < ncol; r0 += MR)
      BF_ACC_COLS2(pq + 2 * r0, 2, 2 * BC, rows_mr / 2, dop, dvp,
                   t->dvacc + r0 * dvp, dvp, dvp, MR);
  }
  const int dv32 = t->dvacc && !pv16;
#endif
#else
  const int dv32 = t->dvacc != NULL;
#endif
  if (dv32) {
    ACC_BLOCKS(pv, 1, 1, BC, rows_mr, t->dout, dvp, t->dvacc, dvp, dvp, ncol,
               KREACH);
  }

  /* (4) dP = dO V^T into ds, (5) dS = P (dP - D) */
#if defined(ATTN_BWD_BF16)
#if defined(ATTN_BWD_AMX)
  const int vdp = t->dp16 && !amx_dp; /* dP with vdpbf16ps */
  if (amx_dp) /* D in this arithmetic: row_dot; dvp = dv here */
    amx_qk_rows(doh, dv2, dv2, vh, nrb, ncol, ds, BC);
#else
  const int vdp = t->dp16;
#endif
  for (int pc = 0; pc < ncol && vdp; pc += NR) {
    const uint16_t *vp = vh + (pc / NR) * dv2 * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR)
      BF_MK_QK(0, MR, NV, doh + r0 * dvp, dvp, dv2, vp, ds + r0 * BC + pc, NULL,
               NULL, NULL, 1.0f, NULL, 0);
  }
  for (int pc = 0; pc < ncol && !t->dp16; pc += NR) {
    const float *vp = t->vt + (pc / NR) * dv * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR)
      KFN(bmk_nt)(t->dout + r0 * dvp, dvp, dv, vp, ds + r0 * BC + pc);
  }
#else
  for (int pc = 0; pc < ncol; pc += NR) { /* 0 past the reach: dS = 0 there */
    const float *vp = t->vt + (pc / NR) * dv * NR;
    for (int r0 = 0; r0 < rows_mr; r0 += MR)
      KFN(bmk_nt_part)
    (trim ? qhi[r0 / MR] - pc : NR, t->dout + r0 * dvp, dvp, dv, vp,
     ds + r0 * BC + pc, 1.0f, 0.0f);
  }
#endif
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
  for (int r = 0; r < rows; r++) {
    if (t->lse[r] != -INFINITY)
      SCORE_BWD_ROW(&t->sc, ds + r * BC, t->g + r * BC, ncol);
  }

  /* (7) dK += dS'^T Q, (8) dQ += dS' K (bwd.c scales both) */
#if defined(ATTN_BWD_BF16)
#if defined(ATTN_BWD_AMX)
  /* dS on tiles (Q and K are bf16): rounded to bf16 for a bf16 dK / dQ,
   * else split into three bf16 parts; Q unscaled (bwd.c scales dK) */
  if (t->dk)
    AMX_XT_Y(ds, dk16 ? 1 : 3, qp, dp, t->dk, rows_mr, 32 * qpad, ncol, part);
  if (t->dq) {
    const int np = dq16 ? 1 : 3;
    for (int r = 0; r < rows_mr; r++) {
      const float *x = ds + r * BC;
      for (int c = 0; c < ncol; c += VL) {
        __m512 rest = vf_load(x + c);
        for (int h = 0; h < np; h++)
          _mm256_storeu_si256((__m256i *)(part[h] + r * BC + c),
                              amx_bf16_part(rest, &rest));
      }
    }
    for (int h = 0; h < np; h++)
      memset(part[h] + rows_mr * BC, 0,
             sizeof(uint16_t) * (size_t)((nrb * 16 - rows_mr) * BC));
    amx_acc_rows((const uint16_t *const *)part, np, BC, ncol, kq, dp, nrb, dp,
                 t->dq, dp, rows);
  }
#else
  /* dS rounded to bf16 for a bf16 dK / dQ; Q unscaled (bwd.c scales dK) */
  if (t->dk && dk16) {
    KFN(cvt_rowpairs)(ds, BC, rows_mr, ncol, dsq, BC);
    for (int r0 = 0; r0 < ncol; r0 += MR)
      BF_ACC_COLS2(dsq + 2 * r0, 2, 2 * BC, rows_mr / 2, qp, dp,
                   t->dk + r0 * dp, dp, dp, MR);
  }
  if (t->dq && dq16) {
    for (int r = 0; r < rows_mr; r++)
      KFN(cvt_row)(ds + r * BC, ncol, dsb + r * BC);
    for (int r0 = 0; r0 < rows; r0 += MR)
      BF_ACC_COLS2(dsb + r0 * BC, BC, 2, ncol / 2, kq, dp, t->dq + r0 * dp, dp,
                   dp, rows - r0 < MR ? rows - r0 : MR);
  }
  if (t->dk && !dk16)
    ACC_BLOCKS(ds, 1, 1, BC, rows_mr, t->q, dp, t->dk, dp, dp, ncol, KREACH);
  if (t->dq && !dq16)
    ACC_BLOCKS(ds, BC, BC, 1, ncol, t->krow, dp, t->dq, dp, dp, rows, QREACH);
#endif
#else
  if (t->dk)
    ACC_BLOCKS(ds, 1, 1, BC, rows_mr, t->q, dp, t->dk, dp, dp, ncol, KREACH);
  if (t->dq)
    ACC_BLOCKS(ds, BC, BC, 1, ncol, t->krow, dp, t->dq, dp, dp, rows, QREACH);
#endif
}
#undef KREACH
#undef QREACH
