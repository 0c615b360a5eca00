/* Backward kernels for the avx2 instruction set: the shared body in
 * bwd_body.h compiled with this ISA's vocabulary and tile sizes. */
#define ATTN_SIMD_AVX2 1
#include "kernels/simd.h"

#include "kernels/bwd_kernels.h"

#define KSUFFIX avx2
#ifndef MR
#define MR 6
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

const attn_bwd_kernel *attn_bwd_kernel_avx2(void) {
  static const attn_bwd_kernel k = {
      ATTN_ISA_AVX2,  VL,           MR,   NR,   BR,  BC,
      bwd_block_avx2, row_dot_avx2, NULL, NULL, NULL};
  return &k;
}
