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
/* MR x NV. f32: 6 x 4 (24 accumulators, 4 loads and 6 broadcasts per 24
 * FMAs); on an Intel Xeon (2 FMA ports of 512 bits, 2 threads, h8 s4096)
 * 5-7% faster than 8 x 2 at d64 and 4-5% at d128, and 8 x 2 had been
 * 9-10% faster than 4 x 2 (1 thread, h8 s2048 d64, h4 s2048 d128,
 * alternating builds). The bf16 kernel keeps 8 x 2 (acc_cols2 takes two
 * vectors a step). MR stays <= 8 (bwd.c's KEY_PAD). */
#ifndef MR
#if defined(ATTN_BWD_BF16)
#define MR 8
#else
#define MR 6
#endif
#endif
#ifndef NV
#if defined(ATTN_BWD_BF16)
#define NV 2
#else
#define NV 4
#endif
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
