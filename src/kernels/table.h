/* One kernel table per ISA (BLIS's habit): filled with the generic
 * kernels first, then overridden by what the ISA has. Tile sizes live in
 * each ISA's kernel files; the geometry every pass shares (ATTN_TILE_Q x
 * ATTN_TILE_K) is in attn.h. This is the one dispatch of the library. */
#ifndef ATTN_TABLE_H
#define ATTN_TABLE_H

#include "kernels/bwd_kernels.h"
#include "kernels/decode_kernels.h"
#include "kernels/kernels.h"

typedef struct attn_kernels {
  attn_isa isa;
  const attn_kernel *fwd;     /* forward query-tile kernel and its sizes */
  const attn_bwd_kernel *bwd; /* backward block kernel and its sizes     */
  /* the split-KV decode kernel (decode_kernels.h) */
  const attn_decode_kernel *dec;
  double (*peak_loop)(int64_t iters); /* FMA probe: returns FLOPs done */
} attn_kernels;

/* The table of isa (a resolved ISA, never AUTO). */
void attn_kernels_for(attn_isa isa, attn_kernels *t);

#endif
