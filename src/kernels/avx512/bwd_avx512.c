/* Backward kernels for the avx512 instruction set: the shared body in
 * bwd_body.h compiled with this ISA's vocabulary and tile sizes. */
#define ATTN_SIMD_AVX512 1
#include "kernels/simd.h"

#include "kernels/bwd_kernels.h"

#if defined(ATTN_BWD_AMX) /* bwd_amxbf16.c: the bf16 kernel with AMX */
#define KSUFFIX amxbf16
#define KISA ATTN_ISA_AMX_BF16
#elif defined(ATTN_BWD_BF16) /* bwd_avx512bf16.c: the bf16 kernel */
#define KSUFFIX avx512bf16
#define KISA ATTN_ISA_AVX512_BF16
#else
#define KSUFFIX avx512
#define KISA ATTN_ISA_AVX512
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
      KISA, VL, MR, NR, BR, BC, KFN(bwd_block), KFN(row_dot), KPREP};
  return &k;
}
