/* Backward kernels for the generic instruction set: the shared body in
 * bwd_body.h compiled with this ISA's vocabulary and tile sizes. */
#define ATTN_SIMD_GENERIC 1
#include "kernels/simd.h"

#include "kernels/bwd_kernels.h"

#if defined(ATTN_BWD_BF16) /* bwd_generic_bf16.c: the bf16 kernel */
#define KSUFFIX generic_bf16
#define KISA ATTN_ISA_GENERIC
#else
#define KSUFFIX generic
#define KISA ATTN_ISA_GENERIC
#endif
#ifndef MR
#define MR 4
#endif
#ifndef NV
#define NV 2
#endif
#ifndef BR
#define BR ATTN_TILE_Q
#endif
#ifndef BC
#define BC ATTN_TILE_K
#endif
#include "kernels/bwd_body.h"

_Static_assert(BR == ATTN_TILE_Q && BC == ATTN_TILE_K,
               "one tile geometry for every pass and ISA (attn.h)");

const attn_bwd_kernel *KFN(attn_bwd_kernel)(void) {
  static const attn_bwd_kernel k = {
      KISA,           VL,           MR,    NR,    BR,   BC,
      KFN(bwd_block), KFN(row_dot), KPREP, KDONE, KROWS};
  return &k;
}
