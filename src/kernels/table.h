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
  const attn_kernel *fwd; /* forward query-tile kernel and its sizes */
  /* the forward for bf16 Q and K with bf16 dot products (docs/bf16.md), the
   * same tile sizes as fwd; NULL: bf16 inputs are widened for fwd */
  const attn_kernel *fwd_bf16;
  const attn_bwd_kernel *bwd; /* backward block kernel and its sizes     */
  /* the backward for bf16 Q, K, V, dO with bf16 dot products, or NULL */
  const attn_bwd_kernel *bwd_bf16;
  /* the split-KV decode kernel (decode_kernels.h) */
  const attn_decode_kernel *dec;
  /* its steps (1) for bf16 q and k, (4) for bf16 v and output, with bf16
   * dot products (decode_bf16dot.h), or NULL */
  void (*dec_qk_bf16)(const attn_dec_chunk *c);
  void (*dec_pv_bf16)(const attn_dec_chunk *c);
  double (*peak_loop)(int64_t iters);      /* FMA probe: returns FLOPs done */
  double (*peak_loop_bf16)(int64_t iters); /* bf16 dot probe, or NULL  */
} attn_kernels;

/* The table of isa (a resolved ISA, never AUTO). */
void attn_kernels_for(attn_isa isa, attn_kernels *t);

#endif
