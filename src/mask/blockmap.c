/* Per-row key ranges and tile kinds: see mask.h. */
#include "mask/mask.h"

void attn_mask_row_ranges(const attn_params *p, int64_t sq, int64_t sk,
                          int64_t i0, int rows, int64_t *lo, int64_t *hi) {
  /* The diagonal: bottom-right (also for windows without causal) puts the
   * last query on the last key; top-left puts query 0 on key 0. */
  const int64_t diag = p->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : sk - sq;
  /* A window wider than both sequences is no window: clamp before the
   * arithmetic so huge values cannot overflow. */
  const int64_t wl = ATTN_MIN(p->window_left, sq + sk);
  const int64_t wr = ATTN_MIN(p->window_right, sq + sk);
  for (int r = 0; r < rows; r++) {
    const int64_t i = i0 + r;
    int64_t a = 0, b = sk - 1;
    if (p->causal != ATTN_CAUSAL_NONE)
      b = ATTN_MIN(b, i + diag);
    if (wl >= 0)
      a = ATTN_MAX(a, i + diag - wl);
    if (wr >= 0)
      b = ATTN_MIN(b, i + diag + wr);
    lo[r] = a;
    hi[r] = b;
  }
}

attn_tile_kind attn_mask_tensor_tile_kind(const uint8_t *m, int64_t si,
                                          int64_t sj, int rows, int64_t j0,
                                          int64_t j1) {
  int64_t ones = 0, total = 0;
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = m + r * si;
    for (int64_t j = j0; j < j1; j++)
      ones += row[j * sj] != 0;
    total += j1 - j0;
    if (si == 0) { /* broadcast over rows: one row decides */
      ones *= rows;
      total *= rows;
      break;
    }
  }
  return ones == 0       ? ATTN_TILE_EMPTY
         : ones == total ? ATTN_TILE_FULL
                         : ATTN_TILE_PARTIAL;
}
