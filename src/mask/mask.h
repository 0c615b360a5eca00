/* Masks compiled to tiles.
 *
 * Every analytic mask (causal in either alignment, sliding window, key
 * padding, sequence end) becomes, for each query row i, one contiguous range
 * of allowed keys lo[i]..hi[i] (inclusive; empty when hi < lo). For a tile of
 * rows x keys [j0, j1) that gives its kind:
 *   EMPTY   no row may see any key of the tile: skipped, no work at all;
 *   FULL    every row sees every key: no per-element test;
 *   PARTIAL anything else: the element predicate runs on the tile.
 * A boolean mask tensor is scanned per tile (bytes, not FLOPs) and can turn
 * a FULL tile into PARTIAL or EMPTY. Nothing here is O(seq_q x seq_k) in
 * memory.
 */
#ifndef ATTN_MASK_H
#define ATTN_MASK_H

#include "core/internal.h"

typedef enum attn_tile_kind {
  ATTN_TILE_EMPTY = 0,
  ATTN_TILE_FULL = 1,
  ATTN_TILE_PARTIAL = 2
} attn_tile_kind;

/* Allowed key range for rows i0..i0+rows-1 of a sequence with sq queries and
 * sk keys, under p's causal and window options. */
void attn_mask_row_ranges(const attn_params *p, int64_t sq, int64_t sk,
                          int64_t i0, int rows, int64_t *lo, int64_t *hi);

/* Kind of the tile rows x [j0, j1) given the per-row ranges. */
static inline attn_tile_kind attn_mask_tile_kind(const int64_t *lo,
                                                 const int64_t *hi, int rows,
                                                 int64_t j0, int64_t j1) {
  int any = 0, all = 1;
  for (int r = 0; r < rows; r++) {
    const int64_t a = lo[r] > j0 ? lo[r] : j0;
    const int64_t b = hi[r] < j1 - 1 ? hi[r] : j1 - 1;
    if (a <= b)
      any = 1;
    if (lo[r] > j0 || hi[r] < j1 - 1)
      all = 0;
  }
  return !any ? ATTN_TILE_EMPTY : all ? ATTN_TILE_FULL : ATTN_TILE_PARTIAL;
}

/* Kind of a boolean mask tensor's tile: m points at (row 0, key 0) of the
 * tile's (batch, head) slice; si, sj are row and key strides (0 broadcasts).
 */
attn_tile_kind attn_mask_tensor_tile_kind(const uint8_t *m, int64_t si,
                                          int64_t sj, int rows, int64_t j0,
                                          int64_t j1);

#endif
