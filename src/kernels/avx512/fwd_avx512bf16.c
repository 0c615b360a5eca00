/* The AVX-512 forward kernel for bf16 Q and K: fwd_body.h with
 * vdpbf16ps (AVX512-BF16; docs/bf16.md), the tile sizes of fwd_avx512.c. */
#define ATTN_SIMD_BF16 1
#define ATTN_FWD_BF16 1
#include "fwd_avx512.c"
