/* Forward kernels for the avx512 instruction set: the shared body in
 * fwd_body.h compiled with this ISA's vocabulary and tile sizes. */
#define ATTN_SIMD_AVX512 1
#include "kernels/simd.h"

#include "kernels/kernels.h"

#if defined(ATTN_FWD_AMX) /* fwd_amxbf16.c: the bf16 kernel with AMX */
#define KSUFFIX amxbf16
#define KISA ATTN_ISA_AMX_BF16
#elif defined(ATTN_FWD_BF16) /* fwd_avx512bf16.c: the bf16 kernel */
#define KSUFFIX avx512bf16
#define KISA ATTN_ISA_AVX512_BF16
#else
#define KSUFFIX avx512
#define KISA ATTN_ISA_AVX512
#endif
/* Tile sizes; each can be overridden at build time (-DMR=.. -DNV=.. -DBR=..
 * -DBC=..) to compare variants (see "Tuning" in bench/RESULTS.md).
 * MR rows x NV vectors is the register block; BR must be a multiple of MR
 * and BC of NV * VL. f32: 6 x 4 (24 accumulators, 4 loads and 6
 * broadcasts per 24 FMAs). On Zen 4, 4 x 4 had been 2.5-5.5% faster than
 * 6 x 2 at seq 1024-4096, d 64-128, full and causal, and 8 x 2, 6 x 4,
 * 12 x 2 and 3 x 4 no better than 4 x 4; on an Intel Xeon (two 512-bit
 * FMA ports) 6 x 4 is 5-7% faster than 4 x 4 (d64 and d128, 1 and 2
 * threads, causal too) and 12 x 2, 8 x 2 slower. The bf16 kernel
 * takes 6 x 4 too (on Zen 4 0-2% faster than 6 x 2 at seq 128-4096, d
 * 64-128: one horizontal sum of P per row for 64 keys instead of 32); the
 * AMX one keeps 6 x 2 (fwd_amx.h's tiles read 32-key panels). */
#ifndef MR
#if defined(ATTN_FWD_BF16)
#define MR 6
#else
#define MR 6
#endif
#endif
#ifndef NV
#if defined(ATTN_FWD_AMX)
#define NV 2
#else
#define NV 4
#endif
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
