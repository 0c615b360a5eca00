/* Forward kernels for the avx512 instruction set: the shared body in
 * fwd_body.h compiled with this ISA's vocabulary and tile sizes. */
#define ATTN_SIMD_AVX512 1
#include "kernels/simd.h"

#include "kernels/kernels.h"

#if defined(ATTN_FWD_BF16) /* fwd_avx512bf16.c: the bf16 kernel */
#define KSUFFIX avx512bf16
#define KISA ATTN_ISA_AVX512_BF16
#else
#define KSUFFIX avx512
#define KISA ATTN_ISA_AVX512
#endif
/* Tile sizes; each can be overridden at build time (-DMR=.. -DNV=.. -DBR=..
 * -DBC=..) to compare variants (see "Tuning" in bench/RESULTS.md).
 * MR rows x NV vectors is the register block; BR must be a multiple of MR
 * and BC of NV * VL. */
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
#define BC 64
#endif
#include "kernels/fwd_body.h"

_Static_assert(BR == ATTN_TILE_Q && BC == ATTN_TILE_K,
               "one tile geometry for every pass and ISA (attn.h)");

const attn_kernel *KFN(attn_kernel)(void) {
  static const attn_kernel k = {KISA, VL, MR, NR, BR, BC, KFN(fwd_qtile)};
  return &k;
}
