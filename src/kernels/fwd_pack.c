/* The forward's packing (fwd.c's callers): K into panels of nr keys and V
 * into rows, in f32 or (for the bf16 kernels) as bf16 pairs; the layouts
 * are the kernels' (kernels.h, docs/bf16.md). Split from fwd.c. */
#include "kernels/fwd_pack.h"
#include "core/internal.h"
#include "kernels/plan.h"

#include <string.h>
#if defined(__SSE2__)
#include "kernels/pack4.h" /* SSE2: baseline on x86-64, no ISA check */
#endif

/* n bf16 elements (stride s) of src to dst, then zeros up to n_pad; a row
 * holding a non-finite value becomes all NaN (attn_load_row_poison). */
void attn_fwd_load_row_bf16(const void *src, int64_t s, int64_t n,
                            int64_t n_pad, uint16_t *dst) {
  const uint16_t *x = (const uint16_t *)src;
  int bad = 0;
  if (s == 1)
    memcpy(dst, x, sizeof(uint16_t) * (size_t)n);
  else
    for (int64_t i = 0; i < n; i++)
      dst[i] = x[i * s];
  for (int64_t i = 0; i < n; i++) /* vectorised by the compiler */
    bad |= (dst[i] & 0x7f80) == 0x7f80;
  for (int64_t i = n; i < n_pad; i++)
    dst[i] = 0;
  for (int64_t i = 0; i < n_pad && bad; i++)
    dst[i] = 0x7fc0;
}

/* Key j's value row for the bf16 kernel: with pv16 the pair slot
 * vp[j/2][col][j%2] = V[j][col], else f32 as pack_panel (zeros past dv,
 * and for a key past the sequence). */
static void pack_v_bf16(const attn_fwd_pack *pk, const attn_seq *sq, int64_t g,
                        int64_t j, float *vpack) {
  const attn_params *p = pk->pr->p;
  const int64_t dv = pk->pr->dv, dvp = pk->dvp;
  const int live = j < sq->sk;
  if (!pk->pv16) {
    float *vrow = vpack + j * dvp;
    if (live)
      attn_load_row_f32(attn_elem(&p->v, sq->q_bat, sq->k_off + j, g, 0),
                        p->v.dtype, p->v.stride[3], dv, 1.0f, vrow);
    memset(vrow + (live ? dv : 0), 0,
           sizeof(float) * (size_t)(live ? dvp - dv : dvp));
    return;
  }
  uint16_t *vp = (uint16_t *)vpack + (j >> 1) * 2 * dvp + (j & 1);
  if (live) {
    const uint16_t *x =
        (const uint16_t *)attn_elem(&p->v, sq->q_bat, sq->k_off + j, g, 0);
    for (int64_t col = 0; col < dv; col++)
      vp[2 * col] = x[col * p->v.stride[3]];
  }
  for (int64_t col = live ? dv : 0; col < dvp; col++)
    vp[2 * col] = 0;
}

#if defined(__SSE2__)
/* Four bf16 key rows r[0..3] (unit stride, d even) into columns c .. c + 3
 * of a pair panel (kp already at column c). The panel is a transpose of
 * 32-bit pairs, kp[kk/2][c] = (K[c][kk], K[c][kk + 1]), so 4 x 4
 * transposes of 32-bit lanes do it. Returns 0 if a row holds a non-finite
 * value (load_row_bf16's test), having written what the row path then
 * overwrites. */
static int pack_keys4_bf16(const uint16_t *const r[4], int64_t d, int64_t nr,
                           uint16_t *kp) {
  const __m128i em = _mm_set1_epi16(0x7f80);
  __m128i bad = _mm_setzero_si128();
  int64_t kk = 0;
  for (; kk + 8 <= d; kk += 8) {
    __m128i x[4];
    for (int i = 0; i < 4; i++) {
      x[i] = _mm_loadu_si128((const __m128i *)(r[i] + kk));
      bad = _mm_or_si128(bad, _mm_cmpeq_epi16(_mm_and_si128(x[i], em), em));
    }
    const __m128i t0 = _mm_unpacklo_epi32(x[0], x[1]),
                  t1 = _mm_unpacklo_epi32(x[2], x[3]),
                  t2 = _mm_unpackhi_epi32(x[0], x[1]),
                  t3 = _mm_unpackhi_epi32(x[2], x[3]);
    uint16_t *o = kp + (kk >> 1) * 2 * nr;
    _mm_storeu_si128((__m128i *)o, _mm_unpacklo_epi64(t0, t1));
    _mm_storeu_si128((__m128i *)(o + 2 * nr), _mm_unpackhi_epi64(t0, t1));
    _mm_storeu_si128((__m128i *)(o + 4 * nr), _mm_unpacklo_epi64(t2, t3));
    _mm_storeu_si128((__m128i *)(o + 6 * nr), _mm_unpackhi_epi64(t2, t3));
  }
  int tail_bad = 0;
  for (; kk < d; kk++)
    for (int i = 0; i < 4; i++) {
      tail_bad |= (r[i][kk] & 0x7f80) == 0x7f80;
      kp[(kk >> 1) * 2 * nr + 2 * i + (kk & 1)] = r[i][kk];
    }
  return !(_mm_movemask_epi8(bad) | tail_bad);
}

/* Value rows j, j + 1 (j even, both live, bf16, unit stride) into their
 * pair row vp[j/2][col][0..1], zeros from dv to dvp. */
static void pack_v2_bf16(const uint16_t *x0, const uint16_t *x1, int64_t dv,
                         int64_t dvp, uint16_t *vp) {
  int64_t col = 0;
  for (; col + 8 <= dv; col += 8) {
    const __m128i a = _mm_loadu_si128((const __m128i *)(x0 + col)),
                  b = _mm_loadu_si128((const __m128i *)(x1 + col));
    _mm_storeu_si128((__m128i *)(vp + 2 * col), _mm_unpacklo_epi16(a, b));
    _mm_storeu_si128((__m128i *)(vp + 2 * col + 8), _mm_unpackhi_epi16(a, b));
  }
  for (; col < dv; col++) {
    vp[2 * col] = x0[col];
    vp[2 * col + 1] = x1[col];
  }
  memset(vp + 2 * dv, 0, sizeof(uint16_t) * (size_t)(2 * (dvp - dv)));
}
#endif

/* The bf16 packing of panel pnl (docs/bf16.md): key pairs
 * kp[pnl][kk/2][c][kk%2] = K[j][kk] (j = pnl*nr + c, a zero appended to an
 * odd d), and with pv16 value pairs vp[j/2][col][j%2] = V[j][col], else
 * f32 values as pack_panel. */
static void pack_panel_bf16(const attn_fwd_pack *pk, const attn_seq *sq,
                            int64_t g, int64_t pnl, float *kpack, float *vpack,
                            float *tmp) {
  const attn_problem *pr = pk->pr;
  const attn_params *p = pr->p;
  const int64_t nr = pk->nr, d2 = pk->dq, dv = pr->dv, dvp = pk->dvp;
  uint16_t *kp = (uint16_t *)kpack + pnl * d2 * nr, *row = (uint16_t *)tmp;
  int64_t c = 0;
#if defined(__SSE2__)
  /* Four live keys at a time where K rows are read in place (unit stride,
   * even d; pairs past d up to d2, AMX's padding, zero); V pairs of keys
   * interleaved in place where they are bf16 in unit stride too. The row
   * path takes the rest (and a block with a non-finite key, from its
   * start). */
  const int direct = p->k.stride[3] == 1 && pr->d % 2 == 0;
  const int v2 = pk->pv16 && p->v.stride[3] == 1;
  for (; direct && c + 4 <= nr && pnl * nr + c + 4 <= sq->sk; c += 4) {
    const int64_t j = pnl * nr + c;
    const uint16_t *r[4];
    for (int i = 0; i < 4; i++)
      r[i] = (const uint16_t *)attn_elem(&p->k, sq->q_bat, sq->k_off + j + i, g,
                                         0);
    if (!pack_keys4_bf16(r, pr->d, nr, kp + 2 * c))
      break;
    for (int64_t kk = pr->d; kk < d2; kk += 2)
      _mm_storeu_si128((__m128i *)(kp + (kk >> 1) * 2 * nr + 2 * c),
                       _mm_setzero_si128());
    for (int i = 0; i < 4; i += 2) {
      if (!v2) {
        pack_v_bf16(pk, sq, g, j + i, vpack);
        pack_v_bf16(pk, sq, g, j + i + 1, vpack);
        continue;
      }
      const uint16_t *x0 = (const uint16_t *)attn_elem(&p->v, sq->q_bat,
                                                       sq->k_off + j + i, g, 0);
      const uint16_t *x1 = (const uint16_t *)attn_elem(
          &p->v, sq->q_bat, sq->k_off + j + i + 1, g, 0);
      pack_v2_bf16(x0, x1, dv, dvp,
                   (uint16_t *)vpack + ((j + i) >> 1) * 2 * dvp);
    }
  }
#endif
  for (; c < nr; c++) {
    const int64_t j = pnl * nr + c;
    const int live = j < sq->sk;
    if (live)
      attn_fwd_load_row_bf16(attn_elem(&p->k, sq->q_bat, sq->k_off + j, g, 0),
                             p->k.stride[3], pr->d, d2, row);
    for (int64_t kk = 0; kk < d2; kk++)
      kp[(kk >> 1) * 2 * nr + 2 * c + (kk & 1)] = live ? row[kk] : 0;
    pack_v_bf16(pk, sq, g, j, vpack);
  }
}

#if defined(__SSE2__)
/* Four f32 key rows r[0..3] (unit stride) into columns c .. c + 3 of a
 * panel, kp[kk * nr + i] = r[i][kk], by 4 x 4 transposes in SSE registers
 * (one 16-byte store per four elements instead of four scalar stores a
 * panel row apart: the scalar transpose was 8% of a short forward call).
 * Checks finiteness on the way (attn_load_row_poison's test); returns 0 if a
 * row holds a non-finite value, having written garbage the caller's row
 * path then overwrites (with the poisoned row). */
static int pack_keys4_f32(const float *const r[4], int64_t d, int64_t nr,
                          float *kp) {
  const __m128i em = _mm_set1_epi32(0x7f800000),
                one = _mm_set1_epi32(0x00800000);
  __m128i e = _mm_setzero_si128();
  int64_t kk = 0;
  for (; kk + 4 <= d; kk += 4) {
    __m128 x0 = _mm_loadu_ps(r[0] + kk), x1 = _mm_loadu_ps(r[1] + kk);
    __m128 x2 = _mm_loadu_ps(r[2] + kk), x3 = _mm_loadu_ps(r[3] + kk);
    const __m128i b01 = _mm_or_si128(
        _mm_add_epi32(_mm_and_si128(_mm_castps_si128(x0), em), one),
        _mm_add_epi32(_mm_and_si128(_mm_castps_si128(x1), em), one));
    const __m128i b23 = _mm_or_si128(
        _mm_add_epi32(_mm_and_si128(_mm_castps_si128(x2), em), one),
        _mm_add_epi32(_mm_and_si128(_mm_castps_si128(x3), em), one));
    e = _mm_or_si128(e, _mm_or_si128(b01, b23));
    attn_pack4_store(x0, x1, x2, x3, kk, nr, kp);
  }
  uint32_t et = 0;
  for (; kk < d; kk++)
    for (int i = 0; i < 4; i++) {
      uint32_t u;
      memcpy(&u, &r[i][kk], sizeof u);
      et |= (u & 0x7f800000u) + 0x00800000u;
      kp[kk * nr + i] = r[i][kk];
    }
  return !(_mm_movemask_ps(_mm_castsi128_ps(e)) | (int)(et >> 31));
}
#endif

#if defined(__SSE2__)
/* Four bf16 key rows r[0..3] (unit stride) widened into columns c .. c + 3
 * of a panel (a bf16 is the top half of its f32: exact), as
 * pack_keys4_f32 packs f32 rows; returns 0 if a row holds an infinity or
 * a NaN (exponent bits all ones), having written garbage the caller's row
 * path then overwrites. */
static int pack_keys4_bf16w(const uint16_t *const r[4], int64_t d, int64_t nr,
                            float *kp) {
  const __m128i em = _mm_set1_epi16(0x7f80), z = _mm_setzero_si128();
  __m128i e = z;
  int64_t kk = 0;
  for (; kk + 4 <= d; kk += 4) {
    __m128i h[4];
    attn_pack4_load16(r, kk, em, h, &e);
    attn_pack4_store(_mm_castsi128_ps(_mm_unpacklo_epi16(z, h[0])),
                     _mm_castsi128_ps(_mm_unpacklo_epi16(z, h[1])),
                     _mm_castsi128_ps(_mm_unpacklo_epi16(z, h[2])),
                     _mm_castsi128_ps(_mm_unpacklo_epi16(z, h[3])), kk, nr, kp);
  }
  int bad = _mm_movemask_epi8(e) != 0;
  for (; kk < d; kk++)
    for (int i = 0; i < 4; i++) {
      const uint32_t u = (uint32_t)r[i][kk] << 16;
      bad |= (r[i][kk] & 0x7f80) == 0x7f80;
      memcpy(&kp[kk * nr + i], &u, sizeof u);
    }
  return !bad;
}

/* n bf16 (unit stride) widened to f32 (exact). */
static void widen_bf16_row(const uint16_t *src, int64_t n, float *dst) {
  const __m128i z = _mm_setzero_si128();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128((const __m128i *)(src + i));
    _mm_storeu_ps(dst + i, _mm_castsi128_ps(_mm_unpacklo_epi16(z, h)));
    _mm_storeu_ps(dst + i + 4, _mm_castsi128_ps(_mm_unpackhi_epi16(z, h)));
  }
  for (; i < n; i++) {
    const uint32_t u = (uint32_t)src[i] << 16;
    memcpy(&dst[i], &u, sizeof u);
  }
}
#endif

/* How the f32 kernels' packing reads K and V rows: f32 in place (K only),
 * widened directly (f16 with F16C, bf16), or through attn_load_row_f32
 * (anything else: strided rows, f16 without F16C, quantised types). The
 * direct paths skip that call's dispatch per row (a switch, the CPU check,
 * the call: comparable to widening a row of 64) and, for K, the scratch
 * rows before the transpose; short f16 and bf16 calls spent 2-9% more
 * than f32 in them (docs/decisions.md). The same bits either way. */
enum { ROW_CONVERT, ROW_F32, ROW_F16C, ROW_BF16 };

static int row_mode(const attn_tensor *t) {
  if (t->stride[3] != 1)
    return ROW_CONVERT;
  if (t->dtype == ATTN_DTYPE_F32)
    return ROW_F32;
#if defined(__SSE2__)
  if (t->dtype == ATTN_DTYPE_BF16)
    return ROW_BF16;
#endif
#if defined(ATTN_HAVE_X86)
  if (t->dtype == ATTN_DTYPE_F16 && attn_cpu_has_avx2())
    return ROW_F16C;
#endif
  return ROW_CONVERT;
}

/* Key j's row of V into vrow (f32, zeros from dv to dvp), read as vmode
 * says (row_mode). */
static void pack_v_row(const attn_params *p, const attn_seq *sq, int64_t g,
                       int64_t j, int64_t dv, int64_t dvp, float *vrow,
                       int vmode) {
  const void *at = attn_elem(&p->v, sq->q_bat, sq->k_off + j, g, 0);
  switch (vmode) {
#if defined(ATTN_HAVE_X86)
  case ROW_F16C:
    attn_f16_row_f16c((const uint16_t *)at, dv, 1.0f, vrow);
    break;
#endif
#if defined(__SSE2__)
  case ROW_BF16:
    widen_bf16_row((const uint16_t *)at, dv, vrow);
    break;
#endif
  default:
    attn_load_row_f32(at, p->v.dtype, p->v.stride[3], dv, 1.0f, vrow);
    break;
  }
  memset(vrow + dv, 0, sizeof(float) * (size_t)(dvp - dv));
}

/* Packs keys of panel pnl: kp[pnl][kk][c] = K[j = pnl*nr + c][kk]. */
void attn_fwd_pack_panel(const attn_fwd_pack *pk, const attn_seq *sq, int64_t g,
                         int64_t pnl, float *kpack, float *vpack, float *tmp) {
  if (pk->bf16) {
    pack_panel_bf16(pk, sq, g, pnl, kpack, vpack, tmp);
    return;
  }
  const attn_problem *pr = pk->pr;
  const attn_params *p = pr->p;
  const int64_t nr = pk->nr, d = pr->d, dv = pr->dv, dvp = pk->dvp;
  float *kp = kpack + pnl * d * nr;
  int64_t c = 0;
  const int kmode = row_mode(&p->k), vmode = row_mode(&p->v);
#if defined(__SSE2__)
  /* Four live keys at a time: f32 rows in unit stride read in place, f16
   * (F16C) and bf16 ones widened on the way, any other converted first
   * into four rows of tmp (the Q slot of this thread's scratch: br >= 4
   * rows of d, not in use while packing). The row path below takes the
   * rest (and a block with a non-finite key, from its start). */
  for (; c + 4 <= nr && pnl * nr + c + 4 <= sq->sk; c += 4) {
    const int64_t j = pnl * nr + c;
    const float *r[4];
    const uint16_t *h[4];
    for (int i = 0; i < 4; i++) {
      if (j + i + ATTN_PREFETCH_ROWS < sq->sk) { /* as below */
        const int64_t jp = sq->k_off + j + i + ATTN_PREFETCH_ROWS;
        attn_prefetch_elem(&p->k, sq->q_bat, jp, g, d, 0);
        attn_prefetch_elem(&p->v, sq->q_bat, jp, g, dv, 0);
      }
      const void *at = attn_elem(&p->k, sq->q_bat, sq->k_off + j + i, g, 0);
      /* each pointer made only where its type is the data's (a cast to a
       * stricter alignment is undefined even unread) */
      h[i] = NULL;
      r[i] = tmp + i * d;
      if (kmode == ROW_F32)
        r[i] = (const float *)at;
      else if (kmode == ROW_CONVERT)
        attn_load_row_f32(at, p->k.dtype, p->k.stride[3], d, 1.0f, tmp + i * d);
      else
        h[i] = (const uint16_t *)at;
    }
    int ok;
    switch (kmode) {
#if defined(ATTN_HAVE_X86)
    case ROW_F16C:
      ok = attn_f16_pack_keys4_f16c(h, d, nr, kp + c);
      break;
#endif
    case ROW_BF16:
      ok = pack_keys4_bf16w(h, d, nr, kp + c);
      break;
    default: /* f32 in place, or converted into tmp */
      ok = pack_keys4_f32(r, d, nr, kp + c);
      break;
    }
    if (!ok)
      break;
    for (int i = 0; i < 4; i++)
      pack_v_row(p, sq, g, j + i, dv, dvp, vpack + (j + i) * dvp, vmode);
  }
#endif
  (void)kmode;
  for (; c < nr; c++) {
    const int64_t j = pnl * nr + c;
    float *vrow = vpack + j * dvp;
    if (j < sq->sk) {
      if (j + ATTN_PREFETCH_ROWS < sq->sk) { /* strided rows: ask early */
        const int64_t jp = sq->k_off + j + ATTN_PREFETCH_ROWS;
        attn_prefetch_elem(&p->k, sq->q_bat, jp, g, d, 0);
        attn_prefetch_elem(&p->v, sq->q_bat, jp, g, dv, 0);
      }
      attn_load_row_poison(attn_elem(&p->k, sq->q_bat, sq->k_off + j, g, 0),
                           p->k.dtype, p->k.stride[3], d, 1.0f, tmp);
      for (int64_t kk = 0; kk < d; kk++)
        kp[kk * nr + c] = tmp[kk];
      pack_v_row(p, sq, g, j, dv, dvp, vrow, vmode);
    } else {
      for (int64_t kk = 0; kk < d; kk++)
        kp[kk * nr + c] = 0.0f;
      memset(vrow, 0, sizeof(float) * (size_t)dvp);
    }
  }
}
