/* Per-row key intervals under every analytic mask kind, and the element
 * predicate of PARTIAL tiles (mask.h). */
#include "mask/mask.h"

#include <math.h>

/* The registry: every analytic kind, in the order they narrow. */
static const attn_mask_kind *const kinds[] = {
    &attn_mask_kind_causal,
    &attn_mask_kind_window,
    &attn_mask_kind_prefix,
    &attn_mask_kind_child,
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

void attn_mask_rows(const attn_params *p, const attn_seq *s,
                    const attn_pos *pos, int64_t i0, int rows, int64_t *lo,
                    int64_t *hi) {
  const attn_mask_kind *on[NKINDS];
  int n = 0;
  for (size_t k = 0; k < NKINDS; k++)
    if (kinds[k]->active(p))
      on[n++] = kinds[k];
  attn_mask_row row;
  row.k0 = pos->k0;
  row.sq = s->sq;
  row.sk = s->sk;
  for (int r = 0; r < rows; r++) {
    row.qpos = pos->q0 + i0 + r;
    int64_t a = 0, b = s->sk - 1;
    for (int k = 0; k < n; k++)
      on[k]->narrow(p, &row, &a, &b);
    lo[r] = a;
    hi[r] = b;
  }
}

void attn_mask_apply(const attn_mask_view *mv, int r0, int r1, int64_t j0,
                     int ncol, float *s, int64_t lds) {
  for (int r = r0; r < r1; r++) {
    float *x = s + (r - r0) * lds;
    const int64_t a = mv->lo[r] - j0, b = mv->hi[r] - j0; /* allowed a..b */
    /* columns [0, e) and [f, ncol) are masked (all of them when b < a):
     * two runs of stores, not a test per column (on short causal calls
     * the per-column test took a quarter of the time) */
    const int64_t e = a < 0 ? 0 : (a < ncol ? a : ncol);
    const int64_t f = b < e ? e : (b < ncol ? b + 1 : ncol);
    for (int64_t c = 0; c < e; c++)
      x[c] = -INFINITY;
    for (int64_t c = f; c < ncol; c++)
      x[c] = -INFINITY;
    if (mv->tensor) {
      const uint8_t *m = mv->tensor + (mv->i0 + r) * mv->tsi;
      const int64_t lo = ATTN_MAX(a, 0), hi = ATTN_MIN(b, (int64_t)ncol - 1);
      for (int64_t c = lo; c <= hi; c++)
        if (!m[(j0 + c) * mv->tsj])
          x[c] = -INFINITY;
    }
    if (mv->sp) /* sparse patterns, mask_mod: sparse.c */
      attn_sparse_apply(mv, r, j0, ATTN_MAX(a, 0),
                        ATTN_MIN(b, (int64_t)ncol - 1), x);
  }
}
