/* The split-KV decode path (attn.h, "KV caches and decoding"): a few query
 * rows against many keys, read straight from the caller's K and V (strided
 * tensors or a paged pool), never packed. Used by attn_forward when seq_q
 * <= ATTN_DECODE_MAX_ROWS and by the KV cache (src/cache/) for any seq_q.
 * See decode.c for the work split and decode_kernels.h for the kernel. */
#ifndef ATTN_KERNELS_DECODE_H
#define ATTN_KERNELS_DECODE_H

#include "kernels/plan.h"

/* Where the keys and values of the call are. */
typedef struct attn_kv_src {
  /* contiguous (page_size 0): the call's views [batch, seq_k, hk, d];
   * paged: the pools [num_pages, page_size, hk, d], rows dense */
  attn_tensor k, v;
  int64_t page_size;          /* 0 = contiguous                     */
  const int32_t *block_table; /* paged: [batch, blocks_per_seq]     */
  int64_t blocks_per_seq;
} attn_kv_src;

/* 1 when the decode kernel computes every option of pl itself (no mask
 * tensor, no bias tensor, no packed sequences); any seq_q. */
int attn_decode_supports(const attn_plan *pl);

/* 1 when attn_forward's call pl takes the decode path: supported options
 * and seq_q <= ATTN_DECODE_MAX_ROWS. */
int attn_decode_eligible(const attn_plan *pl);

/* Bytes of workspace attn_decode_run needs for pl (64 bytes of alignment
 * slack included). */
attn_status attn_decode_workspace_size(const attn_plan *pl, size_t *bytes);

/* o and lse of pl against src, in the workspace at ws (NULL: pl->p's
 * workspace, else one allocation). */
attn_status attn_decode_run(const attn_plan *pl, const attn_kv_src *src,
                            void *ws, size_t ws_size);

/* attn_forward's decode path: attn_decode_run on pl's own k and v. */
attn_status attn_decode_forward(const attn_plan *pl);

#endif
