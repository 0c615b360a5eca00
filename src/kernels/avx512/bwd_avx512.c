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
/* MR x NV: 8 x 2 (16 accumulators, 2 loads and 8 broadcasts per 16
 * FMAs). On an Intel Xeon (2 FMA ports of 512 bits) 8 x 2 ran the f32
 * backward 9-10% faster than 4 x 2 and 6 x 2 5-6% (1 thread, h8 s2048 d64,
 * h4 s2048 d128, alternating builds); MR stays <= 8 (bwd.c's KEY_PAD). */
#ifndef MR
#define MR 8
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
