/* The boolean mask tensor, [batch|1, heads_q|1, seq_q|1, seq_k|1]: its
 * (batch, head) slices, and the kind of a tile of it (bytes scanned, no
 * FLOPs). */
#include "mask/mask.h"

void attn_mask_tensor_view(const attn_params *p, int64_t b, int64_t h,
                           attn_mask_view *mv) {
  mv->tensor = NULL;
  mv->tsi = mv->tsj = 0;
  mv->sp = NULL; /* attn_sparse_view sets the sparse fields */
  mv->bm = NULL;
  if (!p->mask.data)
    return;
  const attn_tensor *m = &p->mask;
  const int64_t off = (m->shape[0] == 1 ? 0 : b * m->stride[0]) +
                      (m->shape[1] == 1 ? 0 : h * m->stride[1]);
  mv->tensor = (const uint8_t *)m->data + off;
  mv->tsi = m->shape[2] == 1 ? 0 : m->stride[2];
  mv->tsj = m->shape[3] == 1 ? 0 : m->stride[3];
}

attn_tile_kind attn_mask_tensor_tile_kind(const attn_mask_view *mv, int rows,
                                          int64_t j0, int64_t j1) {
  const uint8_t *m = mv->tensor + mv->i0 * mv->tsi;
  int64_t ones = 0, total = 0;
  for (int r = 0; r < rows; r++) {
    const uint8_t *row = m + r * mv->tsi;
    for (int64_t j = j0; j < j1; j++)
      ones += row[j * mv->tsj] != 0;
    total += j1 - j0;
    if (mv->tsi == 0) { /* broadcast over rows: one row decides */
      ones *= rows;
      total *= rows;
      break;
    }
  }
  return ones == 0       ? ATTN_TILE_EMPTY
         : ones == total ? ATTN_TILE_FULL
                         : ATTN_TILE_PARTIAL;
}
