/* The forward's packing of K and V (fwd_pack.c), for fwd.c. */
#ifndef ATTN_KERNELS_FWD_PACK_H
#define ATTN_KERNELS_FWD_PACK_H

#include "kernels/kernels.h"

/* What the packing reads of a forward call. */
typedef struct attn_fwd_pack {
  const attn_problem *pr;
  int64_t nr;  /* keys per panel (the kernel's)                       */
  int64_t dvp; /* V row length, padded to the vector length           */
  int64_t dq;  /* packed Q and K row length: d, even for bf16         */
  int bf16;    /* Q and K packed as bf16 pairs (the bf16 kernel)      */
  int pv16;    /* V packed as bf16 pairs too (a bf16 output)          */
} attn_fwd_pack;

/* n bf16 elements (stride s) of src to dst, then zeros up to n_pad; a row
 * holding a non-finite value becomes all NaN (attn_load_row_poison). */
void attn_fwd_load_row_bf16(const void *src, int64_t s, int64_t n,
                            int64_t n_pad, uint16_t *dst);

/* Packs panel pnl of sequence sq, kv head g: K into kpack's panel, V rows
 * into vpack (tmp: scratch of at least 4 rows of d floats). */
void attn_fwd_pack_panel(const attn_fwd_pack *pk, const attn_seq *sq, int64_t g,
                         int64_t pnl, float *kpack, float *vpack, float *tmp);

#endif
