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
#define BR 48
#endif
#ifndef BC
#define BC 48
#endif
#include "kernels/bwd_body.h"

const attn_bwd_kernel *attn_bwd_kernel_avx2(void) {
  static const attn_bwd_kernel k = {ATTN_ISA_AVX2, VL, MR, NR, BR, BC,
                                    bwd_block_avx2};
  return &k;
}
