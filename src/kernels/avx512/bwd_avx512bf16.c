/* The AVX-512 backward kernel for bf16 Q, K, V and dO: bwd_body.h with
 * vdpbf16ps (AVX512-BF16; docs/bf16.md), the tile sizes of bwd_avx512.c. */
#define ATTN_SIMD_BF16 1
#define ATTN_BWD_BF16 1
#include "bwd_avx512.c"
